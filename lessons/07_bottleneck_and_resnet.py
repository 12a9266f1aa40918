# %% [markdown]
# # Lesson 7 — the Bottleneck and the full ResNet-18 / ResNet-50
#
# Deeper ResNets (50, 101, 152 layers) replace the BasicBlock by the
# **Bottleneck**: a 1x1 convolution *reduces* the width by 4, the 3x3
# convolution works on the narrow tensor, and a second 1x1 convolution
# *expands* it back:
#
# $$
# \text{out} = \operatorname{relu}\Big( \operatorname{bn}_3\big(\operatorname{conv}_3(
#   \operatorname{relu}(\operatorname{bn}_2(\operatorname{conv}_2(
#   \operatorname{relu}(\operatorname{bn}_1(\operatorname{conv}_1(x)))))))\big)\big)
#   + \operatorname{shortcut}(x) \Big)
# $$
#
# With 4 times fewer channels the expensive 3x3 costs $4^2 = 16$ times less, so a block three
# layers deep costs about as much as a BasicBlock of two. A whole ImageNet
# ResNet is a stem (7x7 convolution with stride 2, max-pool), four stages of
# blocks built by ``_make_layer`` (64, 128, 256, 512 channels, the last three
# starting with stride 2), global average pooling and one fully connected
# layer. We build ResNet-18 and ResNet-50, print their layer tables, and
# check the parameter counts against the figures torchvision publishes for
# its models: the same architecture, layer for layer.
#
# Run: ``python lessons/07_bottleneck_and_resnet.py`` (add ``--quick`` for a fast run).

# %%
import argparse
import pathlib
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from resnet_np import backend  # noqa: E402
from resnet_np.backend import to_device  # noqa: E402
from resnet_np.gradcheck import check_module  # noqa: E402
from resnet_np.layers import BatchNorm2d, Conv2d, Sequential  # noqa: E402
from resnet_np.models import (  # noqa: E402
    BasicBlock,
    Bottleneck,
    plain18,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
    summary,
)

parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true", help="only ResNet-18 and -50 counted, for the test suite")
parser.add_argument("--out", default="out/lessons/07_bottleneck_and_resnet", help="folder for the figures")
args, _ = parser.parse_known_args()  # known args only: a notebook kernel passes its own
out_dir = pathlib.Path(args.out)
out_dir.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
backend.manual_seed(0)


def count(module):
    return sum(p.size for p in module.parameters())


# %% [markdown]
# ## 1. The Bottleneck against the BasicBlock
#
# Both map 256 channels to 256 channels. The BasicBlock has two 3x3
# convolutions of 256 x 256; the Bottleneck (``planes=64``: the width
# of its 3x3, times ``expansion = 4`` at the output) has $256 \to 64 \to 64 \to 256$.

# %%
basic = BasicBlock(256, 256)
bottleneck = Bottleneck(256, 64)
n_basic, n_bottleneck = count(basic), count(bottleneck)
print(f"BasicBlock(256, 256): {n_basic:,} parameters;  Bottleneck(256, 64): {n_bottleneck:,} parameters "
      f"({n_basic / n_bottleneck:.0f}x fewer)")
assert n_basic == 2 * 9 * 256 * 256 + 2 * 2 * 256
assert n_bottleneck == 256 * 64 + 9 * 64 * 64 + 64 * 256 + 2 * (64 + 64 + 256)

summary(bottleneck, (2, 256, 7, 7))
assert bottleneck.conv1.output_shape == (2, 64, 7, 7) and bottleneck.conv3.output_shape == (2, 256, 7, 7)

# The first block of a stage: stride 2 on the 3x3 (torchvision's "v1.5"), a projection on the shortcut.
down = Bottleneck(256, 128, stride=2, downsample=Sequential(Conv2d(256, 512, 1, stride=2, bias=False),
                                                             BatchNorm2d(512)))
y = down(to_device(rng.standard_normal((2, 256, 8, 8)).astype(np.float32)))  # where the layers are (the backend)
print(f"Bottleneck(256, 128, stride=2): (2, 256, 8, 8) -> {y.shape}")
assert y.shape == (2, 512, 4, 4)

# The whole block, gradient-checked (small widths: 8 -> 2 -> 2 -> 8 channels).
for name, blk in [("identity", Bottleneck(8, 2)),
                  ("stride 2 + projection", Bottleneck(8, 4, stride=2, downsample=Sequential(
                      Conv2d(8, 16, 1, stride=2, bias=False), BatchNorm2d(16))))]:
    report = check_module(blk, to_device(rng.standard_normal((2, 8, 4, 4))))
    print(f"Bottleneck, {name}: worst relative error {report.worst:.1e} over {len(report.results)} tensors")
    assert report.ok

# %% [markdown]
# ## 2. ResNet-18 and ResNet-50, layer by layer
#
# ``summary`` runs one forward pass and lists every layer. The parameter
# counts do not depend on the image size; the table's shapes do. A 224 x 224
# image (ImageNet's size) goes 112 after the stem's convolution, 56 after its
# max-pool, then 56, 28, 14, 7 in the four stages.

# %%
size = 224  # ImageNet's size; one forward pass of each network takes about a second
model18 = resnet18()
start = time.perf_counter()
table18 = summary(model18, (1, 3, size, size))
print(f"(one forward pass of ResNet-18 on a {size}x{size} image: {time.perf_counter() - start:.2f} s)\n")
assert model18.maxpool.output_shape == (1, 64, 56, 56) and model18.layer4.output_shape == (1, 512, 7, 7)
assert model18.fc.output_shape == (1, 1000)

model50 = resnet50()
start = time.perf_counter()
table50 = summary(model50, (1, 3, size, size), print_fn=None)
lines = table50.splitlines()
print(f"ResNet-50, top-level rows only (the whole table has {len(lines)} lines):")
print("\n".join(line for line in lines if not line.startswith(" ")))
print(f"(one forward pass of ResNet-50 on a {size}x{size} image: {time.perf_counter() - start:.2f} s)\n")
assert model50.layer1.output_shape == (1, 256, 56, 56) and model50.layer4.output_shape == (1, 2048, 7, 7)

# %% [markdown]
# ## 3. Parameter counts against torchvision's published figures
#
# torchvision documents the number of parameters of each of its ImageNet
# models; our networks have the same layers, names and shapes, so the counts
# must agree exactly. (The plain twin has no projection shortcuts, hence a
# few fewer parameters.)

# %%
TORCHVISION = {"resnet18": 11_689_512, "resnet50": 25_557_032}
ours = {"resnet18": count(model18), "resnet50": count(model50)}
if not args.quick:  # three more models: big to allocate, so only in the full run
    TORCHVISION.update({"resnet34": 21_797_672, "resnet101": 44_549_160, "resnet152": 60_192_808})
    for name, build in [("resnet34", resnet34), ("resnet101", resnet101), ("resnet152", resnet152)]:
        ours[name] = count(build())
for name, published in TORCHVISION.items():
    print(f"{name:>10}: {ours[name]:>12,} parameters   torchvision: {published:>12,}   "
          f"{'equal' if ours[name] == published else 'DIFFERENT'}")
    assert ours[name] == published

projection = sum(p.size for key, p in model18.named_parameters() if "downsample" in key)
n_plain18 = count(plain18())
print(f"   plain18: {n_plain18:>12,} parameters = ResNet-18 minus its {projection:,} projection-shortcut parameters")
assert n_plain18 == ours["resnet18"] - projection

# %% [markdown]
# ## 4. Where the parameters are
#
# Each stage doubles the width, and a convolution's weights grow with the
# square of the width, so the last stage holds most of the parameters. The
# arithmetic, on the other hand, is spread evenly: each stage also halves
# the resolution, a quarter of the positions for four times the weights.

# %%
stages = ["stem (conv1, bn1)", "layer1", "layer2", "layer3", "layer4", "fc"]


def per_stage(model):
    counts = dict.fromkeys(stages, 0)
    for key, p in model.named_parameters():
        top = key.split(".")[0]
        counts["stem (conv1, bn1)" if top in ("conv1", "bn1") else top] += p.size
    return counts


split18, split50 = per_stage(model18), per_stage(model50)
print(f"{'stage':<18} {'ResNet-18':>12} {'ResNet-50':>12}")
for stage in stages:
    print(f"{stage:<18} {split18[stage]:>12,} {split50[stage]:>12,}")
assert sum(split18.values()) == ours["resnet18"] and sum(split50.values()) == ours["resnet50"]
assert max(split18, key=split18.get) == "layer4" and max(split50, key=split50.get) == "layer4"

fig, ax = plt.subplots(figsize=(9, 4.3))
pos = np.arange(len(stages))
bars18 = ax.bar(pos - 0.2, [split18[s] / 1e6 for s in stages], 0.4, label=f"ResNet-18 ({ours['resnet18']:,})")
bars50 = ax.bar(pos + 0.2, [split50[s] / 1e6 for s in stages], 0.4, label=f"ResNet-50 ({ours['resnet50']:,})")
for bars in (bars18, bars50):
    ax.bar_label(bars, fmt="%.2f", fontsize=7)
ax.set_xticks(pos, stages)
ax.set(ylabel="parameters (millions)", title="parameters per stage: the last stage holds most of them")
ax.legend()
ax.grid(axis="y", alpha=0.3)
fig.tight_layout()
fig.savefig(out_dir / "parameters_per_stage.png", dpi=100)
print(f"figure: {out_dir / 'parameters_per_stage.png'}")

# %% [markdown]
# ## What to remember
#
# * The Bottleneck does a 3x3 convolution at a quarter of the width between
#   two 1x1 convolutions: deeper networks for about the same cost.
# * ``_make_layer`` builds each stage; only its first block changes the
#   resolution and width, and only that one needs a ``downsample``.
# * Same layers, same shapes, same names as torchvision: the parameter counts
#   agree to the last digit, and torchvision's weights load one to one.
