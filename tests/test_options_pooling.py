"""PyTorch's pooling and flatten options (issue 31): AdaptiveAvgPool2d, AvgPool2d, MaxPool2d's dilation,
ceil_mode and return_indices, MaxUnpool2d, Flatten(start_dim, end_dim), unbatched (C, H, W) inputs.

Each option against ``torch.nn`` in float64 (outputs, indices, input gradients with a random upstream
gradient), against finite differences (``gradcheck``), on both paths of max pooling (the engine's twin
equal to the plain functions), with PyTorch's messages for what it refuses. The planted bugs at the end
(a ceil-mode window one row short, count_include_pad's divisor counting the padding, unpooling into
the wrong plane) must each make a check here fail.
"""

import numpy as np
import pytest

from resnet_np import layers as L
from resnet_np import use_fast
from resnet_np.gradcheck import check_module, rel_error
from resnet_np.layers import adaptive_pool, avgpool, pool_windows, unpool

TOL = 1e-12


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def torch_run(module, x, dout, *extra):
    """(out, dx[, second output]) of a torch module on x (float64) with upstream gradient dout."""
    torch = pytest.importorskip("torch")
    x_t = torch.tensor(x, requires_grad=True)
    out = module(x_t, *extra)
    first = out[0] if isinstance(out, tuple) else out
    assert tuple(first.shape) == dout.shape, f"output shape {dout.shape}, torch's {tuple(first.shape)}"
    first.backward(torch.tensor(dout))
    rest = (out[1].numpy(),) if isinstance(out, tuple) else ()
    return (first.detach().numpy(), x_t.grad.numpy()) + rest


def ours_run(module, x, seed=1, *extra):
    out = module(x, *extra)
    first = out[0] if isinstance(out, tuple) else out
    dout = randn(*first.shape, seed=seed)
    return out, dout, module.backward(dout)


def assert_close(name, ours, theirs, tol=TOL):
    assert ours.shape == theirs.shape, f"{name}: shape {ours.shape} != torch's {theirs.shape}"
    assert rel_error(ours, theirs) < tol, f"{name}: relative error {rel_error(ours, theirs):.1e}"


# --------------------------------------------------------------------------------------------------
# MaxPool2d: dilation, ceil_mode, return_indices; both paths
# --------------------------------------------------------------------------------------------------

MAX_CASES = [   # kernel, stride, padding, dilation, ceil_mode
    (3, 2, 1, 1, True),
    (2, 2, 0, 1, True),
    (3, 3, 1, 1, True),
    (3, 2, 0, 2, False),
    (3, 1, 1, 2, True),
    (4, 3, 2, 2, True),
    ((3, 2), (2, 3), (1, 1), (2, 1), True),
    ((2, 3), (1, 2), (0, 1), 1, False),
]
MAX_SHAPES = [(2, 2, 7, 8), (2, 5, 5)]


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "plain"])
@pytest.mark.parametrize("k,s,p,d,ceil", MAX_CASES, ids=str)
def test_maxpool_options_match_torch(k, s, p, d, ceil, fast):
    torch = pytest.importorskip("torch")
    for shape in MAX_SHAPES:
        x = randn(*shape)
        x[0, 0] = -np.inf                   # windows of -inf, the overhang of ceil mode too: a real pixel wins
        with use_fast(fast):
            (out, indices), dout, dx = ours_run(L.MaxPool2d(k, s, p, d, return_indices=True, ceil_mode=ceil), x)
        theirs = torch.nn.MaxPool2d(k, s, p, d, return_indices=True, ceil_mode=ceil)
        out_t, dx_t, indices_t = torch_run(theirs, x, dout)
        np.testing.assert_array_equal(out, out_t)          # a maximum is one of the inputs: exact
        np.testing.assert_array_equal(indices, indices_t)
        assert indices.dtype == np.int64
        assert_close("MaxPool2d dx", dx, dx_t)


def test_maxpool_ties_and_ceil_mode_on_both_paths_equal():
    """The engine's twin with ceil_mode and dilation equals the plain functions (ties, -inf windows)."""
    x = randn(3, 2, 9, 8)
    x[0, 0] = -np.inf
    x[1, 1, :4, :4] = 0.5
    for k, s, p, d, ceil in MAX_CASES:
        results = []
        for fast in (True, False):
            with use_fast(fast):
                pool = L.MaxPool2d(k, s, p, d, return_indices=True, ceil_mode=ceil)
                out, indices = pool(x)
                results.append((out, indices, pool.backward(randn(*out.shape, seed=3))))
        (out_f, ind_f, dx_f), (out_p, ind_p, dx_p) = results
        np.testing.assert_array_equal(out_f, out_p)
        np.testing.assert_array_equal(ind_f, ind_p)
        assert rel_error(dx_f, dx_p) < TOL, (k, s, p, d, ceil)


@pytest.mark.parametrize("k,s,p,d,ceil", MAX_CASES[:5], ids=str)
def test_maxpool_options_gradcheck(k, s, p, d, ceil):
    check_module(L.MaxPool2d(k, s, p, d, ceil_mode=ceil), randn(2, 2, 7, 6, seed=4))   # no ties: normal draws
    check_module(L.MaxPool2d(k, s, p, d, ceil_mode=ceil), randn(2, 7, 6, seed=5))      # unbatched


def test_maxpool_default_options_unchanged():
    """The default path keeps its repr, its output size and no indices."""
    pool = L.MaxPool2d(3, 2, 1)
    assert repr(pool) == "MaxPool2d(kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))"
    assert pool(randn(1, 1, 7, 7)).shape == (1, 1, 4, 4)
    assert L.MaxPool2d(2, 2, ceil_mode=True)(randn(1, 1, 5, 5)).shape == (1, 1, 3, 3)
    assert L.MaxPool2d(2, 2)(randn(1, 1, 5, 5)).shape == (1, 1, 2, 2)


# --------------------------------------------------------------------------------------------------
# AvgPool2d
# --------------------------------------------------------------------------------------------------

AVG_CASES = [   # kernel, stride, padding, ceil_mode, count_include_pad, divisor_override
    (3, 2, 1, False, True, None),
    (3, 2, 1, True, False, None),
    (2, 2, 0, True, True, None),
    (2, 2, 1, True, False, None),
    (3, 3, 1, True, True, None),
    ((3, 2), (2, 1), (1, 0), True, False, None),
    ((2, 3), (2, 2), (1, 1), False, True, 5),
    (3, 1, 1, True, False, 2),
]


@pytest.mark.parametrize("k,s,p,ceil,cip,div", AVG_CASES, ids=str)
def test_avgpool_matches_torch(k, s, p, ceil, cip, div):
    torch = pytest.importorskip("torch")
    for shape in [(2, 2, 7, 8), (2, 5, 5)]:
        x = randn(*shape)
        out, dout, dx = ours_run(L.AvgPool2d(k, s, p, ceil, cip, div), x)
        out_t, dx_t = torch_run(torch.nn.AvgPool2d(k, s, p, ceil, cip, div), x, dout)
        assert_close("AvgPool2d out", out, out_t)
        assert_close("AvgPool2d dx", dx, dx_t)


@pytest.mark.parametrize("k,s,p,ceil,cip,div", AVG_CASES[1:4] + AVG_CASES[5:6], ids=str)
def test_avgpool_gradcheck(k, s, p, ceil, cip, div):
    check_module(L.AvgPool2d(k, s, p, ceil, cip, div), randn(2, 2, 5, 6))
    check_module(L.AvgPool2d(k, s, p, ceil, cip, div), randn(2, 5, 4))


def test_avgpool_keeps_float32():
    out = L.AvgPool2d(3, 2, 1, count_include_pad=False)(randn(1, 2, 5, 5).astype(np.float32))
    assert out.dtype == np.float32


# --------------------------------------------------------------------------------------------------
# AdaptiveAvgPool2d
# --------------------------------------------------------------------------------------------------

ADAPTIVE_SIZES = [(1, 1), 1, 3, (2, 5), (None, 3), (7, 4), (4, None)]


@pytest.mark.parametrize("size", ADAPTIVE_SIZES, ids=str)
def test_adaptive_avgpool_matches_torch(size):
    torch = pytest.importorskip("torch")
    for shape in [(2, 2, 7, 5), (3, 6, 8)]:
        x = randn(*shape)
        out, dout, dx = ours_run(L.AdaptiveAvgPool2d(size), x)
        out_t, dx_t = torch_run(torch.nn.AdaptiveAvgPool2d(size), x, dout)
        assert_close("AdaptiveAvgPool2d out", out, out_t)
        assert_close("AdaptiveAvgPool2d dx", dx, dx_t)


def test_adaptive_windows_are_pytorchs():
    assert adaptive_pool.adaptive_windows(5, 3) == [(0, 2), (1, 4), (3, 5)]     # overlapping by a row
    assert adaptive_pool.adaptive_windows(3, 5) == [(0, 1), (0, 2), (1, 2), (1, 3), (2, 3)]
    assert adaptive_pool.adaptive_windows(7, 1) == [(0, 7)]
    assert L.AdaptiveAvgPool2d(0)(randn(1, 2, 3, 3)).shape == (1, 2, 0, 0)


def test_adaptive_1x1_is_global_average_pooling():
    x = randn(3, 4, 5, 6)
    ours, theirs = L.AdaptiveAvgPool2d((1, 1)), L.GlobalAvgPool2d()
    assert rel_error(ours(x), theirs(x)) < 1e-15
    dout = randn(3, 4, 1, 1, seed=1)
    assert rel_error(ours.backward(dout), theirs.backward(dout)) < 1e-15
    assert ours.state_dict() == {} == theirs.state_dict()


@pytest.mark.parametrize("size", [3, (2, 5), (7, 4)], ids=str)
def test_adaptive_avgpool_gradcheck(size):
    check_module(L.AdaptiveAvgPool2d(size), randn(2, 2, 5, 6))
    check_module(L.AdaptiveAvgPool2d(size), randn(2, 5, 4))


# --------------------------------------------------------------------------------------------------
# MaxUnpool2d
# --------------------------------------------------------------------------------------------------

def pooled(kernel, stride, padding, shape, seed=0):
    x = randn(*shape, seed=seed)
    out, indices = L.MaxPool2d(kernel, stride, padding, return_indices=True)(x)
    return out, indices


@pytest.mark.parametrize("k,s,p,shape,size", [
    (2, 2, 0, (2, 3, 6, 8), None),
    (2, 2, 0, (2, 3, 6, 7), (6, 7)),
    (2, 2, 0, (2, 3, 6, 7), (2, 3, 7, 7)),
    (3, 3, 1, (2, 2, 7, 7), None),
    ((2, 3), (2, 3), 0, (3, 6, 9), (7, 10)),
], ids=str)
def test_maxunpool_matches_torch(k, s, p, shape, size):
    torch = pytest.importorskip("torch")
    y, indices = pooled(k, s, p, shape)
    out, dout, dx = ours_run(L.MaxUnpool2d(k, s, p), y, 1, indices, size)
    theirs = torch.nn.MaxUnpool2d(k, s, p)
    out_t, dx_t = torch_run(theirs, y, dout, torch.tensor(indices), size)
    np.testing.assert_array_equal(out, out_t)
    np.testing.assert_array_equal(dx, dx_t)


def test_maxunpool_output_size_by_name_and_gradcheck():
    y, indices = pooled(2, 2, 0, (2, 2, 5, 7))
    unpool_layer = L.MaxUnpool2d(2)
    assert unpool_layer(y, indices, output_size=(5, 7)).shape == (2, 2, 5, 7)
    y, indices = pooled(2, 2, 0, (2, 2, 4, 6))
    check_module(L.MaxUnpool2d(2), y, indices)
    check_module(L.MaxUnpool2d(2), y[0], indices[0])           # unbatched


# --------------------------------------------------------------------------------------------------
# Flatten
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("start,end,shape", [
    (1, -1, (2, 3, 4, 5)), (0, -1, (2, 3, 4)), (1, 2, (2, 3, 4, 5)), (-2, -1, (2, 3, 4, 5)),
    (2, 2, (2, 3, 4)), (0, 0, ()), (0, 1, (0, 3, 2)), (-3, 1, (2, 3, 4)),
], ids=str)
def test_flatten_matches_torch(start, end, shape):
    torch = pytest.importorskip("torch")
    x = randn(*shape) if shape else np.array(1.5)
    out, dout, dx = ours_run(L.Flatten(start, end), x)
    out_t, dx_t = torch_run(torch.nn.Flatten(start, end), x, dout)
    np.testing.assert_array_equal(out, out_t)
    np.testing.assert_array_equal(dx, dx_t)
    assert dx.shape == x.shape


def test_flatten_gradcheck():
    check_module(L.Flatten(1, 2), randn(2, 3, 2, 4))


# --------------------------------------------------------------------------------------------------
# Unbatched (C, H, W) inputs: the batched result without its batch axis
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda: L.MaxPool2d(3, 2, 1, return_indices=True, ceil_mode=True),
    lambda: L.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False),
    lambda: L.AdaptiveAvgPool2d((2, 3)),
], ids=["MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d"])
def test_unbatched_equals_a_batch_of_one(make):
    x = randn(3, 7, 6)
    for fast in (True, False):
        with use_fast(fast):
            single, batch = make(), make()
            out1, out4 = single(x), batch(x[None])
            first1 = out1[0] if isinstance(out1, tuple) else out1
            first4 = out4[0] if isinstance(out4, tuple) else out4
            np.testing.assert_array_equal(first1, first4[0])
            if isinstance(out1, tuple):
                np.testing.assert_array_equal(out1[1], out4[1][0])
            dout = randn(*first1.shape, seed=2)
            np.testing.assert_array_equal(single.backward(dout), batch.backward(dout[None])[0])
            with pytest.raises(ValueError, match="upstream gradient of shape"):
                single.backward(dout[None])


# --------------------------------------------------------------------------------------------------
# What PyTorch refuses, refused with its words (and the layer's name)
# --------------------------------------------------------------------------------------------------

def refused(make, *fragments):
    with pytest.raises(ValueError) as info:
        make()
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


def test_pooling_refusals():
    x = randn(1, 1, 5, 5)
    refused(lambda: L.MaxPool2d(3, padding=2), "MaxPool2d", "pad should be at most half of effective kernel size",
            "pad=2, kernel_size=3 and dilation=1")
    refused(lambda: L.MaxPool2d(3, padding=2, dilation=2), "pad should be smaller than or equal to half of kernel "
            "size, but got padW = 2, padH = 2, kW = 3, kH = 3")
    refused(lambda: L.MaxPool2d(3, padding=3, dilation=2), "pad=3, kernel_size=3 and dilation=2")
    refused(lambda: L.AvgPool2d((3, 2), padding=(0, 2)), "AvgPool2d", "pad=2, kernel_size=2 and dilation=1")
    refused(lambda: L.MaxPool2d(2, dilation=0), "MaxPool2d", "dilation", ">= 1")
    refused(lambda: L.AvgPool2d(3, divisor_override=0), "AvgPool2d", "divisor must be not zero")
    refused(lambda: L.AvgPool2d(3, divisor_override=2.5), "AvgPool2d", "divisor_override", "2.5")
    refused(lambda: L.MaxPool2d(7)(x), "MaxPool2d", "Calculated output size: (1x0x0). Output size is too small")
    refused(lambda: L.AvgPool2d(7)(x), "AvgPool2d", "Output size is too small")
    refused(lambda: L.MaxPool2d(2, 2, 1, dilation=3, ceil_mode=True)(randn(1, 1, 1, 1)),
            "MaxPool2d", "holds padding only")
    refused(lambda: L.AvgPool2d(2)(randn(5, 5)), "AvgPool2d", "4-D", "3-D", "got 2-D shape (5, 5)")
    refused(lambda: L.AdaptiveAvgPool2d(3)(randn(1, 1, 0, 5)), "AdaptiveAvgPool2d", "empty 0x5")
    refused(lambda: L.AdaptiveAvgPool2d(-1), "elements of output_size must be greater than or equal to 0")
    refused(lambda: L.AdaptiveAvgPool2d((2, 3, 4)), "output_size must be 2")
    refused(lambda: L.AdaptiveAvgPool2d(2.5), "output_size", "2.5")
    assert L.AvgPool2d(3, 2, 1)(randn(0, 2, 3, 3)).shape == (0, 2, 2, 2)      # an empty batch passes


def test_unpool_refusals():
    y, indices = L.MaxPool2d(2, return_indices=True)(np.arange(25.0).reshape(1, 1, 5, 5))   # winners 6, 8, 16, 18
    unpool_layer = L.MaxUnpool2d(2)
    refused(lambda: unpool_layer(y, indices), "Found an invalid max index: 18 (output volumes are of size 4x4)")
    refused(lambda: unpool_layer(y, indices - 100), "Found an invalid max index: -94")
    refused(lambda: unpool_layer(y, indices, (6, 5)), 'invalid output_size "(6, 5)" (dim 0 must be between 2 and 6)')
    refused(lambda: unpool_layer(y, indices, (3,)), "2 or 4 elements, but it has a length of '1'")
    refused(lambda: unpool_layer(y, indices[:, :, :1]), "Expected shape of indices to be same as that of the input")
    refused(lambda: unpool_layer(y, indices.astype(np.float64)), "elements in indices should be type int64")
    refused(lambda: L.MaxUnpool2d(2, padding=3)(y, indices), "output_size must contain non-negative spatial")
    with pytest.raises(RuntimeError, match="backward called before forward"):
        L.MaxUnpool2d(2).backward(y)


def test_flatten_refusals():
    refused(lambda: L.Flatten()(randn(6)), "Flatten", "Dimension out of range (expected to be in range of [-1, 0], "
            "but got 1)", "got shape (6,)")
    refused(lambda: L.Flatten(2, 1)(randn(2, 3, 4)), "flatten() has invalid args: start_dim cannot come after end_dim")
    refused(lambda: L.Flatten(-5, 0)(randn(2, 3)), "[-2, 1], but got -5")
    refused(lambda: L.Flatten(1.0), "Flatten", "start_dim", "1.0")


# --------------------------------------------------------------------------------------------------
# Planted bugs: each must make a check of this file fail
# --------------------------------------------------------------------------------------------------

def ceil_window_one_short(size, kernel, stride, padding, dilation=1, ceil_mode=False):
    """pool_output_size with ceil mode's rule off by one: the last window dropped when it starts on the edge."""
    out = (size + 2 * padding - (dilation * (kernel - 1) + 1) + (stride - 1 if ceil_mode else 0)) // stride + 1
    return out - 1 if ceil_mode and (out - 1) * stride >= size + padding - 1 else out


def divisor_counts_padding(size, kernel, stride, padding, out, count_include_pad):
    return [min(o * stride - padding + kernel, size + padding) - (o * stride - padding) for o in range(out)]


def unpool_into_wrong_plane(x, indices, out_size):
    N, C, H, W = x.shape
    out = np.zeros((N * C, out_size[0] * out_size[1]), dtype=x.dtype)
    plane = np.arange(N * C).reshape(C, N).T.reshape(-1, 1)        # planes counted channel-major
    out[plane, indices.reshape(N * C, H * W)] = x.reshape(N * C, H * W)
    return out.reshape(N, C, *out_size)


PLANTED = {
    "ceil-mode window one short": (pool_windows, "pool_output_size", ceil_window_one_short,
                                   lambda: test_avgpool_matches_torch(2, 2, 0, True, True, None)),
    "count_include_pad=False divides by the padded window": (
        avgpool, "window_extent", divisor_counts_padding,
        lambda: test_avgpool_matches_torch(3, 2, 1, True, False, None)),
    "unpool scatters into the wrong plane": (unpool, "max_unpool2d", unpool_into_wrong_plane,
                                             lambda: test_maxunpool_matches_torch(2, 2, 0, (2, 3, 6, 8), None)),
}


@pytest.mark.parametrize("planted", list(PLANTED))
def test_a_planted_bug_is_caught(planted, monkeypatch):
    pytest.importorskip("torch")
    module, name, broken, check = PLANTED[planted]
    check()                                                     # as it is, the check passes ...
    monkeypatch.setattr(module, name, broken)
    for user in (avgpool, unpool, L.pooling):                   # the modules that imported it by name
        if hasattr(user, name):
            monkeypatch.setattr(user, name, broken)
    with pytest.raises(AssertionError):                         # ... and with the bug it fails
        check()
