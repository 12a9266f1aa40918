# %% [markdown]
# # Lesson 2 — convolution the naive way, then as im2col + one matrix product
#
# A convolution layer slides F small filters of shape (C, KH, KW) over an
# image of shape (C, H, W). At each position it takes the dot product of the
# filter with the window of the image under it:
#
# $$
# \text{out}[n, f, o_h, o_w] = b[f] + \sum_{c,\,i,\,j} x_{\text{pad}}[n, c, o_h S + i, o_w S + j]\; W[f, c, i, j]
# $$
#
# with $S$ the stride and $x_{\text{pad}}$ the image with its zero padding.
#
# Written as loops that is slow in Python: one small dot product per output
# position. Lesson 1 showed that the hardware wants the opposite — a few BIG
# products. im2col ("image to columns") gets there by copying every window
# into a column of a matrix; then the whole convolution is ONE matrix product
#
# $$
# \text{out}[n] = W_{\text{mat}}\, \text{cols}[n], \qquad
# W_{\text{mat}} \in \mathbb{R}^{F \times C K_H K_W}, \quad
# \text{cols}[n] \in \mathbb{R}^{C K_H K_W \times O_H O_W}
# $$
#
# In this lesson we draw the im2col matrix of a tiny image, check that both
# ways give the same numbers, and time them.
#
# Run: ``python lessons/02_conv_im2col.py`` (add ``--quick`` for a fast run).

# %%
import argparse
import pathlib
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from resnet_np.backend import to_device  # noqa: E402
from resnet_np.gradcheck import rel_error  # noqa: E402
from resnet_np.layers import Conv2d, conv2d_naive, conv_output_size, im2col  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true", help="smaller shapes, for the test suite")
parser.add_argument("--out", default="out/lessons/02_conv_im2col", help="folder for the figures")
args, _ = parser.parse_known_args()  # known args only: a notebook kernel passes its own
out_dir = pathlib.Path(args.out)
out_dir.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. The output size
#
# With padding $P$ on each side, a kernel $K$ and a stride $S$, a side of length $H$
# gives
#
# $$
# O_H = \left\lfloor \frac{H + 2P - K}{S} \right\rfloor + 1
# $$
#
# outputs. A 3x3 kernel with padding 1
# and stride 1 keeps the size ("same" convolution, all over ResNet); stride 2
# halves it.

# %%
for H, K, S, P in [(32, 3, 1, 1), (32, 3, 2, 1), (224, 7, 2, 3), (56, 1, 2, 0)]:
    print(f"H={H:3d}, kernel {K}, stride {S}, padding {P} -> {conv_output_size(H, K, S, P)}")
assert conv_output_size(32, 3, 1, 1) == 32 and conv_output_size(32, 3, 2, 1) == 16
assert conv_output_size(224, 7, 2, 3) == 112  # ResNet's stem

# %% [markdown]
# ## 2. The im2col matrix of a tiny image
#
# A 1-channel 4x4 image holding the numbers 1..16, a 3x3 kernel, stride 1, no
# padding: there are $2 \times 2 = 4$ windows, so ``cols`` has 4 columns of 9 entries.
# Column k is window k read row by row; row ``i*3 + j`` of ``cols`` holds,
# for every window, the pixel under kernel tap (i, j). Neighbouring windows
# overlap, so most pixels are copied several times. (Pixel values start at 1
# so that the zeros of the padding, below, stand out.)

# %%
tiny = np.arange(1, 17, dtype=np.float64).reshape(1, 1, 4, 4)
cols = im2col(tiny, (3, 3), (1, 1), (0, 0))[0]   # (C*KH*KW, OH*OW) = (9, 4)
print(f"input 4x4:\n{tiny[0, 0].astype(int)}\nim2col, shape {cols.shape}:\n{cols.astype(int)}")
assert cols.shape == (9, 4)
assert list(cols[:, 0]) == [1, 2, 3, 5, 6, 7, 9, 10, 11]     # the top-left window, row by row
assert list(cols[0]) == [1, 2, 5, 6]                          # tap (0, 0) of each window

# With padding 1 the same image has 16 windows; the zeros are the padding.
cols_pad = im2col(tiny, (3, 3), (1, 1), (1, 1))[0]            # (9, 16)
assert cols_pad.shape == (9, 16) and cols_pad[4].tolist() == list(range(1, 17))  # the centre tap sees every pixel

fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), gridspec_kw={"width_ratios": [4, 4, 16]})
panels = [(tiny[0, 0], "input image (4x4)", None),
          (cols, "im2col, padding 0: (9, 4)", "window (output position)"),
          (cols_pad, "im2col, padding 1: (9, 16)", "window (output position)")]
for ax, (m, title, xlabel) in zip(axes, panels):
    cmap = plt.get_cmap("viridis").copy()
    cmap.set_bad("lightgray")
    ax.imshow(np.ma.masked_equal(m, 0), cmap=cmap, vmin=1, vmax=16)
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, int(v) if v else "pad", ha="center", va="center", fontsize=7 if v else 6,
                color="k" if v == 0 or v > 10 else "w")
    ax.set_title(title)
    ax.set_xticks(range(m.shape[1]))
    ax.set_yticks(range(m.shape[0]))
    if xlabel:
        ax.set_xlabel(xlabel)
        ax.set_ylabel("kernel tap (i, j) -> row 3i + j")
    else:
        ax.set_xlabel("column")
        ax.set_ylabel("row")
fig.suptitle("im2col copies every 3x3 window into a column (pixel values shown, padding in gray)")
fig.tight_layout()
fig.savefig(out_dir / "im2col_matrix.png", dpi=100)
print(f"figure: {out_dir / 'im2col_matrix.png'}")

# %% [markdown]
# ## 3. The convolution as one matrix product
#
# The filters, reshaped to (F, C*KH*KW), use the same order (c, i, j) as the
# rows of ``cols``. So the whole convolution is im2col and one matrix product
# (one per group, when the channels are split into groups as in ResNeXt:
# lesson 12). This is the library's own ``conv2d_im2col``, in
# ``resnet_np/layers/conv.py`` — printed here from its source — and what
# ``Conv2d.forward`` computes on the plain path (``resnet_np.use_fast(False)``).
# The default fast path (``resnet_np/fast/conv.py``) computes the same numbers
# a few images at a time, on every core; the check below holds on both.

# %%
import inspect  # noqa: E402

from resnet_np import use_fast  # noqa: E402
from resnet_np.layers import conv2d_im2col  # noqa: E402

print(inspect.getsource(conv2d_im2col))

# The layer lives on the backend (NumPy, or CuPy with RESNET_NP_BACKEND=cupy): its inputs go there too.
x = to_device(rng.standard_normal((2, 3, 7, 6)))
w = to_device(rng.standard_normal((4, 3, 3, 3)))
b = to_device(rng.standard_normal(4))
for stride, padding in [(1, 1), (2, 1), (2, 0), (1, 0)]:
    naive = conv2d_naive(x, w, b, stride=stride, padding=padding)
    unrolled = conv2d_im2col(x, w, b, stride=stride, padding=padding)
    layer = Conv2d(3, 4, 3, stride=stride, padding=padding).astype("float64")
    layer.weight.data[...] = w
    layer.bias.data[...] = b
    with use_fast(False):
        err_plain = rel_error(naive, layer(x))
    err, err_layer = rel_error(naive, unrolled), rel_error(naive, layer(x))
    print(f"stride {stride}, padding {padding}: output {naive.shape}; im2col vs naive {err:.1e}, "
          f"Conv2d vs naive {err_layer:.1e} (plain path {err_plain:.1e})")
    assert naive.shape == unrolled.shape and max(err, err_layer, err_plain) < 1e-12

# %% [markdown]
# ## 4. Timing, and the price in memory
#
# The naive version does $O_H O_W$ small products; im2col does $K_H K_W$ strided
# copies and one big product. We time both in float32 on a batch of
# 16-channel images of growing size. The price: ``cols`` holds $K_H K_W = 9$
# copies of (almost) every pixel.

# %%
def best_time(fn, repeats=3):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


sizes = [8, 16, 24] if args.quick else [8, 16, 32, 48, 64]
N, C, F = 8, 16, 16
t_naive, t_im2col = [], []
w32 = (rng.standard_normal((F, C, 3, 3)) * 0.1).astype(np.float32)
b32 = np.zeros(F, dtype=np.float32)
for size in sizes:
    xs = rng.standard_normal((N, C, size, size)).astype(np.float32)
    t_naive.append(best_time(lambda: conv2d_naive(xs, w32, b32, stride=1, padding=1)))
    t_im2col.append(best_time(lambda: conv2d_im2col(xs, w32, b32, stride=1, padding=1)))
    assert rel_error(conv2d_naive(xs, w32, b32, 1, 1), conv2d_im2col(xs, w32, b32, 1, 1)) < 1e-5
    print(f"{N}x{C}x{size}x{size} input, {F} 3x3 filters: naive {t_naive[-1] * 1e3:8.2f} ms, "
          f"im2col {t_im2col[-1] * 1e3:7.2f} ms  ({t_naive[-1] / t_im2col[-1]:.1f}x faster)")
speedup = t_naive[-1] / t_im2col[-1]
assert speedup > 1.5, f"im2col should beat the loop over {sizes[-1]}x{sizes[-1]} positions, got {speedup:.1f}x"

xs = np.zeros((N, C, sizes[-1], sizes[-1]), dtype=np.float32)
cols_bytes = im2col(xs, (3, 3), (1, 1), (1, 1)).nbytes
print(f"memory: input {xs.nbytes / 1e6:.2f} MB, its im2col matrix {cols_bytes / 1e6:.2f} MB "
      f"({cols_bytes / xs.nbytes:.0f}x)")
assert cols_bytes == 9 * xs.nbytes  # stride 1, padding 1: one column per pixel, 9 entries each

fig, ax = plt.subplots(figsize=(6.5, 4.2))
ax.plot(sizes, np.array(t_naive) * 1e3, "o-", label="naive: one small product per output position")
ax.plot(sizes, np.array(t_im2col) * 1e3, "s-", label="im2col + one matrix product")
ax.set(xlabel=f"image side H = W  (batch {N}, {C} -> {F} channels, 3x3, padding 1)", ylabel="time (ms)",
       title=f"convolution forward, float32: im2col is {speedup:.0f}x faster at {sizes[-1]}x{sizes[-1]}")
ax.set_yscale("log")
ax.grid(alpha=0.3, which="both")
ax.legend()
fig.tight_layout()
fig.savefig(out_dir / "conv_timing.png", dpi=100)
print(f"figure: {out_dir / 'conv_timing.png'}")

# %% [markdown]
# ## What to remember
#
# * im2col turns a convolution into a matrix product by copying windows into
#   columns; the filter matrix uses the same (c, i, j) order.
# * It trades memory ($K_H K_W$ copies) for speed (one big product).
# * ``resnet_np.layers.im2col`` builds the columns with $K_H K_W$ strided slices,
#   one per kernel tap, instead of $O_H O_W$ windows. Lesson 3 runs it backwards:
#   col2im, the gradient of the copies.
# * ``resnet_np.layers.conv2d_im2col`` is the convolution as this lesson wrote
#   it; the layers' fast path (``resnet_np/fast/``) gives the same numbers faster,
#   and ``resnet_np.use_fast(False)`` switches back to the plain one.
