# %% [markdown]
# # Lesson 9 — the degradation problem: deeper plain networks train worse
#
# The observation that started ResNets (He et al., 2016, Fig. 1): take a
# plain convolutional network — conv, batch norm, ReLU, again and again —
# and make it deeper. A deeper network can represent everything a shallower
# one can (the extra layers could learn the identity), so its *training*
# loss should be at least as low. It is not: a 56-layer plain network ends
# with a HIGHER training loss than a 20-layer one. This is not overfitting
# (that would show on the test set, not the training set); the deeper
# network is harder to *optimise*. The paper's fix: let each pair of layers
# learn a residual $F(x)$ added to an identity shortcut, $y = F(x) + x$ —
# then extra layers start out close to the identity, and depth helps.
#
# We reproduce this at small scale. The networks are the paper's CIFAR
# family, ``CifarResNet(n)``: $6n + 2$ layers ($n = 1, 3, 9$ gives 8, 20 and 56
# layers), each with its plain twin (``residual=False``: the same layers,
# no shortcuts). They are trained on MNIST digits shrunk to 14 x 14 (to be
# quick on a CPU) with the paper's optimizer: SGD with momentum 0.9, weight
# decay 1e-4 and learning rate 0.1 for a batch of 128 — here 0.05 for our
# batches of 64 (the learning rate scales with the batch size) — reached by
# a linear warm-up over the first quarter of the steps (the paper warms up
# its 110-layer network in the same spirit). We record the training loss at
# every step, and the gradient norm at every layer, at initialisation and
# after training.
#
# The full run takes about 8-15 minutes on two CPU cores; ``--quick``
# trains only the 8- and 20-layer networks for a few dozen steps (the
# degradation needs more steps than that to show) but still measures the
# gradients of all six networks at initialisation.
#
# Run: ``python lessons/09_degradation.py`` (add ``--quick`` for a fast run).

# %%
import argparse
import copy
import pathlib
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from resnet_np import backend  # noqa: E402
from resnet_np.backend import to_numpy  # noqa: E402
from resnet_np.data import DataLoader  # noqa: E402
from resnet_np.layers import SoftmaxCrossEntropy  # noqa: E402
from resnet_np.models import CifarResNet  # noqa: E402
from resnet_np.optim import SGD, LinearWarmup  # noqa: E402

from _common import load_digits, shrink  # noqa: E402  (lessons/_common.py: MNIST or synthetic digits)

parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true", help="shallow networks and few steps, for the test suite")
parser.add_argument("--out", default="out/lessons/09_degradation", help="folder for the figures")
args, _ = parser.parse_known_args()  # known args only: a notebook kernel passes its own
out_dir = pathlib.Path(args.out)
out_dir.mkdir(parents=True, exist_ok=True)

ALL_DEPTHS = {8: 1, 20: 3, 56: 9}                 # layers -> n (blocks per stage)
train_depths = [8, 20] if args.quick else [8, 20, 56]
steps, batch_size = (40, 32) if args.quick else (400, 64)
lr = 0.1 * batch_size / 128  # the paper's 0.1 for a batch of 128, scaled to ours

# %% [markdown]
# ## 1. The data: digits at 14 x 14
#
# Averaging 2 x 2 pixels makes every convolution four times cheaper; the
# digits stay recognisable. The three stages of the networks then work at
# 14 x 14, 7 x 7 and 4 x 4.

# %%
train_full, _, source = load_digits(args.quick)


train = shrink(train_full)
print(f"{source}, shrunk: {len(train)} training images of shape {train.images.shape[1:]}")
assert train.images.shape[1:] == (1, 14, 14)

# A fixed batch for measuring gradients, and the same sequence of batches for every network.
probe_x, probe_y = next(iter(DataLoader(train, batch_size=128 if not args.quick else 64, shuffle=True, seed=1)))


def batches():
    loader = DataLoader(train, batch_size=batch_size, shuffle=True, drop_last=True, seed=0)
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        yield from loader
        epoch += 1


# %% [markdown]
# ## 2. Gradient norms, layer by layer
#
# For a network and a fixed batch, one forward and one backward pass give
# $\partial L / \partial W$ for every convolution; we take the norm of each, from the first
# convolution (next to the input) to the last. In a plain network the
# gradient reaching layer $l$ has passed through every layer above it, and
# each multiplies it by its Jacobian; in a ResNet, every shortcut adds a
# path that skips the branch.

# %%
loss_fn = SoftmaxCrossEntropy()


def make(depth, residual):
    backend.manual_seed(0)
    return CifarResNet(ALL_DEPTHS[depth], num_classes=10, in_channels=1, shortcut="A", residual=residual)


def conv_gradient_norms(model):
    """||dL/dW|| of every convolution (input side first), on the probe batch, without touching the model."""
    m = copy.deepcopy(model).train()
    loss_fn(m(probe_x), probe_y)
    m.zero_grad()
    m.backward(loss_fn.backward())
    return np.array([float(np.linalg.norm(to_numpy(p.grad))) for _, p in m.named_parameters() if p.data.ndim == 4])


def spread(norms):
    return float(norms.max() / norms.min())


kinds = {"plain": False, "ResNet": True}
grads_init = {}
for depth in ALL_DEPTHS:
    for kind, residual in kinds.items():
        g = conv_gradient_norms(make(depth, residual))
        grads_init[kind, depth] = g
        print(f"at initialisation, {kind:>6}-{depth:<2}: {len(g)} convolutions, ||dL/dW|| from "
              f"{g.min():.3f} to {g.max():.3f} (spread x{spread(g):.0f}); "
              f"first layer / last layer = {g[0] / g[-1]:.1f}")
    assert len(grads_init["plain", depth]) == depth - 1  # every layer but the final fc is a convolution

# What holds at initialisation, whatever the training: without shortcuts the
# gradient norms drift further apart the deeper the network; with them they do not.
spreads_plain = [spread(grads_init["plain", d]) for d in ALL_DEPTHS]
spreads_res = [spread(grads_init["ResNet", d]) for d in ALL_DEPTHS]
assert spreads_plain[0] < spreads_plain[1] < spreads_plain[2], spreads_plain
assert spreads_plain[-1] > 20 * spreads_res[-1], (spreads_plain, spreads_res)
assert spreads_res[-1] < 30

# %% [markdown]
# With batch norm the gradients of a deep plain network do not *vanish*, as
# they did in lesson 5's plain chain without it: the paper says as much ("we argue that
# this optimization difficulty is unlikely to be caused by vanishing
# gradients"). What the numbers above show instead is an imbalance: the
# gradient *grows* on its way down, so that the first layers of plain-56 get
# gradients about a thousand times larger than the last ones, and no single
# learning rate suits them all. The ResNet's layers stay within a small
# factor of each other. Now: does that matter for training?

# %% [markdown]
# ## 3. Training: plain vs ResNet at growing depth
#
# Every network starts from its own seed-0 weights and sees the same
# batches in the same order. ``final loss`` is the mean training loss of the
# last 50 steps (a single batch's loss is noisy).

# %%
def train_run(depth, residual):
    model = make(depth, residual)
    optimizer = SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    warmup = LinearWarmup(optimizer, warmup_steps=steps // 4, start_factor=0.1)  # lr/10 -> lr, then lr
    losses = []
    start = time.perf_counter()
    for step, (x, y) in zip(range(steps), batches()):
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        model.backward(loss_fn.backward())
        optimizer.step()
        warmup.step()
        losses.append(loss)
    return model, np.array(losses), time.perf_counter() - start


tail = min(50, steps // 2)
runs = {}
for depth in train_depths:
    for kind, residual in kinds.items():
        model, losses, seconds = train_run(depth, residual)
        g = conv_gradient_norms(model)
        runs[kind, depth] = {"losses": losses, "final": float(losses[-tail:].mean()), "grads_after": g,
                             "first_conv_norm": float(np.linalg.norm(to_numpy(model.conv1.weight.data)))}
        print(f"{kind:>6}-{depth:<2}: {steps} steps in {seconds:5.0f} s; training loss: first {tail} steps "
              f"{losses[:tail].mean():.3f}, last {tail} steps {runs[kind, depth]['final']:.3f}; "
              f"gradients now: first layer / last layer = {g[0] / g[-1]:.2f}")
        assert np.all(np.isfinite(losses))

print("\nfinal training loss (mean of the last %d steps):" % tail)
print(f"{'depth':>6} {'plain':>8} {'ResNet':>8}")
for depth in train_depths:
    print(f"{depth:>6} {runs['plain', depth]['final']:>8.3f} {runs['ResNet', depth]['final']:>8.3f}")

init_norm = {kind: float(np.linalg.norm(to_numpy(make(max(train_depths), residual).conv1.weight.data)))
             for kind, residual in kinds.items()}
for kind in kinds:
    key = (kind, max(train_depths))
    print(f"{kind}-{key[1]}: ||W|| of the first convolution {init_norm[kind]:.2f} at init, "
          f"{runs[key]['first_conv_norm']:.2f} after {steps} steps")

if args.quick:
    # A few dozen steps are too few for the degradation to show reliably; only check that everything trains.
    for key, run in runs.items():
        assert run["final"] < run["losses"][:tail].mean(), f"{key}: the loss should fall"
else:
    deep, shallow = max(train_depths), min(train_depths)
    plain_final = {d: runs["plain", d]["final"] for d in train_depths}
    res_final = {d: runs["ResNet", d]["final"] for d in train_depths}
    # THE DEGRADATION PROBLEM: the deepest plain network trains worse than the shallow one...
    assert plain_final[deep] > plain_final[shallow], plain_final
    # ...while with shortcuts the deep network trains better than its plain twin.
    assert res_final[deep] < plain_final[deep], (res_final, plain_final)
    print(f"\nplain-{deep} ends {plain_final[deep] / plain_final[shallow]:.1f}x above plain-{shallow}; "
          f"ResNet-{deep} ends {plain_final[deep] / res_final[deep]:.1f}x below plain-{deep}")

# %% [markdown]
# ## 4. Figures
#
# 1. ``degradation_training_loss.png``: training loss against steps, plain
#    networks on the left, ResNets on the right (the paper's Fig. 6).
# 2. ``degradation_final_loss.png``: the final training loss per depth.
# 3. ``gradient_norms.png``: $\lVert \partial L / \partial W \rVert$ of every convolution, at
#    initialisation and after training.

# %%
colors = {8: "C0", 20: "C1", 56: "C3"}
window = max(5, steps // 20)

fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
for ax, kind in zip(axes, kinds):
    for depth in train_depths:
        L = runs[kind, depth]["losses"]
        smooth = np.convolve(L, np.ones(window) / window, mode="valid")
        ax.plot(np.arange(window, len(L) + 1), smooth, color=colors[depth], linewidth=2,
                label=f"{kind}-{depth}: final {runs[kind, depth]['final']:.3f}")
        ax.plot(np.arange(1, len(L) + 1), L, color=colors[depth], alpha=0.15)
    ax.set_yscale("log")
    ax.set(xlabel=f"training step (batch {batch_size})", title=f"{kind} networks")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
axes[0].set_ylabel(f"training loss (mean of {window} steps; log scale)")
fig.suptitle(f"{source} 14x14, SGD (lr {lr:g} after warm-up): "
             "deeper plain networks train worse; deeper ResNets do not")
fig.tight_layout()
fig.savefig(out_dir / "degradation_training_loss.png", dpi=100)
print(f"figure: {out_dir / 'degradation_training_loss.png'}")

fig, ax = plt.subplots(figsize=(7, 4.3))
pos = np.arange(len(train_depths))
for k, (kind, offset) in enumerate(zip(kinds, (-0.2, 0.2))):
    values = [runs[kind, d]["final"] for d in train_depths]
    bars = ax.bar(pos + offset, values, 0.4, label=kind, color=("gray", "C2")[k])
    ax.bar_label(bars, fmt="%.3f", fontsize=9)
ax.set_xticks(pos, [f"{d} layers" for d in train_depths])
ax.set(ylabel=f"training loss, mean of the last {tail} steps",
       title=f"final training loss after {steps} steps ({source} 14x14)")
ax.legend(loc="upper left")
ax.grid(axis="y", alpha=0.3)
fig.tight_layout()
fig.savefig(out_dir / "degradation_final_loss.png", dpi=100)
print(f"figure: {out_dir / 'degradation_final_loss.png'}")

fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
for ax, kind in zip(axes, kinds):
    for depth in ALL_DEPTHS:
        g = grads_init[kind, depth]
        ax.semilogy(np.arange(1, len(g) + 1), g, "-", color=colors[depth],
                    label=f"{kind}-{depth} at init (spread x{spread(g):.0f})")
        if (kind, depth) in runs:
            g = runs[kind, depth]["grads_after"]
            ax.semilogy(np.arange(1, len(g) + 1), g, "--", color=colors[depth],
                        label=f"{kind}-{depth} after {steps} steps")
    ax.set(xlabel="convolution (1 = next to the input)", title=f"{kind}: gradient norm of each layer's weights")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
axes[0].set_ylabel("||dL/dW||  (log scale)")
fig.tight_layout()
fig.savefig(out_dir / "gradient_norms.png", dpi=100)
print(f"figure: {out_dir / 'gradient_norms.png'}")

# %% [markdown]
# ## 5. The same on CIFAR-10, the paper's images
#
# Digits are easy. The paper's Figure 6 is on CIFAR-10 photos, and there the
# gap is wider. ``benchmarks/degradation_cifar10.py`` trains plain-20,
# plain-56, ResNet-20 and ResNet-56 (option A shortcuts) for the first 400
# steps of the paper's schedule (SGD, learning rate 0.1, batch 128, crops
# and flips) on 10,000 CIFAR-10 training images, every network on the same
# batches, and records the training error of every step and the test error
# every 50 steps. That took about an hour on a 2-core CPU, too long
# for a lesson, so its recorded curves are plotted here
# (``benchmarks/results/degradation_cifar10.json``; run the script to
# measure them on your machine).

# %%
import json  # noqa: E402

import resnet_np  # noqa: E402

# The repository's results folder (found from the package, so that the notebook runs anywhere in the clone).
results_file = pathlib.Path(resnet_np.__file__).resolve().parents[1] / "benchmarks" / "results" / \
    "degradation_cifar10.json"


def plot_recorded_cifar(recorded):
    cifar, window = recorded["runs"], 25
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, kind in zip(axes, kinds):
        for name, run in cifar.items():
            if not name.startswith(kind):
                continue
            depth = int(name.split("-")[1])
            error = 100 * np.array(run["train_error"])
            smooth = np.convolve(error, np.ones(window) / window, mode="valid")
            ax.plot(np.arange(window, len(error) + 1), smooth, color=colors[depth], linewidth=1.2,
                    label=f"{name}: training error")
            ax.plot(run["test_step"], 100 * np.array(run["test_error"]), "o-", color=colors[depth], linewidth=2.2,
                    markersize=3, label=f"{name}: test error")
        ax.set(xlabel=f"training step (batch {recorded['batch']})", title=f"{kind} networks on CIFAR-10")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("error (%): thin = training, bold = test")
    fig.suptitle(f"CIFAR-10, {recorded['train_images']:,} training images, the first {recorded['steps']} steps "
                 "(recorded by benchmarks/degradation_cifar10.py)")
    fig.tight_layout()
    fig.savefig(out_dir / "degradation_cifar10.png", dpi=100)
    print(f"figure: {out_dir / 'degradation_cifar10.png'}")

    def last_steps_error(name):
        return float(np.mean(cifar[name]["train_error"][-50:]))

    for name in cifar:
        print(f"CIFAR-10 {name:>9}: training error of the last 50 steps {last_steps_error(name):.1%}, "
              f"test error {cifar[name]['test_error'][-1]:.1%}")
    # The recorded run shows the degradation problem: deeper plain trains worse; deeper ResNet does not.
    assert last_steps_error("plain-56") > last_steps_error("plain-20")
    assert last_steps_error("ResNet-56") < last_steps_error("plain-56")


if results_file.is_file():
    plot_recorded_cifar(json.loads(results_file.read_text()))
else:  # resnet_np installed from a wheel: the repository's benchmarks are not there
    print(f"{results_file} not found: run benchmarks/degradation_cifar10.py in a clone of the repository")

# %% [markdown]
# ## 6. What the figures show
#
# * **Training loss** (the run prints the numbers): plain-8 and plain-20 fit
#   the digits about equally well; plain-56, the same kind of network only
#   deeper, is still far behind after the same number of steps. The three
#   ResNets' curves lie on top of each other: with shortcuts, depth costs
#   nothing.
# * **Gradients at initialisation**: plain-56's first layers receive
#   gradients about a thousand times larger than its last ones; the
#   ResNet-56's stay within a factor of about ten.
# * **Why that hurts.** Every convolution here is followed by batch norm, so
#   scaling a convolution's weights by $c$ changes nothing downstream — and
#   divides their gradient by $c$. The outsized early gradients of plain-56
#   blow its first weights up (the run prints the first convolution's
#   $\lVert W \rVert$: it grows some thirty-fold, the ResNet's less than three-fold);
#   from then on those layers take tiny relative steps,
#   $\lVert \partial L / \partial W \rVert \,/\, \lVert W \rVert$
#   falling as $1 / \lVert W \rVert^2$, and barely learn.
# * **On CIFAR-10** the same story, louder: after 400 steps plain-56 still
#   gets about three training images in four wrong, plain-20 one in two.
#   ResNet-56 is far ahead of plain-56; in these first steps it has not yet
#   caught up with ResNet-20 (the paper's deeper ResNets pull ahead later,
#   over tens of thousands of steps).
# * **Gradients after training** look unremarkable in every network: the
#   damage is done early and shows in the loss, not in the gradient norms —
#   as the paper observed of its plain networks ("the backward propagated
#   gradients exhibit healthy norms with BN").

# %% [markdown]
# ## What to remember
#
# * Depth alone made the plain network *worse at fitting its own training
#   data* — the degradation problem; the identical network with shortcuts
#   does not get worse with depth.
# * With batch norm the plain network's gradients do not vanish; at
#   initialisation they are badly unbalanced across layers. Shortcuts keep
#   every layer close to the loss, so its gradient stays in proportion.
# * The paper's scale (CIFAR-10, 64k steps, 110 layers) shows it more
#   strongly still; ``python -m resnet_np train --dataset cifar10 --model
#   plain56 --epochs 164 --schedule multistep`` against the same with
#   ``--model resnet56`` reproduces it (hours on a CPU; on a GPU add
#   ``--backend cupy``).
