"""The degradation problem on CIFAR-10 (the paper's Figure 6, at a scale two CPU cores allow).

    RESNET_NP_DATA=../shared/data python benchmarks/degradation_cifar10.py [--steps 500]

Trains plain-20, plain-56, ResNet-20 and ResNet-56 (option A shortcuts) on
the first 10,000 CIFAR-10 training images with the paper's settings for the
start of training: SGD with momentum 0.9, weight decay 1e-4, learning rate
0.1 for a batch of 128 (after 100 steps of linear warm-up from 0.01: the
paper warms its deepest network up the same way), 4-pixel pad + random crop
and horizontal flip. Every network starts from its own seed-0 weights and
sees the same batches in the same order. It records the training error and
loss of every step and the test error (on the first 2,000 test images) every
50 steps, and writes ``benchmarks/results/degradation_cifar10.json`` (the
curves, read by lesson 09), ``.md`` (the table) and ``.png`` (the figure).
The paper trains for 64,000 steps; these are the first few hundred, where
the deeper plain network already falls behind.

Results are kept after each network, so an interrupted run resumes with the
next one (``--fresh`` starts over).
"""

import argparse
import json
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import describe, write_results  # noqa: E402
from resnet_np import backend  # noqa: E402
from resnet_np.atomic import write_atomically  # noqa: E402
from resnet_np.backend import to_numpy  # noqa: E402
from resnet_np.data import DataLoader, load_dataset  # noqa: E402
from resnet_np.layers import SoftmaxCrossEntropy  # noqa: E402
from resnet_np.models import plain20, plain56, resnet20, resnet56  # noqa: E402
from resnet_np.optim import SGD, LinearWarmup  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
NETWORKS = {"plain-20": plain20, "plain-56": plain56, "ResNet-20": resnet20, "ResNet-56": resnet56}
TRAIN_IMAGES, TEST_IMAGES, BATCH, EVERY = 10_000, 2_000, 128, 50


def test_error(model, loader):
    model.eval()
    wrong = seen = 0
    for x, y in loader:
        wrong += int((to_numpy(model(x).argmax(axis=1)) != to_numpy(y)).sum())
        seen += len(y)
    model.train()
    return wrong / seen


def train(name, steps, train_set, test_loader):
    backend.manual_seed(0)
    model = NETWORKS[name]()
    loss_fn = SoftmaxCrossEntropy()
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    warmup = LinearWarmup(optimizer, warmup_steps=100, start_factor=0.1)
    loader = DataLoader(train_set, batch_size=BATCH, shuffle=True, drop_last=True, seed=0, augment="cifar")
    record = {"train_loss": [], "train_error": [], "test_step": [], "test_error": []}
    start, step, epoch = time.perf_counter(), 0, 0
    while step < steps:
        loader.set_epoch(epoch)
        for x, y in loader:
            logits = model(x)
            loss = loss_fn(logits, y)
            optimizer.zero_grad()
            model.backward(loss_fn.backward())
            optimizer.step()
            warmup.step()
            step += 1
            record["train_loss"].append(float(loss))
            record["train_error"].append(float((to_numpy(logits.argmax(axis=1)) != to_numpy(y)).mean()))
            if step % EVERY == 0 or step == steps:
                record["test_step"].append(step)
                record["test_error"].append(test_error(model, test_loader))
            if step == steps:
                break
        epoch += 1
    record["seconds"] = round(time.perf_counter() - start, 1)
    return record


def tail_mean(values, n=50):
    return float(np.mean(values[-n:]))


def save_figure(results, steps, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"20": "C0", "56": "C3"}
    window = 25
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, kind in zip(axes, ("plain", "ResNet")):
        for name, run in results.items():
            if not name.startswith(kind):
                continue
            depth = name.split("-")[1]
            error = 100 * np.array(run["train_error"])
            smooth = np.convolve(error, np.ones(window) / window, mode="valid")
            ax.plot(np.arange(window, len(error) + 1), smooth, color=colors[depth], linewidth=1.2,
                    label=f"{name}: training error (mean of {window} steps)")
            ax.plot(run["test_step"], 100 * np.array(run["test_error"]), "o-", color=colors[depth],
                    linewidth=2.2, markersize=3, label=f"{name}: test error")
        ax.set(xlabel=f"training step (batch {BATCH})", title=f"{kind} networks")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("error (%)")
    fig.suptitle(f"CIFAR-10 ({TRAIN_IMAGES:,} training images), the first {steps} steps: thin = training error, "
                 "bold = test error (the paper's Fig. 6)")
    fig.tight_layout()
    write_atomically(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--fresh", action="store_true", help="ignore the results of an earlier, interrupted run")
    args = parser.parse_args()
    json_path = RESULTS / "degradation_cifar10.json"
    saved = {} if args.fresh or not json_path.is_file() else json.loads(json_path.read_text())
    results = saved.get("runs", {}) if saved.get("steps") == args.steps else {}

    train_set = load_dataset("cifar10", train=True)
    train_set = train_set.subset(range(TRAIN_IMAGES))
    test_set = load_dataset("cifar10", train=False)
    test_loader = DataLoader(test_set.subset(range(TEST_IMAGES)), batch_size=500, shuffle=False)
    for name in NETWORKS:
        if name in results:
            print(f"{name}: kept from the earlier run")
            continue
        results[name] = train(name, args.steps, train_set, test_loader)
        run = results[name]
        print(f"{name}: {args.steps} steps in {run['seconds']:.0f} s; training error of the last 50 steps "
              f"{tail_mean(run['train_error']):.1%}, test error {run['test_error'][-1]:.1%}", flush=True)
        text = json.dumps({"steps": args.steps, "train_images": TRAIN_IMAGES, "test_images": TEST_IMAGES,
                           "batch": BATCH, "runs": results})
        write_atomically(json_path, lambda f: f.write(text.encode()))

    save_figure(results, args.steps, RESULTS / "degradation_cifar10.png")
    rows = "\n".join(f"| {name} | {tail_mean(run['train_error']):.1%} | {tail_mean(run['train_loss']):.3f} | "
                     f"{run['test_error'][-1]:.1%} | {run['seconds']:.0f} |" for name, run in results.items())
    title = f"# The degradation problem on CIFAR-10 (the paper's Fig. 6, first {args.steps} steps)"
    write_results(RESULTS / "degradation_cifar10.md", f"""{title}

`python benchmarks/degradation_cifar10.py --steps {args.steps}`: plain and residual networks of 20 and 56 layers
(option A shortcuts), the first {TRAIN_IMAGES:,} CIFAR-10 training images with crops and flips, batch {BATCH}, SGD
lr 0.1 (after 100 warm-up steps from 0.01) momentum 0.9 weight decay 1e-4, the same batches for every network;
test error on the first {TEST_IMAGES:,} test images. Figure: `degradation_cifar10.png`; curves:
`degradation_cifar10.json` (lesson 09 plots them).

| network | training error (last 50 steps) | training loss (last 50 steps) | test error | seconds |
|---|---|---|---|---|
{rows}

Machine: {describe()}
""")
    return 0


if __name__ == "__main__":
    from resnet_np.fast import tuned
    with tuned():  # training's process-wide settings, as fit has them
        sys.exit(main())
