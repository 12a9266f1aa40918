"""ResNet-18 at ImageNet size: one forward and backward pass of a batch on this machine.

    python benchmarks/bench_resnet18.py [--batch 8] [--repeat 3]

Writes benchmarks/results/resnet18_224.md: median times, images per second
and the peak of NumPy's memory (tracemalloc sees NumPy's array buffers).
"""

import argparse
import pathlib
import statistics
import sys
import time
import tracemalloc

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from benchmarks.machine import describe, write_results  # noqa: E402
from resnet_np import backend  # noqa: E402
from resnet_np.layers import SoftmaxCrossEntropy  # noqa: E402
from resnet_np.models import resnet18  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "resnet18_224.md"))
    args = parser.parse_args()

    backend.manual_seed(0)
    model = resnet18()
    loss_fn = SoftmaxCrossEntropy()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, 3, args.size, args.size)).astype(np.float32)
    y = rng.integers(0, 1000, args.batch)

    forward, backward, peaks = [], [], []
    for _ in range(args.repeat):
        tracemalloc.start()
        t0 = time.perf_counter()
        loss = loss_fn(model(x), y)
        t1 = time.perf_counter()
        model.zero_grad()
        model.backward(loss_fn.backward())
        t2 = time.perf_counter()
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        forward.append(t1 - t0)
        backward.append(t2 - t1)
        assert np.isfinite(loss)

    f, b = statistics.median(forward), statistics.median(backward)
    text = "\n".join([
        f"# ResNet-18, batch {args.batch} at {args.size}x{args.size}: forward + backward",
        "",
        f"Machine: {describe()}",
        f"float32, train mode, cross-entropy loss; median of {args.repeat} runs.",
        "",
        "| forward (s) | backward (s) | total (s) | images/s | peak NumPy memory (MB) |",
        "| ---: | ---: | ---: | ---: | ---: |",
        f"| {f:.2f} | {b:.2f} | {f + b:.2f} | {args.batch / (f + b):.1f} | {max(peaks) / 2**20:.0f} |",
        "",
    ])
    write_results(args.out, text)


if __name__ == "__main__":
    from resnet_np.fast import tuned
    with tuned():  # training's process-wide settings, as fit has them
        main()
