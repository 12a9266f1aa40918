"""Every lesson runs with the CuPy stand-in as its backend (``--quick``), as a learner on a GPU runs it.

With ``RESNET_NP_BACKEND=cupy-strict`` every model, layer and batch a
lesson makes through the backend lives on ``resnet_np.cupy_strict`` (CuPy's
rules emulated on NumPy, not a GPU): a lesson that hands a NumPy array to a
layer on the device, writes one into a device buffer, gives a device array
to ``np.testing`` or matplotlib, or calls a NumPy-only function fails here.
The lessons move their examples with ``backend.to_device`` and bring results
back with ``to_numpy``. Only lesson 11's GPU-faster-than-CPU assertion is
skipped there (``backend.is_stand_in()``).

Lesson 13 runs under ``mpiexec -n 2`` where MPI is installed (its
SyncBatchNorm and DistributedDataParallel then all-reduce device arrays),
alone otherwise. Lesson 15 reads CIFAR-10's test set from
``$RESNET_NP_DATA``, lesson 14 writes an image folder of CIFAR-10's cats
and dogs (synthetic photos without it). tests/test_lessons.py and
tests/test_notebooks.py run them on NumPy.
"""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from test_distributed_mpi import _why_no_mpi, run  # noqa: E402  (mpiexec with a time limit and cleanup)

LESSONS = sorted(p.stem for p in (ROOT / "lessons").glob("[0-9][0-9]_*.py"))


def test_every_lesson_is_run():
    """A new lesson is run on the stand-in by being in lessons/ (nothing to list); the course has 15 at least."""
    assert len(LESSONS) >= 15 and "13_data_parallel" in LESSONS, LESSONS


def _run(lesson, out, tmp_path, monkeypatch):
    """(exit status, stdout, stderr) of the lesson with --quick on the stand-in."""
    monkeypatch.setenv("RESNET_NP_BACKEND", "cupy-strict")
    script = ROOT / "lessons" / f"{lesson}.py"
    if lesson == "13_data_parallel" and _why_no_mpi() is None:
        result = run([script, "--quick", "--out", out], tmp_path, n=2, timeout=300)
        assert "running as 2 process(es)" in result.out, result
        return result.returncode, result.out, result.err
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    result = subprocess.run([sys.executable, str(script), "--quick", "--out", str(out)], capture_output=True,
                            text=True, env=env, cwd=str(tmp_path), timeout=600)
    return result.returncode, result.stdout, result.stderr


@pytest.mark.parametrize("lesson", LESSONS)
def test_lesson_runs_on_the_stand_in(lesson, tmp_path, monkeypatch):
    out = tmp_path / "figures"
    code, stdout, stderr = _run(lesson, out, tmp_path, monkeypatch)
    assert code == 0, stdout[-2000:] + stderr[-3000:]
    assert list(out.glob("*.png")), "the lesson saved no figure"
    if lesson == "11_gpu_cupy":
        assert "the strict CuPy stand-in" in stdout and "no claim about GPU speed" in stdout
