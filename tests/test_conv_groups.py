"""Grouped and dilated convolutions: ``Conv2d(..., dilation, groups)`` against PyTorch and against itself.

``groups`` = G splits the C input and F output channels into G independent
convolutions (ResNeXt's cardinality; G = C is a depthwise convolution, and
F = k * C with G = C a depthwise convolution with channel multiplier k);
``dilation`` spreads the kernel taps apart. What is checked, in float64:

* parity with ``torch.nn.functional.conv2d`` of the output, dx, dW and db
  (relative error <= 1e-10) over a spread of shapes, strides, paddings,
  dilations and groups — each case named for what it exercises; both
  backward paths of the layer are covered (stride 1 with P <= D*(K-1): dx as
  a transposed convolution; otherwise col2im);
* finite-difference gradient checks of a few grouped and dilated layers;
* ``conv2d_naive`` (the obviously-right loop) agrees with the layer;
* the layer gives the same numbers with its images split into many small
  chunks, and with two threads instead of one;
* bad arguments are ValueErrors that name Conv2d;
* a planted mistake — output channels assigned to groups interleaved
  (f % G) instead of in blocks (f // (F/G)) — passes every depthwise case
  and is caught by the channel-multiplier ones.

Relative error: ``gradcheck.rel_error`` = max|a - b| / max(1e-8, max(|a| + |b|)).
"""

import numpy as np
import pytest

from resnet_np import layers as L
from resnet_np import use_fast
from resnet_np.fast import buffers, flat_im2col, threads, transposed_conv
from resnet_np.gradcheck import check_module, rel_error

TORCH_TOL = 1e-10

# Worst relative error against torch per quantity; printed at the end of the module (pytest -s shows it).
WORST = {}


@pytest.fixture(autouse=True, scope="module")
def _report_worst_errors():
    yield
    if WORST:
        print("\nworst relative error of Conv2d against torch.nn.functional.conv2d:")
        for what, err in sorted(WORST.items()):
            print(f"  {what:<8} {err:.2e}")


@pytest.fixture(params=[True, False], ids=["fast", "plain"])
def path(request):
    """The test runs on both paths: the fast layers and the plain ones (resnet_np.use_fast)."""
    with use_fast(request.param):
        yield request.param


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# name -> (N, C, F, H, W, kernel_size, stride, padding, dilation, groups)
CASES = {
    "groups 2": (2, 4, 6, 7, 6, 3, 1, 1, 1, 2),
    "groups 2, stride 2": (2, 4, 6, 7, 8, 3, 2, 1, 1, 2),
    "groups 3, 5x5 kernel": (2, 6, 9, 8, 7, 5, 1, 2, 1, 3),
    "depthwise": (2, 4, 4, 6, 6, 3, 1, 1, 1, 4),
    "depthwise, stride 2": (2, 5, 5, 7, 7, 3, 2, 1, 1, 5),
    "channel multiplier 2": (2, 3, 6, 6, 5, 3, 1, 1, 1, 3),
    "channel multiplier 3, stride 2": (2, 2, 6, 7, 7, 3, 2, 1, 1, 2),
    "ResNeXt-like, 4 groups of 2": (2, 8, 8, 6, 6, 3, 1, 1, 1, 4),
    "dilation 2": (2, 3, 4, 9, 8, 3, 1, 2, 2, 1),
    "dilation 3, no padding": (1, 2, 3, 10, 9, 3, 1, 0, 3, 1),
    "grouped, dilation 2": (2, 4, 6, 8, 8, 3, 1, 2, 2, 2),
    "stride 2 with dilation 2": (2, 3, 4, 9, 10, 3, 2, 2, 2, 1),
    "stride 3 with dilation 2, grouped": (2, 4, 4, 11, 10, 3, 3, 1, 2, 2),
    "non-square kernel, stride and dilation": (2, 4, 6, 9, 8, (3, 2), (2, 1), (1, 0), (1, 2), 2),
    "non-square, stride 1": (2, 4, 4, 7, 9, (1, 3), 1, (0, 2), (2, 2), 4),
    "non-square dilation, stride (1, 3)": (2, 6, 3, 8, 10, (2, 3), (1, 3), (1, 1), (3, 1), 3),
    "padding larger than the kernel": (2, 4, 6, 5, 5, 2, 1, 3, 1, 2),
    "padding larger than the dilated kernel": (1, 2, 2, 4, 5, 3, 1, 4, 1, 2),
    "padding larger, stride 2": (2, 3, 3, 5, 6, 3, 2, 4, 1, 3),
    "1x1 grouped": (2, 8, 8, 5, 5, 1, 1, 0, 1, 4),
    "1x1 grouped, stride 2": (2, 6, 4, 7, 6, 1, 2, 0, 1, 2),
    "1x1 grouped, padded": (2, 4, 6, 4, 4, 1, 1, 1, 1, 2),
    "dilated kernel exactly fills the padded input": (2, 2, 4, 3, 4, 3, 1, 1, 2, 2),
    "1x1 image": (3, 4, 4, 1, 1, 3, 1, 1, 1, 2),
}


def params(names=None):
    return [pytest.param(name, *CASES[name], id=name.replace(" ", "-").replace(",", ""))
            for name in (names or CASES)]


def make_conv(C, F, k, s, p, d, g, seed=0, bias=True):
    conv = L.Conv2d(C, F, k, stride=s, padding=p, dilation=d, groups=g, bias=bias).astype("float64")
    rng = np.random.default_rng(seed)
    conv.weight.data[...] = rng.standard_normal(conv.weight.shape)
    if bias:
        conv.bias.data[...] = rng.standard_normal(conv.bias.shape)
    return conv


def forward_backward(conv, x, dout_seed=7):
    """out, dx, dW, db of one pass with a random upstream gradient (never ones)."""
    conv.zero_grad()
    out = conv(x)
    dx = conv.backward(randn(*out.shape, seed=dout_seed))
    return out, dx, conv.weight.grad, None if conv.bias is None else conv.bias.grad


# -- PyTorch parity ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch", reason="torch not installed: PyTorch parity tests need the 'torch' extra")
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # the cores are shared: float64 CPU kernels gain little from more
    yield torch
    torch.set_num_threads(old)


def torch_pass(torch, conv, x, dout):
    """What torch computes for the same weights: out, dx, dW, db."""
    x_t = torch.tensor(x, requires_grad=True)
    w_t = torch.tensor(conv.weight.data, requires_grad=True)
    b_t = torch.tensor(conv.bias.data, requires_grad=True)
    out_t = torch.nn.functional.conv2d(x_t, w_t, b_t, stride=conv.stride, padding=conv.padding,
                                       dilation=conv.dilation, groups=conv.groups)
    out_t.backward(torch.tensor(dout))
    return [t.detach().numpy() for t in (out_t, x_t.grad, w_t.grad, b_t.grad)]


def assert_matches_torch(torch, name, conv, x):
    ours = forward_backward(conv, x)
    theirs = torch_pass(torch, conv, x, randn(*ours[0].shape, seed=7))
    for what, a, b in zip(("out", "dx", "dW", "db"), ours, theirs):
        assert a.shape == b.shape, f"{name} {what}: shape {a.shape} vs torch {b.shape}"
        err = rel_error(a, b)
        WORST[what] = max(WORST.get(what, 0.0), err)
        assert err <= TORCH_TOL, f"{name} {what}: relative error {err:.2e} against torch"


@pytest.mark.parametrize("name,N,C,F,H,W,k,s,p,d,g", params())
def test_matches_torch(torch, path, name, N, C, F, H, W, k, s, p, d, g):
    assert_matches_torch(torch, name, make_conv(C, F, k, s, p, d, g), randn(N, C, H, W, seed=1))


def test_both_backward_paths_are_covered():
    """The cases above reach dx both as a transposed convolution and through col2im, grouped and not."""
    paths = set()
    for N, C, F, H, W, k, s, p, d, g in CASES.values():
        conv = L.Conv2d(C, F, k, stride=s, padding=p, dilation=d, groups=g)
        paths.add((transposed_conv.pays(C, F, conv.kernel_size, conv.stride, conv.padding, conv.dilation), g > 1,
                   conv.dilation != (1, 1)))
    assert paths >= {(True, True, True), (True, True, False), (False, True, True), (False, True, False),
                     (True, False, True), (False, False, True)}, paths


# -- the naive reference ---------------------------------------------------------------------------


@pytest.mark.parametrize("name,N,C,F,H,W,k,s,p,d,g", params())
def test_naive_reference_agrees(path, name, N, C, F, H, W, k, s, p, d, g):
    conv = make_conv(C, F, k, s, p, d, g)
    x = randn(N, C, H, W, seed=1)
    expected = L.conv2d_naive(x, conv.weight.data, conv.bias.data, stride=s, padding=p, dilation=d, groups=g)
    assert rel_error(conv(x), expected) < 1e-12


def test_naive_grouped_is_separate_convolutions():
    """By definition: a G-group convolution is G convolutions side by side, each on its own channels."""
    x = randn(2, 6, 7, 6, seed=1)
    w, b = randn(9, 2, 3, 3, seed=2), randn(9, seed=3)
    grouped = L.conv2d_naive(x, w, b, stride=2, padding=1, dilation=(1, 2), groups=3)
    parts = [L.conv2d_naive(x[:, 2 * i:2 * i + 2], w[3 * i:3 * i + 3], b[3 * i:3 * i + 3], stride=2, padding=1,
                            dilation=(1, 2)) for i in range(3)]
    np.testing.assert_allclose(grouped, np.concatenate(parts, axis=1), rtol=1e-13, atol=1e-13)


# -- gradient checks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name,N,C,F,H,W,k,s,p,d,g", params([
    "groups 2, stride 2", "depthwise", "channel multiplier 2", "grouped, dilation 2",
    "non-square kernel, stride and dilation", "padding larger than the kernel", "1x1 grouped, stride 2",
]))
def test_gradient_check(path, name, N, C, F, H, W, k, s, p, d, g):
    report = check_module(make_conv(C, F, k, s, p, d, g), randn(N, C, H, W, seed=1))
    assert report.worst < 1e-7
    WORST["gradcheck"] = max(WORST.get("gradcheck", 0.0), report.worst)


# -- chunks of images and threads --------------------------------------------------------------------


def chunked_budget(monkeypatch, C, k, d, H, W, s, p):
    """A chunk budget of about two images, whatever the shape."""
    KH, KW = L.Conv2d(C, C, k).kernel_size
    SH, SW = L.Conv2d(C, C, 1, stride=s).stride
    PH, PW = L.Conv2d(C, C, 1, padding=p).padding
    DH, DW = L.Conv2d(C, C, 1, dilation=d).dilation
    OH = L.conv_output_size(H, DH * (KH - 1) + 1, SH, PH)
    GW = flat_im2col.conv_grid_width(W, KW, (SH, SW), PW, DW)
    monkeypatch.setattr(buffers, "CPU_CHUNK_BYTES", 2 * C * KH * KW * OH * GW * 8)
    monkeypatch.setattr(buffers, "MIN_CHUNK_COLUMNS", 1)


SPLIT_CASES = ["groups 2, stride 2", "depthwise", "channel multiplier 3, stride 2", "grouped, dilation 2",
               "non-square kernel, stride and dilation", "padding larger than the kernel"]


@pytest.mark.parametrize("name,N,C,F,H,W,k,s,p,d,g", params(SPLIT_CASES))
def test_many_small_chunks_give_the_same_result(monkeypatch, name, N, C, F, H, W, k, s, p, d, g):
    conv = make_conv(C, F, k, s, p, d, g)
    x = randn(7, C, H, W, seed=1)  # 7 images: chunks of 2, the last one short
    whole = forward_backward(conv, x)
    chunked_budget(monkeypatch, C, k, d, H, W, s, p)
    chunked = forward_backward(conv, x)
    for what, a, b in zip(("out", "dx", "dW", "db"), whole, chunked):
        assert rel_error(a, b) < 1e-13, what


@pytest.fixture
def restore_threads():
    old = threads.get_num_threads()
    yield
    threads.set_num_threads(old)


@pytest.mark.parametrize("name,N,C,F,H,W,k,s,p,d,g", params(SPLIT_CASES))
def test_two_threads_give_the_same_result(monkeypatch, restore_threads, name, N, C, F, H, W, k, s, p, d, g):
    conv = make_conv(C, F, k, s, p, d, g)
    x = randn(7, C, H, W, seed=1)
    chunked_budget(monkeypatch, C, k, d, H, W, s, p)  # small chunks, so that 7 images make two shares
    threads.set_num_threads(1)
    one = forward_backward(conv, x)

    parts = []
    original = threads.for_each_part

    def counting(fn, N, min_part=1, xp=None):
        results = original(fn, N, min_part, xp)
        parts.append(len(results))
        return results
    monkeypatch.setattr(threads, "for_each_part", counting)
    threads.set_num_threads(2)
    two = forward_backward(conv, x)
    if threads.ThreadpoolController is not None:
        assert max(parts) == 2, parts  # the images really were shared out
    for what, a, b in zip(("out", "dx", "dW", "db"), one, two):
        # Only dW's partial sums are added in another order: the last bits at most.
        assert rel_error(a, b) < 1e-13, what


# -- bad arguments -------------------------------------------------------------------------------


NOT_DIVISIBLE = r"Conv2d: in_channels \({}\) and out_channels \({}\) must both be divisible by groups \(4\)"


@pytest.mark.parametrize("args,kwargs,message", [
    ((6, 4, 3), {"groups": 4}, NOT_DIVISIBLE.format(6, 4)),
    ((4, 6, 3), {"groups": 4}, NOT_DIVISIBLE.format(4, 6)),
    ((4, 4, 3), {"groups": 0}, r"Conv2d: groups must be a positive int, got 0"),
    ((4, 4, 3), {"groups": -2}, r"Conv2d: groups must be a positive int, got -2"),
    ((4, 4, 3), {"groups": 2.0}, r"Conv2d: groups must be a positive int, got 2\.0"),
    ((4, 4, 3), {"dilation": 0}, r"Conv2d: dilation must be >= 1, got \(0, 0\)"),
    ((4, 4, 3), {"dilation": (2, 0)}, r"Conv2d: dilation must be >= 1, got \(2, 0\)"),
    ((4, 4, 3), {"dilation": 1.5}, r"Conv2d: dilation must be an int or a pair of ints, got 1\.5"),
])
def test_bad_arguments(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        L.Conv2d(*args, **kwargs)


@pytest.mark.parametrize("k,d,p,shape,message", [
    (3, 3, 0, (1, 2, 5, 5), r"kernel 3x3 \(dilated to 7x7\) is larger than the padded input 5x5 \(input 5x5, pad"),
    (3, 3, 1, (1, 2, 9, 4), r"kernel 3x3 \(dilated to 7x7\) is larger than the padded input 11x6"),
    ((2, 3), (1, 2), 0, (1, 2, 4, 4), r"kernel 2x3 \(dilated to 2x5\) is larger than the padded input 4x4"),
])
def test_dilated_kernel_larger_than_the_padded_input(k, d, p, shape, message):
    conv = L.Conv2d(2, 2, k, dilation=d, padding=p, groups=2)
    with pytest.raises(ValueError, match=r"^Conv2d\(2, 2, .*groups=2.*\): " + message):
        conv(randn(*shape).astype(np.float32))


def test_wrong_number_of_input_channels_names_the_grouped_layer():
    with pytest.raises(ValueError, match=r"Conv2d\(8, 8, .*groups=4.*\).*8 input channels.*got 4"):
        L.Conv2d(8, 8, 3, groups=4)(randn(1, 4, 5, 5).astype(np.float32))


# -- a planted mistake: output channels assigned to the groups interleaved -----------------------------


def conv2d_interleaved_groups(x, weight, bias, stride, padding, dilation, groups):
    """A grouped convolution that gives output channel f to group f % G instead of f // (F/G).

    A plausible slip when writing a grouped convolution by hand. With one
    output per group (F = G: depthwise, or groups = 1) the two agree; with a
    channel multiplier they do not.
    """
    F, Cg = weight.shape[:2]
    out = np.empty_like(L.conv2d_naive(x, weight, bias, stride, padding, dilation, groups))
    for f in range(F):
        g = f % groups
        out[:, f:f + 1] = L.conv2d_naive(x[:, g * Cg:(g + 1) * Cg], weight[f:f + 1], bias[f:f + 1], stride, padding,
                                         dilation)
    return out


@pytest.mark.parametrize("name,caught", [
    ("depthwise", False), ("depthwise, stride 2", False), ("channel multiplier 2", True),
    ("channel multiplier 3, stride 2", True), ("groups 2", True),
])
def test_interleaved_groups_are_caught_only_with_several_outputs_per_group(torch, name, caught):
    N, C, F, H, W, k, s, p, d, g = CASES[name]
    conv = make_conv(C, F, k, s, p, d, g)
    x = randn(N, C, H, W, seed=1)
    planted = conv2d_interleaved_groups(x, conv.weight.data, conv.bias.data, conv.stride, conv.padding, conv.dilation,
                                        g)
    reference = torch_pass(torch, conv, x, randn(*planted.shape, seed=7))[0]
    assert (rel_error(planted, reference) > 0.1) == caught  # why the list above has channel-multiplier cases
