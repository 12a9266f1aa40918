"""Does the training command run as fast as the bare step? Images per second end to end, on real CIFAR-10.

    python benchmarks/train_throughput.py [--data ../shared/data] [--train-size 5120] [--threads N]

Three measurements, each in a process of its own (run like bench.py:
without OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE, the BLAS kernel recorded):

1. the bare training step — forward, loss, backward, SGD step — of
   ResNet-20 (shortcut B) at batch 128 on one fixed batch, in images/s;
2. ``python -m resnet_np train --dataset cifar10`` on the first
   ``--train-size`` real training images (augmentation on: crops and
   flips), for two epochs: the images/s it logs for the second epoch
   (the first one warms up), which counts loading, augmentation, the
   per-step NaN check and the bookkeeping, but not the evaluation;
3. the evaluation of all 10,000 test images, in seconds.

From them: the command's speed as a fraction of the bare step's (the
target is at least 90 %), and the time of a full epoch of 50,000 images
with and without the test-set evaluation. Writes
benchmarks/results/train_throughput.md.
"""

import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.bench import FORCED_BLAS_KERNEL  # noqa: E402
from benchmarks.machine import describe, write_results  # noqa: E402


def worker(args):
    """The bare step and the evaluation, as one JSON line."""
    import numpy as np
    from threadpoolctl import threadpool_info

    from resnet_np import backend, fast
    from resnet_np.data import DataLoader, load_dataset
    from resnet_np.layers import SoftmaxCrossEntropy
    from resnet_np.models import resnet20
    from resnet_np.optim import SGD
    from resnet_np.train import evaluate

    backend.manual_seed(0)
    model = resnet20(shortcut="B")
    model.need_input_grad = False  # as `python -m resnet_np train` does
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    loss_fn = SoftmaxCrossEntropy()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, 128)

    def step():
        loss_fn(model(x), y)
        opt.zero_grad()
        model.backward(loss_fn.backward())
        opt.step()
    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    bare = 128 * args.steps / (time.perf_counter() - start)

    test_set = load_dataset("cifar10", root=args.data, train=False, download=False)
    start = time.perf_counter()
    evaluate(model, DataLoader(test_set, batch_size=500, shuffle=False))
    evaluation = time.perf_counter() - start
    blas = [f"{i['internal_api']} {i.get('version')} kernel {i.get('architecture')}, {i['num_threads']} threads"
            for i in threadpool_info() if i["user_api"] == "blas"]
    return {"bare_images_per_s": bare, "eval_seconds": evaluation, "eval_images": len(test_set),
            "threads": fast.get_num_threads(), "blas": blas}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("RESNET_NP_DATA", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--train-size", type=int, default=5120)
    parser.add_argument("--steps", type=int, default=20, help="timed bare steps (default 20)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "train_throughput.md"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        from resnet_np.fast import tuned
        with tuned():  # training's process-wide settings, as fit has them
            print(json.dumps(worker(args)))
        return

    env = {k: v for k, v in os.environ.items() if k not in FORCED_BLAS_KERNEL}
    if args.threads:
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RESNET_NP_NUM_THREADS"):
            env[name] = str(args.threads)
    command = [sys.executable, __file__, "--worker", "--data", args.data, "--steps", str(args.steps)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True, cwd=str(ROOT))
    measured = json.loads(done.stdout.strip().splitlines()[-1])

    with tempfile.TemporaryDirectory() as out:
        train = [sys.executable, "-m", "resnet_np", "train", "--dataset", "cifar10", "--model", "resnet20",
                 "--shortcut", "B", "--batch-size", "128", "--epochs", "2", "--train-size", str(args.train_size),
                 "--test-size", "500", "--data", args.data, "--out", out, "--no-progress"]
        done = subprocess.run(train, env=env, capture_output=True, text=True, check=True, cwd=str(ROOT))
    speeds = [float(s) for s in re.findall(r"\(([\d.]+) images/s", done.stdout)]
    if len(speeds) != 2:
        raise SystemExit(f"could not read the two epochs' speeds from the training log:\n{done.stdout}")
    command_speed, bare = speeds[1], measured["bare_images_per_s"]
    eval_rate = measured["eval_images"] / measured["eval_seconds"]
    epoch_train = 50000 / command_speed
    epoch_eval = 10000 / eval_rate

    lines = ["# Training end to end: the command against the bare step", "",
             f"Machine: {describe()}; {measured['threads']} threads; BLAS: {'; '.join(measured['blas'])} "
             f"(run without {' and '.join(FORCED_BLAS_KERNEL)}).",
             f"ResNet-20 (shortcut B), batch 128, float32, real CIFAR-10 with crops and flips; the command's "
             f"speed is that of its second epoch on the first {args.train_size:,} training images "
             "(evaluation excluded).", "",
             "| | images/s |", "| --- | ---: |",
             f"| bare training step (one fixed batch) | {bare:.0f} |",
             f"| `python -m resnet_np train --dataset cifar10` | {command_speed:.0f} |",
             f"| the command / the bare step | **{100 * command_speed / bare:.1f} %** |",
             f"| evaluation (10,000 test images, batch 500) | {eval_rate:.0f} |", "",
             "| one epoch of 50,000 images | seconds |", "| --- | ---: |",
             f"| training only | {epoch_train:.0f} |",
             f"| training and the 10,000-image test evaluation | {epoch_train + epoch_eval:.0f} |"]
    write_results(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
