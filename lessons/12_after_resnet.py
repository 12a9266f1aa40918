# %% [markdown]
# # Lesson 12 — after ResNet: pre-activation, width, cardinality
#
# Within two years of ResNet, three papers each changed one thing about it:
#
# * **pre-activation** (He et al., "Identity Mappings in Deep Residual
#   Networks", 2016): move batch norm and ReLU *into* the branch, before
#   each convolution, so that nothing sits on the path from one block to
#   the next;
# * **width** (Zagoruyko and Komodakis, "Wide Residual Networks", 2016):
#   fewer, wider blocks — WRN-28-10 beats a 1001-layer ResNet;
# * **cardinality** (Xie et al., "Aggregated Residual Transformations",
#   2017: ResNeXt): split the bottleneck's 3x3 convolution into $C$ parallel
#   paths — a *grouped* convolution — and spend what that saves on width.
#
# All three are in ``resnet_np.models`` (``preact_resnet110``,
# ``wrn28_10``, ``resnext29_8x64d``, ``resnext50_32x4d``, ...). This lesson
# derives why the pre-activation block passes the gradient on unchanged and
# measures it at initialisation, counts what width and groups cost, and
# shows a short run of each family on MNIST.
#
# Run: ``python lessons/12_after_resnet.py`` (add ``--quick`` for a fast run:
# shallower networks, a smaller batch, only the small networks in the
# table). The full run takes about a minute on two CPU cores.

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
from resnet_np.layers import Conv2d, SoftmaxCrossEntropy  # noqa: E402
from resnet_np.models import (  # noqa: E402
    BasicBlock,
    Bottleneck,
    CifarResNet,
    PreActBasicBlock,
    PreActResNet,
    flops,
    preact_resnet110,
    preact_resnet164,
    preact_resnet1001,
    resnet50,
    resnet110,
    resnext29_8x64d,
    resnext29_16x64d,
    resnext50_32x4d,
    wide_resnet50_2,
    wrn16_4,
    wrn28_10,
)

from _common import load_digits  # noqa: E402  (lessons/_common.py: MNIST or synthetic digits)

parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true", help="shallower networks, a small batch, for the test suite")
parser.add_argument("--out", default="out/lessons/12_after_resnet", help="folder for the figures")
args, _ = parser.parse_known_args()  # known args only: a notebook kernel passes its own
out_dir = pathlib.Path(args.out)
out_dir.mkdir(parents=True, exist_ok=True)
start_time = time.perf_counter()


def count(module):
    return sum(p.size for p in module.parameters())


# %% [markdown]
# ## 1. Pre-activation: what sits on the identity path
#
# Write every residual block as
#
# $$
# x_{l+1} = f\big(x_l + \mathcal{F}(x_l, W_l)\big)
# $$
#
# with $\mathcal{F}$ the branch (convolutions, batch norms, ReLUs) and $f$
# what comes after the addition. In the original ResNet $f$ is a ReLU. The
# pre-activation block moves the batch norm and ReLU into the branch, in
# front of each convolution, and leaves $f$ = identity:
#
# $$
# \begin{aligned}
# \text{original:}\quad & x_{l+1} = \operatorname{relu}\big(x_l + \operatorname{bn}_2(\operatorname{conv}_2(
#   \operatorname{relu}(\operatorname{bn}_1(\operatorname{conv}_1(x_l)))))\big) \\
# \text{pre-activation:}\quad & x_{l+1} = x_l + \operatorname{conv}_2(\operatorname{relu}(\operatorname{bn}_2(
#   \operatorname{conv}_1(\operatorname{relu}(\operatorname{bn}_1(x_l))))))
# \end{aligned}
# $$
#
# With $f$ = identity the recursion unrolls: for any two blocks $l < L$,
#
# $$
# x_L = x_l + \sum_{i=l}^{L-1} \mathcal{F}(x_i, W_i)
# $$
#
# and the chain rule gives
#
# $$
# \frac{\partial L}{\partial x_l}
# = \frac{\partial L}{\partial x_L} \frac{\partial x_L}{\partial x_l}
# = \frac{\partial L}{\partial x_L} \left( 1 + \frac{\partial}{\partial x_l} \sum_{i=l}^{L-1}
#   \mathcal{F}(x_i, W_i) \right)
# $$
#
# The "1" hands $\partial L / \partial x_L$ to every earlier block
# **unchanged**: no weight multiplies it, no ReLU masks it. The second term
# would have to be exactly $-1$ for every example of a batch to cancel it,
# which does not happen, so the gradient cannot vanish however deep the
# network. With $f$ = ReLU there is no such sum: between $x_l$ and $x_L$ the
# identity path passes $L - l$ ReLU masks, each of which zeroes part of the
# gradient.
#
# The cleanest way to see the "1": silence a block's branch (zero its last
# convolution) and look at what its backward pass does to an upstream
# gradient.

# %%
rng = np.random.default_rng(0)
x = to_device(rng.standard_normal((2, 16, 6, 6)))  # where the blocks are: the backend (NumPy, or CuPy)
dout = to_device(rng.standard_normal(x.shape))

pre = PreActBasicBlock(16, 16).astype("float64")
pre.conv2.weight.data[...] = 0                     # F(x) = 0: the block is x -> x
assert np.array_equal(pre(x), x)
assert np.array_equal(pre.backward(dout), dout)    # dL/dx_l = dL/dx_{l+1}, bit for bit

post = BasicBlock(16, 16).astype("float64")
post.bn2.weight.data[...] = 0                      # F(x) = 0: the block is x -> relu(x)
post.bn2.bias.data[...] = 0
y = post(x)
d_post = post.backward(dout)
assert np.array_equal(d_post, dout * (x > 0))      # the ReLU after the addition masks the gradient
print(f"silent pre-activation block: the gradient passes unchanged; silent original block: "
      f"{np.mean(d_post == 0):.0%} of its entries set to zero by the ReLU after the addition")

# %% [markdown]
# Inside a real network the input of a block of the original ResNet is
# already the output of a ReLU ($x \ge 0$), so a silent block changes nothing
# forward; but in a trained network no branch is silent, and at every
# block the ReLU decides afresh which entries of the gradient the shortcut
# may carry. The next section measures the effect on whole networks.
#
# ## 2. The gradient at every block, at initialisation
#
# ResNet-110 (``models.resnet110``: 54 basic blocks, 18 per stage, option-A
# shortcuts) against the pre-activation ResNet-110 (``preact_resnet110``,
# the same depth and widths), on one batch of digits, at initialisation. A
# forward pass in train mode, the loss, and then the backward pass written
# out block by block (the chain rule by hand, as in lesson 6), recording
# $\lVert \partial L / \partial x_l \rVert$, the norm of the gradient that
# reaches the input of every block $l$. We divide by the norm at the output
# of the last block, so that 1 means "as large as where the head hands it
# to the blocks".

# %%
n = 3 if args.quick else 18                  # blocks per stage: ResNet-20 in the quick run, ResNet-110 in the full
batch_size = 8 if args.quick else 32
depth = 6 * n + 2
train, _, source = load_digits(args.quick, synthetic_sizes=(200, 50))
images = to_device((train.images[:batch_size].astype(np.float32) / 255 - train.mean[0]) / train.std[0])
labels = to_device(train.labels[:batch_size])
loss_fn = SoftmaxCrossEntropy()


def block_gradient_norms(model, pre_activation):
    """||dL/dx|| at the input of every block (input side first), over the norm at the last block's output."""
    model.train()
    loss_fn(model(images), labels)
    d = model.avgpool.backward(model.flatten.backward(model.fc.backward(loss_fn.backward())))
    if pre_activation:
        d = model.bn.backward(model.relu.backward(d))   # the final bn-relu of the pre-activation net
    at_output = float(np.linalg.norm(d))  # a number on the host, wherever d is
    norms = []
    for stage in (model.layer3, model.layer2, model.layer1):
        for block in reversed(list(stage)):
            d = block.backward(d)
            norms.append(float(np.linalg.norm(d)) / at_output)
    return np.array(norms[::-1])


backend.manual_seed(0)
original = CifarResNet(n, num_classes=10, in_channels=1)
backend.manual_seed(0)
preact = PreActResNet(PreActBasicBlock, n, num_classes=10, in_channels=1)
g_post = block_gradient_norms(original, pre_activation=False)
g_pre = block_gradient_norms(preact, pre_activation=True)
print(f"ResNet-{depth} ({source}, batch {batch_size}), ||dL/dx_l|| / ||dL/dx_L|| from the first block to the last:")
print(f"  original:       {g_post.min():.2f} .. {g_post.max():.2f}, first block {g_post[0]:.2f}")
print(f"  pre-activation: {g_pre.min():.2f} .. {g_pre.max():.2f}, first block {g_pre[0]:.2f}")
assert len(g_pre) == len(g_post) == 3 * n

# The derivation, measured: going down a stage of the pre-activation net, every identity block adds its
# branch's gradient to the one the identity path carries, so the norm only grows (a stage's first block, with
# the downsample, reads a map of another shape: its norm is not comparable), and no block gets less than the top.
for stage in range(3):
    identity_blocks = g_pre[stage * n + 1:(stage + 1) * n]
    assert np.all(np.diff(identity_blocks) <= 0), (stage, identity_blocks)
assert g_pre.min() > 0.9, g_pre


def block_input_spreads(model):
    """The standard deviation of the activations entering each block (train mode, the same batch)."""
    h = model.conv1(images) if hasattr(model, "bn") else model.relu(model.bn1(model.conv1(images)))
    spreads = []
    for stage in (model.layer1, model.layer2, model.layer3):
        for block in stage:
            spreads.append(float(h.std()))
            h = block(h)
    return np.array(spreads)


s_pre, s_post = block_input_spreads(preact), block_input_spreads(original)
print(f"spread of the activations entering the blocks of layer1: pre-activation {s_pre[0]:.2f} -> {s_pre[n - 1]:.2f}, "
      f"original {s_post[0]:.2f} -> {s_post[n - 1]:.2f}")

fig, ax = plt.subplots(figsize=(8, 4.3))
blocks = np.arange(1, 3 * n + 1)
ax.plot(blocks, g_post, "o-", ms=3, label=f"original ResNet-{depth} (relu after the addition)")
ax.plot(blocks, g_pre, "s-", ms=3, label=f"pre-activation ResNet-{depth} (nothing after the addition)")
for boundary in (n + 0.5, 2 * n + 0.5):
    ax.axvline(boundary, color="gray", lw=0.8, ls=":")
ax.axhline(1, color="black", lw=0.8)
ax.set_yscale("log")
ax.set(xlabel="block (1 = next to the input; dotted: a new stage)",
       ylabel=r"$\|\partial L / \partial x_l\| \,/\, \|\partial L / \partial x_L\|$  (log scale)",
       title=f"Gradient reaching each block at initialisation ({source}, batch {batch_size})")
ax.grid(alpha=0.3, which="both")
ax.legend()
fig.tight_layout()
fig.savefig(out_dir / "gradient_per_block.png", dpi=100)
plt.close(fig)
print(f"figure: {out_dir / 'gradient_per_block.png'}")

# %% [markdown]
# Read the figure from right to left, the direction of the backward pass.
# Within each stage of the pre-activation network the gradient only
# **grows** on its way to the input: each block adds its branch's
# contribution to the "1" that carries $\partial L / \partial x_L$ through untouched, and no
# block receives less than the top (the checks above; the first block of a
# stage reads a map of twice the size and half the channels, whose norm
# does not compare). How much each block
# adds depends on the batch norm at the entry of its branch, which divides
# by the spread of the activations it sees. With nothing after the
# addition, $x_l = x_0 + \sum_{i<l} \mathcal{F}(x_i, W_i)$, each branch about unit size after its
# batch norm, so the spread grows along a stage (printed above): it is
# smallest after the stem and after each downsample, and there the branches
# add the most — the peaks at the start of each stage.
#
# The original network's gradient also grows towards the input, less: with
# batch norm it does not vanish at initialisation either (lesson 9 found
# the same). What it lacks is the guarantee: the ReLU after every addition
# may mask what the identity path carries, and its branches are what keep
# the gradient up. The paper's evidence is in training: at 1001 layers the
# original ResNet trains worse than at 164, the pre-activation ResNet-1001
# better (CIFAR-10 error 7.61 % against 4.92 %).

# %% [markdown]
# ## 3. What a grouped convolution costs
#
# A convolution with ``groups=G`` splits its $C$ inputs and $F$ outputs into
# $G$ independent convolutions of $C/G \to F/G$ channels: the weight is
# (F, C/G, KH, KW), $G$ times smaller, and so is the number of multiply-adds.
# ``models.flops`` counts them from the layer shapes (the papers' "FLOPs":
# multiply-adds of the convolutions and linear layers).

# %%
for groups in (1, 4, 32, 128):
    conv = Conv2d(128, 128, 3, padding=1, groups=groups, bias=False)
    macs = flops(conv, (1, 128, 56, 56))
    print(f"Conv2d(128, 128, 3, groups={groups:>3}): weight {tuple(conv.weight.shape)}, {count(conv):>7,} parameters, "
          f"{macs / 1e6:6.1f}M multiply-adds at 56x56")
    assert count(conv) == 128 * 128 * 9 // groups and macs == 56 * 56 * count(conv)

# %% [markdown]
# ResNeXt's block is torchvision's ``Bottleneck(inplanes, planes, groups=C,
# base_width=d)``: its 3x3 convolution is ``width = int(planes * d / 64) * C``
# channels wide, in $C$ groups. The paper's Table 2 keeps the cost of a
# ResNet-50 block (256 -> 64 -> 64 -> 256, about 70k weights) and trades
# groups for width: for the 256-channel block (planes 64, width $dC$),
#
# $$
# \text{weights} = \underbrace{256 \cdot dC}_{\text{1x1 reduce}}
# + \underbrace{3 \cdot 3 \cdot d \cdot dC}_{\text{grouped 3x3}}
# + \underbrace{dC \cdot 256}_{\text{1x1 expand}}
# $$
#
# so more groups at the same cost allow a wider 3x3 in all ($dC$ grows).
# A wide ResNet keeps $C = 1$ and doubles $d$ instead: twice the width, and
# three times the weights (its 3x3 alone grows fourfold).

# %%
convs = lambda block: sum(m.weight.size for m in block.modules() if isinstance(m, Conv2d))  # noqa: E731
reference = convs(Bottleneck(256, 64))
print(f"ResNet-50 block 256-64-256: {reference:,} convolution weights")
for C, d in [(1, 64), (2, 40), (4, 24), (8, 14), (32, 4)]:
    block = Bottleneck(256, 64, groups=C, base_width=d)
    print(f"  C = {C:>2}, d = {d:>2}: 3x3 width {block.width:>3} in {C:>2} group(s), {convs(block):,} weights")
    assert abs(convs(block) / reference - 1) < 0.03        # the same budget ...
    assert block.width == C * d                            # ... spent on a wider 3x3
wide = Bottleneck(256, 64, groups=1, base_width=128)
print(f"  wide (C = 1, d = 128): 3x3 width {wide.width}, {convs(wide):,} weights "
      f"({convs(wide) / reference:.1f}x the ResNet-50 block)")

# %% [markdown]
# ## 4. Deep and thin, wide, or grouped?
#
# The three papers reach similar CIFAR-10 errors by different routes.
# Below, each network's parameters and multiply-adds on a 32x32 image
# (counted here) beside the CIFAR-10 error its paper reports (standard
# augmentation, *not* reproduced here: that takes GPU days). ResNet-110
# and ResNet-164 are deep and thin (1.7M parameters, 0.25G multiply-adds);
# WRN-16-4 does more work per image with a tenth of their depth; the
# pre-activation ResNet-1001 buys its error with depth alone. WRN-28-10 and
# ResNeXt-29 8x64d have about the same budget (35M parameters, 5.3G
# multiply-adds), one spent on width, the other on cardinality, and the
# grouped one reports the lower error. (The quick run counts the small
# networks only.)

# %%
# name -> (constructor, layers, CIFAR-10 error % reported: He et al. 2015 Table 6; He et al. 2016 Table 3;
# Xie et al. 2017 Table 7, which also lists WRN-28-10 from its paper; None where we have no figure to quote)
BUDGETS = {
    "ResNet-110": (resnet110, 110, 6.43),
    "pre-act ResNet-110": (preact_resnet110, 110, 6.37),
    "pre-act ResNet-164": (preact_resnet164, 164, 5.46),
    "WRN-16-4": (wrn16_4, 16, None),
}
if not args.quick:
    BUDGETS.update({
        "pre-act ResNet-1001": (preact_resnet1001, 1001, 4.92),
        "WRN-28-10": (wrn28_10, 28, 4.17),
        "ResNeXt-29 8x64d": (resnext29_8x64d, 29, 3.65),
        "ResNeXt-29 16x64d": (resnext29_16x64d, 29, 3.58),
    })
table = {}
for name, (build, layers, error) in BUDGETS.items():
    backend.manual_seed(0)
    model = build()
    table[name] = (layers, count(model), flops(model, (1, 3, 32, 32)), error)
    del model
print(f"{'network':<22} {'layers':>6} {'parameters':>12} {'multiply-adds':>14} {'CIFAR-10 error (paper)':>24}")
for name, (layers, params, macs, error) in table.items():
    print(f"{name:<22} {layers:>6} {params / 1e6:>11.2f}M {macs / 1e9:>13.2f}G "
          f"{'-' if error is None else f'{error:.2f} %':>24}")
assert table["pre-act ResNet-164"][1] < table["pre-act ResNet-110"][1] * 1.01   # deeper, not bigger
assert table["WRN-16-4"][2] > table["pre-act ResNet-164"][2]                      # fewer layers, more work each
if not args.quick:
    wrn, rx = table["WRN-28-10"], table["ResNeXt-29 8x64d"]
    assert abs(wrn[1] / rx[1] - 1) < 0.1 and abs(wrn[2] / rx[2] - 1) < 0.1      # the same budget ...
    assert rx[3] < wrn[3]                                                      # ... cardinality did better

colours = {"ResNet": "C0", "pre-act": "C1", "WRN": "C2", "ResNeXt": "C3"}
names = list(table)[::-1]  # the first network at the top
bar_colours = [next(c for key, c in colours.items() if name.startswith(key)) for name in names]
columns = [("layers", [table[m][0] for m in names], "{:,.0f}", True),
           ("parameters (millions)", [table[m][1] / 1e6 for m in names], "{:.2f}", True),
           ("multiply-adds per 32x32 image (billions)", [table[m][2] / 1e9 for m in names], "{:.2f}", True),
           ("CIFAR-10 error reported in the paper (%)", [table[m][3] or 0 for m in names], "{:.2f}", False)]
fig, axes = plt.subplots(1, 4, figsize=(15, 0.45 * len(names) + 1.6), sharey=True)
for ax, (title, values, fmt, log) in zip(axes, columns):
    bars = ax.barh(names, values, color=bar_colours)
    ax.bar_label(bars, labels=[fmt.format(v) if v else "-" for v in values], padding=2, fontsize=8)
    if log:
        ax.set_xscale("log")
    ax.set_title(title, fontsize=10)
    ax.margins(x=0.3)
    ax.grid(axis="x", alpha=0.3, which="both")
fig.suptitle("Deep and thin (ResNet, pre-activation), wide (WRN) or grouped (ResNeXt): depth, size, work, error")
fig.tight_layout()
fig.savefig(out_dir / "budgets.png", dpi=100)
plt.close(fig)
print(f"figure: {out_dir / 'budgets.png'}")

# %% [markdown]
# On ImageNet the same comparison is torchvision's: ResNeXt-50 32x4d costs
# about what ResNet-50 costs (25.0M parameters against 25.6M, 4.2G
# multiply-adds against 4.1G) and is more accurate (top-1 error 22.2 %
# against 23.9 % in the paper's Table 3); Wide ResNet-50-2 buys its
# accuracy with 2.8 times the multiply-adds. (Counted in the full run.)

# %%
if not args.quick:
    for build in (resnet50, resnext50_32x4d, wide_resnet50_2):
        model = build()
        print(f"{model.arch:<18} {count(model) / 1e6:6.1f}M parameters, "
              f"{flops(model, (1, 3, 224, 224)) / 1e9:5.2f}G multiply-adds at 224x224")
        del model

# %% [markdown]
# ## 5. On real data: a short run of each family
#
# ``benchmarks/variants_mnist.py`` trains four networks of about ResNet-20's
# size (0.25-0.30M parameters, 31-34M multiply-adds per 28x28 image) for one
# epoch on the same 10,000 random MNIST training images, in the same order,
# with the same recipe (SGD, momentum 0.9, batch 64, warm-up then cosine, no
# augmentation), and tests them on all 10,000 test images. One thread of a
# shared 2-core machine; CPU time of the process, wall time in brackets
# (``benchmarks/results/variants_mnist.md``):
#
# | network | parameters | multiply-adds | train loss | test accuracy | training time |
# | --- | ---: | ---: | ---: | ---: | ---: |
# | ResNet-20 | 269,434 | 30.8M | 0.678 | 96.83 % | 40 s (102 s) |
# | pre-activation ResNet-20 | 271,994 | 31.0M | 0.958 | 95.22 % | 37 s (63 s) |
# | WRN-10-2 | 303,418 | 33.8M | 0.973 | 93.91 % | 38 s (73 s) |
# | ResNeXt-20 8x16d, 16-channel stem | 247,610 | 30.8M | 0.840 | 95.25 % | 62 s (92 s) |
#
# (``cifar_resnext(20, 8, 16, base_planes=16)``: 9n + 2 = 20 layers, 8
# groups, 16 channels per group per 64 planes, stages of 16/32/64 planes.)
# One seed and one epoch on a sixth of MNIST say that all four learn, and at
# what price on a CPU, not which is best: that needs several seeds and full
# training, and the pre-activation and wide networks were made for depths
# and datasets where the original ResNet struggles.
# The price is clear, though: at the same multiply-adds the ResNeXt took
# 1.6 times the CPU time, because its grouped convolutions are many small
# matrix products (``benchmarks/results/resnext.md`` measures the same on
# ResNeXt-50).

# %% [markdown]
# ## What to remember
#
# * **Pre-activation**: with nothing after the addition,
#   $x_L = x_l + \sum_{i=l}^{L-1} \mathcal{F}(x_i, W_i)$ and
#   $\partial L / \partial x_l = \partial L / \partial x_L \, (1 + \dots)$: the
#   gradient reaches every block unchanged through the shortcuts alone.
#   That, not the parameter count, is what let a 1001-layer network train.
# * **Width**: a few wide blocks do as well as many thin ones, and wide
#   layers suit a GPU (one large matrix product instead of many small ones
#   one after the other).
# * **Cardinality**: ``groups=C`` divides a convolution's cost by $C$; ResNeXt
#   spends the saving on a wider 3x3 and, at the same budget as a wide
#   ResNet, does better.
# * On a CPU, and in this library, a grouped convolution runs as C small
#   matrix products: ``benchmarks/bench_resnext.py`` times ResNeXt-50
#   against ResNet-50, here and in PyTorch.

# %%
print(f"lesson done in {time.perf_counter() - start_time:.0f} s")
