"""A checkpoint written by an older library resumes, with this one, to the weights the older one reached.

The long CIFAR-10 ResNet-56 run goes in pieces, each resumed with ``--resume`` by the library of its day:
its next step must be the one the code that wrote the checkpoint would have taken. tests/golden/ holds a
tiny run's checkpoint after its first epoch and the weights after its second, both written by the code
that started that run (commit b09f557, with ``tests/golden/make_resume_golden.py``). A change of the
checkpoint's format, of what it restores (momentum, the schedule's place, the data order) or of the
training step's numerics fails here.
"""

import importlib.util
import json
import pathlib

import numpy as np
import pytest

from resnet_np import use_fast
from resnet_np.train import fit

GOLDEN = pathlib.Path(__file__).resolve().parent / "golden"


def writer():
    spec = importlib.util.spec_from_file_location("make_resume_golden", GOLDEN / "make_resume_golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "plain"])
def test_the_old_checkpoint_resumes_to_the_old_codes_weights(fast):
    golden = writer()
    with use_fast(fast):
        model, loader, optimizer, scheduler = golden.setup()
        fit(model, loader, None, 2, optimizer, scheduler, resume=GOLDEN / "resume_epoch1.npz", progress=False,
            log=lambda *a: None)
    expected = json.loads((GOLDEN / "resume_epoch2_weights.json").read_text())
    got = golden.summary(model)
    assert list(got) == list(expected)
    # float32 training: the engine and the plain layers may add in another order, nothing more.
    for key in expected:
        for field in ("sum", "abs_sum"):
            assert got[key][field] == pytest.approx(expected[key][field], rel=1e-4, abs=1e-5), (key, field)
        np.testing.assert_allclose(got[key]["first"], expected[key]["first"], rtol=1e-4, atol=1e-5, err_msg=key)
