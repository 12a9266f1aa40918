# %% [markdown]
# # Lesson 3 — the convolution's backward pass, and col2im
#
# A convolution layer computes $\text{out} = W_{\text{mat}}\, \text{im2col}(x)$. Training needs
# the gradients of a loss $L$ with respect to the weights and to the input.
# With $\text{dout} = \partial L / \partial\, \text{out}$, matrix calculus gives them in two lines
# (``dW_mat`` and ``dcols`` in the code):
#
# $$
# \begin{aligned}
# \frac{\partial L}{\partial W_{\text{mat}}} &= \text{dout}\; \text{cols}^{\top}
#   && \text{(how much each weight contributed)} \\
# \frac{\partial L}{\partial\, \text{cols}} &= W_{\text{mat}}^{\top}\; \text{dout}
#   && \text{(how much each copied pixel contributed)}
# \end{aligned}
# $$
#
# ``dcols`` has one entry per COPY of a pixel: im2col copied a pixel into
# every window that covers it. The pixel's gradient is the SUM over its
# copies. That sum is col2im. In this lesson we compute it, look at how many
# copies each pixel has, and prove the whole backward pass right with
# finite differences.
#
# Run: ``python lessons/03_conv_backward.py`` (add ``--quick`` for a fast run).

# %%
import argparse
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from resnet_np.backend import get_array_module, to_device  # noqa: E402
from resnet_np.gradcheck import check_module, numerical_gradient, rel_error  # noqa: E402
from resnet_np.layers import Conv2d  # noqa: E402
from resnet_np.layers.im2col import col2im, im2col  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true", help="smaller shapes, for the test suite")
parser.add_argument("--out", default="out/lessons/03_conv_backward", help="folder for the figures")
args, _ = parser.parse_known_args()  # known args only: a notebook kernel passes its own
out_dir = pathlib.Path(args.out)
out_dir.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. How many windows cover each pixel?
#
# Push a column matrix of ones through col2im: each input pixel receives
# one 1 per window that copied it. With a 3x3 kernel and stride 1 an inner
# pixel is in 9 windows; with stride 2 the windows overlap less.

# %%
size = 7
counts = {}
for stride in (1, 2):
    x_shape = (1, 1, size, size)
    cols = im2col(np.zeros(x_shape), (3, 3), (stride, stride), (1, 1))
    counts[stride] = col2im(np.ones_like(cols), x_shape, (3, 3), (stride, stride), (1, 1))[0, 0]
    print(f"stride {stride}: windows covering each pixel\n{counts[stride].astype(int)}\n")
assert counts[1][3, 3] == 9 and counts[1][0, 0] == 4  # an inner pixel and a corner (padding 1)

fig, axes = plt.subplots(1, 2, figsize=(7, 3.4))
for ax, stride in zip(axes, (1, 2)):
    im = ax.imshow(counts[stride], cmap="viridis", vmin=0, vmax=9)
    ax.set_title(f"3x3 kernel, stride {stride}, padding 1")
    for (i, j), v in np.ndenumerate(counts[stride]):
        ax.text(j, i, int(v), ha="center", va="center", color="k" if v > 6 else "w")
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("col2im sums this many gradient copies into each pixel")
fig.tight_layout()
fig.savefig(out_dir / "col2im_overlap.png", dpi=100)
print(f"figure: {out_dir / 'col2im_overlap.png'}")

# %% [markdown]
# ## 2. col2im is the adjoint of im2col
#
# For any $x$ and any column matrix $c$,
#
# $$
# \langle \text{im2col}(x), c \rangle = \langle x, \text{col2im}(c) \rangle .
# $$
#
# That identity is exactly what makes
# $\partial L / \partial x = \text{col2im}(\partial L / \partial\, \text{cols})$ the right
# gradient: $L$ depends on $x$ only through the copies.

# %%
x = rng.standard_normal((2, 3, 6, 5))
cols = im2col(x, (3, 3), (1, 1), (1, 1))
c = rng.standard_normal(cols.shape)
lhs, rhs = (cols * c).sum(), (x * col2im(c, x.shape, (3, 3), (1, 1), (1, 1))).sum()
print(f"<im2col(x), c> = {lhs:.10f}\n<x, col2im(c)> = {rhs:.10f}")
assert abs(lhs - rhs) < 1e-10 * abs(lhs)

# %% [markdown]
# ## 3. Check the backward pass against finite differences
#
# We nudge one input pixel by $\pm h$, rerun the forward pass and see how
# $L = \sum \text{dout} \odot \text{out}$ changes, for a RANDOM ``dout``:
#
# $$
# \frac{\partial L}{\partial x_k} \approx \frac{L(x + h e_k) - L(x - h e_k)}{2h} .
# $$
#
# The layer's backward must agree to about $10^{-9}$ in float64. The
# layer's plain backward (``resnet_np.use_fast(False)``) is the two lines above
# and col2im, group by group — ``conv2d_backward`` in ``resnet_np/layers/conv.py``:

# %%
import inspect  # noqa: E402

from resnet_np import use_fast  # noqa: E402
from resnet_np.layers.conv import conv2d_backward  # noqa: E402

print(inspect.getsource(conv2d_backward))

conv = Conv2d(3, 4, 3, stride=1, padding=1).astype("float64")
# The layer lives on the backend (NumPy, or CuPy with RESNET_NP_BACKEND=cupy): its inputs go there too.
x = to_device(rng.standard_normal((2, 3, 5, 5) if args.quick else (2, 3, 8, 8)))
out = conv(x)
dout = to_device(rng.standard_normal(out.shape))
conv.zero_grad()
dx = conv.backward(dout)
dx_numeric = numerical_gradient(lambda: float((dout * conv(x)).sum()), x)
print(f"dx: relative error {rel_error(dx, dx_numeric):.2e}")
assert rel_error(dx, dx_numeric) < 1e-7

report = check_module(conv, x)  # the same, for the input and every parameter
print(report)
with use_fast(False):                # and on the plain path
    print(check_module(conv, x))

# %% [markdown]
# ## 4. What a forgotten overlap costs
#
# If col2im *assigned* instead of *adding*, each pixel would keep only the
# gradient of the last window that covered it. With stride 1 that is wrong
# almost everywhere:

# %%
def col2im_assign(dcols, x_shape):
    N, C, H, W = x_shape
    dcols = dcols.reshape(N, C, 3, 3, H, W)
    dx_pad = get_array_module(dcols).zeros((N, C, H + 2, W + 2))
    for i in range(3):
        for j in range(3):
            dx_pad[:, :, i:i + H, j:j + W] = dcols[:, :, i, j]
    return dx_pad[:, :, 1:-1, 1:-1]


dcols = conv.weight.data.reshape(4, -1).T @ dout.reshape(2, 4, -1)
wrong = col2im_assign(dcols, x.shape)
print(f"assign instead of add: relative error {rel_error(wrong, dx_numeric):.2e}  <- caught")
assert rel_error(wrong, dx_numeric) > 1e-2

# %% [markdown]
# ## 5. The fast route: the backward pass is a convolution too
#
# col2im is right, but slow: it *adds* $K_H K_W$ shifted copies of ``dcols``
# into the input's gradient, after a matrix product $W_{\text{mat}}^\top\,
# \text{dout}$ whose inner dimension is only $F$. ``Conv2d``'s fast path
# (``resnet_np/fast/transposed_conv.py``) takes another route at stride 1.
# Write out which outputs a pixel $x[c, h, w]$ fed: output $(o_h, o_w)$ saw it
# through tap $(i, j)$ when $h = o_h + i - P$, so
#
# $$
# \frac{\partial L}{\partial x[c, h, w]} = \sum_{f, i, j} W[f, c, i, j]\;
#   \text{dout}[f,\, h + P - i,\, w + P - j] .
# $$
#
# Put $i' = K_H - 1 - i$: the sum becomes
# $\sum_{f, i', j'} W[f, c, K_H\!-\!1\!-\!i', K_W\!-\!1\!-\!j']\;
# \text{dout}_{\text{pad}}[f, h + i', w + j']$ with dout padded by $K - 1 - P$ —
# a **convolution of dout** with the kernel rotated by 180° and its input and
# output channels swapped (the "transposed convolution"). One im2col of dout
# (copies only) and one product with inner dimension $F K_H K_W$.
#
# The same im2col of dout gives the weight gradient: its row $(f, i', j')$
# holds, for every input pixel, the dout that pixel met through tap
# $(K_H\!-\!1\!-\!i', K_W\!-\!1\!-\!j')$ of filter $f$, so
# $\partial L / \partial W[f, c, i, j] = \sum_{n,h,w} \text{dcols}_{(f, K_H-1-i, K_W-1-j),(n,h,w)}\; x[n, c, h, w]$:
# one product, and the input needs no im2col of its own in backward.
# Check both against the col2im route, with ``conv2d_naive`` as the convolution:

# %%
from resnet_np.layers import conv2d_naive  # noqa: E402

conv = Conv2d(3, 4, 3, stride=1, padding=1, bias=False).astype("float64")
x = to_device(rng.standard_normal((2, 3, 6, 6) if args.quick else (4, 3, 9, 9)))
out = conv(x)
dout = to_device(rng.standard_normal(out.shape))
conv.zero_grad()
dx_layer = conv.backward(dout)

W = conv.weight.data                                       # (F, C, KH, KW)
W_transposed = W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)   # (C, F, KH, KW): rotated, channels swapped
dx_as_conv = conv2d_naive(dout, W_transposed, padding=3 - 1 - 1)
print(f"dx as a convolution of dout vs the layer: relative error {rel_error(dx_as_conv, dx_layer):.1e}")
assert rel_error(dx_as_conv, dx_layer) < 1e-12

# dW from the im2col of the padded dout (rows f, i', j') and x itself
dcols = im2col(dout, (3, 3), (1, 1), (1, 1))               # (N, F*9, H*W): dout padded by K-1-P = 1
dW_rows = get_array_module(dcols).einsum("nrp,ncp->rc", dcols, x.reshape(len(x), 3, -1))   # (F*9, C)
dW = dW_rows.reshape(4, 3, 3, 3)[:, ::-1, ::-1, :].transpose(0, 3, 1, 2)
print(f"dW from the same im2col vs the layer: relative error {rel_error(dW, conv.weight.grad):.1e}")
assert rel_error(dW, conv.weight.grad) < 1e-12

# %% [markdown]
# Both routes give the same numbers. The fast path takes the second at stride
# 1 where it pays (``backward_route="auto"``, the default; a stem that turns 3
# colour channels into 64 maps keeps col2im), and col2im stays for strided
# convolutions and in the plain layer, the reference the fast path is tested
# against (``tests/test_fast.py``). What each buys on a real layer — ResNet-20's
# first stage, 128 images of 16 channels, 32x32 — timed through the public
# switches: ``resnet_np.use_fast(False)`` for the plain layer, and the layer's
# ``backward_route`` for the fast path's two routes. (The fast path also runs a
# few images at a time on every core: that is the rest of the difference.)

# %%
import time  # noqa: E402

layer = Conv2d(16, 16, 3, padding=1, bias=False)
batch = to_device(rng.standard_normal((16 if args.quick else 128, 16, 32, 32)).astype(np.float32))
upstream = to_device(rng.standard_normal(layer(batch).shape).astype(np.float32))


def backward_seconds(fast, route="auto"):
    layer.backward_route = route
    times = []
    with use_fast(fast):
        layer(batch)
        for _ in range(3):
            layer.zero_grad()
            start = time.perf_counter()
            layer.backward(upstream)
            times.append(time.perf_counter() - start)
    layer.backward_route = "auto"
    return min(times)


seconds = {"plain: col2im": backward_seconds(False), "fast: col2im": backward_seconds(True, "col2im"),
           "fast: transposed conv.": backward_seconds(True, "transposed")}
for route, s in seconds.items():
    print(f"{route:24s} {1e3 * s:7.1f} ms")

fig, ax = plt.subplots(figsize=(6, 2.6))
ax.barh(list(seconds), [1e3 * s for s in seconds.values()], color=["C7", "C1", "C0"])
ax.set_xlabel("backward pass, ms (this machine)")
ax.set_title(f"Conv2d 16->16, 3x3, stride 1, batch {len(batch)}, 32x32")
fig.tight_layout()
fig.savefig(out_dir / "backward_routes.png", dpi=100)
