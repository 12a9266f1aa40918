# %% [markdown]
# # Lesson 14 — Your own images: a folder of photos, fine-tuned from CIFAR-10 features
#
# Sooner or later you will want a network for *your* pictures: your cats
# and your dogs, the birds at your feeder, the parts coming off your
# production line. You have a folder of photos, sorted into one
# sub-folder per class, and perhaps a hundred of each — far too few to
# train a ResNet from scratch. This lesson does that whole job on real
# photos:
#
# 1. build such a folder (from CIFAR-10 photos of **cats and dogs**, written
#    to disk as ordinary PNG files, one sub-folder per class);
# 2. read it with ``ImageFolder`` — torchvision's rules: class names are the
#    sorted sub-folder names;
# 3. start from a ResNet-20 trained on the **eight other** CIFAR-10 classes
#    (airplane, automobile, bird, deer, frog, horse, ship, truck): it has
#    never seen a cat or a dog labelled as such, so the two classes are
#    truly new to it;
# 4. compare, at 10 and at 100 labelled photos per class: training from
#    scratch, a linear probe (frozen backbone, new head) and fine-tuning
#    (everything trained, the backbone more gently);
# 5. do the same with one command, ``python -m resnet_np finetune``, and with
#    the weights that ship with the package (``--weights cifar10``).
#
# Run: ``python lessons/14_your_own_images.py`` (add ``--quick`` for a fast run).
# It reads real CIFAR-10 (``$RESNET_NP_DATA/cifar10``, downloaded if missing);
# ``--quick`` without it draws two classes of synthetic "photos" instead.

# %%
import argparse
import pathlib
import shutil
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from resnet_np import backend, finetune  # noqa: E402
from resnet_np.__main__ import main as resnet_np_command  # noqa: E402
from resnet_np.data import DataLoader, Dataset, ImageFolder, load_dataset  # noqa: E402
from resnet_np.models import pretrained, resnet20, weights  # noqa: E402
from resnet_np.optim import SGD, CosineAnnealingLR, LinearWarmup  # noqa: E402
from resnet_np.train import evaluate, fit  # noqa: E402

from _common import stop_without_data  # noqa: E402  (lessons/_common.py)

parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true", help="fewer photos and steps, one seed, for the test suite")
parser.add_argument("--out", default="out/lessons/14_your_own_images", help="folder for the figures and photos")
args, _ = parser.parse_known_args()  # known args only: a notebook kernel passes its own
out_dir = pathlib.Path(args.out)
out_dir.mkdir(parents=True, exist_ok=True)
start_time = time.perf_counter()

# %% [markdown]
# ## 1. A folder of photos
#
# The layout every tool understands (torchvision's ``ImageFolder``,
# Keras' ``image_dataset_from_directory``, and ours):
#
#     pets/train/cat/00012.png     pets/test/cat/...
#     pets/train/cat/00087.png     pets/test/dog/...
#     pets/train/dog/...
#
# The training folder gets the first 100 cats and 100 dogs of CIFAR-10's
# training split; the test folder 500 of each from its test split (which
# no network here has trained on; 25 in the quick run). Any photos would
# do: that is the point.

# %%
CAT, DOG = 3, 5  # CIFAR-10's class numbers
per_class_train, per_class_test = 100, (25 if args.quick else 500)
pets = out_dir / "pets"
shutil.rmtree(pets, ignore_errors=True)


def write_folder(folder, images, labels, names):
    """One PNG per image, in a sub-folder named after its class."""
    for label, name in enumerate(names):
        (folder / name).mkdir(parents=True)
        for k in np.flatnonzero(labels == label):
            Image.fromarray(images[k].transpose(1, 2, 0)).save(folder / name / f"{k:05d}.png")


def synthetic_photos(n, seed):
    """Two classes of 32x32 colour "photos": warm blobs (class 0) and cool stripes (class 1), noisy."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32] / 31
    labels = np.repeat([0, 1], n)
    images = np.empty((2 * n, 32, 32, 3))
    for k, label in enumerate(labels):
        cx, cy, f = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(2, 5)
        pattern = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) * 12) if label == 0 else 0.5 + 0.5 * np.sin(f * 6 * xx)
        tint = np.array([0.9, 0.5, 0.2]) if label == 0 else np.array([0.2, 0.5, 0.9])
        images[k] = pattern[..., None] * tint + 0.15 * rng.standard_normal((32, 32, 3)) + 0.2
    pixels = (np.clip(images, 0, 1) * 255).astype(np.uint8).transpose(0, 3, 1, 2)
    return pixels, labels


try:
    cifar_train = load_dataset("cifar10", train=True, download=not args.quick)
    cifar_test = load_dataset("cifar10", train=False, download=not args.quick)
    source = "CIFAR-10 cats and dogs"
    train_pool = finetune.select_classes(cifar_train, [CAT, DOG])   # relabelled: cat 0, dog 1
    test_pool = finetune.select_classes(cifar_test, [CAT, DOG])
    keep = np.concatenate([np.flatnonzero(train_pool.labels == c)[:per_class_train] for c in (0, 1)])
    write_folder(pets / "train", train_pool.images[keep], train_pool.labels[keep], ["cat", "dog"])
    keep = np.concatenate([np.flatnonzero(test_pool.labels == c)[:per_class_test] for c in (0, 1)])
    write_folder(pets / "test", test_pool.images[keep], test_pool.labels[keep], ["cat", "dog"])
except (OSError, ValueError) as e:  # no CIFAR-10 files (and --quick never downloads), or a bad MD5
    if not args.quick:
        stop_without_data(e)
    print(f"CIFAR-10 is not available ({str(e).splitlines()[0]}); --quick never downloads, so this run uses "
          "synthetic photos. Set RESNET_NP_DATA to a folder with cifar10/ in it for the real thing.")
    source = "synthetic photos"
    images, labels = synthetic_photos(per_class_train, seed=0)
    write_folder(pets / "train", images, labels, ["cat", "dog"])
    images, labels = synthetic_photos(per_class_test, seed=1)
    write_folder(pets / "test", images, labels, ["cat", "dog"])
print(f"{source}: {sum(1 for _ in (pets / 'train').rglob('*.png'))} training photos and "
      f"{sum(1 for _ in (pets / 'test').rglob('*.png'))} test photos written under {pets}")

# %% [markdown]
# ## 2. Reading the folder: ``ImageFolder``
#
# ``ImageFolder(root)`` lists the sub-folders (sorted: the class numbers
# follow the alphabet, ``cat`` = 0, ``dog`` = 1), and in each the image
# files by extension. ``folder[i]`` decodes one photo with Pillow into a
# uint8 array (3, H, W) and its label; ``to_dataset(size)`` decodes them all,
# resizes them and returns the ``Dataset`` that ``DataLoader`` batches.

# %%
train_folder, test_folder = ImageFolder(pets / "train"), ImageFolder(pets / "test")
print(f"classes {train_folder.classes}, class_to_idx {train_folder.class_to_idx}")
print(f"first sample: {train_folder.samples[0]}")
image, label = train_folder[0]
print(f"folder[0]: {image.dtype} array of shape {image.shape}, label {label}")
assert train_folder.classes == ["cat", "dog"] and image.shape == (3, 32, 32) and image.dtype == np.uint8
assert len(train_folder) == 2 * per_class_train and len(test_folder) == 2 * per_class_test

fig, axes = plt.subplots(2, 8, figsize=(10, 2.8))
for row, name in enumerate(train_folder.classes):
    examples = [i for i, (_, c) in enumerate(train_folder.samples) if c == row][:8]
    for ax, i in zip(axes[row], examples):
        ax.imshow(train_folder[i][0].transpose(1, 2, 0))
        ax.set_axis_off()
    axes[row, 0].set_title(name, loc="left", fontsize=10)
fig.suptitle(f"pets/train: {source}, as ImageFolder reads them")
fig.tight_layout()
fig.savefig(out_dir / "pets_folder.png", dpi=100)
plt.close(fig)
print(f"figure: {out_dir / 'pets_folder.png'}")

# %% [markdown]
# ## 3. The starting point: a ResNet-20 that never saw a cat or a dog
#
# The package ships, beside its CIFAR-10 ResNet-20, one trained on the
# 40,000 CIFAR-10 training photos of the other eight classes (made by
# ``benchmarks/pretrain_cifar8.py``): ``resnet20(num_classes=8,
# weights="cifar10-8classes")`` builds it, and ``pretrained.path_of`` gives
# its file, an ordinary resnet_np model file whose metadata says how it was
# trained, and on which classes.
#
# One detail matters more than it seems: **normalisation**. The network
# learned on inputs normalised by CIFAR-10's mean and standard deviation;
# new photos must go through the same normalisation, not one computed from
# themselves, or every first-layer feature sees shifted, rescaled inputs.

# %%
backbone_file = pretrained.path_of("resnet20", "cifar10-8classes")  # checks the file's MD5
_, meta = weights.read_state_dict(backbone_file)
info = meta["pretrained"]
print(f"{pathlib.Path(backbone_file).name}: trained on {', '.join(info['classes'])} "
      f"(held out: {', '.join(info['held_out'])}); "
      f"{info['test_accuracy']:.1%} on their test photos")
assert "cat" not in info["classes"] and "dog" not in info["classes"]
mean, std = tuple(info["mean"]), tuple(info["std"])


def as_dataset(folder):
    data = folder.to_dataset(size=32)
    return Dataset(data.images, data.labels, data.classes, mean, std, name=data.name)


train_all, test_set = as_dataset(train_folder), as_dataset(test_folder)
test_loader = DataLoader(test_set, batch_size=500, shuffle=False)

# %% [markdown]
# ## 4. Fine-tuned vs from scratch, at 10 and 100 photos per class
#
# Four ways, each with the same number of steps, the same batches and
# augmentation (crops and flips), evaluated on the test folder:
#
# * **scratch**: a fresh ResNet-20, every weight trained at $\eta = 0.1$;
# * **linear probe**: the eight-class backbone frozen (batch norms included),
#   a new two-class ``fc`` trained;
# * **fine-tune**: the eight-class backbone and a new head, all trained, the
#   head at $\eta = 0.1$ and the backbone at $0.01$: it is already good, and
#   a few dozen photos must not pull it far (the ImageNet habit, a tenth);
# * **fine-tune, shipped**: the same from ``resnet20(weights="cifar10")``,
#   trained on all ten classes — it *has* seen cats and dogs (other photos of
#   them): the best case, to see how much knowing the classes is worth.
#
# With 10 photos per class the result depends on which 10: each is run with
# three draws (seeds) and the table shows the mean and the spread.

# %%
seeds = [0] if args.quick else [0, 1, 2]
steps = {10: 4 if args.quick else 60, 100: 6 if args.quick else 150}  # quick: that each path runs, no verdict
shipped = resnet20(weights="cifar10")  # md5-checked on load; only its backbone is used below
METHODS = ("scratch", "linear probe", "fine-tune", "fine-tune, shipped")


def make_model(method):
    model = resnet20(num_classes=2)
    if method == "fine-tune":
        finetune.load_backbone(model, backbone_file)
    elif method == "fine-tune, shipped":
        finetune.load_backbone(model, shipped.state_dict())
    elif method == "linear probe":
        finetune.load_backbone(model, backbone_file)
        finetune.freeze(model, "backbone")
    model.need_input_grad = False  # nobody needs the gradient of the photos
    return model


def run(method, per_class, seed):
    backend.manual_seed(seed)
    train_set = finetune.select_classes(train_all, [0, 1], per_class=per_class, seed=seed)
    model = make_model(method)
    backbone_lr = None if method in ("scratch", "linear probe") else 0.01
    groups = finetune.param_groups(model, head_lr=0.1, backbone_lr=backbone_lr)
    batch = min(32, len(train_set))
    loader = DataLoader(train_set, batch_size=batch, shuffle=True, drop_last=True, seed=seed, augment="cifar")
    epochs = max(1, round(steps[per_class] / len(loader)))
    optimizer = SGD(groups, lr=0.1, momentum=0.9, weight_decay=5e-4)
    total = epochs * len(loader)
    scheduler = LinearWarmup(optimizer, warmup_steps=min(10, total - 1), start_factor=0.1,
                             after=CosineAnnealingLR(optimizer, T_max=max(total - 10, 1)))
    fit(model, loader, None, epochs, optimizer, scheduler, progress=False, log=lambda *a: None)
    return evaluate(model, test_loader)[1]


results = {}
for per_class in (10, 100):
    for method in METHODS:
        scores = [run(method, per_class, seed) for seed in seeds]
        results[method, per_class] = scores
        print(f"{per_class:>3} per class, {method:>18}: {100 * np.mean(scores):5.1f} % "
              f"({', '.join(f'{100 * s:.1f}' for s in scores)})", flush=True)

print(f"\n{'test accuracy (%)':<22}{'10 per class':>14}{'100 per class':>15}")
for method in METHODS:
    cells = "".join(f"{100 * np.mean(results[method, n]):>9.1f} ± {100 * np.std(results[method, n]):3.1f}"
                    for n in (10, 100))
    print(f"{method:<22}{cells}")

mean_of = {key: float(np.mean(scores)) for key, scores in results.items()}
if not args.quick:  # a few dozen steps of one seed decide little
    # The point of the lesson, asserted: features learned on eight other classes beat starting from nothing,
    # with few photos and with more.
    for n in (10, 100):
        assert mean_of["fine-tune", n] > mean_of["scratch", n] + 0.03, mean_of
    assert mean_of["scratch", 100] > mean_of["scratch", 10], mean_of  # more photos help the scratch network

fig, ax = plt.subplots(figsize=(8, 4.3))
colours = {"scratch": "#999999", "linear probe": "#4c72b0", "fine-tune": "#dd8452", "fine-tune, shipped": "#55a868"}
for k, method in enumerate(METHODS):
    values = [100 * mean_of[method, n] for n in (10, 100)]
    spread = [100 * np.std(results[method, n]) for n in (10, 100)]
    bars = ax.bar(np.arange(2) + (k - 1.5) * 0.2, values, 0.2, yerr=spread, capsize=3, label=method,
                  color=colours[method])
    ax.bar_label(bars, fmt="%.0f", fontsize=8, padding=2)
ax.axhline(50, color="black", linewidth=0.8, linestyle=":")
ax.set_xticks(range(2), ["10 photos per class", "100 photos per class"])
ax.set(ylabel=f"test accuracy on {2 * per_class_test} photos (%)", ylim=(40, 100),
       title=f"Cat vs dog ({source}): from scratch or from CIFAR features")
ax.legend(fontsize=8, loc="upper left")
ax.grid(axis="y", alpha=0.3)
fig.tight_layout()
fig.savefig(out_dir / "finetune_vs_scratch.png", dpi=100)
plt.close(fig)
print(f"figure: {out_dir / 'finetune_vs_scratch.png'}")

# %% [markdown]
# What the full run shows (three draws each; ``benchmarks/results/finetune_own_folder.png``):
#
# | test accuracy (%) | 10 per class | 100 per class |
# | --- | --- | --- |
# | scratch | 50.2 ± 2.5 | 52.7 ± 1.7 |
# | linear probe | 61.4 ± 5.0 | 67.9 ± 0.1 |
# | fine-tune | 59.7 ± 4.1 | 70.5 ± 0.9 |
# | fine-tune, shipped | 85.5 ± 0.4 | 83.2 ± 1.5 |
#
# From scratch, a ResNet-20 barely beats a coin with this few photos. The
# features of eight *other* classes are worth 10-18 points; with 100 photos
# per class, letting the backbone move (fine-tuning) beats keeping it
# frozen (the probe), while with 10 the probe is as good and steadier. A
# backbone that has seen cats and dogs before — other photos of them —
# is far ahead: what the starting weights were trained on matters more than
# how they are fine-tuned. It is even slightly better with 10 photos per
# class than with 100 (85.5 against 83.2 %): it already tells cats from
# dogs, and 150 steps on 200 photos probably pull it further from what it knew than
# 60 steps on 20 do.

# %% [markdown]
# ## 5. The same with one command
#
# Everything above is what ``python -m resnet_np finetune`` does for a
# folder. ``--dataset folder:PATH`` reads it with ``ImageFolder`` and holds
# out ``--val-fraction`` of each class (drawn with ``--seed``) as its test
# set; ``--from`` names the starting weights (``--weights cifar10`` takes
# the ones that ship with the package), ``--freeze none`` fine-tunes
# everything. The new photos are normalised as the weights' own training
# images were, and ``evaluate`` then prints the accuracy and the confusion
# matrix of the held-out photos:
#
#     python -m resnet_np finetune --weights cifar10 --dataset folder:pets/train \
#         --freeze none --backbone-lr 0.01 --epochs 10 --batch-size 32 --out runs/pets
#     python -m resnet_np evaluate --checkpoint runs/pets/checkpoint.npz
#
# Here it runs on the training folder (160 photos to learn from, 40 held
# out) from the shipped CIFAR-10 weights, the best starting point above.

# %%
cli_out = out_dir / "pets_run"
status = resnet_np_command(["finetune", "--weights", "cifar10", "--dataset", f"folder:{pets / 'train'}",
                            "--freeze", "none", "--backbone-lr", "0.01", "--epochs", "1" if args.quick else "10",
                            "--batch-size", "32", "--out", str(cli_out), "--no-progress"])
assert status == 0
assert resnet_np_command(["evaluate", "--checkpoint", str(cli_out / "checkpoint.npz")]) == 0
assert (cli_out / "confusion.png").is_file()
print(f"lesson done in {time.perf_counter() - start_time:.0f} s")

# %% [markdown]
# ## What to remember
#
# * A folder with one sub-folder per class is a dataset: ``ImageFolder``
#   reads it, ``to_dataset`` resizes it, ``split_per_class`` (or the CLI's
#   ``--val-fraction``) holds photos out to test on.
# * With a hundred photos per class, starting from features learned on
#   *other* classes beats starting from nothing; a network that has seen
#   the classes before does better still.
# * A frozen backbone (linear probe) is cheap and safe, but its features
#   were made for other classes; letting the backbone move, gently, adapts
#   them.
# * Normalise new images the way the starting weights were trained.
