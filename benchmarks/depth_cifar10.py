"""Does depth pay with shortcuts? ResNet-20 against ResNet-56 on CIFAR-10, the paper's Table 6 comparison.

    python benchmarks/depth_cifar10.py [--resnet56-log PATH]

Reads what the two full training runs printed, epoch by epoch
(``benchmarks/runs/cifar10-resnet20/train.log`` and
``benchmarks/runs/cifar10-resnet56/train.log``), and writes
``benchmarks/results/depth_cifar10.md`` (the table: the paper's rows, public
PyTorch reproductions, this library's runs) and ``depth_cifar10.png`` (test
error against epochs, both networks). Nothing is trained here: the logs are
the record, and a run still going gives a figure of the epochs so far (the
table says so).
"""

import argparse
import pathlib
import re
import statistics
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import write_results  # noqa: E402

RUNS = ROOT / "benchmarks" / "runs"
RESULTS = ROOT / "benchmarks" / "results"
# "epoch 12/70: train loss 0.4261, train acc 85.31%, val loss 0.5386, val acc 82.12% (233 images/s, 214 s)"
EPOCH = re.compile(r"^epoch (\d+)/(\d+): .*?(?:val|test) acc ([\d.]+)%.*?, (\d+) s\)")
PAPER = {"ResNet-20": 8.75, "ResNet-56": 6.97}  # He et al. 2016, Table 6, test error %
# Public PyTorch reproductions of the paper's CIFAR-10 networks (test accuracy %, epochs), as their authors report.
REPRODUCTIONS = [
    ("akamaster/pytorch_resnet_cifar10", {"ResNet-20": (91.73, 200), "ResNet-56": (93.39, 200)}),
]


def read_log(path):
    """The last record of each epoch in a run's log (a resumed run may print an epoch twice)."""
    epochs = {}
    total = None
    for line in pathlib.Path(path).read_text().splitlines():
        match = EPOCH.match(line)
        if match:
            epoch, total, accuracy, seconds = int(match[1]), int(match[2]), float(match[3]), int(match[4])
            epochs[epoch] = (100.0 - accuracy, seconds)
    return [(e, *epochs[e]) for e in sorted(epochs)], total


def plot(path, runs):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for (name, (rows, total)), color in zip(runs.items(), ("tab:blue", "tab:red")):
        ax.plot([r[0] for r in rows], [r[1] for r in rows], color=color, label=f"{name} ({total} epochs)")
        ax.axhline(PAPER[name], color=color, linestyle=":", linewidth=1, label=f"{name}, the paper: {PAPER[name]} %")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test error (%)")
    ax.set_ylim(0, 30)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("CIFAR-10: deeper with shortcuts is better (resnet_np, 2-core CPU)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(runs):
    lines = ["| network | source | test error | test accuracy | epochs | hours of 2-core CPU (median epoch x epochs) |",
             "|---|---|---|---|---|---|"]
    for name in ("ResNet-20", "ResNet-56"):
        paper = PAPER[name]
        lines.append(f"| {name} | the paper (He et al. 2016, Table 6) | {paper:.2f} % | {100 - paper:.2f} % "
                     "| 182 (64k steps) | |")
        for source, results in REPRODUCTIONS:
            accuracy, epochs = results[name]
            lines.append(f"| {name} | {source} (PyTorch) | {100 - accuracy:.2f} % | {accuracy:.2f} % | {epochs} | |")
        rows, total = runs[name]
        if rows:
            last, error, _ = rows[-1]
            # An epoch's logged time is wall-clock: it includes any pause of the run (benchmarks stop it meanwhile)
            # and any other work on the two cores. The median epoch is the run's pace on a quiet machine.
            hours = statistics.median(r[2] for r in rows) * len(rows) / 3600
            state = "" if last == total else f" (epoch {last} of {total}: still training)"
            lines.append(f"| {name} | **resnet_np** (this library){state} | {error:.2f} % | {100 - error:.2f} % "
                         f"| {last} | {hours:.1f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resnet20-log", default=str(RUNS / "cifar10-resnet20" / "train.log"))
    parser.add_argument("--resnet56-log", default=str(RUNS / "cifar10-resnet56" / "train.log"))
    parser.add_argument("--out", default=str(RESULTS / "depth_cifar10.md"))
    args = parser.parse_args()
    runs = {"ResNet-20": read_log(args.resnet20_log), "ResNet-56": read_log(args.resnet56_log)}
    figure = pathlib.Path(args.out).with_suffix(".png")
    plot(figure, runs)
    text = f"""# CIFAR-10: ResNet-20 against ResNet-56 (the paper's Table 6)

Both trained by this library on a 2-core CPU with the same recipe (SGD 0.1, momentum 0.9, weight decay 5e-4,
batch 128, 100 warm-up steps then cosine decay, the paper's augmentation, option A shortcuts), ResNet-20
for 70 epochs and ResNet-56 for 100; the test set was evaluated after every epoch and chose nothing (the
network reported is the last epoch's). Hours: the median epoch's time (test evaluation excluded) times the
epochs, the pace of a quiet machine; the logs' own epoch times also count the pauses of the runs (stopped
while benchmarks ran) and other work on the cores (see each run's README in `benchmarks/runs/`).

{table(runs)}

![test error against epochs]({figure.name})

Made by `python benchmarks/depth_cifar10.py` from the runs' logs.
"""
    write_results(args.out, text)


if __name__ == "__main__":
    main()
