# %% [markdown]
# # Lesson 10 — Fine-tuning: reuse what a network has already learned
#
# Training a ResNet from scratch needs many labelled images. Often we have
# a network trained on a *related* task with plenty of labels, and only a
# handful of labels for the task we care about. The first layers of the
# trained network detect edges and strokes, the later ones parts of shapes:
# most of that is just as useful for the new task. Only the last layer, the
# classifier ``fc``, is tied to the old classes.
#
# Transfer learning keeps the features and replaces the head. In this lesson:
#
# 1. pretrain a ResNet on the digits 0-4 ("the old task");
# 2. learn the digits 5-9 from only 10 labelled images per class ("the new task"),
#    three ways: from scratch, a *linear probe* (frozen backbone, new head)
#    and *fine-tuning* (everything trained, the backbone with a smaller
#    learning rate);
# 3. look at what freezing must guarantee: frozen weights that do not move
#    at all, and frozen batch norms whose running statistics do not move
#    either, although the training loop puts the model in train mode.
#
# Run: ``python lessons/10_finetuning.py`` (add ``--quick`` for a fast run).
# It uses real MNIST (``$RESNET_NP_DATA/mnist``, downloaded if missing);
# ``--quick`` without it uses synthetic digits instead.

# %%
import argparse
import pathlib
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from resnet_np import backend, finetune  # noqa: E402
from resnet_np.backend import to_numpy  # noqa: E402
from resnet_np.data import DataLoader  # noqa: E402
from resnet_np.models import CifarResNet, resnet20, save  # noqa: E402
from resnet_np.optim import SGD, CosineAnnealingLR, LinearWarmup  # noqa: E402
from resnet_np.train import evaluate, fit  # noqa: E402

from _common import load_digits  # noqa: E402  (lessons/_common.py: MNIST or synthetic digits)

parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true", help="a smaller network and fewer images, for the test suite")
parser.add_argument("--out", default="out/lessons/10_finetuning", help="folder for the figures")
args, _ = parser.parse_known_args()  # known args only: a notebook kernel passes its own
out_dir = pathlib.Path(args.out)
out_dir.mkdir(parents=True, exist_ok=True)
start_time = time.perf_counter()

# %% [markdown]
# ## 1. Two tasks
#
# The old task has thousands of labelled images of the digits 0-4. The new
# task, the digits 5-9, has 10 labelled images per class: 50 in all.
# ``finetune.select_classes`` cuts such tasks out of a dataset and
# relabels the classes 0, 1, ... (so the digit 5 becomes class 0).
#
# Without real MNIST (and only with ``--quick``, which never downloads) the
# lesson uses the synthetic digits of ``lessons/_common.py``: the ten digits
# drawn from a font, shifted and noisy.

# %%
train_all, test_all, source = load_digits(args.quick, synthetic_sizes=(3000, 1000))
print(f"data: {source}")

OLD, NEW = [0, 1, 2, 3, 4], [5, 6, 7, 8, 9]
pretrain_per_class = 200 if args.quick else 1000
old_train = finetune.select_classes(train_all, OLD, per_class=pretrain_per_class, seed=0)
old_test = finetune.select_classes(test_all, OLD)
new_train = finetune.select_classes(train_all, NEW, per_class=10, seed=0)  # 10 labels per class
new_test = finetune.select_classes(test_all, NEW)
if args.quick:  # the first 300 test images of each task
    old_test = old_test.subset(range(min(300, len(old_test))))
    new_test = new_test.subset(range(min(300, len(new_test))))
print(f"old task: {len(old_train)} training images of digits 0-4; new task: {len(new_train)} labelled images "
      f"of digits 5-9, tested on {len(new_test)}")
assert np.bincount(new_train.labels).tolist() == [10] * 5

fig, axes = plt.subplots(5, 10, figsize=(8, 4.3))
for c in range(5):
    examples = new_train.images[new_train.labels == c]
    for j in range(10):
        axes[c, j].imshow(examples[j, 0], cmap="gray")
        axes[c, j].axis("off")
fig.suptitle("All the labels the new task gets: 10 images of each digit 5-9")
fig.tight_layout()
fig.savefig(out_dir / "new_task_labels.png", dpi=100)
plt.close(fig)
print(f"figure: {out_dir / 'new_task_labels.png'}")

# %% [markdown]
# ## 2. Pretrain on the old task
#
# An ordinary training run: a CIFAR-style ResNet with one input channel
# (ResNet-20; ResNet-8, one block per stage, in the quick run), SGD with
# momentum, warm-up then cosine decay, three epochs. It is saved to a file,
# the way a pretrained network usually arrives.


# %%
def new_network(num_classes):
    return CifarResNet(1, num_classes=num_classes, in_channels=1) if args.quick else \
        resnet20(num_classes=num_classes, in_channels=1)


def sgd(groups, steps):
    opt = SGD(groups, lr=groups[0]["lr"], momentum=0.9, weight_decay=5e-4)
    return opt, LinearWarmup(opt, warmup_steps=5, start_factor=0.1, after=CosineAnnealingLR(opt, T_max=steps - 5))


backend.manual_seed(0)
pretrained = new_network(len(OLD))
loader = DataLoader(old_train, batch_size=50, shuffle=True, drop_last=True, seed=0, augment="digits")
pretrain_epochs = 3
opt, sched = sgd([{"params": list(pretrained.parameters()), "lr": 0.1}], pretrain_epochs * len(loader))
fit(pretrained, loader, None, pretrain_epochs, opt, sched, progress=False, log=print)
_, old_accuracy = evaluate(pretrained, DataLoader(old_test, batch_size=500, shuffle=False))
print(f"pretrained network: {old_accuracy:.1%} on the old task's test images")
assert old_accuracy > 0.8
pretrained_file = out_dir / "pretrained_0-4.npz"
save(pretrained, pretrained_file)

# %% [markdown]
# ## 3. A new head on the old backbone
#
# ``load_backbone`` copies every weight of the file except the classifier's:
# the new network has its own ``fc``, sized for the new classes and freshly
# initialised. (``model.reset_classifier(5)`` does the same on a network in
# memory.) A checkpoint whose backbone does not fit is refused, with every
# mismatching key listed.
#
# ``freeze(model, "backbone")`` sets ``requires_grad = False`` on everything
# but ``fc``: a **linear probe**, a linear classifier on frozen features.

# %%
backend.manual_seed(1)
probe = new_network(len(NEW))
finetune.load_backbone(probe, pretrained_file)
frozen = finetune.freeze(probe, "backbone")
print(f"frozen {len(frozen)} parameter tensors; still trained: {finetune.trainable_parameters(probe)}")
assert finetune.trainable_parameters(probe) == ["fc.weight", "fc.bias"]
# to_numpy: NumPy's checks run on the host, wherever the weights are (CuPy's arrays do not convert by themselves).
np.testing.assert_array_equal(to_numpy(probe.layer1[0].conv1.weight.data),
                              to_numpy(pretrained.layer1[0].conv1.weight.data))

try:
    finetune.load_backbone(CifarResNet(2, num_classes=5, in_channels=1), pretrained_file)
except ValueError as e:
    print("a network of another depth is refused:", str(e).splitlines()[1][:100], "...")

# %% [markdown]
# ## 4. Frozen weights are not enough: batch-norm statistics
#
# A batch norm in train mode normalises with the statistics of the current
# batch and *updates its running mean and variance*, whether or not its
# weight and bias are trained. A frozen backbone whose batch norms follow
# the new data is not the backbone that was pretrained. So ``freeze`` keeps
# every batch norm whose parameters are all frozen in eval mode
# (``keep_eval``), even when the training loop calls ``model.train()``.
# Compare with ``keep_bn_stats=False``:

# %%
x_new, _ = next(iter(DataLoader(new_train, batch_size=50, shuffle=False)))
drifting = new_network(len(NEW))
finetune.load_backbone(drifting, pretrained_file)
finetune.freeze(drifting, "backbone", keep_bn_stats=False)
before_kept, before_drift = probe.bn1.running_mean.copy(), drifting.bn1.running_mean.copy()
probe.train()
drifting.train()
probe(x_new)
drifting(x_new)
drift_kept = np.abs(probe.bn1.running_mean - before_kept).max()
drift_free = np.abs(drifting.bn1.running_mean - before_drift).max()
print(f"largest change of bn1.running_mean after one batch in train mode: kept {drift_kept:.4f}, "
      f"keep_bn_stats=False {drift_free:.4f}")
assert drift_kept == 0 and drift_free > 0

# %% [markdown]
# ## 5. Three ways to learn the new task
#
# Each gets the same steps, batches and new head, and no data augmentation
# (so that nothing but the starting weights differs):
#
# * **scratch**: a fresh network, every weight trained at learning rate $\eta = 0.1$;
# * **linear probe**: only ``fc`` trained, on the pretrained features;
# * **fine-tune**: everything trained, with two *parameter groups*: the new
#   head at $\eta_{\text{head}} = 0.1$ (it starts from random numbers) and the backbone at
#   $\eta_{\text{backbone}} = 0.05$ (it is already good: smaller steps keep what it knows).
#
# How much smaller? The ImageNet habit is $\eta_{\text{backbone}} = \eta_{\text{head}} / 10$. Here that holds the
# backbone back too much: its last stage learned features that tell 0-4
# apart, and they have to change for 5-9. ``benchmarks/results/transfer.md``
# measures it (half the head's rate was best among the lower ones).
#
# ``model.need_input_grad = False`` lets the backward pass stop below the
# last trainable layer: for the probe, right after ``fc``.
#
# Fifty images and a few dozen steps make a noisy experiment: another
# random head, another order of the batches, or even another order of
# floating-point additions inside the convolutions, and one run's accuracy
# moves by several points (once in five seeds, fine-tuning lost to scratch
# in a single run). So each way runs three times, with seeds 1, 2 and 3 for
# the new head and the batches, and we compare the means.

# %%
steps = 30 if args.quick else 100
test_loader = DataLoader(new_test, batch_size=500, shuffle=False)
SEEDS = (1, 2, 3)


def starting_point(method):
    """A fresh network for ``method`` and its parameter groups (the new head's seed is set before)."""
    model = new_network(len(NEW))
    if method == "scratch":
        return model, finetune.param_groups(model, head_lr=0.1)
    finetune.load_backbone(model, pretrained_file)
    if method == "linear probe":  # pretrained backbone, frozen, new head: as built above
        finetune.freeze(model, "backbone")
        return model, finetune.param_groups(model, head_lr=0.1)
    return model, finetune.param_groups(model, head_lr=0.1, backbone_lr=0.05)


runs, curves = {}, {}
for method in ("scratch", "linear probe", "fine-tune"):
    runs[method], losses = [], []
    for seed in SEEDS:
        backend.manual_seed(seed)
        model, groups = starting_point(method)
        model.need_input_grad = False
        backbone_before = {k: v.copy() for k, v in model.state_dict().items() if not k.startswith("fc.")}
        loader = DataLoader(new_train, batch_size=25, shuffle=True, drop_last=True, seed=seed)  # no augmentation
        opt, sched = sgd(groups, steps)
        history = fit(model, loader, None, steps // len(loader), opt, sched, progress=False, log=lambda *a: None)
        runs[method].append(evaluate(model, test_loader)[1])
        losses.append(history["train_loss"])
        if method == "linear probe":  # frozen means frozen: weights and statistics bit for bit
            for key, value in model.state_dict().items():
                if not key.startswith("fc."):
                    np.testing.assert_array_equal(to_numpy(value), to_numpy(backbone_before[key]), err_msg=key)
    curves[method] = np.mean(losses, axis=0)
    print(f"{method:>12}: " + ", ".join(f"{a:.1%}" for a in runs[method])
          + f" on {len(new_test)} test images of digits 5-9 (seeds {SEEDS}); mean {np.mean(runs[method]):.1%}")
results = {method: float(np.mean(accuracies)) for method, accuracies in runs.items()}

# Ten labels per class, no augmentation: the pretrained weights are worth a lot.
assert results["fine-tune"] > results["scratch"] + 0.03, results

fig, (ax_bar, ax_loss) = plt.subplots(1, 2, figsize=(10, 4))
names = list(results)
colours = {"scratch": "#999999", "linear probe": "#4c72b0", "fine-tune": "#dd8452"}
bars = ax_bar.bar(names, [100 * results[m] for m in names], color=[colours[m] for m in names])
for bar, m in zip(bars, names):
    ax_bar.text(bar.get_x() + bar.get_width() / 2, 100 * results[m] + 1, f"{100 * results[m]:.1f}", ha="center")
ax_bar.set(ylabel="test accuracy on digits 5-9 (%)", ylim=(0, 105),
           title=f"10 labels per class, mean of {len(SEEDS)} runs")
for m in names:
    ax_loss.plot(np.arange(1, len(curves[m]) + 1), curves[m], label=m, color=colours[m])
ax_loss.set(xlabel="epoch (one pass over the 50 images)", ylabel="training loss", yscale="log",
            title=f"training loss, mean of {len(SEEDS)} runs")
ax_loss.legend()
fig.suptitle(f"Transfer from digits 0-4 to digits 5-9 ({source})")
fig.tight_layout()
fig.savefig(out_dir / "three_ways.png", dpi=100)
plt.close(fig)
print(f"figure: {out_dir / 'three_ways.png'}")
print(f"lesson done in {time.perf_counter() - start_time:.0f} s")

# %% [markdown]
# Read the two panels together. The training loss says how well each way
# fits the 50 labelled images; the accuracy, how well that carries over to
# digits it has never seen. A network trained from scratch can fit 50
# images very well and still generalise worse than one that started from
# features learned on thousands of other digits. The linear probe cannot
# even fit them: features made to tell 0-4 apart are not enough for 5-9
# as they are, they must be adapted too.

# %% [markdown]
# ## What to try
#
# * Give the new task 100 labels per class (``per_class=100``): does the gap
#   to scratch shrink? (``benchmarks/transfer.py`` measures it.)
# * Turn on random crops (``augment="digits"`` in the loader): which of the
#   three gains most?
# * Freeze only the first stages: ``finetune.freeze(model, "conv1,bn1,layer1")``.
# * Fine-tune with a backbone lr of 0.01, then 0.1.
# * Pretrain for one epoch instead of three, then for eight: does the gain of
#   fine-tuning change? (In ``benchmarks/results/transfer.md`` it grows with
#   the pretraining: features trained longer on 0-4 carry over better.)
# * The same from the command line:
#   ``python -m resnet_np finetune --from out/lessons/10_finetuning/pretrained_0-4.npz
#   --classes 5-9 --train-per-class 10 --epochs 100 --freeze none --augment none
#   --head-lr 0.1 --backbone-lr 0.05`` (ResNet-20 files only: the quick run's ResNet-8
#   has no architecture name to rebuild from).
