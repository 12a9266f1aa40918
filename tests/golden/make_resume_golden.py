"""Write the golden files of tests/test_resume_golden.py with the library as it is now.

    python tests/golden/make_resume_golden.py

Trains a tiny CIFAR-style ResNet (option A, the ResNet-56 run's recipe in miniature: SGD with momentum and
weight decay, warm-up then cosine, random crops and flips) for one epoch with ``fit``, keeping its
checkpoint (``resume_epoch1.npz``), then resumes it for a second epoch and keeps what the test compares of
the weights that gives (``resume_epoch2_weights.json``: each tensor's sum, sum of absolute values and
first values). The files in the repository were written by the code that started the CIFAR-10 ResNet-56
run (commit b09f557): a later library must resume that checkpoint and reach the same weights. Run this
again only when a change of format or numerics is meant, and say so in the commit.
"""

import json
import pathlib
import shutil
import sys
import tempfile

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent


def setup():
    """The network, data, optimizer and schedule, the same in the writer and in the test."""
    from resnet_np import backend
    from resnet_np.data import DataLoader, Dataset
    from resnet_np.models import CifarResNet
    from resnet_np.optim import SGD, CosineAnnealingLR, LinearWarmup

    rng = np.random.default_rng(2016)
    data = Dataset(rng.integers(0, 256, (32, 3, 8, 8), dtype=np.uint8), rng.integers(0, 3, 32), ["a", "b", "c"],
                   (0.49, 0.48, 0.45), (0.25, 0.24, 0.26))
    backend.manual_seed(0)
    model = CifarResNet(1, num_classes=3, in_channels=3, shortcut="A")
    loader = DataLoader(data, batch_size=8, shuffle=True, drop_last=True, seed=0, augment="cifar")
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    scheduler = LinearWarmup(optimizer, warmup_steps=2, start_factor=0.1,
                             after=CosineAnnealingLR(optimizer, T_max=2 * len(loader) - 2))
    return model, loader, optimizer, scheduler


def main():
    from resnet_np.train import fit

    work = pathlib.Path(tempfile.mkdtemp())
    model, loader, optimizer, scheduler = setup()
    fit(model, loader, None, 1, optimizer, scheduler, out_dir=work, progress=False, log=lambda *a: None)
    shutil.copyfile(work / "checkpoint.npz", HERE / "resume_epoch1.npz")
    model, loader, optimizer, scheduler = setup()
    fit(model, loader, None, 2, optimizer, scheduler, resume=HERE / "resume_epoch1.npz", progress=False,
        log=lambda *a: None)
    (HERE / "resume_epoch2_weights.json").write_text(json.dumps(summary(model), indent=0))
    print("wrote", HERE / "resume_epoch1.npz", "and", HERE / "resume_epoch2_weights.json")


def summary(model):
    """What the test compares: each tensor's sum, sum of absolute values and first six values."""
    result = {}
    for key, value in model.state_dict().items():
        a = np.asarray(value, dtype=np.float64).ravel()
        result[key] = {"sum": float(a.sum()), "abs_sum": float(np.abs(a).sum()), "first": [float(v) for v in a[:6]]}
    return result


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parents[1]))
    main()
