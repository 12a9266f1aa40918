# %% [markdown]
# # Lesson 5 — ReLU and the residual Add: how the gradient splits and sums
#
# Two of the simplest layers decide how gradients travel through a ResNet.
#
# * **ReLU**, $\text{out} = \max(x, 0)$, lets the gradient through where $x > 0$ and
#   blocks it elsewhere: $\frac{\partial L}{\partial x} = \text{dout} \cdot [x > 0]$.
# * **Add**, $\text{out} = a + b$, is where a block's shortcut joins its residual
#   branch. Its derivative with respect to each input is 1, so BOTH inputs
#   receive the WHOLE upstream gradient:
#   $\frac{\partial L}{\partial a} = \frac{\partial L}{\partial b} = \text{dout}$.
#
# The second half of the story is the fork *before* the block: the input x
# feeds both the branch F and the shortcut, so its gradient is the SUM of
# what comes back along the two paths,
#
# $$
# y = F(x) + x \quad\Longrightarrow\quad
# \frac{\partial L}{\partial x} = \left( \frac{\partial F}{\partial x} \right)^{\!\top} \text{dout} + \text{dout}
# $$
#
# The $+\,\text{dout}$ term reaches $x$ untouched, however many layers $F$ has: that is
# why a deep ResNet keeps its gradients alive. In this lesson we take one
# skip connection apart, then watch the gradient travel through 20 layers
# with and without skips.
#
# Run: ``python lessons/05_relu_and_add.py`` (add ``--quick`` for a fast run).

# %%
import argparse
import math
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from resnet_np import Module, backend  # noqa: E402
from resnet_np.backend import to_device  # noqa: E402
from resnet_np.gradcheck import check_module  # noqa: E402
from resnet_np.layers import Add, Linear, ReLU, Sequential  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true", help="fewer layers, for the test suite")
parser.add_argument("--out", default="out/lessons/05_relu_and_add", help="folder for the figures")
args, _ = parser.parse_known_args()  # known args only: a notebook kernel passes its own
out_dir = pathlib.Path(args.out)
out_dir.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
backend.manual_seed(0)  # the layers' initial weights

# %% [markdown]
# ## 1. ReLU passes the gradient where its input was positive
#
# The whole layer is two lines (``resnet_np/layers/relu.py``, the plain path;
# ``resnet_np/fast/relu.py`` gives the same numbers faster):

# %%
import inspect  # noqa: E402

from resnet_np.layers.relu import relu as relu_forward  # noqa: E402
from resnet_np.layers.relu import relu_backward  # noqa: E402

print(inspect.getsource(relu_forward))
print(inspect.getsource(relu_backward))

relu = ReLU()
x = rng.standard_normal((4, 8)).astype(np.float32)
dout = rng.standard_normal(x.shape).astype(np.float32)
relu(x)
dx = relu.backward(dout)
blocked = float((dx == 0).mean())
print(f"ReLU: {blocked:.0%} of the gradient entries are blocked (those whose input was <= 0)")
assert np.array_equal(dx, dout * (x > 0))
print(check_module(ReLU(), x))

# %% [markdown]
# ## 2. Add hands the whole gradient to both inputs

# %%
add = Add()
a, b = rng.standard_normal((2, 4, 8)).astype(np.float32)
out = add(a, b)
da, db = add.backward(dout)
assert np.array_equal(out, a + b)
assert np.array_equal(da, dout) and np.array_equal(db, dout)
print("Add: da == dout and db == dout (nothing is split in halves: each input gets all of it)")
print(check_module(Add(), a, b))

# %% [markdown]
# ## 3. One skip connection, taken apart
#
# A residual unit in the style of the BasicBlock, with fully connected layers
# to keep it small: $y = \operatorname{relu}(F(x) + x)$ with $F$ = Linear, ReLU, Linear.
# Its backward pass is the chain rule read from the end; the two lines to
# watch are the split at the Add and the sum at the fork. (The norm of the
# sum is not the sum of the norms: the two gradients are vectors, and at
# initialisation the one through F is small and partly cancels.)

# %%
class ResidualUnit(Module):
    """y = relu(F(x) + x), F = Linear -> ReLU -> Linear (``residual=False``: y = relu(F(x)))."""

    def __init__(self, width, residual=True):
        super().__init__()
        self.residual = residual
        self.branch = Sequential(Linear(width, width), ReLU(), Linear(width, width))
        self.add = Add()
        self.relu = ReLU()
        self.parts = {}  # the gradients of the last backward pass, for this lesson's figure

    def forward(self, x):
        out = self.branch(x)
        if self.residual:
            out = self.add(out, x)          # the shortcut joins the branch
        return self.relu(out)

    def backward(self, dout):
        d = self.relu.backward(dout)
        if not self.residual:
            return self.branch.backward(d)
        d_branch, d_shortcut = self.add.backward(d)   # SPLIT: both get all of d
        dx_branch = self.branch.backward(d_branch)    # back through F
        dx = dx_branch + d_shortcut                   # SUM: x fed both paths
        self.parts = {"dout": dout, "after ReLU": d, "dx through F": dx_branch, "dx through shortcut": d_shortcut,
                      "dx = sum": dx}
        return dx


unit = ResidualUnit(16)
# The Linear layers live on the backend (NumPy, or CuPy with RESNET_NP_BACKEND=cupy): their inputs go there too.
x = to_device(rng.standard_normal((8, 16)).astype(np.float32))
y = unit(x)
dout = to_device(rng.standard_normal(y.shape).astype(np.float32))
unit.zero_grad()
dx = unit.backward(dout)
parts = unit.parts
assert np.array_equal(parts["dx through shortcut"], parts["after ReLU"])   # the shortcut does not change it
assert np.allclose(dx, parts["dx through F"] + parts["dx through shortcut"])
for name, g in parts.items():
    print(f"  |{name}|{'':<{22 - len(name)}} = {np.linalg.norm(g):7.3f}")
report = check_module(unit, x[:4])
print(report)
assert report.ok

# %% [markdown]
# ## 4. Twenty layers deep: where does the gradient go?
#
# Now stack L units and look at the norm of the gradient that reaches the
# input of each one, for a random upstream gradient at the top:
#
# * **plain, default init** — $y = \operatorname{relu}(\operatorname{Linear}(x))$ with PyTorch's default
#   ``Linear`` initialisation, $U(-1/\sqrt{n_{\text{in}}},\, 1/\sqrt{n_{\text{in}}})$ ($n_{\text{in}}$ the
#   fan-in): each layer
#   scales the gradient by about $\sqrt{1/6}$, so it vanishes exponentially;
# * **plain, He init** — weights $\mathcal{N}(0, 2/n_{\text{in}})$: the factor is about 1 at
#   initialisation (this is what He initialisation is for);
# * **residual, default init** — $y = x + \operatorname{relu}(\operatorname{Linear}(x))$: the $+\,x$ adds
#   the upstream gradient back at every layer, so it cannot vanish.

# %%
class Unit(Module):
    """One layer of the deep chain: relu(Linear(x)), plus x when residual."""

    def __init__(self, width, residual):
        super().__init__()
        self.residual = residual
        self.linear = Linear(width, width)
        self.relu = ReLU()
        self.add = Add()

    def forward(self, x):
        out = self.relu(self.linear(x))
        return self.add(out, x) if self.residual else out

    def backward(self, dout):
        if self.residual:
            d_branch, d_shortcut = self.add.backward(dout)
            return self.linear.backward(self.relu.backward(d_branch)) + d_shortcut
        return self.linear.backward(self.relu.backward(dout))


depth, width = (12, 64) if args.quick else (20, 64)
chains = {}
for name, residual, he in [("plain, default init", False, False), ("plain, He init", False, True),
                           ("residual, default init", True, False)]:
    units = [Unit(width, residual) for _ in range(depth)]
    if he:
        for u in units:
            u.linear.weight.data = to_device((rng.standard_normal((width, width)) * math.sqrt(2 / width))
                                             .astype(np.float32))
    chains[name] = units

x0 = to_device(rng.standard_normal((128, width)).astype(np.float32))
top_grad = to_device(rng.standard_normal((128, width)).astype(np.float32))
grad_norms = {}
for name, units in chains.items():
    h = x0
    for u in units:
        h = u(h)
    d = top_grad
    norms = []
    for u in reversed(units):           # backward, remembering the gradient at each unit's input
        d = u.backward(d)
        norms.append(float(np.linalg.norm(d)))
    grad_norms[name] = np.array(norms[::-1])  # index 0 = the first unit's input
    print(f"{name:>24}: |gradient| at the top {np.linalg.norm(top_grad):8.1f}, at the input of unit 1 "
          f"{grad_norms[name][0]:.2e}")

top = float(np.linalg.norm(top_grad))
assert grad_norms["plain, default init"][0] < 1e-4 * top          # vanished
assert 0.05 * top < grad_norms["plain, He init"][0] < 20 * top     # kept, by careful init
assert grad_norms["residual, default init"][0] > top               # kept (and grown), by the skips
assert np.all(grad_norms["residual, default init"] > 0.5 * top)    # at every unit

fig, (ax_bar, ax_depth) = plt.subplots(1, 2, figsize=(12, 4.3))
names = list(parts)
ax_bar.bar(range(len(names)), [float(np.linalg.norm(parts[n])) for n in names],
           color=["gray", "gray", "C0", "C1", "C2"])
ax_bar.set_xticks(range(len(names)), names, rotation=15)
ax_bar.set(ylabel="gradient norm", title="one unit y = relu(F(x) + x): split at Add, sum at the fork")
ax_bar.grid(axis="y", alpha=0.3)
for name, norms in grad_norms.items():
    ax_depth.semilogy(range(1, depth + 1), norms, "o-", label=name)
ax_depth.axhline(top, color="k", linestyle=":", label="upstream gradient at the top")
ax_depth.set_xticks(range(1, depth + 1))
ax_depth.set(xlabel="unit (1 = nearest the input)", ylabel="norm of dL/d(unit input)",
             title=f"gradient through {depth} layers of width {width}")
ax_depth.grid(alpha=0.3, which="both")
ax_depth.legend(fontsize=8)
fig.tight_layout()
fig.savefig(out_dir / "gradient_at_skip_connections.png", dpi=100)
print(f"figure: {out_dir / 'gradient_at_skip_connections.png'}")

# %% [markdown]
# ## What to remember
#
# * Add copies the upstream gradient to both inputs; a fork sums the
#   gradients of its paths. Together:
#   $\frac{\partial L}{\partial x} = (\partial F / \partial x)^{\top} \text{dout} + \text{dout}$.
# * Without skips the gradient is multiplied by one Jacobian per layer and
#   vanishes (or explodes) exponentially unless the initialisation is just
#   right; with skips there is always a direct path. Batch normalisation
#   changes this picture again — lesson 9 measures it in real ResNets.
