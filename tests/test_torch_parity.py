"""Parity with ``torch.nn``: every layer computes what PyTorch computes.

In float64, for each layer: the forward output, the input gradient for a
RANDOM upstream gradient (never ones: for batch norm and softmax the
gradient of ``sum(out)`` is identically zero, so a missing term would pass),
the parameter gradients and, for batch norm, the running statistics. All
must agree to a relative error of 1e-10 (``gradcheck.rel_error``).

Weights travel from the torch module into ours through ``load_state_dict``,
so these tests also pin our state-dict key names, order and shapes to
PyTorch's: a trained ``torch.nn`` checkpoint loads into our modules as is.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch not installed: PyTorch parity tests need the 'torch' extra")
nn = torch.nn

from resnet_np import layers  # noqa: E402
from resnet_np.gradcheck import rel_error  # noqa: E402

TOL = 1e-10

# Worst relative error seen per layer (informative only; every comparison asserts on its own).
WORST_ERRORS = {}


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    # Tiny tensors: threads only add overhead (and run-to-run jitter).
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# -- helpers -------------------------------------------------------------------


def t(a, requires_grad=False):
    """A float64 (or int64) torch tensor holding a copy of the NumPy array ``a``."""
    return torch.tensor(np.array(a), requires_grad=requires_grad)


def n(tensor):
    return tensor.detach().numpy()


def assert_close(layer, what, ours, theirs, tol=TOL):
    ours = np.asarray(ours)
    theirs = n(theirs) if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    assert ours.shape == theirs.shape, f"{layer} {what}: shape {ours.shape} vs torch {theirs.shape}"
    err = rel_error(ours, theirs)
    WORST_ERRORS[layer] = max(WORST_ERRORS.get(layer, 0.0), err)
    assert err <= tol, f"{layer} {what}: relative error {err:.3e} against torch (tolerance {tol:.0e})"


def load_from_torch(ours, theirs):
    """Copy the torch module's state into ours; first check keys, order and shapes agree."""
    theirs_sd = theirs.state_dict()
    ours_sd = ours.state_dict()
    assert list(ours_sd) == list(theirs_sd), "state_dict keys (or their order) differ from torch's"
    for key in theirs_sd:
        assert tuple(ours_sd[key].shape) == tuple(theirs_sd[key].shape), f"{key}: shape differs from torch's"
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs_sd.items()})
    for key, value in ours.state_dict().items():  # really loaded, and still float64 where floating
        np.testing.assert_array_equal(value, theirs_sd[key].numpy())
        if np.issubdtype(value.dtype, np.floating):
            assert value.dtype == np.float64
    return ours


def randomize_(module, gen):
    """Replace torch's default init (BN: weight 1, bias 0, ...) by random values that can expose bugs."""
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var") or (name.endswith("weight") and tensor.dim() == 1):
                tensor.copy_(torch.rand(tensor.shape, generator=gen, dtype=tensor.dtype) + 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=gen, dtype=tensor.dtype))
    return module


def forward_backward_parity(name, ours, theirs, x, rng, zero_grad=True):
    """One forward and one backward pass in both, with the same random upstream gradient."""
    if zero_grad:
        ours.zero_grad()
        theirs.zero_grad()
    x_t = t(x, requires_grad=True)
    out = ours(x)
    out_t = theirs(x_t)
    assert_close(name, "forward output", out, out_t)
    dout = rng.standard_normal(out.shape)
    dx = ours.backward(dout)
    out_t.backward(t(dout))
    assert_close(name, "input gradient", dx, x_t.grad)
    assert_param_grads(name, ours, theirs)
    return out


def assert_param_grads(name, ours, theirs):
    theirs_params = dict(theirs.named_parameters())
    ours_params = dict(ours.named_parameters())
    assert list(ours_params) == list(theirs_params), "parameter names differ from torch's"
    for key, p in ours_params.items():
        assert p.grad is not None, f"{name}: {key} received no gradient"
        assert_close(name, f"gradient of {key}", p.grad, theirs_params[key].grad)


def assert_buffers(name, ours, theirs):
    theirs_buffers = dict(theirs.named_buffers())
    ours_buffers = dict(ours.named_buffers())
    assert list(ours_buffers) == list(theirs_buffers), "buffer names differ from torch's"
    for key, value in ours_buffers.items():
        if key.endswith("num_batches_tracked"):
            assert np.asarray(value).dtype == np.int64
            assert int(value) == int(theirs_buffers[key]), f"{key}: {int(value)} vs torch {int(theirs_buffers[key])}"
        else:
            assert_close(name, key, value, theirs_buffers[key])


# -- Conv2d --------------------------------------------------------------------

CONV_CASES = [
    # (in, out, kernel, stride, padding, bias, input HxW)
    pytest.param(3, 4, 1, 1, 0, True, (6, 5), id="k1-s1-p0-bias"),
    pytest.param(3, 4, 1, 2, 0, False, (7, 6), id="k1-s2-p0-nobias"),
    pytest.param(3, 4, 3, 1, 1, True, (6, 7), id="k3-s1-p1-bias"),
    pytest.param(3, 4, 3, 2, 1, False, (7, 8), id="k3-s2-p1-nobias"),
    pytest.param(2, 3, 3, 1, 0, True, (5, 6), id="k3-s1-p0-bias"),
    pytest.param(2, 3, 3, 2, 2, True, (6, 5), id="k3-s2-p2-bias"),
    pytest.param(2, 3, 3, 1, 3, False, (4, 4), id="k3-s1-p3-nobias"),
    pytest.param(3, 4, 7, 2, 3, False, (11, 10), id="k7-s2-p3-nobias"),
    pytest.param(2, 3, (3, 2), (2, 1), (1, 0), True, (7, 6), id="k3x2-s2x1-p1x0-bias"),
    pytest.param(2, 3, (2, 3), (1, 2), (0, 1), False, (5, 8), id="k2x3-s1x2-p0x1-nobias"),
    pytest.param(2, 3, (2, 3), 2, (2, 1), True, (6, 7), id="k2x3-s2-p2x1-bias"),
]


@pytest.mark.parametrize("cin,cout,kernel,stride,padding,bias,hw", CONV_CASES)
def test_conv2d(cin, cout, kernel, stride, padding, bias, hw):
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    theirs = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=bias).double()
    ours = layers.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=bias).astype("float64")
    load_from_torch(ours, theirs)
    x = rng.standard_normal((2, cin) + hw)
    forward_backward_parity("Conv2d", ours, theirs, x, rng)


@pytest.mark.parametrize("layer", ["Conv2d", "Linear"])
def test_parameter_gradients_accumulate_like_torch(layer):
    """Two backward passes without zero_grad: both libraries sum the gradients."""
    torch.manual_seed(0)
    rng = np.random.default_rng(2)
    if layer == "Conv2d":
        theirs = nn.Conv2d(2, 3, 3, stride=1, padding=1).double()
        ours = layers.Conv2d(2, 3, 3, stride=1, padding=1).astype("float64")
        shape = (2, 2, 5, 5)
    else:
        theirs = nn.Linear(5, 4).double()
        ours = layers.Linear(5, 4).astype("float64")
        shape = (3, 5)
    load_from_torch(ours, theirs)
    ours.zero_grad()
    theirs.zero_grad()
    for _ in range(2):
        forward_backward_parity(layer, ours, theirs, rng.standard_normal(shape), rng, zero_grad=False)


# -- BatchNorm2d ---------------------------------------------------------------

BN_CASES = [
    pytest.param(0.1, (4, 3, 5, 6), False, id="momentum0.1"),
    pytest.param(0.1, (4, 3, 5, 6), True, id="momentum0.1-loaded-stats"),
    pytest.param(0.3, (2, 3, 1, 1), True, id="momentum0.3-M2"),
    pytest.param(None, (4, 3, 5, 6), False, id="momentumNone"),
    pytest.param(None, (3, 2, 4, 3), True, id="momentumNone-loaded-stats"),
]


@pytest.mark.parametrize("momentum,shape,loaded_stats", BN_CASES)
def test_batchnorm2d_train_steps_then_eval(momentum, shape, loaded_stats):
    """Three train-mode steps (outputs, gradients, running stats after each), then eval mode."""
    C = shape[1]
    gen = torch.Generator().manual_seed(3)
    rng = np.random.default_rng(3)
    theirs = nn.BatchNorm2d(C, momentum=momentum).double()
    ours = layers.BatchNorm2d(C, momentum=momentum).astype("float64")
    randomize_(theirs, gen)  # weight, bias, running_mean, running_var
    if loaded_stats:
        # An earlier training run: with momentum=None the count sets the averaging factor.
        theirs.num_batches_tracked.fill_(4)
    load_from_torch(ours, theirs)
    ours.train()
    theirs.train()
    for step in range(3):
        x = rng.standard_normal(shape) * (step + 1.5) + rng.standard_normal((1, C, 1, 1))
        forward_backward_parity("BatchNorm2d", ours, theirs, x, rng)
        assert_buffers("BatchNorm2d", ours, theirs)
    ours.eval()
    theirs.eval()
    x = rng.standard_normal(shape) * 2.0 + 0.5
    forward_backward_parity("BatchNorm2d", ours, theirs, x, rng)
    assert_buffers("BatchNorm2d", ours, theirs)  # eval mode leaves them alone, in both


def test_batchnorm2d_eval_with_loaded_stats():
    """Eval mode right after loading: normalisation by the (random) running statistics."""
    gen = torch.Generator().manual_seed(4)
    rng = np.random.default_rng(4)
    theirs = randomize_(nn.BatchNorm2d(5).double(), gen).eval()
    ours = load_from_torch(layers.BatchNorm2d(5).astype("float64"), theirs).eval()
    forward_backward_parity("BatchNorm2d", ours, theirs, rng.standard_normal((3, 5, 4, 2)), rng)
    assert_buffers("BatchNorm2d", ours, theirs)


# -- ReLU ----------------------------------------------------------------------


def test_relu():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4, 5, 6))
    x.flat[::7] = 0.0  # exact zeros: both take the derivative at 0 as 0
    forward_backward_parity("ReLU", layers.ReLU(), nn.ReLU(), x, rng)


# -- MaxPool2d -----------------------------------------------------------------

POOL_CASES = [
    # (kernel, stride, padding, input HxW)
    pytest.param(3, 1, 0, (6, 7), id="k3-s1"),
    pytest.param(3, 2, 1, (9, 8), id="k3-s2-p1"),
    pytest.param(2, 2, 0, (8, 7), id="k2-s2"),
    pytest.param((3, 2), (2, 1), (1, 0), (7, 6), id="k3x2-s2x1-p1x0"),
    pytest.param((2, 3), (1, 2), (0, 1), (5, 8), id="k2x3-s1x2-p0x1"),
]


@pytest.mark.parametrize("kernel,stride,padding,hw", POOL_CASES)
@pytest.mark.parametrize("offset", [0.0, -10.0], ids=["centred", "all-negative"])
def test_maxpool2d(kernel, stride, padding, hw, offset):
    """``all-negative``: padding must never win a window (it is -inf, not 0)."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3) + hw) + offset
    forward_backward_parity("MaxPool2d", layers.MaxPool2d(kernel, stride, padding),
                            nn.MaxPool2d(kernel, stride, padding), x, rng)


TIE_INPUTS = {
    "all-zeros": lambda rng, shape: np.zeros(shape),
    "repeated-values": lambda rng, shape: rng.integers(0, 3, shape).astype(np.float64),
    "constant-rows": lambda rng, shape: np.repeat(rng.integers(0, 2, shape[:3] + (1,)), shape[3], axis=3)
    .astype(np.float64),
    # Every window a tie at -inf, padding included: the gradient must still reach a real pixel (PyTorch's
    # first in-bounds one), never the padding, whose "index" would land on some other pixel.
    "all-minus-inf": lambda rng, shape: np.full(shape, -np.inf),
}


@pytest.mark.parametrize("tie_input", list(TIE_INPUTS))
@pytest.mark.parametrize("kernel,stride,padding", [
    pytest.param(3, 1, 0, id="k3-s1"),
    pytest.param(3, 2, 1, id="k3-s2-p1"),
    pytest.param(2, 2, 0, id="k2-s2"),
    pytest.param((2, 3), (1, 2), (0, 1), id="k2x3-s1x2-p0x1"),
])
def test_maxpool2d_ties_break_like_torch(tie_input, kernel, stride, padding):
    """Equal values in a window: the gradient goes to the same element as in PyTorch.

    PyTorch's CPU kernel keeps the first maximum in row-major order; so do we.
    The random upstream gradient makes "which element" visible in dx.
    """
    rng = np.random.default_rng(7)
    x = TIE_INPUTS[tie_input](rng, (2, 2, 6, 7))
    ours = layers.MaxPool2d(kernel, stride, padding)
    theirs = nn.MaxPool2d(kernel, stride, padding, return_indices=True)
    x_t = t(x, requires_grad=True)
    out_t, indices = theirs(x_t)
    out = ours(x)
    np.testing.assert_array_equal(out, out_t.detach().numpy())  # a maximum is one of the inputs: exact (-inf too)
    dout = rng.standard_normal(out.shape)
    dx = ours.backward(dout)
    out_t.backward(t(dout))
    # Overlapping windows sum in a different order: equal up to rounding, and a
    # gradient routed to the wrong element would be off by O(1).
    assert_close("MaxPool2d", "input gradient (ties)", dx, x_t.grad)
    # The same winners, stated directly: torch's flat index into each H*W map.
    N, C, H, W = x.shape
    winners = np.zeros(indices.shape, dtype=np.int64)
    for oh in range(out.shape[2]):
        for ow in range(out.shape[3]):
            mask = np.zeros_like(dout)
            mask[:, :, oh, ow] = 1.0
            ours.forward(x)
            winners[:, :, oh, ow] = ours.backward(mask).reshape(N, C, H * W).argmax(axis=2)
    np.testing.assert_array_equal(winners, indices.numpy())


# -- GlobalAvgPool2d, Flatten, Linear, Add -------------------------------------


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (3, 4, 1, 1), (1, 2, 4, 4)], ids=["5x7", "1x1", "4x4"])
def test_global_avg_pool2d(shape):
    rng = np.random.default_rng(8)
    forward_backward_parity("GlobalAvgPool2d", layers.GlobalAvgPool2d(), nn.AdaptiveAvgPool2d((1, 1)),
                            rng.standard_normal(shape), rng)


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 6, 1, 1), (2, 3, 4)], ids=["NCHW", "NC11", "3-D"])
def test_flatten(shape):
    rng = np.random.default_rng(9)
    forward_backward_parity("Flatten", layers.Flatten(), nn.Flatten(), rng.standard_normal(shape), rng)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_linear(bias):
    torch.manual_seed(0)
    rng = np.random.default_rng(10)
    theirs = nn.Linear(7, 4, bias=bias).double()
    ours = load_from_torch(layers.Linear(7, 4, bias=bias).astype("float64"), theirs)
    forward_backward_parity("Linear", ours, theirs, rng.standard_normal((5, 7)), rng)


def test_add():
    rng = np.random.default_rng(11)
    a, b = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 3, 4, 5))
    a_t, b_t = t(a, requires_grad=True), t(b, requires_grad=True)
    ours = layers.Add()
    out = ours(a, b)
    out_t = a_t + b_t
    assert_close("Add", "forward output", out, out_t)
    dout = rng.standard_normal(out.shape)
    da, db = ours.backward(dout)
    out_t.backward(t(dout))
    assert_close("Add", "gradient of a", da, a_t.grad)
    assert_close("Add", "gradient of b", db, b_t.grad)


# -- SoftmaxCrossEntropy -------------------------------------------------------


@pytest.mark.parametrize("N,K,scale", [
    pytest.param(8, 10, 1.0, id="N8-K10"),
    pytest.param(1, 2, 3.0, id="N1-K2"),
    pytest.param(5, 4, 50.0, id="large-logits"),
    pytest.param(4, 6, 1000.0, id="huge-logits"),  # exp would overflow without the max shift
])
def test_softmax_cross_entropy(N, K, scale):
    rng = np.random.default_rng(12)
    logits = rng.standard_normal((N, K)) * scale
    labels = rng.integers(0, K, N)
    logits_t = t(logits, requires_grad=True)
    loss_t = nn.CrossEntropyLoss(reduction="mean")(logits_t, t(labels))
    ours = layers.SoftmaxCrossEntropy()
    loss = ours.forward(logits, labels)
    assert isinstance(loss, float)
    assert_close("SoftmaxCrossEntropy", "loss", loss, loss_t)
    dloss = float(rng.standard_normal())  # random scalar upstream gradient
    loss_t.backward(torch.tensor(dloss, dtype=torch.float64))
    assert_close("SoftmaxCrossEntropy", "dlogits", ours.backward(dloss), logits_t.grad)


# -- Sequential ----------------------------------------------------------------


def _small_net(lib):
    L = layers if lib == "ours" else nn
    pool = layers.GlobalAvgPool2d() if lib == "ours" else nn.AdaptiveAvgPool2d((1, 1))
    return L.Sequential(
        L.Conv2d(3, 4, 3, stride=1, padding=1, bias=False),
        L.BatchNorm2d(4),
        L.ReLU(),
        L.MaxPool2d(3, 2, 1),
        # No bias before batch norm (as in ResNet): its exact gradient would be 0, leaving only rounding noise.
        L.Conv2d(4, 6, (1, 3), stride=(2, 1), padding=(0, 1), bias=False),
        L.BatchNorm2d(6, momentum=None),
        L.ReLU(),
        pool,
        L.Flatten(),
        L.Linear(6, 5),
    )


def test_sequential():
    """A small network: same keys as nn.Sequential, same outputs, gradients and buffers, then a loss."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(13)
    rng = np.random.default_rng(13)
    theirs = randomize_(_small_net("torch").double(), gen)
    ours = load_from_torch(_small_net("ours").astype("float64"), theirs)
    for step in range(2):
        forward_backward_parity("Sequential", ours, theirs, rng.standard_normal((4, 3, 9, 8)), rng)
        assert_buffers("Sequential", ours, theirs)

    # Through the loss, as a training step does.
    ours.zero_grad()
    theirs.zero_grad()
    x = rng.standard_normal((4, 3, 9, 8))
    labels = rng.integers(0, 5, 4)
    x_t = t(x, requires_grad=True)
    loss_t = nn.CrossEntropyLoss()(theirs(x_t), t(labels))
    criterion = layers.SoftmaxCrossEntropy()
    loss = criterion(ours(x), labels)
    assert_close("Sequential", "loss", loss, loss_t)
    loss_t.backward()
    assert_close("Sequential", "input gradient through the loss", ours.backward(criterion.backward()), x_t.grad)
    assert_param_grads("Sequential", ours, theirs)
    assert_buffers("Sequential", ours, theirs)

    ours.eval()
    theirs.eval()
    forward_backward_parity("Sequential", ours, theirs, rng.standard_normal((2, 3, 9, 8)), rng)
    assert_buffers("Sequential", ours, theirs)


def test_state_dict_loads_into_torch():
    """The other direction: our state dict (as tensors) loads into nn.Sequential with strict=True."""
    torch.manual_seed(0)
    ours = _small_net("ours").astype("float64")
    ours.train()
    ours(np.random.default_rng(14).standard_normal((2, 3, 9, 8)))  # move the running stats off their init
    theirs = _small_net("torch").double()
    theirs.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in ours.state_dict().items()}, strict=True)
    for key, value in theirs.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), ours.state_dict()[key])
