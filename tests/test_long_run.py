"""Long runs: memory stays flat over 1,000 training steps, and nothing one forward pass leaves behind
changes what a later forward or backward pass computes."""

import gc
import os
import tracemalloc

import numpy as np
import pytest

from resnet_np import backend
from resnet_np.data import DataLoader, Dataset
from resnet_np.layers import (
    Add,
    BatchNorm2d,
    Conv2d,
    Flatten,
    GlobalAvgPool2d,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
    SoftmaxCrossEntropy,
)
from resnet_np.models import CifarResNet
from resnet_np.models.basic_block import BasicBlock
from resnet_np.models.shortcut import ShortcutA
from resnet_np.optim import SGD
from resnet_np.train import fit

STEPS = 1000
STEPS_PER_EPOCH = 100


def tiny_resnet():
    """Every kind of layer, two residual blocks (one with the paper's shortcut A), on 6x6 inputs."""
    return Sequential(Conv2d(1, 4, 3, padding=1, bias=False), BatchNorm2d(4), ReLU(),
                      BasicBlock(4, 4), BasicBlock(4, 8, stride=2, downsample=ShortcutA(4, 8, 2)),
                      MaxPool2d(2), GlobalAvgPool2d(), Flatten(), Linear(8, 3))


def resident_bytes():
    """The process's resident set size (Linux), or None elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return None


def test_memory_is_flat_over_1000_training_steps():
    backend.manual_seed(0)
    rng = np.random.default_rng(0)
    data = Dataset(rng.integers(0, 256, (2 * STEPS_PER_EPOCH, 1, 6, 6), dtype=np.uint8),
                   rng.integers(0, 3, 2 * STEPS_PER_EPOCH), ["a", "b", "c"], (0.5,), (0.25,))
    loader = DataLoader(data, batch_size=2, seed=0, augment="digits")
    model = tiny_resnet()
    opt = SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    traced, resident = {}, {}
    real_step = opt.step

    def step_and_measure():
        real_step()
        step_and_measure.count += 1
        if step_and_measure.count in (100, STEPS):
            gc.collect()  # garbage in reference cycles is not a leak: it waits for the collector
            traced[step_and_measure.count] = tracemalloc.get_traced_memory()[0]
            resident[step_and_measure.count] = resident_bytes()

    step_and_measure.count = 0
    opt.step = step_and_measure
    tracemalloc.start()
    try:
        history = fit(model, loader, None, STEPS // STEPS_PER_EPOCH, opt, progress=False, log=lambda *a: None)
    finally:
        tracemalloc.stop()
    assert step_and_measure.count == STEPS and len(history["epoch"]) == STEPS // STEPS_PER_EPOCH
    growth = traced[STEPS] - traced[100]
    print(f"\ntraced memory (NumPy arrays and Python objects): {traced[100]:,} B at step 100, "
          f"{traced[STEPS]:,} B at step {STEPS} ({growth:+,} B); resident set: {resident[100]:,} B, "
          f"{resident[STEPS]:,} B")
    # 9 more epochs of history are a few hundred bytes; one leaked activation (2x4x6x6 float32) per step
    # would be 1 MB.
    assert growth < 32 * 1024, f"memory grew by {growth:,} bytes between step 100 and step {STEPS}"
    if resident[100] is not None:
        assert resident[STEPS] - resident[100] < 4 * 1024 * 1024


# -- no state carried from one pass into the next ------------------------------------------------

def f32(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


LAYERS = {  # name: (factory, input shapes of batch A, input shapes of batch B)
    "Conv2d": (lambda: Conv2d(3, 4, 3, stride=2, padding=1), [(2, 3, 8, 8)], [(3, 3, 5, 7)]),
    "BatchNorm2d": (lambda: BatchNorm2d(3), [(2, 3, 4, 4)], [(5, 3, 2, 3)]),
    "ReLU": (ReLU, [(2, 3, 4, 4)], [(4, 5)]),
    "MaxPool2d": (lambda: MaxPool2d(3, stride=2, padding=1), [(2, 3, 7, 7)], [(1, 3, 4, 6)]),
    "GlobalAvgPool2d": (GlobalAvgPool2d, [(2, 3, 4, 4)], [(3, 3, 2, 5)]),
    "Flatten": (Flatten, [(2, 3, 4, 4)], [(3, 2, 2, 2)]),
    "Linear": (lambda: Linear(6, 4), [(2, 6)], [(5, 6)]),
    "Add": (Add, [(2, 3, 4, 4), (2, 3, 4, 4)], [(3, 2, 5, 1), (3, 2, 5, 1)]),
    "BasicBlock": (lambda: BasicBlock(4, 8, stride=2, downsample=ShortcutA(4, 8, 2)),
                   [(2, 4, 6, 6)], [(3, 4, 4, 2)]),
    "CifarResNet": (lambda: CifarResNet(1, num_classes=3, in_channels=2), [(2, 2, 8, 8)], [(3, 2, 12, 4)]),
}


def forward_backward(layer, shapes, seed):
    """Outputs, input gradients and parameter gradients of one batch (fresh arrays of random numbers)."""
    inputs = [f32(*shape, seed=seed + i) for i, shape in enumerate(shapes)]
    out = layer(*inputs)
    for p in layer.parameters():
        p.grad = None
    dx = layer.backward(f32(*out.shape, seed=seed + 10))
    grads = {name: p.grad for name, p in layer.named_parameters()}
    return out, dx, grads


def copies(result):
    out, dx, grads = result
    dx = tuple(d.copy() for d in dx) if isinstance(dx, tuple) else dx.copy()
    return out.copy(), dx, {name: g.copy() for name, g in grads.items()}


def assert_same(a, b, what):
    out_a, dx_a, grads_a = a
    out_b, dx_b, grads_b = b
    np.testing.assert_array_equal(out_a, out_b, err_msg=f"{what}: output")
    for d_a, d_b in zip(dx_a if isinstance(dx_a, tuple) else (dx_a,), dx_b if isinstance(dx_b, tuple) else (dx_b,)):
        np.testing.assert_array_equal(d_a, d_b, err_msg=f"{what}: input gradient")
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        np.testing.assert_array_equal(grads_a[name], grads_b[name], err_msg=f"{what}: gradient of {name}")


@pytest.mark.parametrize("name", list(LAYERS))
def test_a_pass_depends_only_on_its_own_batch(name):
    """Batches A, A' (the same shape), B (another shape), C (A's shape again) through one layer give
    exactly what a fresh copy of the layer gives for each alone; and the arrays handed out for A are
    not overwritten later (a layer that reuses a buffer must not hand it out)."""
    factory, shapes_a, shapes_b = LAYERS[name]
    backend.manual_seed(0)
    layer = factory()
    handed_out = []
    for label, shapes, seed in (("A", shapes_a, 0), ("A'", shapes_a, 60), ("B", shapes_b, 20), ("C", shapes_a, 40)):
        before = {key: value.copy() for key, value in layer.state_dict().items()}
        result = forward_backward(layer, shapes, seed)
        kept = copies(result)
        fresh = factory()
        fresh.load_state_dict(before)  # the weights and running statistics the layer had before this batch
        assert_same(kept, forward_backward(fresh, shapes, seed), f"{name}, batch {label}")
        handed_out.append((label, result, kept))
    for label, result, kept in handed_out:  # still what they were when they were handed out
        assert_same(result, kept, f"{name}, batch {label} after the later batches")


def test_eval_after_train_uses_running_statistics_only():
    """A training pass just before an evaluation pass must not leak its batch statistics into it."""
    backend.manual_seed(0)
    model = CifarResNet(1, num_classes=3, in_channels=1)
    model(f32(4, 1, 8, 8))  # moves the running statistics once
    state = {key: value.copy() for key, value in model.state_dict().items()}
    model(f32(4, 1, 8, 8, seed=1) * 100)  # a training batch on a very different scale
    model.eval()
    x = f32(3, 1, 8, 8, seed=2)
    backend.manual_seed(0)
    fresh = CifarResNet(1, num_classes=3, in_channels=1)
    fresh.load_state_dict(model.state_dict())
    fresh.eval()
    np.testing.assert_array_equal(model(x), fresh(x))
    assert not np.array_equal(model.state_dict()["bn1.running_var"], state["bn1.running_var"])


def test_the_loss_depends_only_on_its_own_batch():
    loss = SoftmaxCrossEntropy()
    first = loss(f32(4, 3), np.array([0, 1, 2, 0]))
    d_first = loss.backward().copy()
    loss(f32(2, 5, seed=1), np.array([4, 1]))
    loss.backward()
    fresh = SoftmaxCrossEntropy()
    assert fresh(f32(4, 3), np.array([0, 1, 2, 0])) == first
    np.testing.assert_array_equal(fresh.backward(), d_first)
