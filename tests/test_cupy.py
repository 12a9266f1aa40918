"""The GPU backend: every layer on CuPy arrays computes what it computes on NumPy.

For each layer, in float64: a finite-difference gradient check run entirely
on the GPU, and forward/backward results (outputs, input and parameter
gradients, batch-norm running statistics) equal to the NumPy ones within a
relative error of 1e-10. Also: ``use("cupy")`` creates parameters on the
GPU, ``Module.to`` moves everything there and back without changing a bit,
and the backward passes that scatter gradients back (col2im, max-pool) are
deterministic — two runs give bit-identical results, because they add
strided slices one kernel offset at a time instead of using atomic adds.

With CuPy and a visible GPU these run on the GPU; without, on the strict
CuPy stand-in (``resnet_np.cupy_strict``), which emulates CuPy's rules on
NumPy — no implicit conversion to NumPy, no NumPy operands, only CuPy's
functions — so a change that would break the GPU path fails here too. On the
stand-in, the GPU==CPU comparisons check the device code path, not a GPU's
arithmetic.
"""

import copy

import numpy as np
import pytest

from resnet_np import backend, layers
from resnet_np.backend import cupy_available, is_cupy_array, to_numpy, use
from resnet_np.gradcheck import check_module, rel_error

# Real CuPy where a GPU is visible, else the stand-in; either is then called "cupy" by the package.
DEVICE = "cupy" if cupy_available() else "cupy-strict"

TOL = 1e-10


@pytest.fixture(autouse=True)
def _numpy_backend_after_each_test():
    """Every test starts and ends on the NumPy backend, with DEVICE's module behind the name "cupy"."""
    use(DEVICE)
    use("numpy")
    yield
    use("numpy")


@pytest.fixture
def cp():
    """The module behind "cupy": cupy, or resnet_np.cupy_strict."""
    use(DEVICE)
    module = backend.get_array_module()
    use("numpy")
    return module


# -- the layers under test, built on NumPy in float64 ---------------------------------


def _bn(C, momentum=0.1, mode="train"):
    def build(rng):
        bn = layers.BatchNorm2d(C, momentum=momentum).astype("float64")
        # Random affine parameters and running statistics: the defaults (1, 0, 0, 1) hide bugs.
        bn.load_state_dict({
            "weight": rng.uniform(0.5, 1.5, C), "bias": rng.standard_normal(C),
            "running_mean": rng.standard_normal(C), "running_var": rng.uniform(0.5, 2.0, C),
            "num_batches_tracked": np.array(3, dtype=np.int64),
        })
        return bn.train(mode == "train")
    return build


def _dropout(rng):
    layer = layers.Dropout(0.4)
    layer.reuse_mask = True  # one mask for every evaluation: a function finite differences can follow
    return layer


def _net(rng):
    return layers.Sequential(
        layers.Conv2d(2, 3, 3, stride=1, padding=1, bias=False),
        layers.BatchNorm2d(3),
        layers.ReLU(),
        layers.MaxPool2d(3, 2, 1),
        layers.GlobalAvgPool2d(),
        layers.Flatten(),
        layers.Linear(3, 4),
    ).astype("float64")


# id -> (builder(rng) -> module, input shapes)
CASES = {
    "Conv2d-k1-s2-nobias": (lambda rng: layers.Conv2d(3, 4, 1, stride=2, bias=False), [(2, 3, 5, 4)]),
    "Conv2d-k3-s1-p1": (lambda rng: layers.Conv2d(3, 4, 3, stride=1, padding=1), [(2, 3, 5, 4)]),
    "Conv2d-k3-s2-p2": (lambda rng: layers.Conv2d(2, 3, 3, stride=2, padding=2), [(2, 2, 5, 6)]),
    "Conv2d-k7-s2-p3": (lambda rng: layers.Conv2d(2, 2, 7, stride=2, padding=3, bias=False), [(1, 2, 6, 5)]),
    "Conv2d-k3x2-s2x1-p1x0": (lambda rng: layers.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 0)),
                              [(2, 2, 5, 4)]),
    "Conv2d-groups2": (lambda rng: layers.Conv2d(4, 6, 3, stride=1, padding=1, groups=2), [(2, 4, 4, 5)]),
    "BatchNorm2d-train": (_bn(3), [(4, 3, 3, 2)]),
    "BatchNorm2d-train-momentumNone": (_bn(3, momentum=None), [(2, 3, 2, 3)]),
    "BatchNorm2d-eval": (_bn(3, mode="eval"), [(2, 3, 3, 3)]),
    "ReLU": (lambda rng: layers.ReLU(), [(2, 3, 4, 5)]),
    "MaxPool2d-k3-s1": (lambda rng: layers.MaxPool2d(3, 1), [(2, 2, 5, 5)]),
    "MaxPool2d-k3-s2-p1": (lambda rng: layers.MaxPool2d(3, 2, 1), [(2, 3, 5, 6)]),
    "MaxPool2d-k2-s2": (lambda rng: layers.MaxPool2d(2, 2), [(2, 3, 4, 6)]),
    "MaxPool2d-k2x3-s1x2-p0x1": (lambda rng: layers.MaxPool2d((2, 3), (1, 2), (0, 1)), [(2, 2, 4, 6)]),
    "GlobalAvgPool2d": (lambda rng: layers.GlobalAvgPool2d(), [(2, 3, 4, 5)]),
    "Flatten": (lambda rng: layers.Flatten(), [(2, 3, 2, 2)]),
    "Dropout-fixed-mask": (_dropout, [(2, 3, 4, 4)]),
    "Linear": (lambda rng: layers.Linear(6, 4), [(3, 6)]),
    "Linear-nobias": (lambda rng: layers.Linear(6, 4, bias=False), [(3, 6)]),
    "Add": (lambda rng: layers.Add(), [(2, 3, 2, 3), (2, 3, 2, 3)]),
    "Sequential": (_net, [(2, 2, 6, 5)]),
}


def build_case(name, seed=0):
    """The module (NumPy, float64) and its NumPy inputs."""
    builder, shapes = CASES[name]
    backend.manual_seed(seed)
    rng = np.random.default_rng(seed)
    module = builder(rng).astype("float64")
    inputs = [rng.standard_normal(shape) for shape in shapes]
    return module, inputs


def gpu_arrays(module):
    """Every parameter, gradient and buffer of ``module``."""
    for _, p in module.named_parameters():
        yield p.data
        if p.grad is not None:
            yield p.grad
    for _, b in module.named_buffers():
        yield b


def assert_matches_numpy(what, gpu_value, cpu_value):
    assert is_cupy_array(gpu_value), f"{what}: expected a CuPy array, got {type(gpu_value).__name__}"
    gpu_value = to_numpy(gpu_value)
    assert gpu_value.shape == cpu_value.shape and gpu_value.dtype == cpu_value.dtype, \
        f"{what}: {gpu_value.shape} {gpu_value.dtype} on the GPU vs {cpu_value.shape} {cpu_value.dtype} on the CPU"
    err = rel_error(gpu_value, cpu_value)
    assert err <= TOL, f"{what}: relative error {err:.3e} between GPU and CPU (tolerance {TOL:.0e})"


# -- gradient checks on the GPU ------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_gradcheck_on_gpu(name):
    module, inputs = build_case(name)
    module.to("cupy")
    inputs = [backend.to_device(x, "cupy") for x in inputs]
    assert all(is_cupy_array(a) for a in gpu_arrays(module))
    assert is_cupy_array(module(*inputs))
    # Tensors above 300 entries are checked along random directions: elementwise
    # finite differences cost one GPU round trip per entry.
    report = check_module(module, *inputs, max_elements=300)
    assert report.ok, str(report)


def test_softmax_cross_entropy_gradcheck_on_gpu(cp):
    rng = np.random.default_rng(1)
    logits = cp.asarray(rng.standard_normal((5, 4)))
    labels = cp.asarray(rng.integers(0, 4, 5))
    loss = layers.SoftmaxCrossEntropy()
    assert isinstance(loss(logits, labels), float)
    assert is_cupy_array(loss.backward(0.7))
    report = check_module(loss, logits, labels)
    assert report.ok, str(report)


# -- GPU == CPU ----------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_forward_backward_match_numpy(name):
    cpu, inputs = build_case(name)
    gpu = copy.deepcopy(cpu).to("cupy")
    rng = np.random.default_rng(2)
    steps = 2 if any(isinstance(m, layers.BatchNorm2d) for m in cpu.modules()) else 1
    for step in range(steps):  # batch norm: the running statistics after two train steps
        if step:
            inputs = [rng.standard_normal(x.shape) * 1.5 + 0.3 for x in inputs]
        cpu.zero_grad()
        gpu.zero_grad()
        out_cpu = cpu(*inputs)
        for m_cpu, m_gpu in zip(cpu.modules(), gpu.modules()):  # dropout draws on each device: the CPU's mask
            if isinstance(m_cpu, layers.Dropout):
                m_gpu.mask = backend.to_device(m_cpu.mask, "cupy")
        out_gpu = gpu(*[backend.to_device(x, "cupy") for x in inputs])
        assert_matches_numpy(f"{name} output", out_gpu, out_cpu)
        dout = rng.standard_normal(out_cpu.shape)
        grads_cpu = cpu.backward(dout)
        grads_gpu = gpu.backward(backend.to_device(dout, "cupy"))
        if not isinstance(grads_cpu, tuple):
            grads_cpu, grads_gpu = (grads_cpu,), (grads_gpu,)
        assert len(grads_gpu) == len(grads_cpu)
        for k, (g_gpu, g_cpu) in enumerate(zip(grads_gpu, grads_cpu)):
            assert_matches_numpy(f"{name} input gradient {k}", g_gpu, g_cpu)
        params_gpu = dict(gpu.named_parameters())
        for key, p in cpu.named_parameters():
            assert_matches_numpy(f"{name} gradient of {key}", params_gpu[key].grad, p.grad)
        buffers_gpu = dict(gpu.named_buffers())
        for key, b in cpu.named_buffers():
            if backend.is_integer(b):
                assert is_cupy_array(buffers_gpu[key]) and buffers_gpu[key].dtype == b.dtype
                assert int(buffers_gpu[key]) == int(b), key
            else:
                assert_matches_numpy(f"{name} {key}", buffers_gpu[key], b)


@pytest.mark.parametrize("scale", [1.0, 1000.0], ids=["normal-logits", "huge-logits"])
def test_softmax_cross_entropy_matches_numpy(cp, scale):
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((6, 5)) * scale
    labels = rng.integers(0, 5, 6)
    cpu, gpu = layers.SoftmaxCrossEntropy(), layers.SoftmaxCrossEntropy()
    loss_cpu = cpu(logits, labels)
    loss_gpu = gpu(cp.asarray(logits), cp.asarray(labels))
    assert isinstance(loss_gpu, float)
    assert rel_error(loss_gpu, loss_cpu) <= TOL
    dloss = float(rng.standard_normal())
    assert_matches_numpy("dlogits", gpu.backward(dloss), cpu.backward(dloss))


def test_float32_on_gpu():
    """float32 stays float32 on the GPU, and agrees with NumPy to float32 precision."""
    backend.manual_seed(0)
    cpu = layers.Sequential(layers.Conv2d(3, 4, 3, padding=1), layers.BatchNorm2d(4), layers.ReLU())
    gpu = copy.deepcopy(cpu).to("cupy")
    x = np.random.default_rng(4).standard_normal((2, 3, 6, 6)).astype(np.float32)
    out_cpu, out_gpu = cpu(x), gpu(backend.to_device(x, "cupy"))
    assert out_gpu.dtype == np.float32 and is_cupy_array(out_gpu)
    assert rel_error(to_numpy(out_gpu), out_cpu) <= 1e-5
    dout = np.random.default_rng(5).standard_normal(out_cpu.shape).astype(np.float32)
    dx_gpu = gpu.backward(backend.to_device(dout, "cupy"))
    assert dx_gpu.dtype == np.float32
    assert rel_error(to_numpy(dx_gpu), cpu.backward(dout)) <= 1e-5


# -- creating on and moving to the GPU -------------------------------------------------


def test_use_cupy_creates_parameters_on_gpu(cp):
    use(DEVICE)
    assert backend.current() == "cupy"
    backend.manual_seed(7)
    modules = [layers.Conv2d(3, 4, 3), layers.BatchNorm2d(4), layers.Linear(5, 2)]
    for m in modules:
        for key, value in m.state_dict().items():
            assert isinstance(value, cp.ndarray), f"{type(m).__name__}.{key} is not on the GPU"
        for _, p in m.named_parameters():
            assert p.dtype == np.float32
    assert modules[1].num_batches_tracked.dtype == np.int64
    x = backend.randn((2, 3, 5, 5))
    assert isinstance(x, cp.ndarray)
    assert isinstance(modules[0](x), cp.ndarray)

    # The same seed gives the same weights on either backend (drawn on the host, then moved).
    use("numpy")
    backend.manual_seed(7)
    on_cpu = [layers.Conv2d(3, 4, 3), layers.BatchNorm2d(4), layers.Linear(5, 2)]
    for m_gpu, m_cpu in zip(modules, on_cpu):
        for key, value in m_cpu.state_dict().items():
            assert isinstance(value, np.ndarray)
            np.testing.assert_array_equal(to_numpy(m_gpu.state_dict()[key]), value)


def test_to_cupy_and_back_round_trip(cp):
    backend.manual_seed(8)
    net = _net(None)
    x = np.random.default_rng(8).standard_normal((2, 2, 6, 5))
    net.zero_grad()
    out = net(x)
    net.backward(np.random.default_rng(9).standard_normal(out.shape))  # grads and running stats exist
    before = {k: np.array(v) for k, v in net.state_dict().items()}
    grads_before = {k: p.grad.copy() for k, p in net.named_parameters()}

    assert net.to("cupy") is net
    for key, value in net.state_dict().items():
        assert isinstance(value, cp.ndarray), f"{key} was not moved to the GPU"
        assert value.dtype == before[key].dtype, key
        np.testing.assert_array_equal(to_numpy(value), before[key])
    for key, p in net.named_parameters():
        assert isinstance(p.data, cp.ndarray) and isinstance(p.grad, cp.ndarray), key
        np.testing.assert_array_equal(to_numpy(p.grad), grads_before[key])
    assert is_cupy_array(net(cp.asarray(x)))
    with pytest.raises(ValueError, match="cupy|numpy"):
        net(x)  # a NumPy input for a GPU module: refused, with a message

    # Loading a NumPy state dict into the GPU module keeps it on the GPU.
    net.load_state_dict(before)
    for key, value in net.state_dict().items():
        assert isinstance(value, cp.ndarray), key
        np.testing.assert_array_equal(to_numpy(value), before[key])

    assert net.to("numpy") is net
    for key, value in net.state_dict().items():
        assert type(value) is np.ndarray, f"{key} was not moved back to the host"
        assert value.dtype == before[key].dtype, key
        np.testing.assert_array_equal(value, before[key])
    for key, p in net.named_parameters():
        assert type(p.grad) is np.ndarray
        np.testing.assert_array_equal(p.grad, grads_before[key])
    assert type(net(x)) is np.ndarray


# -- determinism ------------------------------------------------------------------------


def test_col2im_is_deterministic(cp):
    """Overlapping windows (3x3, stride 1) add into the same pixels: no atomics, so bit-identical."""
    cols = cp.asarray(np.random.default_rng(10).standard_normal((8, 16 * 9, 16 * 16)))
    first = layers.col2im(cols, (8, 16, 16, 16), (3, 3), (1, 1), (1, 1))
    second = layers.col2im(cols, (8, 16, 16, 16), (3, 3), (1, 1), (1, 1))
    assert isinstance(first, cp.ndarray)
    assert to_numpy(first).tobytes() == to_numpy(second).tobytes()
    # and it is the adjoint of im2col: <im2col(x), cols> == <x, col2im(cols)>
    x = cp.asarray(np.random.default_rng(11).standard_normal((8, 16, 16, 16)))
    lhs = float((layers.im2col(x, (3, 3), (1, 1), (1, 1)) * cols).sum())
    rhs = float((x * first).sum())
    assert abs(lhs - rhs) <= 1e-10 * max(abs(lhs), abs(rhs))


@pytest.mark.parametrize("name", ["Conv2d-k3-s1-p1", "Conv2d-k7-s2-p3", "MaxPool2d-k3-s1", "MaxPool2d-k3-s2-p1"])
def test_backward_is_deterministic_on_gpu(name):
    """Two backward passes of a layer whose windows overlap: bit-identical gradients."""
    module, (x,) = build_case(name)
    module.to("cupy")
    rng = np.random.default_rng(12)
    x = backend.to_device(rng.standard_normal((4, x.shape[1], 24, 24)), "cupy")
    dout = None
    results = []
    for _ in range(2):
        module.zero_grad()
        out = module(x)
        if dout is None:
            dout = backend.to_device(rng.standard_normal(out.shape), "cupy")
        dx = module.backward(dout)
        results.append([to_numpy(dx)] + [to_numpy(p.grad) for p in module.parameters()])
    assert len(results[0]) == len(list(module.parameters())) + 1
    for first, second in zip(*results):
        assert first.tobytes() == second.tobytes()
