"""Process-wide settings: freed arrays kept for the next step (resnet_np.fast.memory) and BLAS's threads.

Importing resnet_np changes neither; ``resnet_np.fast.tuned()`` switches both
on and puts them back when it ends.
"""

import ctypes
import os
import subprocess
import sys

import pytest

GLIBC = sys.platform.startswith("linux") and hasattr(ctypes.CDLL(None), "gnu_get_libc_version")

# Allocate eight 8 MB arrays, then free them all, 40 times over — as a training
# step does with its layers' outputs — and count the page faults of the last 20 rounds.
PROBE = """
import os, resource, sys
mode = sys.argv[1]
if mode == "off":
    os.environ["RESNET_NP_KEEP_FREED_MEMORY"] = "0"
import numpy as np
import resnet_np
from resnet_np.fast import memory

def rounds(k):
    for _ in range(k):
        arrays = [np.ones(2 ** 21, dtype=np.float32) for _ in range(8)]   # 8 MB each, every page written
        del arrays

def faults():
    rounds(20)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    rounds(20)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

if mode == "import":          # the package imported and a layer run: nothing changed
    resnet_np.layers.ReLU()(np.ones((4, 3, 8, 8)))
    assert not memory.is_kept()
    print(faults())
elif mode == "after":         # tuned() entered and left: glibc's defaults again
    with resnet_np.fast.tuned():
        assert memory.is_kept()
    assert not memory.is_kept()
    print(faults())
else:                         # inside tuned()
    with resnet_np.fast.tuned():
        assert memory.is_kept() == (mode == "tuned")
        print(faults())
"""


def faults(mode):
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


# With glibc's defaults the 64 MB freed at the end of a round go back to the
# kernel: at least 4 huge pages per array (2,048 small ones without
# transparent huge pages) fault in again in every round.
RETURNED = 20 * 8 * 4


@pytest.mark.skipif(not GLIBC, reason="mallopt exists only in glibc (Linux); elsewhere keep_freed_memory does nothing")
def test_tuned_keeps_freed_memory_without_new_page_faults():
    kept = faults("tuned")
    assert kept <= 10, f"freed memory was handed back to the kernel: {kept} page faults in 20 rounds"


@pytest.mark.skipif(not GLIBC, reason="mallopt exists only in glibc (Linux)")
@pytest.mark.parametrize("mode", ["import", "after", "off"])
def test_import_and_the_end_of_tuned_leave_the_allocator_alone(mode):
    """Importing resnet_np, leaving tuned() and RESNET_NP_KEEP_FREED_MEMORY=0: freed memory goes back to the kernel."""
    got = faults(mode)
    assert got >= RETURNED, f"{mode}: the default allocator was expected to fault each round, got {got} faults"


BLAS_PROBE = """
from threadpoolctl import threadpool_info
def blas():
    return sorted(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")
import numpy as np
start = blas()               # numpy's BLAS, before resnet_np is imported
import resnet_np
assert blas() == start
from resnet_np import layers as L
resnet_np.fast.set_num_threads(2)
x = np.random.default_rng(0).standard_normal((8, 4, 9, 9))
conv = L.Conv2d(4, 4, 3, padding=1).astype("float64")
def step():
    conv.backward(conv(x))
    L.BatchNorm2d(4).astype("float64")(x)
step()
assert blas() == start, ("a layer left BLAS changed", start, blas())
with resnet_np.fast.tuned():
    assert blas() == [1] * len(start), ("tuned(): BLAS at one thread", blas())
    step()
    with resnet_np.use_fast(False):
        step()
    assert blas() == [1] * len(start), ("tuned(): BLAS at one thread", blas())
    with resnet_np.fast.tuned():     # nested: the inner end restores nothing yet
        pass
    step()
    assert blas() == [1] * len(start)
assert blas() == start, ("tuned() did not restore BLAS", start, blas())
print("ok", start)
"""


def test_layers_and_tuned_leave_blas_threads_as_they_found_them():
    env = dict(os.environ, OPENBLAS_NUM_THREADS="2", OMP_NUM_THREADS="2", MKL_NUM_THREADS="2",
               RESNET_NP_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", BLAS_PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ok [2" in out.stdout, out.stdout


FIT_PROBE = """
import numpy as np
from threadpoolctl import threadpool_info
def blas():
    return sorted(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")
import resnet_np
from resnet_np import layers as L
from resnet_np.data import DataLoader, Dataset
from resnet_np.fast import memory
from resnet_np.models import CifarResNet
from resnet_np.optim import SGD
from resnet_np.train import fit
start = blas()
rng = np.random.default_rng(0)
data = Dataset(rng.integers(0, 255, (32, 1, 8, 8)).astype(np.uint8), rng.integers(0, 2, 32), ["a", "b"],
               (0.5,), (0.5,), name="noise")
seen = []
class Recording(L.SoftmaxCrossEntropy):
    def backward(self, *args, **kwargs):   # once per training step
        seen.append((memory.is_kept(), blas()))
        return super().backward(*args, **kwargs)
model = CifarResNet(1, num_classes=2, in_channels=1)
fit(model, DataLoader(data, batch_size=16, shuffle=True, seed=0), None, 1, SGD(model.parameters(), lr=0.01),
    loss_fn=Recording(), progress=False, log=lambda *a: None)
assert seen and all(seen_kept == (memory._mallopt() is not None) for seen_kept, _ in seen), seen
assert all(b == [1] * len(start) for _, b in seen), seen
assert not memory.is_kept() and blas() == start, (memory.is_kept(), blas(), start)
print("ok", start)
"""


def test_fit_runs_tuned_and_restores():
    env = dict(os.environ, OPENBLAS_NUM_THREADS="2", OMP_NUM_THREADS="2", MKL_NUM_THREADS="2",
               RESNET_NP_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", FIT_PROBE], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "ok [2" in out.stdout, out.stdout


STEP_PROBE = """
import sys, tracemalloc
import numpy as np
import resnet_np
from resnet_np import layers as L
from resnet_np.models import resnet20
from resnet_np.optim import SGD
batch = int(sys.argv[1])
resnet_np.backend.manual_seed(0)
rng = np.random.default_rng(0)
model = resnet20(shortcut="B")
model.need_input_grad = False
opt = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
loss_fn = L.SoftmaxCrossEntropy()
x = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
y = rng.integers(0, 10, batch)
with resnet_np.fast.tuned():
    tracemalloc.start()              # NumPy reports its array buffers to tracemalloc
    loss_fn(model(x), y)
    opt.zero_grad()
    model.backward(loss_fn.backward())
    opt.step()
    print(tracemalloc.get_traced_memory()[1])
"""


def test_resnet20_training_step_peak_memory():
    """Issue 28: the ResNet-20 (shortcut B) step at batch 128 peaks at most 250 MB of arrays (274 MB before).

    What keeps it there: the blocks' ReLU masks kept as bits, ReLU and the addition written over batch norm's
    output, backward's ReLU and batch norm written over the convolution's gradient (fast/blocks.py), and the
    convolutions' buffers no larger than a thread's share. Measured as benchmarks/bench.py does (tracemalloc),
    with the benchmark's two threads.
    """
    env = dict(os.environ, RESNET_NP_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", STEP_PROBE, "128"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    peak = int(out.stdout.split()[-1]) / 2 ** 20
    assert peak <= 250, f"peak memory of the step {peak:.0f} MB, more than 250 MB"
