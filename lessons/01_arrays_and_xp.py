# %% [markdown]
# # Lesson 1 — arrays on NumPy and CuPy, the `xp` idiom, and when the GPU pays off
#
# Everything in this library is arithmetic on n-dimensional arrays. NumPy
# holds them in the computer's memory and computes on the CPU; CuPy has the
# same functions (``cupy.zeros``, ``cupy.matmul``, ``a.reshape``, ...) but
# keeps its arrays in GPU memory and computes there. So one piece of code can
# run on either device if it never names ``numpy`` or ``cupy`` directly and
# asks instead: *which module does this array belong to?*
#
#     xp = get_array_module(x)      # numpy for a NumPy array, cupy for a CuPy array
#     return xp.maximum(x, 0)
#
# That is the ``xp`` idiom; ``resnet_np.backend`` is the one file of the
# package that knows about both libraries. In this lesson we look at what an
# array is (shape, dtype, strides, views), write a function in the ``xp``
# style, and time a matrix product at growing sizes — on NumPy, and on CuPy
# when a GPU is there — to see when a GPU pays off.
#
# Run: ``python lessons/01_arrays_and_xp.py`` (add ``--quick`` for a fast run).

# %%
import argparse
import pathlib
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from resnet_np import backend  # noqa: E402
from resnet_np.backend import get_array_module, to_numpy  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true", help="smaller sizes, for the test suite")
parser.add_argument("--out", default="out/lessons/01_arrays_and_xp", help="folder for the figures")
args, _ = parser.parse_known_args()  # known args only: a notebook kernel passes its own
out_dir = pathlib.Path(args.out)
out_dir.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. An array is a block of memory plus a shape, a dtype and strides
#
# The strides say how many bytes to jump to move one step along each axis.
# ``reshape`` and ``transpose`` usually change only the shape and the
# strides: they return a *view* of the same memory, which costs nothing.
# im2col (lesson 2) is built from such views; only the final copy costs.

# %%
x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
print(f"x: shape {x.shape}, dtype {x.dtype}, {x.itemsize} bytes per element, strides {x.strides}")
xt = x.transpose(0, 2, 1)
print(f"x.transpose(0, 2, 1): shape {xt.shape}, strides {xt.strides}, shares memory with x: "
      f"{np.shares_memory(x, xt)}")
assert x.strides == (48, 16, 4) and xt.strides == (48, 4, 16)
assert np.shares_memory(x, xt)        # a view: writing into xt writes into x
assert not np.shares_memory(x, xt.copy())

# Broadcasting: a (1, C, 1, 1) bias added to an (N, C, H, W) batch, as every
# convolution and batch norm does, without ever building an (N, C, H, W) bias.
batch = np.zeros((2, 3, 4, 4), dtype=np.float32)
bias = np.array([1.0, 2.0, 3.0], dtype=np.float32).reshape(1, 3, 1, 1)
print(f"(2, 3, 4, 4) + (1, 3, 1, 1) -> {(batch + bias).shape}")
assert (batch + bias)[1, 2, 3, 3] == 3.0

# float32 is what networks train in: half the memory and twice the speed of
# float64, with about 7 significant digits. Gradient checks use float64.
print(f"float32 resolution near 1: {np.finfo(np.float32).eps:.1e}, float64: {np.finfo(np.float64).eps:.1e}")

# %% [markdown]
# ## 2. The `xp` idiom
#
# A function written against ``xp`` runs on whatever device its input lives
# on. Here is a softmax written that way. ``backend.current()`` says which
# backend *new* arrays are created on (NumPy unless you call
# ``backend.use("cupy")`` or set ``RESNET_NP_BACKEND=cupy``).

# %%
def softmax(z):
    """Row-wise softmax, on NumPy or CuPy: the module comes from the input."""
    xp = get_array_module(z)
    z = z - z.max(axis=1, keepdims=True)   # no overflow in exp
    e = xp.exp(z)
    return e / e.sum(axis=1, keepdims=True)


z = rng.standard_normal((4, 10)).astype(np.float32)
p = softmax(z)
print(f"backend: {backend.current()}; softmax of a {z.shape} NumPy array -> {type(p).__module__}.{type(p).__name__}")
assert get_array_module(z) is np
assert np.allclose(p.sum(axis=1), 1.0, atol=1e-6)

gpu_reason = None
try:
    backend.use("cupy")   # raises with the reason when CuPy or a GPU is missing
except RuntimeError as e:
    gpu_reason = str(e)
finally:
    backend.use("numpy")
GPU = gpu_reason is None

if GPU:
    import cupy as cp

    z_gpu = backend.to_device(z, "cupy")              # host -> GPU
    p_gpu = softmax(z_gpu)                             # the same function, now on the GPU
    print(f"on the GPU: softmax returns a {type(p_gpu).__module__}.{type(p_gpu).__name__}")
    assert get_array_module(z_gpu) is cp
    assert np.allclose(to_numpy(p_gpu), p, atol=1e-6)  # GPU -> host, and the same numbers
else:
    print(f"CuPy part skipped: {gpu_reason}")

# %% [markdown]
# ## 3. When does the GPU pay off?
#
# A product of two $n \times n$ matrices does $2n^3$ floating-point operations
# on $2n^2$ numbers: the bigger $n$, the more work per number moved. Small products
# are dominated by fixed costs (a Python call, on the GPU a kernel launch of
# some microseconds, and copying the data over PCIe); big ones by arithmetic,
# where a GPU is tens to hundreds of times faster than a CPU core. We time
# ``a @ b`` in float32 at growing $n$ and report GFLOP/s ($10^9$ operations per
# second).

# %%
sizes = [32, 64, 128, 256, 512] if args.quick else [32, 64, 128, 256, 512, 1024, 2048]


def best_time(fn, repeats, sync=lambda: None):
    """The fastest of ``repeats`` runs of ``fn``, in seconds (the minimum filters out noise)."""
    fn()
    sync()  # warm-up: the first call may allocate, compile or load a library
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()  # GPU calls return before the work is done: wait for it
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_times(xp, sync=lambda: None, transfer=False):
    times = []
    for n in sizes:
        a_host = rng.standard_normal((n, n)).astype(np.float32)
        b_host = rng.standard_normal((n, n)).astype(np.float32)
        a, b = xp.asarray(a_host), xp.asarray(b_host)
        if transfer:  # include copying the inputs to the device and the result back
            fn = lambda: to_numpy(xp.asarray(a_host) @ xp.asarray(b_host))  # noqa: E731
        else:
            fn = lambda: a @ b  # noqa: E731
        times.append(best_time(fn, 3 if n >= 1024 else 5, sync))
    return np.array(times)


results = {"NumPy (CPU)": matmul_times(np)}
if GPU:
    sync = cp.cuda.Device().synchronize
    results["CuPy (GPU), data already there"] = matmul_times(cp, sync)
    results["CuPy (GPU), with copies to and from"] = matmul_times(cp, sync, transfer=True)
else:
    print(f"GPU timings skipped: {gpu_reason}")

flops = 2.0 * np.array(sizes, dtype=float) ** 3
print(f"\n{'n':>6}" + "".join(f"  {name:>36}" for name in results))
for i, n in enumerate(sizes):
    print(f"{n:>6}" + "".join(f"  {t[i] * 1e3:>12.3f} ms {flops[i] / t[i] / 1e9:>10.1f} GFLOP/s"
                              for t in results.values()))

cpu = results["NumPy (CPU)"]
# The work grows as n^3, so the time must grow too (by far more than timing noise).
assert cpu[-1] > 10 * cpu[0], "the largest product should take much longer than the smallest"
# ...but the CPU gets MORE efficient than at the smallest size: fixed costs are paid once per call.
# (Past some size the rate levels off, and can dip when the matrices outgrow the caches or other
# programs share the cores: so we compare the best rate, not the last one, with the first.)
assert (flops / cpu).max() > 1.5 * flops[0] / cpu[0], "GFLOP/s should rise with the size"
# A float32 product agrees with a float64 one to float32's precision (relative to the size of the terms).
a = rng.standard_normal((256, 256)).astype(np.float32)
b = rng.standard_normal((256, 256)).astype(np.float32)
exact = a.astype(np.float64) @ b.astype(np.float64)
assert np.abs(a @ b - exact).max() < 1e-4 * np.sqrt(256)
if GPU:
    gpu = results["CuPy (GPU), data already there"]
    crossover = next((n for n, tc, tg in zip(sizes, cpu, gpu) if tg < tc), None)
    print(f"\nthe GPU is faster from n = {crossover} on; at n = {sizes[-1]} by {cpu[-1] / gpu[-1]:.0f}x")
    assert gpu[-1] < cpu[-1], "at the largest size the GPU should win"
else:
    print("\n(no GPU: only the CPU curve; on a GPU the crossover typically lies between n = 64 and 512,\n"
          " later when the copies to and from the GPU are counted)")

fig, (ax_t, ax_f) = plt.subplots(1, 2, figsize=(11, 4.2))
for name, t in results.items():
    ax_t.loglog(sizes, t * 1e3, "o-", label=name)
    ax_f.semilogx(sizes, flops / t / 1e9, "o-", label=name)
ax_t.loglog(sizes, cpu[-1] * 1e3 * (np.array(sizes) / sizes[-1]) ** 3, "k:", label="slope n^3 (pure arithmetic)")
ax_t.set(xlabel="matrix size n (n x n times n x n, float32)", ylabel="time per product (ms)",
         title="time of a @ b")
ax_f.set(xlabel="matrix size n", ylabel="GFLOP/s  (2 n^3 / time)",
         title="speed: bigger products use the hardware better")
ax_f.set_yscale("log")
for ax in (ax_t, ax_f):
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(n) for n in sizes], minor=False)
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
if not GPU:
    fig.text(0.5, 0.005, f"no GPU here, CPU only ({gpu_reason.split('(')[0].strip()})", ha="center",
             fontsize=8, color="gray")
fig.tight_layout(rect=(0, 0.03, 1, 1))
fig.savefig(out_dir / "matmul_time_vs_size.png", dpi=100)
print(f"figure: {out_dir / 'matmul_time_vs_size.png'}")

# %% [markdown]
# ## What to remember
#
# * Array code in the package asks ``xp = get_array_module(x)`` and creates
#   arrays through ``xp``; ``to_numpy`` brings any array back to the host.
# * Small operations are dominated by fixed costs; a GPU only pays off when
#   each call does a lot of arithmetic — big matrix products, big batches —
#   and the data stays on the GPU between calls. That is why a convolution
#   is turned into ONE big matrix product (lesson 2), and why on the GPU the
#   whole model and each batch live there (lesson 11).
