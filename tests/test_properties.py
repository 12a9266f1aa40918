"""Property-based tests over layer configurations (hypothesis), on the fast path and on the plain one."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from resnet_np import layers as L
from resnet_np import use_fast
from resnet_np.gradcheck import check_module, rel_error


@pytest.fixture(scope="module", params=[True, False], ids=["fast", "plain"], autouse=True)
def path(request):
    """The whole module runs twice: on the fast layers and on the plain ones (module-scoped, as hypothesis wants)."""
    with use_fast(request.param):
        yield request.param

configs = st.fixed_dictionaries({
    "n": st.integers(1, 3), "c": st.integers(1, 3), "f": st.integers(1, 3),
    "h": st.integers(1, 9), "w": st.integers(1, 9),
    "kh": st.integers(1, 5), "kw": st.integers(1, 5),
    "sh": st.integers(1, 3), "sw": st.integers(1, 3),
    "ph": st.integers(0, 3), "pw": st.integers(0, 3),
})


def expected_size(size, k, s, p):
    return (size + 2 * p - k) // s + 1


@settings(max_examples=60, deadline=None)
@given(configs)
def test_conv2d_shape_matches_formula_and_naive_or_raises(cfg):
    conv = L.Conv2d(cfg["c"], cfg["f"], (cfg["kh"], cfg["kw"]), stride=(cfg["sh"], cfg["sw"]),
                    padding=(cfg["ph"], cfg["pw"])).astype("float64")
    x = np.random.default_rng(0).standard_normal((cfg["n"], cfg["c"], cfg["h"], cfg["w"]))
    if cfg["kh"] > cfg["h"] + 2 * cfg["ph"] or cfg["kw"] > cfg["w"] + 2 * cfg["pw"]:
        try:
            conv(x)
        except ValueError as e:
            assert "larger than the padded input" in str(e)
            return
        raise AssertionError("a kernel larger than the padded input was accepted")
    y = conv(x)
    assert y.shape == (cfg["n"], cfg["f"], expected_size(cfg["h"], cfg["kh"], cfg["sh"], cfg["ph"]),
                       expected_size(cfg["w"], cfg["kw"], cfg["sw"], cfg["pw"]))
    assert rel_error(y, L.conv2d_naive(x, conv.weight.data, conv.bias.data, stride=(cfg["sh"], cfg["sw"]),
                                       padding=(cfg["ph"], cfg["pw"]))) < 1e-12
    assert conv.backward(np.ones_like(y)).shape == x.shape


@settings(max_examples=15, deadline=None)
@given(configs)
def test_conv2d_sampled_gradient_checks(cfg):
    if cfg["kh"] > cfg["h"] + 2 * cfg["ph"] or cfg["kw"] > cfg["w"] + 2 * cfg["pw"]:
        return
    conv = L.Conv2d(cfg["c"], cfg["f"], (cfg["kh"], cfg["kw"]), stride=(cfg["sh"], cfg["sw"]),
                    padding=(cfg["ph"], cfg["pw"]))
    check_module(conv, np.random.default_rng(1).standard_normal((cfg["n"], cfg["c"], cfg["h"], cfg["w"])))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 3), st.integers(0, 2), st.integers(2, 9), st.integers(2, 9))
def test_maxpool_matches_naive_or_raises(k, s, p, h, w):
    x = np.random.default_rng(0).standard_normal((2, 2, h, w))
    try:
        pool = L.MaxPool2d(k, stride=s, padding=p)
    except ValueError as e:
        assert 2 * p > k and "at most half" in str(e)
        return
    if k > h + 2 * p or k > w + 2 * p:
        try:
            pool(x)
        except ValueError as e:
            assert "larger than the padded input" in str(e)
            return
        raise AssertionError("a kernel larger than the padded input was accepted")
    y = pool(x)
    np.testing.assert_array_equal(y, L.maxpool2d_naive(x, k, stride=s, padding=p))
    assert pool.backward(np.ones_like(y)).shape == x.shape


# ----------------------------------------------------------------------------
# Any configuration, valid or not: the formula's shape, or a clear ValueError
# ----------------------------------------------------------------------------
#
# The strategies below draw constructor arguments and input shapes that are
# often wrong (zero or negative sizes, the wrong number of channels or of
# dimensions, another dtype). The property: the layer either refuses with a
# ValueError — and exactly when the configuration is invalid — or returns the
# shape the formula gives, with gradients of the shapes of its inputs and
# parameters. Never an IndexError, a broadcasting error or a silent wrong shape.

def pairs(low, high):
    return st.one_of(st.integers(low, high), st.tuples(st.integers(low, high), st.integers(low, high)))


def as_pair(v):
    return v if isinstance(v, tuple) else (v, v)


def images(channels):
    """Input shapes: mostly (N, C, H, W) with the right C, sometimes another C, sometimes any shape at all."""
    right = st.tuples(st.integers(0, 3), st.just(channels), st.integers(1, 8), st.integers(1, 8))
    return st.one_of(right, right, right, st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 8),
                                                    st.integers(1, 8)),
                     st.lists(st.integers(1, 4), min_size=0, max_size=5).map(tuple))


input_shapes = images(2)
dtypes = st.sampled_from([np.float32] * 5 + [np.float64, np.int64])


def refused(make, *fragments):
    """Call ``make``; None if it returned, else the ValueError's message (which must name the fragments)."""
    try:
        make()
    except ValueError as e:
        for fragment in fragments:
            assert fragment in str(e), (fragment, str(e))
        return str(e)
    return None


def check_param_grads(layer):
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name


@settings(max_examples=100, deadline=None)
@given(pairs(-2, 4), st.one_of(st.none(), pairs(-2, 3)), pairs(-2, 3), st.integers(-1, 3), st.integers(-1, 3))
def test_constructors_refuse_bad_arguments_and_only_those(kernel, stride, padding, in_ch, out_ch):
    (kh, kw), (ph, pw) = as_pair(kernel), as_pair(padding)
    bad_kernel_or_padding = min(kh, kw) < 1 or min(ph, pw) < 0
    conv_stride = 1 if stride is None else stride
    bad_conv = bad_kernel_or_padding or min(as_pair(conv_stride)) < 1 or min(in_ch, out_ch) < 1
    assert (refused(lambda: L.Conv2d(in_ch, out_ch, kernel, stride=conv_stride, padding=padding), "Conv2d")
            is not None) == bad_conv
    pool_stride = as_pair(stride if stride is not None else kernel)  # the stride defaults to the kernel size
    bad_pool = bad_kernel_or_padding or min(pool_stride) < 1 or 2 * ph > kh or 2 * pw > kw
    assert (refused(lambda: L.MaxPool2d(kernel, stride=stride, padding=padding), "MaxPool2d") is not None) == bad_pool
    assert (refused(lambda: L.BatchNorm2d(in_ch), "BatchNorm2d", "num_features") is not None) == (in_ch < 1)
    assert (refused(lambda: L.Linear(in_ch, out_ch), "Linear") is not None) == (min(in_ch, out_ch) < 1)


@settings(max_examples=150, deadline=None)
@given(st.data(), st.integers(1, 3), st.integers(1, 3), pairs(1, 5), pairs(1, 3), pairs(0, 3), st.booleans(), dtypes)
def test_conv2d_any_input(data, in_ch, out_ch, kernel, stride, padding, bias, dtype):
    (kh, kw), (sh, sw), (ph, pw) = as_pair(kernel), as_pair(stride), as_pair(padding)
    conv = L.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding, bias=bias)
    shape = data.draw(images(in_ch))
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    bad_input = (len(shape) != 4 or dtype != np.float32 or shape[1] != in_ch
                 or kh > shape[2] + 2 * ph or kw > shape[3] + 2 * pw)
    out = []
    message = refused(lambda: out.append(conv(x)), "Conv2d(")
    assert (message is not None) == bad_input, message
    if bad_input:
        return
    n, _, h, w = shape
    assert out[0].shape == (n, out_ch, expected_size(h, kh, sh, ph), expected_size(w, kw, sw, pw))
    assert out[0].dtype == np.float32
    dx = conv.backward(np.ones_like(out[0]))
    assert dx.shape == x.shape and dx.dtype == np.float32
    check_param_grads(conv)


@settings(max_examples=150, deadline=None)
@given(st.data(), pairs(1, 4), st.one_of(st.none(), pairs(1, 3)), pairs(0, 2), dtypes)
def test_maxpool_any_input(data, kernel, stride, padding, dtype):
    (kh, kw), (ph, pw) = as_pair(kernel), as_pair(padding)
    ph, pw = min(ph, kh // 2), min(pw, kw // 2)
    sh, sw = as_pair(stride if stride is not None else kernel)
    pool = L.MaxPool2d(kernel, stride=stride, padding=(ph, pw))
    shape = data.draw(images(2))
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    bad_input = len(shape) not in (3, 4) or dtype == np.int64 or kh > shape[-2] + 2 * ph or kw > shape[-1] + 2 * pw
    out = []
    message = refused(lambda: out.append(pool(x)), "MaxPool2d(")
    assert (message is not None) == bad_input, message
    if bad_input:
        return
    n, c, h, w = shape if len(shape) == 4 else (1,) + shape     # (C, H, W) is an unbatched image, as in PyTorch
    batched = out[0].reshape((n,) + out[0].shape[-3:])
    assert batched.shape == (n, c, expected_size(h, kh, sh, ph), expected_size(w, kw, sw, pw))
    assert out[0].ndim == len(shape)
    np.testing.assert_array_equal(batched, L.maxpool2d_naive(x.reshape(n, c, h, w), kernel, stride=stride,
                                                             padding=(ph, pw)))
    assert pool.backward(np.ones_like(out[0])).shape == x.shape


@settings(max_examples=100, deadline=None)
@given(st.data(), st.integers(1, 4), dtypes, st.booleans())
def test_batchnorm_any_input(data, features, dtype, training):
    bn = L.BatchNorm2d(features).train(training)
    shape = data.draw(images(features))
    assume(len(shape) == 0 or shape[0] > 0)  # an empty batch: see test_an_empty_batch_...
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    bad_input = (len(shape) != 4 or dtype != np.float32 or shape[1] != features
                 or (training and shape[0] * shape[2] * shape[3] <= 1))
    out = []
    message = refused(lambda: out.append(bn(x)), "BatchNorm2d(")
    assert (message is not None) == bad_input, message
    if bad_input:
        return
    assert out[0].shape == x.shape
    assert bn.backward(np.ones_like(out[0])).shape == x.shape
    check_param_grads(bn)


@settings(max_examples=80, deadline=None)
@given(st.data(), st.integers(1, 4), st.integers(1, 4), dtypes)
def test_linear_any_input(data, in_features, out_features, dtype):
    linear = L.Linear(in_features, out_features)
    right = st.tuples(st.integers(0, 3), st.just(in_features))
    shape = data.draw(st.one_of(right, right, st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple)))
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    bad_input = len(shape) != 2 or dtype != np.float32 or shape[1] != in_features
    out = []
    message = refused(lambda: out.append(linear(x)), "Linear(")
    assert (message is not None) == bad_input, message
    if bad_input:
        return
    assert out[0].shape == (shape[0], out_features)
    assert linear.backward(np.ones_like(out[0])).shape == x.shape
    check_param_grads(linear)


@settings(max_examples=60, deadline=None)
@given(input_shapes, input_shapes)
def test_add_any_shapes(shape_a, shape_b):
    a, b = np.ones(shape_a, np.float32), np.ones(shape_b, np.float32)
    add, out = L.Add(), []
    message = refused(lambda: out.append(add(a, b)), "Add")
    assert (message is not None) == (shape_a != shape_b)  # no broadcasting, ever
    if out:
        assert out[0].shape == shape_a
        assert [d.shape for d in add.backward(np.ones(shape_a, np.float32))] == [shape_a, shape_a]


# ----------------------------------------------------------------------------
# Sampled gradient checks for the other layers (float64)
# ----------------------------------------------------------------------------

@settings(max_examples=12, deadline=None)
@given(pairs(1, 3), st.one_of(st.none(), pairs(1, 3)), st.integers(0, 1), st.integers(1, 2), st.integers(1, 3),
       st.integers(3, 6), st.integers(3, 6))
def test_maxpool_sampled_gradient_checks(kernel, stride, padding, n, c, h, w):
    kh, kw = as_pair(kernel)
    if 2 * padding > min(kh, kw):
        padding = 0
    pool = L.MaxPool2d(kernel, stride=stride, padding=padding)
    check_module(pool, np.random.default_rng(2).standard_normal((n, c, h, w)))


@settings(max_examples=12, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), st.booleans())
def test_batchnorm_sampled_gradient_checks(n, c, h, w, training):
    # With only 2 or 3 values per channel, train-mode batch norm outputs almost exactly +-1 whatever
    # the input: its true input gradient is ~1e-6, below what finite differences resolve.
    if training and n * h * w < 4:
        n = 4
    bn = L.BatchNorm2d(c).train(training)
    rng = np.random.default_rng(3)
    bn.weight.data[...] = rng.uniform(0.5, 2, c)
    bn.bias.data[...] = rng.standard_normal(c)
    check_module(bn, rng.standard_normal((n, c, h, w)) * 3 + 1)


@settings(max_examples=10, deadline=None)
@given(st.integers(1, 3), st.integers(1, 5), st.integers(1, 5), st.integers(1, 4), st.integers(1, 4))
def test_small_networks_sampled_gradient_checks(n, c, f, h, w):
    """Conv -> BN -> ReLU -> pool -> flatten -> linear, of random sizes: the chain rule across layers."""
    # Batch norm over very few values per channel outputs almost exactly +-1 whatever the input: its true
    # gradient is ~1e-5, below what finite differences resolve. Four values at least.
    assume(n * h * w >= 4)
    # No conv bias: batch norm cancels it, so its true gradient is 0 and a relative error is meaningless.
    net = L.Sequential(L.Conv2d(c, f, 3, padding=1, bias=False), L.BatchNorm2d(f), L.ReLU(), L.GlobalAvgPool2d(),
                       L.Flatten(), L.Linear(f, 3))
    check_module(net, np.random.default_rng(4).standard_normal((n, c, h, w)))


# Padding can make a kernel fit an image of zero rows: the output would be computed from padding alone
# (Conv2d: its bias; MaxPool2d: -inf). Refused instead.
@pytest.mark.parametrize("make", [lambda: L.Conv2d(1, 2, 1, padding=1), lambda: L.MaxPool2d(2, padding=1)],
                         ids=["Conv2d", "MaxPool2d"])
def test_an_empty_image_is_refused(make):
    layer = make()
    with pytest.raises(ValueError, match=type(layer).__name__):
        layer(np.zeros((1, 1, 0, 4), np.float32))


@pytest.mark.parametrize("make, shape", [
    (lambda: L.Conv2d(2, 3, 3, padding=1), (0, 2, 4, 4)),
    (lambda: L.MaxPool2d(2), (0, 2, 4, 4)),
    (lambda: L.Linear(3, 2), (0, 3)),
    (L.GlobalAvgPool2d, (0, 2, 3, 3)),
    (L.ReLU, (0, 3)),
    (L.Flatten, (0, 2, 2)),
    (lambda: L.BatchNorm2d(2).eval(), (0, 2, 3, 3)),
], ids=["Conv2d", "MaxPool2d", "Linear", "GlobalAvgPool2d", "ReLU", "Flatten", "BatchNorm2d-eval"])
def test_an_empty_batch_passes_through_or_is_refused_clearly(make, shape):
    """PyTorch lets an empty batch through; refusing it is fine too, with a ValueError naming the layer."""
    layer = make()
    try:
        out = layer(np.zeros(shape, np.float32))
        dx = layer.backward(np.zeros(out.shape, np.float32))
    except ValueError as e:
        assert f"{type(layer).__name__}(" in str(e), str(e)
        return
    assert out.shape[0] == 0 and dx.shape == shape
