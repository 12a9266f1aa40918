# %% [markdown]
# # Lesson 8 — training on MNIST with SGD and with Adam
#
# Everything so far was one forward and one backward pass. Training repeats
# four lines, thousands of times:
#
#     loss = loss_fn(model(x), y)          # forward, then the loss
#     optimizer.zero_grad()                # gradients accumulate: clear them
#     model.backward(loss_fn.backward())   # backward, layer by layer
#     optimizer.step()                     # move every parameter against its gradient
#
# We train the same small ResNet twice on handwritten digits, once with SGD
# with momentum (what the ResNet paper uses) and once with Adam (which
# adapts a step size per parameter), and compare the loss curves and the
# test accuracy. Then we look at the digits the network gets wrong — often
# ones a person would hesitate over too. Last, we train it once more with
# label smoothing and ask how far its confidence can be trusted.
#
# ``resnet_np.train.fit`` (behind ``python -m resnet_np train``) runs the
# same four lines with checkpoints, progress bars and curves per epoch; here
# we write the loop out to record the loss at every step.
#
# The data: real MNIST via ``resnet_np.data.load_dataset`` (from
# ``$RESNET_NP_DATA/mnist``, downloaded if missing). With ``--quick`` nothing
# is downloaded: without the files the lesson says so and trains on
# synthetic digits instead.
#
# Run: ``python lessons/08_training_mnist.py`` (add ``--quick`` for a fast run).

# %%
import argparse
import pathlib
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from resnet_np import backend  # noqa: E402
from resnet_np.backend import to_numpy  # noqa: E402
from resnet_np.data import DataLoader  # noqa: E402
from resnet_np.layers import CrossEntropyLoss, SoftmaxCrossEntropy  # noqa: E402
from resnet_np.models import CifarResNet  # noqa: E402
from resnet_np.optim import SGD, Adam, CosineAnnealingLR  # noqa: E402
from resnet_np.train import evaluate  # noqa: E402

from _common import load_digits, shrink  # noqa: E402  (lessons/_common.py: MNIST or synthetic digits)

parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true", help="a few dozen steps on a subset, for the test suite")
parser.add_argument("--out", default="out/lessons/08_training_mnist", help="folder for the figures")
args, _ = parser.parse_known_args()  # known args only: a notebook kernel passes its own
out_dir = pathlib.Path(args.out)
out_dir.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 1. The data
#
# A ``Dataset`` holds the images as uint8 (N, 1, 28, 28); a ``DataLoader``
# shuffles them, and turns each batch into float32, normalised with the
# training set's mean and standard deviation. We train on a subset to keep
# the lesson to a few minutes; ``--quick`` also halves the images to 14 x 14
# (four times less arithmetic) and trains for 150 steps only.

# %%
train_size, test_size, epochs, batch_size = (4800, 500, 1, 32) if args.quick else (30000, 10000, 2, 64)
train_full, test_full, source = load_digits(args.quick, synthetic_sizes=(train_size, test_size))
pick = np.random.default_rng(0)
train = train_full.subset(pick.permutation(len(train_full))[:train_size])
test = test_full.subset(np.arange(min(test_size, len(test_full))))
if args.quick:
    train, test = shrink(train), shrink(test)
side = train.images.shape[-1]
print(f"{source}: training on {len(train)} of {len(train_full)} images ({side}x{side}), testing on "
      f"{len(test)}; {epochs} epoch(s)")
counts = np.bincount(train.labels, minlength=10)
print(f"images per class in the training subset: {counts.tolist()}")
assert train.images.shape[1:] == (1, side, side) and train.images.dtype == np.uint8
assert counts.min() > 0.5 * counts.mean()  # roughly balanced: chance level is 10 %

x, y = next(iter(DataLoader(train, batch_size=batch_size, seed=0)))
print(f"one batch: x {x.dtype} {x.shape}, mean {x.mean():.2f}, std {x.std():.2f}; y {y.dtype} {y.shape}")
assert x.shape == (batch_size, 1, side, side) and abs(float(x.mean())) < 0.5

# %% [markdown]
# ## 2. The model and the two optimizers
#
# A ResNet-8 of the CIFAR family — a 3x3 stem with 16 channels, three stages
# of one BasicBlock each (16, 32, 64 channels), global average pooling and a
# linear layer — 75 thousand parameters. Both runs start from the same
# weights (same seed).
#
# * **SGD with momentum**: $v \leftarrow 0.9\, v + g, \; p \leftarrow p - \eta\, v$
#   for a parameter $p$ with gradient $g$ (learning rate $\eta = 0.05$, weight decay $5 \cdot 10^{-4}$).
# * **Adam**: running averages $\hat{m}$ and $\hat{v}$ of $g$ and $g^2$ give each parameter its own step
#   size, $p \leftarrow p - \eta\, \hat{m} / (\sqrt{\hat{v}} + \varepsilon)$ ($\eta = 10^{-3}$).
#
# Both with the same schedule: the learning rate falls along a half cosine
# from its starting value to zero over the run (``CosineAnnealingLR``, stepped
# once per batch). Ending with small steps settles the weights — and the
# batch-norm statistics that eval mode relies on.

# %%
def make_model():
    backend.manual_seed(0)
    return CifarResNet(1, num_classes=10, in_channels=1)


optimizers = {
    "SGD (momentum 0.9, lr 0.05)": lambda params: SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4),
    "Adam (lr 1e-3)": lambda params: Adam(params, lr=1e-3),
}
print(f"ResNet-8: {sum(p.size for p in make_model().parameters()):,} parameters")

# %% [markdown]
# ## 3. Training
#
# The loss of every step is recorded; the test accuracy every
# ``eval_every`` steps, in eval mode (batch norm with its running statistics).

# %%
eval_every = 25 if args.quick else 100
val = test.subset(np.arange(min(len(test), 300 if args.quick else 2000)))  # for the accuracy during training


def train_model(name, make_optimizer, loss_fn):
    """A fresh ResNet-8 trained with ``make_optimizer``'s optimizer on ``loss_fn``: the model and its record."""
    model = make_model()
    optimizer = make_optimizer(model.parameters())
    total_steps = epochs * len(DataLoader(train, batch_size=batch_size, drop_last=True))
    schedule = CosineAnnealingLR(optimizer, T_max=total_steps)
    loader = DataLoader(train, batch_size=batch_size, shuffle=True, drop_last=True, seed=0)
    losses, checkpoints = [], []
    start = time.perf_counter()
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for x, y in loader:
            model.train()
            loss = loss_fn(model(x), y)            # forward
            optimizer.zero_grad()
            model.backward(loss_fn.backward())     # backward
            optimizer.step()                        # update
            schedule.step()                         # the next step's learning rate
            losses.append(float(loss))
            if len(losses) % eval_every == 0:
                _, acc = evaluate(model, DataLoader(val, batch_size=250, shuffle=False))
                checkpoints.append((len(losses), acc))
    seconds = time.perf_counter() - start
    test_loss, test_acc = evaluate(model, DataLoader(test, batch_size=250, shuffle=False))
    print(f"{name}: {len(losses)} steps in {seconds:.0f} s; last 20 steps' mean loss "
          f"{np.mean(losses[-20:]):.3f}; test loss {test_loss:.3f}, test accuracy {test_acc:.2%}")
    return {"model": model, "losses": np.array(losses), "checkpoints": checkpoints, "test_acc": test_acc}


runs = {name: train_model(name, make_optimizer, SoftmaxCrossEntropy())
        for name, make_optimizer in optimizers.items()}

for name, run in runs.items():
    first, last = run["losses"][:10].mean(), run["losses"][-10:].mean()
    # --quick trains for 150 steps only: far from converged, but well above chance (10 %).
    assert last < (0.5 if args.quick else 0.1) * first, f"{name}: the loss should fall ({first:.2f} -> {last:.2f})"
    assert run["test_acc"] > (0.5 if args.quick else 0.97), f"{name}: test accuracy {run['test_acc']:.2%}"

fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2))
window = 10 if args.quick else 25
for k, (name, run) in enumerate(runs.items()):
    L = run["losses"]
    smooth = np.convolve(L, np.ones(window) / window, mode="valid")
    ax_loss.semilogy(np.arange(1, len(L) + 1), L, color=f"C{k}", alpha=0.25)
    ax_loss.semilogy(np.arange(window, len(L) + 1), smooth, color=f"C{k}", label=f"{name}, mean of {window} steps")
    steps, accs = zip(*run["checkpoints"]) if run["checkpoints"] else ((), ())
    ax_acc.plot(steps, [100 * a for a in accs], "o-", color=f"C{k}", label=f"{name}: test {run['test_acc']:.2%}")
ax_loss.set(xlabel=f"training step (batch of {batch_size})", ylabel="cross-entropy loss (log scale)",
            title=f"training loss on {source}")
ax_acc.set(xlabel="training step", ylabel="accuracy on held-out images (%)", title="accuracy during training")
for ax in (ax_loss, ax_acc):
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(out_dir / "training_curves.png", dpi=100)
print(f"figure: {out_dir / 'training_curves.png'}")

# %% [markdown]
# ## 4. What does the network get wrong?
#
# We run the better model over the test images, in eval mode, and show the
# misclassified ones with the true label, the prediction and the
# probability the network gave it.

# %%
best_name = max(runs, key=lambda n: runs[n]["test_acc"])
model = runs[best_name]["model"].eval()
probs = []
for x, _ in DataLoader(test, batch_size=250, shuffle=False):
    logits = to_numpy(model(x))
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs.append(e / e.sum(axis=1, keepdims=True))
probs = np.concatenate(probs)
pred = probs.argmax(axis=1)
wrong = np.flatnonzero(pred != test.labels)
print(f"{best_name}: {len(wrong)} of {len(test)} test images misclassified ({len(wrong) / len(test):.2%})")
assert np.isclose(1 - len(wrong) / len(test), runs[best_name]["test_acc"])

confusion = np.zeros((10, 10), dtype=int)
np.add.at(confusion, (test.labels, pred), 1)
off = confusion - np.diag(np.diag(confusion))
i, j = np.unravel_index(off.argmax(), off.shape)
print(f"the most frequent confusion: a true {i} read as {j} ({off[i, j]} times)")

# The most confident mistakes first.
shown = wrong[np.argsort(-probs[wrong, pred[wrong]])][:24]
rows, cols = 3, 8
fig, axes = plt.subplots(rows, cols, figsize=(12, 5.2))
for ax in axes.ravel():
    ax.axis("off")
for ax, k in zip(axes.ravel(), shown):
    ax.imshow(test.images[k, 0], cmap="gray_r")
    ax.set_title(f"true {test.labels[k]} -> {pred[k]}\np = {probs[k, pred[k]]:.2f}", fontsize=9, color="C3")
if len(shown) == 0:
    axes[0, 0].text(0, 0.5, "no test image was misclassified", fontsize=12)
fig.suptitle(f"{source}: misclassified test images, most confident first ({best_name}, "
             f"{len(wrong)} errors in {len(test)})")
fig.tight_layout()
fig.savefig(out_dir / "misclassified.png", dpi=100)
print(f"figure: {out_dir / 'misclassified.png'}")

# %% [markdown]
# ## 5. Label smoothing: how far can the confidence be trusted?
#
# The largest softmax probability is the network's *confidence* in its
# answer. A network is *calibrated* when its confidence means what it says:
# of the images it answers with confidence 0.8, 80 % are right. The
# cross-entropy against a one-hot label never stops pushing towards more:
# its gradient with respect to the logits, $p - \mathrm{onehot}(y)$,
# vanishes only at $p_y = 1$, which the softmax reaches only as the gap
# between the logits grows without bound. Deep networks trained long
# enough end up over-confident (Guo et al., 2017).
#
# Label smoothing (Szegedy et al., 2016) trains against a softened target
# instead, the one-hot label mixed with the uniform distribution over the
# $K$ classes:
#
# $$ q_k = (1 - \varepsilon)\,[k = y] + \frac{\varepsilon}{K}, \qquad
# \ell = -\sum_k q_k \log p_k, \qquad \frac{\partial \ell}{\partial z_k} = p_k - q_k . $$
#
# The gradient vanishes where the softmax *equals* $q$, at a confidence of
# $1 - \varepsilon + \varepsilon / K$ (0.91 for $\varepsilon = 0.1$ and ten
# classes), with finite logits. ``CrossEntropyLoss(label_smoothing=0.1)``
# computes it as ``torch.nn.CrossEntropyLoss(label_smoothing=0.1)`` does,
# and ``python -m resnet_np train --label-smoothing 0.1`` trains with it.
#
# We train the SGD model of section 3 once more — the same initial weights,
# the same batches — with $\varepsilon = 0.1$, and compare the two on the
# test images: how their confidences spread, and the *reliability diagram*:
# the images sorted into ten bins of confidence, the accuracy in each bin
# against the bin's mean confidence (a calibrated network lies on the
# diagonal). The *expected calibration error* sums the gaps, each weighted
# by its bin's share of the $N$ images:
#
# $$ \mathrm{ECE} = \sum_{b=1}^{10} \frac{|B_b|}{N} \, \bigl| \mathrm{acc}(B_b) - \mathrm{conf}(B_b) \bigr| $$

# %%
smoothing = 0.1
sgd_name = next(iter(optimizers))
smoothed = train_model(f"{sgd_name}, label smoothing {smoothing}", optimizers[sgd_name],
                       CrossEntropyLoss(label_smoothing=smoothing))


def probabilities_of(model):
    """softmax(logits) of every test image, in eval mode, on the host: (N, 10)."""
    model.eval()
    chunks = []
    for x, _ in DataLoader(test, batch_size=250, shuffle=False):
        logits = to_numpy(model(x)).astype(np.float64)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        chunks.append(e / e.sum(axis=1, keepdims=True))
    return np.concatenate(chunks)


def calibration(probs, labels, bins=10):
    """Per bin of confidence: its share of the images, their accuracy, their mean confidence; and the ECE."""
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)  # bin b holds [b / bins, (b + 1) / bins)
    count = np.bincount(which, minlength=bins)
    accuracy = np.bincount(which, weights=correct, minlength=bins) / np.maximum(count, 1)
    mean_confidence = np.bincount(which, weights=confidence, minlength=bins) / np.maximum(count, 1)
    share = count / len(labels)
    return share, accuracy, mean_confidence, float((share * np.abs(accuracy - mean_confidence)).sum())


models = {"cross-entropy": runs[sgd_name], f"label smoothing {smoothing}": smoothed}
calibrated = {}
for name, run in models.items():
    probs = probabilities_of(run["model"])
    share, accuracy, confidence, ece = calibration(probs, test.labels)
    calibrated[name] = {"probs": probs, "share": share, "accuracy": accuracy, "confidence": confidence, "ece": ece,
                        "mean": probs.max(axis=1).mean()}
    gap = calibrated[name]["mean"] - run["test_acc"]
    print(f"{name}: test accuracy {run['test_acc']:.2%}, mean confidence {calibrated[name]['mean']:.3f} "
          f"({'over' if gap > 0 else 'under'}-confident by {abs(gap):.3f}), "
          f"{(probs.max(axis=1) > 0.99).mean():.0%} of the answers above 0.99, ECE {ece:.3f}")

plain, smooth = calibrated.values()
# The robust effect: a lower confidence. Whether it lowers the ECE depends on where the plain run stands
# (a short one may not have grown over-confident yet, and smoothing can then make it under-confident).
assert smooth["mean"] < plain["mean"], (smooth["mean"], plain["mean"])
assert smoothed["test_acc"] > (0.5 if args.quick else 0.97), f"label smoothing: test accuracy {smoothed['test_acc']}"

fig, (ax_rel, ax_hist) = plt.subplots(1, 2, figsize=(11, 4.2))
ax_rel.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
ceiling = 1 - smoothing + smoothing / 10
for k, (name, c) in enumerate(calibrated.items()):
    kept = c["share"] > 0
    ax_rel.plot(c["confidence"][kept], c["accuracy"][kept], "o-", color=f"C{k}",
                label=f"{name}: ECE {c['ece']:.3f}")
    ax_hist.hist(c["probs"].max(axis=1), bins=np.linspace(0.1, 1, 46), color=f"C{k}", alpha=0.55, log=True,
                 label=f"{name}: mean {c['mean']:.3f}")
ax_hist.axvline(ceiling, color="C1", ls=":", label=f"1 - eps + eps/K = {ceiling:.2f}")
ax_rel.set(xlabel="mean confidence in the bin", ylabel="accuracy in the bin", xlim=(0, 1.02), ylim=(0, 1.02),
           title="reliability diagram: above the diagonal, under-confident")
ax_hist.set(xlabel="confidence (largest softmax probability)", ylabel="test images (log scale)",
            title=f"confidence on the {len(test)} test images")
for ax in (ax_rel, ax_hist):
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
fig.tight_layout()
fig.savefig(out_dir / "label_smoothing_calibration.png", dpi=100)
print(f"figure: {out_dir / 'label_smoothing_calibration.png'}")

# %% [markdown]
# The smoothed network is always the less confident one: its answers pile
# up below $1 - \varepsilon + \varepsilon / K$, where the plain network's
# crowd at 1 (the check above). Whether that calibrates it better depends
# on where the plain network stood. A short run on MNIST — 150 steps with
# ``--quick``, two epochs without — leaves the plain ResNet-8 nearly
# calibrated or *under*-confident, its curve on or above the diagonal, and
# smoothing pushes it further above: its ECE is the larger one. Label
# smoothing cures *over*-confidence, the state of large networks trained
# for long (Guo et al., 2017; Müller, Kornblith and Hinton, 2019, "When does
# label smoothing help?"), whose curve lies below the diagonal. It also
# regularises — a bounded gap between the logits leaves less room to
# memorise — which is why ResNet recipes use $\varepsilon = 0.1$. It is not
# a free improvement of calibration: read the diagram of your own run.

# %% [markdown]
# ## What to remember
#
# * A training step is forward, loss, ``zero_grad``, backward, ``step``.
# * Adam adapts a step size per parameter and usually works with its default
#   learning rate; SGD with momentum needs its learning rate tuned, but it is
#   what the ResNet paper (and most image-classification records) use, with a
#   schedule. The curves compare one setting of each: not a verdict.
# * Evaluate in eval mode: batch norm then uses its running statistics.
# * Label smoothing trains against $q = (1 - \varepsilon)\,\mathrm{onehot}(y) + \varepsilon / K$:
#   the gradient $p - q$ stops pushing the confidence at $1 - \varepsilon + \varepsilon / K$.
#   The answers become less confident: that cures over-confidence, but makes
#   a network that was not over-confident (a short run, as here)
#   under-confident. The reliability diagram tells which.
