# %% [markdown]
# # Lesson 11 — the same model on the GPU, with CuPy
#
# Lesson 1 introduced the ``xp`` idiom: every layer asks its input which
# array module it belongs to, so the code that trains on NumPy trains on
# CuPy unchanged. Three switches move everything to the GPU:
#
#     backend.use("cupy")                      # new parameters and buffers are created on the GPU
#     model = resnet20(in_channels=1)          # ... so this model lives there
#     loader = DataLoader(data, backend="cupy")  # and each batch is sent there (as uint8, then converted)
#
# (``model.to("cupy")`` moves an existing model; ``RESNET_NP_BACKEND=cupy``
# does the first line for a whole program.) In this lesson we time a
# training step of ResNet-20 on the CPU at growing batch sizes, then — when
# CuPy and a GPU are there — check that the GPU computes the same numbers
# from the same weights and time it too. Without a GPU, the GPU part is
# skipped with the reason, and the figure shows the CPU alone.
#
# With ``RESNET_NP_BACKEND=cupy-strict`` (CI has no GPU), "cupy" is the strict
# CuPy stand-in, ``resnet_np.cupy_strict``: CuPy's rules emulated on NumPy,
# not a GPU. The GPU part then runs on it, so a change that breaks the CuPy
# path breaks this lesson; only the claim that the GPU is faster is skipped.
#
# Run: ``python lessons/11_gpu_cupy.py`` (add ``--quick`` for a fast run).

# %%
import argparse
import pathlib
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from resnet_np import backend  # noqa: E402
from resnet_np.backend import to_device, to_numpy  # noqa: E402
from resnet_np.gradcheck import rel_error  # noqa: E402
from resnet_np.layers import SoftmaxCrossEntropy  # noqa: E402
from resnet_np.models import resnet20  # noqa: E402
from resnet_np.optim import SGD  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true", help="smaller batches, for the test suite")
parser.add_argument("--out", default="out/lessons/11_gpu_cupy", help="folder for the figures")
args, _ = parser.parse_known_args()  # known args only: a notebook kernel passes its own
out_dir = pathlib.Path(args.out)
out_dir.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)

STAND_IN = backend.is_stand_in()  # RESNET_NP_BACKEND=cupy-strict: the CuPy stand-in, not a GPU
GPU_BACKEND = "cupy-strict" if STAND_IN else "cupy"
gpu_reason = None
try:
    backend.use(GPU_BACKEND)  # raises RuntimeError saying why when CuPy or a GPU is missing
except RuntimeError as e:
    gpu_reason = str(e)
finally:
    backend.use("numpy")
GPU = gpu_reason is None
if STAND_IN:
    print("GPU: the strict CuPy stand-in (CuPy's rules on NumPy, not a GPU)")
else:
    print(f"GPU: {'available' if GPU else 'not available: ' + gpu_reason}")

# %% [markdown]
# ## 1. A training step on the CPU
#
# One step of ResNet-20 (forward, loss, backward, SGD update) on 28x28
# single-channel images. The time per image, $t(B)/B$ for a batch of $B$ images,
# falls with the batch size at first (fixed costs are shared), then levels off: the CPU is busy.

# %%
loss_fn = SoftmaxCrossEntropy()


def make_model(device):
    backend.manual_seed(0)  # the same weights on either device: drawn on the host, then moved
    backend.use(GPU_BACKEND if device == "cupy" else device)
    try:
        return resnet20(in_channels=1)
    finally:
        backend.use("numpy")


def train_step(model, optimizer, x, y):
    loss = loss_fn(model(x), y)
    optimizer.zero_grad()
    model.backward(loss_fn.backward())
    optimizer.step()
    return loss


def images_per_second(device, batch_sizes, repeats, sync=lambda: None):
    model = make_model(device)
    optimizer = SGD(model.parameters(), lr=0.01, momentum=0.9)
    speeds = []
    for b in batch_sizes:
        x = to_device(rng.standard_normal((b, 1, 28, 28)).astype(np.float32), device)
        y = to_device(rng.integers(0, 10, b), device)
        train_step(model, optimizer, x, y)  # warm-up (on the GPU: compiles kernels, allocates memory)
        sync()
        times = []
        for _ in range(repeats):  # the fastest of a few steps: the least disturbed by other programs
            start = time.perf_counter()
            train_step(model, optimizer, x, y)
            sync()
            times.append(time.perf_counter() - start)
        speeds.append(b / min(times))
        print(f"  {device}: batch {b:4d}: {speeds[-1]:8.0f} images/s")
    return np.array(speeds)


cpu_batches = [4, 16, 32] if args.quick else [4, 16, 32, 64, 128]
print("ResNet-20 training step on the CPU (NumPy):")
cpu_speed = images_per_second("numpy", cpu_batches, repeats=2 if args.quick else 3)
assert np.all(cpu_speed > 0)
# Timings are what this machine did just now, not a law: they are printed, never asserted (another
# program running at the same time can reverse them).
print(f"batch {cpu_batches[-1]} against batch {cpu_batches[0]}: {cpu_speed[-1] / cpu_speed[0]:.1f}x the images/s")

# %% [markdown]
# ## 2. The same weights on the GPU give the same numbers
#
# ``manual_seed`` fixes the host generator the weights are drawn from, so a
# model built on the GPU starts from exactly the weights of its CPU twin.
# Forward and backward then agree to float32 rounding (the GPU adds in a
# different order), and so do a few training steps on the same batches.

# %%
if GPU:
    cpu_model, gpu_model = make_model("numpy"), make_model("cupy")
    sync = backend.get_array_module(gpu_model.fc.weight.data).cuda.Device().synchronize
    assert backend.backend_of(next(gpu_model.parameters()).data) == "cupy"
    cpu_opt = SGD(cpu_model.parameters(), lr=0.05, momentum=0.9)
    gpu_opt = SGD(gpu_model.parameters(), lr=0.05, momentum=0.9)
    x = rng.standard_normal((32, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 32)
    out_cpu, out_gpu = cpu_model(x), gpu_model(to_device(x, "cupy"))
    print(f"logits: CPU vs GPU relative error {rel_error(out_cpu, to_numpy(out_gpu)):.1e}")
    assert rel_error(out_cpu, to_numpy(out_gpu)) < 1e-4
    for step in range(5):
        xs = rng.standard_normal((32, 1, 28, 28)).astype(np.float32)
        ys = rng.integers(0, 10, 32)
        loss_cpu = train_step(cpu_model, cpu_opt, xs, ys)
        loss_gpu = train_step(gpu_model, gpu_opt, to_device(xs, "cupy"), to_device(ys, "cupy"))
        print(f"  step {step + 1}: loss on the CPU {loss_cpu:.5f}, on the GPU {loss_gpu:.5f}")
        assert abs(loss_cpu - loss_gpu) < 1e-3 * max(1.0, abs(loss_cpu))
    w_cpu, w_gpu = cpu_model.fc.weight.data, to_numpy(gpu_model.fc.weight.data)
    print(f"fc.weight after 5 steps: CPU vs GPU relative error {rel_error(w_cpu, w_gpu):.1e}")
    assert rel_error(w_cpu, w_gpu) < 1e-3
else:
    print(f"GPU comparison skipped: {gpu_reason}")

# %% [markdown]
# ## 3. Timing on the GPU
#
# GPU calls return before the work is done, so we synchronise before reading
# the clock. Small batches leave most of the GPU idle (each layer is a few
# kernel launches of microseconds each); big batches fill it.

# %%
gpu_batches = [4, 16, 32, 64, 128, 256] if args.quick else [4, 16, 32, 64, 128, 256, 512]
if STAND_IN:
    gpu_batches = cpu_batches  # NumPy behind the stand-in: big batches would only cost time
if GPU:
    print("ResNet-20 training step on the GPU (CuPy):")
    gpu_speed = images_per_second("cupy", gpu_batches, repeats=3 if args.quick else 10, sync=sync)
    common = [b for b in cpu_batches if b in gpu_batches]
    b = common[-1]
    ratio = gpu_speed[gpu_batches.index(b)] / cpu_speed[cpu_batches.index(b)]
    print(f"at batch {b} the GPU does {ratio:.1f}x the CPU's images per second; at batch {gpu_batches[-1]}: "
          f"{gpu_speed[-1]:.0f} images/s ({gpu_speed[-1] / cpu_speed.max():.0f}x the CPU's best)")
    if STAND_IN:  # the stand-in's speed is NumPy's: there is no GPU to be faster
        print("(the CuPy stand-in: NumPy on the CPU, so no claim about GPU speed is checked)")
    else:
        assert gpu_speed[-1] > cpu_speed.max(), "with a big batch the GPU should beat the CPU"
else:
    print(f"GPU timing skipped: {gpu_reason}")

fig, ax = plt.subplots(figsize=(7.5, 4.3))
ax.loglog(cpu_batches, cpu_speed, "o-", label="CPU, NumPy")
if GPU:
    ax.loglog(gpu_batches, gpu_speed, "s-", label="CuPy stand-in (CPU, not a GPU)" if STAND_IN else "GPU, CuPy")
    ax.set_title("ResNet-20 training step: images per second")
else:
    ax.set_title("ResNet-20 training step on the CPU (no GPU found: GPU part skipped)", fontsize=10)
    ax.text(0.5, 0.08, gpu_reason[:90] + ("..." if len(gpu_reason) > 90 else ""), transform=ax.transAxes,
            ha="center", fontsize=7, color="gray")
all_batches = sorted(set(cpu_batches) | (set(gpu_batches) if GPU else set()))
ax.set_xticks(all_batches, [str(b) for b in all_batches])
ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
ax.set(xlabel="batch size (28x28, 1 channel)", ylabel="images per second (forward + backward + SGD)")
ax.grid(alpha=0.3, which="both")
ax.legend()
fig.tight_layout()
fig.savefig(out_dir / "images_per_second.png", dpi=100)
print(f"figure: {out_dir / 'images_per_second.png'}")
assert backend.current() == "numpy"

# %% [markdown]
# ## What to remember
#
# * One code base, two devices: the layers never name NumPy or CuPy.
# * Keep the model and the batches on the GPU for the whole step; copying
#   back to the host (``to_numpy``, ``float(loss)``) forces a wait.
# * The GPU needs big batches (lots of arithmetic per call) to pay off.
