"""PyTorch's options of Conv2d, BatchNorm2d and Linear (issue 31), each with its backward by hand.

Conv2d: padding "same" | "valid" | int | pair, padding_mode "zeros" | "reflect" | "replicate" | "circular",
bias, unbatched (C, H, W) input. BatchNorm2d: affine=False, track_running_stats=False, momentum=None, the
refused unbatched input. Linear: bias=False. Each against ``torch.nn`` in float64 (output, input gradient for
a random upstream gradient, parameter gradients, running statistics, state-dict keys) on both paths, against
finite differences (``resnet_np.gradcheck``), and PyTorch's error messages. The padding functions of
``layers/padding.py`` are checked on their own: against ``torch.nn.functional.pad`` and its autograd, and as
each other's adjoint (<pad(x), g> = <x, pad_backward(g)>), the identity a backward that folds a border
gradient onto the wrong pixel breaks.
"""

import numpy as np
import pytest

import resnet_np
from resnet_np import layers as L
from resnet_np.gradcheck import check_module, rel_error
from resnet_np.layers import padding as P

TOL = 1e-10

# torch warns that it copies the input for an even kernel's "same"; that is what it is asked for here.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")


@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch", reason="torch not installed: the parity tests need the 'torch' extra")
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead
    yield torch
    torch.set_num_threads(old)


@pytest.fixture(params=[True, False], ids=["fast", "plain"])
def path(request):
    with resnet_np.use_fast(request.param):
        yield request.param


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def close(what, ours, theirs, tol=TOL):
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else np.asarray(theirs)
    assert np.shape(ours) == theirs.shape, f"{what}: shape {np.shape(ours)} vs torch {theirs.shape}"
    err = rel_error(np.asarray(ours, dtype=np.float64), theirs.astype(np.float64))
    assert err <= tol, f"{what}: relative error {err:.2e} against torch"


def torch_twin(torch, ours, theirs):
    """``theirs`` in float64 with our (float64) parameters, after checking both state dicts have the same keys."""
    theirs = theirs.double()
    assert list(ours.state_dict()) == list(theirs.state_dict()), "state-dict keys differ from torch's"
    theirs.load_state_dict({k: torch.tensor(np.array(v)) for k, v in ours.state_dict().items()})
    return theirs


# -- padding on its own ------------------------------------------------------------------------------------

PADS = [(1, 1, 1, 1), (0, 1, 0, 1), (2, 0, 1, 3), (3, 3, 4, 4)]  # the last: reflect's largest for a 4x5 image


@pytest.mark.parametrize("mode", P.PADDING_MODES)
@pytest.mark.parametrize("pads", PADS, ids=str)
def test_pad_and_its_backward_are_torchs(torch, mode, pads):
    x = randn(2, 3, 4, 5)
    top, bottom, left, right = pads
    out = P.pad(x, pads, mode)
    g = randn(2, 3, 4 + top + bottom, 5 + left + right, seed=1)
    xt = torch.tensor(x, requires_grad=True)
    ot = torch.nn.functional.pad(xt, (left, right, top, bottom), mode="constant" if mode == "zeros" else mode)
    ot.backward(torch.tensor(g))
    close(f"pad {mode} {pads}", out, ot)
    close(f"pad_backward {mode} {pads}", P.pad_backward(g, pads, mode), xt.grad)


@pytest.mark.parametrize("mode", P.PADDING_MODES)
def test_pad_backward_is_the_adjoint_of_pad(mode):
    """<pad(x), g> = <x, pad_backward(g)> for every x and g: what "the gradient goes back to its source" means."""
    for pads, shape in [((2, 1, 3, 0), (2, 4, 5)), ((3, 3, 4, 4), (1, 4, 5)), ((1, 2, 2, 1), (3, 1, 3, 3))]:
        x = randn(*shape)
        out = P.pad(x, pads, mode)
        g = randn(*out.shape, seed=2)
        lhs, rhs = float((out * g).sum()), float((x * P.pad_backward(g, pads, mode)).sum())
        assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs)), (pads, lhs, rhs)
    if mode == "circular":  # circular allows a pad as large as the side itself
        x = randn(1, 1, 2, 3)
        out = P.pad(x, (2, 2, 3, 3), mode)
        g = randn(*out.shape, seed=3)
        assert np.isclose((out * g).sum(), (x * P.pad_backward(g, (2, 2, 3, 3), mode)).sum())


def test_same_padding_puts_the_extra_pixel_bottom_right():
    assert P.same_padding((3, 3), (1, 1)) == (1, 1, 1, 1)
    assert P.same_padding((2, 4), (1, 1)) == (0, 1, 1, 2)
    assert P.same_padding((2, 3), (3, 2)) == (1, 2, 2, 2)


# -- Conv2d: parity with torch -----------------------------------------------------------------------------

# (kernel, stride, padding, dilation, groups, bias, padding_mode)
CONV_GRID = {
    "same-3-zeros": (3, 1, "same", 1, 1, True, "zeros"),
    "same-even-2-zeros": (2, 1, "same", 1, 1, True, "zeros"),
    "same-even-4x2-reflect": ((4, 2), 1, "same", 1, 1, False, "reflect"),
    "same-2x3-dilated-replicate": ((2, 3), 1, "same", (1, 2), 2, True, "replicate"),
    "same-3-dilated-2-circular": (3, 1, "same", 2, 1, True, "circular"),
    "valid-circular": (3, 1, "valid", 1, 1, True, "circular"),
    "int-2-stride-2-reflect": (3, 2, 2, 1, 2, True, "reflect"),
    "pair-1-2-stride-2-1-replicate": (3, (2, 1), (1, 2), 1, 1, False, "replicate"),
    "pair-2-1-circular-groups-2": ((2, 3), 1, (2, 1), 1, 2, True, "circular"),
    "int-1-zeros-no-bias": (3, 1, 1, 1, 1, False, "zeros"),
}


def conv_pair(torch, config, C=4, F=6):
    k, s, p, d, g, bias, mode = config
    ours = L.Conv2d(C, F, k, stride=s, padding=p, dilation=d, groups=g, bias=bias, padding_mode=mode)
    ours.astype("float64")
    theirs = torch.nn.Conv2d(C, F, k, stride=s, padding=p, dilation=d, groups=g, bias=bias, padding_mode=mode)
    return ours, torch_twin(torch, ours, theirs)


@pytest.mark.parametrize("name", CONV_GRID)
def test_conv_options_match_torch(torch, path, name):
    ours, theirs = conv_pair(torch, CONV_GRID[name])
    for x in (randn(2, 4, 5, 6), randn(4, 6, 5, seed=1)):                       # a batch, then one (C, H, W) image
        ours.zero_grad()
        theirs.zero_grad()
        xt = torch.tensor(x, requires_grad=True)
        out, ot = ours(x), theirs(xt)
        close(f"{name} output of {x.shape}", out, ot)
        g = randn(*out.shape, seed=4)
        ot.backward(torch.tensor(g))
        close(f"{name} dx of {x.shape}", ours.backward(g), xt.grad)
        close(f"{name} dweight of {x.shape}", ours.weight.grad, theirs.weight.grad)
        if ours.bias is not None:
            close(f"{name} dbias of {x.shape}", ours.bias.grad, theirs.bias.grad)
    assert ours.backward(g, need_input_grad=False) is None


def test_conv_padding_is_stored_and_printed_as_torchs(torch):
    for config in CONV_GRID.values():
        ours, theirs = conv_pair(torch, config)
        assert ours.padding == theirs.padding and ours.padding_mode == theirs.padding_mode
    assert "padding='same', padding_mode=reflect" in repr(L.Conv2d(1, 1, 3, padding="same", padding_mode="reflect"))
    assert repr(L.Conv2d(3, 4, 3, padding=1)) == ("Conv2d(3, 4, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), "
                                                  "bias=True)")  # the default's repr (and layer names) unchanged


def test_padded_first_conv_takes_every_backward_route():
    """Padded first, the engine sees a padding-0 convolution: the transposed route applies, and agrees."""
    x, g = randn(2, 3, 5, 5), randn(2, 4, 5, 5, seed=1)
    state = L.Conv2d(3, 4, 4).astype("float64").state_dict()
    results = []
    for fast, route in [(False, "auto"), (True, "col2im"), (True, "transposed"), (True, "auto")]:
        with resnet_np.use_fast(fast):
            conv = L.Conv2d(3, 4, 4, padding="same", padding_mode="reflect", backward_route=route).astype("float64")
            conv.load_state_dict(state)
            conv(x)
            results.append((conv.backward(g), conv.weight.grad))
    for dx, dw in results[1:]:
        assert rel_error(dx, results[0][0]) < 1e-12 and rel_error(dw, results[0][1]) < 1e-12


# -- Conv2d: gradient checks --------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", P.PADDING_MODES)
def test_conv_padding_modes_gradcheck(path, mode):
    check_module(L.Conv2d(2, 3, 3, padding=(2, 1), padding_mode=mode), randn(2, 2, 4, 5))


@pytest.mark.parametrize("kernel, dilation, mode", [(2, 1, "zeros"), ((4, 2), 1, "reflect"), (2, (3, 1), "circular")])
def test_conv_same_with_even_kernels_gradcheck(path, kernel, dilation, mode):
    x = randn(2, 2, 5, 4)
    conv = L.Conv2d(2, 3, kernel, padding="same", dilation=dilation, padding_mode=mode)
    assert conv(x.astype("float32")).shape == (2, 3, 5, 4)
    check_module(conv, x)


@pytest.mark.parametrize("mode", ["zeros", "replicate"])
def test_unbatched_conv_gradcheck(path, mode):
    conv = L.Conv2d(3, 2, 3, stride=2, padding=1, padding_mode=mode)
    assert conv(randn(3, 5, 6).astype("float32")).shape == (2, 3, 3)
    check_module(conv, randn(3, 5, 6))


# -- Conv2d: errors ---------------------------------------------------------------------------------------

def torch_error(torch, make):
    with pytest.raises(Exception) as info:
        make(torch.nn)
    return str(info.value)


def test_conv_errors_are_torchs(torch):
    cases = [
        (lambda nn: nn.Conv2d(3, 4, 3, padding="sme"), "Invalid padding string 'sme', should be one of"),
        (lambda nn: nn.Conv2d(3, 4, 3, stride=2, padding="same"),
         "padding='same' is not supported for strided convolutions"),
        (lambda nn: nn.Conv2d(3, 4, 3, padding_mode="mirror"), "padding_mode must be one of"),
        (lambda nn: nn.Conv2d(3, 4, 3, padding_mode="mirror"), "but got padding_mode='mirror'"),
    ]
    for make, words in cases:
        assert words in torch_error(torch, make)
        with pytest.raises(ValueError, match="^Conv2d: ") as info:
            make(L)
        assert words in str(info.value)
    for mode in ("zeros", "reflect", "replicate", "circular"):  # every mode named in the message, either way round
        assert repr(mode) in str(pytest.raises(ValueError, L.Conv2d, 1, 1, 3, padding_mode="x").value)


@pytest.mark.parametrize("mode, padding, shape", [("reflect", 2, (1, 2, 2, 5)), ("reflect", (0, 5), (1, 2, 4, 5)),
                                                  ("circular", 3, (1, 2, 2, 5))])
def test_conv_padding_larger_than_the_image_is_refused(mode, padding, shape):
    conv = L.Conv2d(2, 2, 3, padding=padding, padding_mode=mode)
    with pytest.raises(ValueError, match=f"padding_mode='{mode}' needs padding .* the input's"):
        conv(np.zeros(shape, dtype=np.float32))


def test_conv_unbatched_and_wrong_ndim():
    conv = L.Conv2d(3, 4, 3)
    assert conv(np.zeros((3, 5, 5), np.float32)).shape == (4, 3, 3)
    with pytest.raises(ValueError, match=r"expected 3 input channels, got 5"):
        conv(np.zeros((5, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"unbatched \(C, H, W\), got 2-D shape \(5, 5\)"):
        conv(np.zeros((5, 5), np.float32))
    conv(np.zeros((3, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"upstream gradient of shape \(4, 3, 3\)"):
        conv.backward(np.zeros((1, 4, 3, 3), np.float32))


# -- BatchNorm2d ---------------------------------------------------------------------------------------------

BN_OPTIONS = [(affine, track, momentum) for affine in (True, False) for track in (True, False)
              for momentum in (0.1, None)]


@pytest.mark.parametrize("affine, track, momentum", BN_OPTIONS,
                         ids=lambda v: {True: "T", False: "F", None: "None"}.get(v, str(v)))
def test_batchnorm_options_match_torch(torch, path, affine, track, momentum):
    ours = L.BatchNorm2d(3, momentum=momentum, affine=affine, track_running_stats=track).astype("float64")
    theirs = torch_twin(torch, ours, torch.nn.BatchNorm2d(3, momentum=momentum, affine=affine,
                                                          track_running_stats=track))
    expected_keys = ["weight", "bias"] * affine + ["running_mean", "running_var", "num_batches_tracked"] * track
    assert list(ours.state_dict()) == expected_keys
    for step, train in enumerate([True, True, True, False]):
        ours.train(train)
        theirs.train(train)
        ours.zero_grad()
        theirs.zero_grad()
        x = randn(4, 3, 2, 3, seed=step) * (step + 1) + step    # batches of different means and scales
        xt = torch.tensor(x, requires_grad=True)
        out, ot = ours(x), theirs(xt)
        close(f"step {step} output", out, ot)
        g = randn(*x.shape, seed=10 + step)
        ot.backward(torch.tensor(g))
        close(f"step {step} dx", ours.backward(g), xt.grad)
        if affine:
            close(f"step {step} dweight", ours.weight.grad, theirs.weight.grad)
            close(f"step {step} dbias", ours.bias.grad, theirs.bias.grad)
        for key, value in theirs.state_dict().items():
            close(f"step {step} {key}", ours.state_dict()[key], value)


def test_momentum_none_is_the_cumulative_average(path):
    bn = L.BatchNorm2d(2, momentum=None).astype("float64")
    batches = [randn(3, 2, 2, 2, seed=s) + s for s in range(3)]
    for x in batches:
        bn(x)
    means = [x.mean(axis=(0, 2, 3)) for x in batches]
    assert np.allclose(bn.running_mean, np.mean(means, axis=0), rtol=0, atol=1e-14)
    assert int(bn.num_batches_tracked) == 3


def test_batchnorm_without_running_statistics_uses_the_batch_in_eval(path):
    bn = L.BatchNorm2d(2, track_running_stats=False).astype("float64")
    x = randn(3, 2, 2, 2) * 3 + 1
    train_out = bn(x)
    bn.eval()
    assert np.array_equal(bn(x), train_out)
    assert bn.running_mean is None and bn.num_batches_tracked is None


@pytest.mark.parametrize("affine, track, momentum, train", [(False, True, 0.1, True), (True, False, 0.1, False),
                                                            (False, False, None, False), (True, True, None, True)])
def test_batchnorm_options_gradcheck(path, affine, track, momentum, train):
    bn = L.BatchNorm2d(3, momentum=momentum, affine=affine, track_running_stats=track).train(train)
    if affine:
        bn.weight.data[...] = np.array([0.5, 1.5, -1.0])
        bn.bias.data[...] = np.array([0.2, -0.3, 0.1])
    check_module(bn, randn(4, 3, 2, 3) * 2 + 1)


def test_batchnorm_refuses_an_unbatched_image_as_torch_does(torch):
    torch_message = torch_error(torch, lambda nn: nn.BatchNorm2d(3)(torch.zeros(3, 4, 4)))
    assert torch_message == "expected 4D input (got 3D input)"
    for affine, track in [(True, True), (False, False)]:
        bn = L.BatchNorm2d(3, affine=affine, track_running_stats=track)
        with pytest.raises(ValueError, match=r"^BatchNorm2d\(3.*\): expected 4D input \(got 3D input\)") as info:
            bn(np.zeros((3, 4, 4), np.float32))
        assert "x[None]" in str(info.value)
    with pytest.raises(ValueError, match=r"eval mode without running statistics needs more than 1 value"):
        L.BatchNorm2d(3, track_running_stats=False).eval()(np.zeros((1, 3, 1, 1), np.float32))


def test_batchnorm_options_repr():
    assert repr(L.BatchNorm2d(4)) == "BatchNorm2d(4, eps=1e-05, momentum=0.1)"  # the default's unchanged
    assert repr(L.BatchNorm2d(4, momentum=None, affine=False, track_running_stats=False)) == \
        "BatchNorm2d(4, eps=1e-05, momentum=None, affine=False, track_running_stats=False)"


# -- Linear ---------------------------------------------------------------------------------------------

def test_linear_without_bias_matches_torch(torch):
    ours = L.Linear(5, 3, bias=False).astype("float64")
    theirs = torch_twin(torch, ours, torch.nn.Linear(5, 3, bias=False))
    assert list(ours.state_dict()) == ["weight"]
    x, g = randn(4, 5), randn(4, 3, seed=1)
    xt = torch.tensor(x, requires_grad=True)
    ot = theirs(xt)
    close("Linear(bias=False) output", ours(x), ot)
    ot.backward(torch.tensor(g))
    close("Linear(bias=False) dx", ours.backward(g), xt.grad)
    close("Linear(bias=False) dweight", ours.weight.grad, theirs.weight.grad)
