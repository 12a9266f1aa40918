# %% [markdown]
# # Lesson 6 — the BasicBlock: shapes traced, the whole block gradient-checked
#
# The building block of ResNet-18/34 and of the CIFAR ResNets (He et al.,
# 2016, Fig. 2):
#
# $$
# \text{out} = \operatorname{relu}\Big( \operatorname{bn}_2\big(\operatorname{conv}_2(
#   \operatorname{relu}(\operatorname{bn}_1(\operatorname{conv}_1(x)))\big)\big)
#   + \operatorname{shortcut}(x) \Big)
# $$
#
# Two 3x3 convolutions, each followed by batch norm, and a shortcut that
# adds the block's input to the branch's output. The addition needs both to
# have the same shape. When the block keeps the resolution and the width,
# the shortcut is x itself. When its first convolution has stride 2 and
# more output channels (the first block of a stage), x must be brought to
# the new shape: ``downsample`` — a 1x1 convolution with stride 2 and a
# batch norm in torchvision (option B of the paper), or the parameter-free
# ``ShortcutA`` (subsample, pad with zero channels) of the CIFAR networks.
#
# This lesson follows a batch through both kinds of block, layer by layer,
# and then checks the hand-written backward pass of the whole block —
# the split at the Add and the sum at the fork included — against finite
# differences.
#
# Run: ``python lessons/06_basic_block.py`` (add ``--quick`` for a fast run).

# %%
import argparse
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from resnet_np import backend  # noqa: E402
from resnet_np.backend import to_device  # noqa: E402
from resnet_np.gradcheck import check_module  # noqa: E402
from resnet_np.layers import BatchNorm2d, Conv2d, Sequential  # noqa: E402
from resnet_np.models import BasicBlock, ShortcutA, summary  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true", help="smaller checks, for the test suite")
parser.add_argument("--out", default="out/lessons/06_basic_block", help="folder for the figures")
args, _ = parser.parse_known_args()  # known args only: a notebook kernel passes its own
out_dir = pathlib.Path(args.out)
out_dir.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
backend.manual_seed(0)

# %% [markdown]
# ## 1. A block that keeps the shape
#
# ``summary`` runs one forward pass and lists every layer with the shape of
# its output and its number of parameters. A 3x3 convolution from $C$ to $C$
# channels without bias has $9C^2$ weights; a batch norm has $2C$ (weight and
# bias; the running statistics are buffers, not parameters).

# %%
N, C, H = 2, 16, 8
block = BasicBlock(C, C)
summary(block, (N, C, H, H))
# The block lives on the backend (NumPy, or CuPy with RESNET_NP_BACKEND=cupy): its input goes there too.
x = to_device(rng.standard_normal((N, C, H, H)).astype(np.float32))
y = block(x)
trace_identity = [(name, type(m).__name__, tuple(m.output_shape)) for name, m in block.named_modules()
                  if name and m.output_shape is not None]
assert y.shape == x.shape
assert block.conv1.output_shape == (N, C, H, H) and block.add.output_shape == (N, C, H, H)
n_params = sum(p.size for p in block.parameters())
assert n_params == 2 * (9 * C * C) + 2 * (2 * C), n_params
print(f"BasicBlock({C}, {C}): {tuple(x.shape)} -> {tuple(y.shape)}, "
      f"{n_params:,} parameters = 2 x 9 x {C} x {C} + 4 x {C}")

# %% [markdown]
# ## 2. A block that halves the resolution and doubles the width
#
# ``conv1`` has stride 2 and $2C$ output channels, so the branch gives
# $(N, 2C, H/2, W/2)$. The identity $x$ is still $(N, C, H, W)$: without a
# ``downsample`` the Add refuses the two shapes, and it says so.

# %%
try:
    BasicBlock(C, 2 * C, stride=2)(x)
except ValueError as e:
    print(f"without downsample: ValueError: {e}")
    assert "same shape" in str(e)
else:
    raise AssertionError("the Add should have refused two different shapes")

downsample = Sequential(Conv2d(C, 2 * C, 1, stride=2, bias=False), BatchNorm2d(2 * C))
block_b = BasicBlock(C, 2 * C, stride=2, downsample=downsample)
summary(block_b, (N, C, H, H))
y_b = block_b(x)
trace_down = [(name, type(m).__name__, tuple(m.output_shape)) for name, m in block_b.named_modules()
              if name and m.output_shape is not None]
assert y_b.shape == (N, 2 * C, H // 2, H // 2)
assert block_b.conv1.output_shape == block_b.downsample.output_shape == (N, 2 * C, H // 2, H // 2)
n_params_b = sum(p.size for p in block_b.parameters())
assert n_params_b == 9 * C * 2 * C + 9 * 2 * C * 2 * C + 2 * C * C + 3 * (2 * 2 * C)
print(f"BasicBlock({C}, {2 * C}, stride=2, 1x1 projection): {tuple(x.shape)} -> {tuple(y_b.shape)}, "
      f"{n_params_b:,} parameters ({2 * C * C} of them in the projection)")

block_a = BasicBlock(C, 2 * C, stride=2, downsample=ShortcutA(C, 2 * C, 2))
y_a = block_a(x)
assert y_a.shape == y_b.shape
assert sum(p.size for p in block_a.parameters()) == n_params_b - (2 * C * C + 2 * 2 * C)
shortcut_a = block_a.downsample(x)
print(f"option A shortcut: subsample x[:, :, ::2, ::2] and pad channels: {tuple(shortcut_a.shape)}; "
      f"channels {C // 2}..{C // 2 + C - 1} hold x, the rest are zero")
assert np.array_equal(shortcut_a[:, C // 2:C // 2 + C], x[:, :, ::2, ::2])
assert not shortcut_a[:, :C // 2].any() and not shortcut_a[:, C // 2 + C:].any()

# %% [markdown]
# The two traces, drawn: the branch on the left, the shortcut on the right,
# every layer with the shape of its output.

# %%
def draw_block(ax, trace, x_shape, title):
    """Boxes for the branch and the shortcut of a traced BasicBlock, with output shapes."""
    shapes = {name: shape for name, _, shape in trace}
    types = {name: kind for name, kind, _ in trace}
    branch = ["conv1", "bn1", "relu1", "conv2", "bn2"]
    shortcut = [n for n in shapes if n.startswith("downsample.")] or (["downsample"] if "downsample" in shapes else [])
    ys = np.linspace(0.86, 0.26, len(branch))
    box = dict(boxstyle="round,pad=0.3", fc="#dbe9f6", ec="C0")
    ax.text(0.5, 0.97, f"x {x_shape}", ha="center", va="center", fontsize=9, bbox=dict(boxstyle="round", fc="w"))
    for name, yy in zip(branch, ys):
        ax.text(0.3, yy, f"{name} ({types[name]})\n-> {shapes[name]}", ha="center", va="center", fontsize=8, bbox=box)
    for y0, y1 in zip(ys[:-1], ys[1:]):
        ax.annotate("", (0.3, y1 + 0.04), (0.3, y0 - 0.04), arrowprops=dict(arrowstyle="->"))
    ax.annotate("", (0.3, ys[0] + 0.04), (0.5, 0.95), arrowprops=dict(arrowstyle="->"))
    if shortcut:
        sy = np.linspace(0.7, 0.45, len(shortcut)) if len(shortcut) > 1 else [0.58]
        for name, yy in zip(shortcut, sy):
            ax.text(0.78, yy, f"{name} ({types[name]})\n-> {shapes[name]}", ha="center", va="center", fontsize=8,
                    bbox=dict(boxstyle="round,pad=0.3", fc="#fde0c5", ec="C1"))
        for y0, y1 in zip(sy[:-1], sy[1:]):
            ax.annotate("", (0.78, y1 + 0.04), (0.78, y0 - 0.04), arrowprops=dict(arrowstyle="->", color="C1"))
        ax.annotate("", (0.78, sy[0] + 0.04), (0.5, 0.95), arrowprops=dict(arrowstyle="->", color="C1"))
        ax.annotate("", (0.36, 0.12), (0.78, sy[-1] - 0.04), arrowprops=dict(arrowstyle="->", color="C1"))
    else:
        ax.annotate("", (0.36, 0.12), (0.5, 0.95), arrowprops=dict(arrowstyle="->", color="C1",
                                                                    connectionstyle="arc3,rad=-0.35"))
        ax.text(0.63, 0.55, "identity\n(x itself)", ha="left", color="C1", fontsize=9)
    ax.annotate("", (0.3, 0.14), (0.3, ys[-1] - 0.04), arrowprops=dict(arrowstyle="->"))
    ax.text(0.3, 0.1, f"add (+) -> {shapes['add']}", ha="center", va="center", fontsize=8,
            bbox=dict(boxstyle="round", fc="#d5f0d5", ec="C2"))
    ax.annotate("", (0.3, 0.045), (0.3, 0.08), arrowprops=dict(arrowstyle="->"))
    ax.text(0.3, 0.02, f"relu2 -> {shapes['relu2']}", ha="center", va="center", fontsize=8, bbox=box)
    ax.set_title(title, fontsize=10)
    ax.axis("off")


fig, axes = plt.subplots(1, 2, figsize=(12, 6.5))
draw_block(axes[0], trace_identity, tuple(x.shape), f"BasicBlock({C}, {C}): identity shortcut")
draw_block(axes[1], trace_down, tuple(x.shape), f"BasicBlock({C}, {2 * C}, stride=2): 1x1 projection shortcut")
fig.suptitle("a batch traced through two BasicBlocks (output shape of every layer, (N, C, H, W))")
fig.tight_layout()
fig.savefig(out_dir / "basic_block_shapes.png", dpi=100)
print(f"figure: {out_dir / 'basic_block_shapes.png'}")

# %% [markdown]
# ## 3. The whole block, gradient-checked
#
# ``BasicBlock.backward`` is the chain rule through eight layers, with the
# gradient copied at the Add and summed at the fork. ``check_module``
# compares it with central differences, in float64, with a random upstream
# gradient, for the input and every parameter; ReLU kinks that a step would
# cross are avoided by redrawing the input. Small shapes keep it quick.

# %%
c, s = (2, 4) if args.quick else (4, 6)
variants = {
    "identity": (BasicBlock(c, c), (2, c, s, s)),
    "stride 2, 1x1 projection (B)": (
        BasicBlock(c, 2 * c, stride=2, downsample=Sequential(Conv2d(c, 2 * c, 1, stride=2, bias=False),
                                                             BatchNorm2d(2 * c))), (2, c, s, s)),
    "stride 2, option A": (BasicBlock(c, 2 * c, stride=2, downsample=ShortcutA(c, 2 * c, 2)), (2, c, s, s)),
    "plain (no shortcut)": (BasicBlock(c, c, residual=False), (2, c, s, s)),
}
reports = {}
for name, (blk, shape) in variants.items():
    report = check_module(blk, to_device(rng.standard_normal(shape)))
    reports[name] = report
    print(f"{name}: {report}")
    assert report.ok

# A block that forgets the shortcut's gradient (returns only the branch's) is caught:
class ForgetfulBlock(BasicBlock):
    def backward(self, dout):
        d_branch, _ = self.add.backward(self.relu2.backward(dout))
        d = self.bn2.backward(d_branch)
        d = self.relu1.backward(self.conv2.backward(d))
        return self.conv1.backward(self.bn1.backward(d))   # the "+ d_shortcut" is missing


bad = check_module(ForgetfulBlock(c, c), to_device(rng.standard_normal((2, c, s, s))), raise_on_failure=False)
print(f"a backward pass without the shortcut's gradient: worst error {bad.worst:.1e} -> "
      f"{'caught' if not bad.ok else 'MISSED'}")
assert not bad.ok and bad.failures()[0].name == "input"

fig, ax = plt.subplots(figsize=(10, 4.5))
offset = 0
for k, (name, report) in enumerate(reports.items()):
    errs = [r.error for r in report.results]
    ax.bar(np.arange(offset, offset + len(errs)), np.maximum(errs, 1e-16), color=f"C{k}", label=name)
    offset += len(errs) + 1
ax.axhline(reports["identity"].tol, color="k", linestyle="--", label="tolerance 1e-7")
ax.axhline(bad.worst, color="m", linestyle="-.", label="forgetting the shortcut's gradient")
ax.set_yscale("log")
ax.set(xlabel="checked tensor (input, then each parameter)", ylabel="relative error vs finite differences",
       title="BasicBlock backward: every tensor agrees to ~1e-9 in float64")
ax.legend(fontsize=8, loc="center right")
ax.grid(axis="y", alpha=0.3)
fig.tight_layout()
fig.savefig(out_dir / "basic_block_gradcheck.png", dpi=100)
print(f"figure: {out_dir / 'basic_block_gradcheck.png'}")

# %% [markdown]
# ## What to remember
#
# * The Add forces the branch and the shortcut to have the same shape; the
#   first block of each stage brings x there with ``downsample``.
# * The backward pass must add the shortcut's gradient to the branch's: a
#   block that forgets it still runs, still trains a little, and is wrong.
