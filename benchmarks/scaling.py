"""How a training step grows with the batch, the depth and the width of the network.

    python benchmarks/scaling.py [--quick] [--repeat 3]

Time and peak NumPy memory of one training step (forward, loss, backward,
SGD step; float32, 32x32 images):

* against the batch size, 8 ... 512, for ResNet-20 (shortcut B);
* against the depth at batch 128: ResNet-20, -56 and -110;
* against the width at batch 128: WRN-16-k for k = 1, 2, 4.

Each configuration runs in a process of its own (without
OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE, as bench.py), times ``--repeat`` steps
after a warm-up and reports the median; the peak memory is that of one more
step under tracemalloc (NumPy reports its array buffers to it). Writes
benchmarks/results/scaling.md and scaling.png.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.bench import FORCED_BLAS_KERNEL  # noqa: E402
from benchmarks.machine import describe, write_results  # noqa: E402


def configurations(quick):
    batches = (2, 4, 8) if quick else (8, 16, 32, 64, 128, 256, 512)
    b = 4 if quick else 128
    by_batch = [("resnet20", n) for n in batches]
    by_depth = [(name, b) for name in (("resnet20", "resnet56") if quick else ("resnet20", "resnet56", "resnet110"))]
    by_width = [(name, b) for name in (("wrn16_1", "wrn16_2") if quick else ("wrn16_1", "wrn16_2", "wrn16_4"))]
    return by_batch, by_depth, by_width


def build(name):
    from resnet_np.models import ARCHITECTURES, wrn
    if name.startswith("wrn16_"):
        return wrn(16, int(name.split("_")[1]))
    return ARCHITECTURES[name](shortcut="B")


def worker(name, batch, repeat):
    import statistics
    import tracemalloc

    import numpy as np

    from resnet_np import backend
    from resnet_np.layers import SoftmaxCrossEntropy
    from resnet_np.optim import SGD

    backend.manual_seed(0)
    model = build(name)
    model.need_input_grad = False  # as in training: the images need no gradient
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    loss_fn = SoftmaxCrossEntropy()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, batch)

    def step():
        loss_fn(model(x), y)
        opt.zero_grad()
        model.backward(loss_fn.backward())
        opt.step()
    step()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    step()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"seconds": statistics.median(times), "peak_mb": peak / 2 ** 20,
            "parameters": sum(p.size for p in model.parameters())}


def run(name, batch, repeat):
    env = {k: v for k, v in os.environ.items() if k not in FORCED_BLAS_KERNEL}
    done = subprocess.run([sys.executable, __file__, "--worker", name, str(batch), "--repeat", str(repeat)],
                          env=env, capture_output=True, text=True, check=True, cwd=str(ROOT))
    return json.loads(done.stdout.strip().splitlines()[-1])


def plot(path, by_batch, by_depth, by_width, results):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from resnet_np.atomic import write_atomically

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    panels = [("batch size (ResNet-20)", by_batch, [n for _, n in by_batch], True),
              ("depth (batch 128)", by_depth, [int(name[6:]) for name, _ in by_depth], False),
              ("width k of WRN-16-k (batch 128)", by_width, [int(name.split("_")[1]) for name, _ in by_width],
               False)]
    for ax, (title, configs, xs, log) in zip(axes, panels):
        seconds = [results[f"{name} {n}"]["seconds"] for name, n in configs]
        memory = [results[f"{name} {n}"]["peak_mb"] for name, n in configs]
        ax.plot(xs, seconds, "o-", color="C0", label="time per step (s)")
        ax.set_xlabel(title)
        ax.set_ylabel("seconds per step", color="C0")
        twin = ax.twinx()
        twin.plot(xs, memory, "s--", color="C3", label="peak memory (MB)")
        twin.set_ylabel("peak NumPy memory (MB)", color="C3")
        if log:
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            twin.set_yscale("log")
        ax.set_xticks(xs)
        ax.set_xticklabels([str(v) for v in xs])
    fig.suptitle("resnet_np training step: time (circles) and peak memory (squares)")
    fig.tight_layout()
    write_atomically(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scaling.md"))
    parser.add_argument("--worker", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        from resnet_np.fast import tuned
        with tuned():  # training's process-wide settings, as fit has them
            print(json.dumps(worker(args.worker[0], int(args.worker[1]), args.repeat)))
        return

    by_batch, by_depth, by_width = configurations(args.quick)
    results = {}
    for name, batch in dict.fromkeys(by_batch + by_depth + by_width):
        print(f"{name} at batch {batch} ...", file=sys.stderr, flush=True)
        results[f"{name} {batch}"] = run(name, batch, args.repeat)

    def rows(configs, label):
        out = [f"| {label} | parameters | batch | s / step | images/s | peak MB |",
               "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for name, n in configs:
            r = results[f"{name} {n}"]
            out.append(f"| {name} | {r['parameters']:,} | {n} | {r['seconds']:.3f} | {n / r['seconds']:.0f} | "
                       f"{r['peak_mb']:.0f} |")
        return out

    lines = ["# Scaling of a training step", "", f"Machine: {describe()}; run without "
             f"{' and '.join(FORCED_BLAS_KERNEL)}; median of {args.repeat} steps after a warm-up, each "
             "configuration in its own process; float32, 32x32 images, SGD with momentum.", "",
             "## Against the batch size", ""] + rows(by_batch, "network") + \
            ["", "## Against the depth", ""] + rows(by_depth, "network") + \
            ["", "## Against the width", ""] + rows(by_width, "network") + ["", "![scaling](scaling.png)"]
    write_results(args.out, "\n".join(lines) + "\n")
    plot(pathlib.Path(args.out).with_suffix(".png"), by_batch, by_depth, by_width, results)


if __name__ == "__main__":
    main()
