"""The convolution and pooling layers against their naive references (on both paths), the fast layout against the
plain im2col, the backward routes, and dtypes that stay what they were."""

import numpy as np
import pytest

from resnet_np import layers as L
from resnet_np import use_fast
from resnet_np.fast import buffers
from resnet_np.fast.flat_im2col import col2im_cf, conv_grid_width, im2col_cf, input_buffer, padded_row_length
from resnet_np.gradcheck import check_module, rel_error
from resnet_np.layers.im2col import col2im, im2col


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.fixture(params=[True, False], ids=["fast", "plain"])
def path(request):
    """The test runs on both paths: the fast layers and the plain ones (resnet_np.use_fast)."""
    with use_fast(request.param):
        yield request.param


CONFIGS = [
    # (kernel, stride, padding)
    (1, 1, 0), (1, 2, 0), (3, 1, 1), (3, 2, 1), (3, 1, 0), (7, 2, 3), (5, 3, 2),
    ((3, 2), (2, 1), (1, 0)), ((1, 4), 1, (0, 2)), (3, (1, 2), 3),
]


@pytest.mark.parametrize("k,s,p", CONFIGS, ids=lambda v: str(v).replace(" ", ""))
def test_conv2d_matches_naive(path, k, s, p):
    conv = L.Conv2d(3, 5, k, stride=s, padding=p).astype("float64")
    x = randn(2, 3, 11, 10)
    expected = L.conv2d_naive(x, conv.weight.data, conv.bias.data, stride=s, padding=p)
    assert rel_error(conv(x), expected) < 1e-12


def test_conv2d_naive_by_hand():
    """A 1-channel 2x2 kernel on a 3x3 image, written out."""
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    w = np.array([[[[1.0, 0.0], [0.0, -1.0]]]])
    out = L.conv2d_naive(x, w, np.array([0.5]))
    np.testing.assert_array_equal(out, np.full((1, 1, 2, 2), 0.0 - 4.0 + 0.5))


@pytest.mark.parametrize("k,s,p,d", [(3, 1, 1, 1), (3, 2, 1, 1), (2, 1, 0, 1), ((3, 2), (1, 2), (1, 0), 1),
                                     (3, 1, 2, 2), ((2, 3), (2, 1), (1, 2), (2, 1))])
def test_col2im_is_the_adjoint_of_im2col(k, s, p, d):
    """<im2col(x), c> == <x, col2im(c)> for all x and c: the property backward relies on."""
    pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
    x = randn(2, 3, 7, 6)
    cols = im2col(x, pair(k), pair(s), pair(p), pair(d))
    c = randn(*cols.shape, seed=1)
    lhs = (cols * c).sum()
    rhs = (x * col2im(c, x.shape, pair(k), pair(s), pair(p), pair(d))).sum()
    assert abs(lhs - rhs) < 1e-10 * abs(lhs)


@pytest.mark.parametrize("k,s,p,d,g", [(3, 1, 1, 1, 1), (3, 2, 1, 1, 1), ((3, 2), (2, 1), (1, 0), 1, 2),
                                       (3, 1, 2, 2, 1), (3, 1, 1, 1, 6), (1, 1, 0, 1, 3)])
def test_the_plain_im2col_convolution_is_the_naive_one(k, s, p, d, g):
    """conv2d_im2col (the function lesson 02 quotes) against the loop over output positions."""
    x = randn(2, 6, 9, 8)
    kh, kw = k if isinstance(k, tuple) else (k, k)
    w, b = randn(12, 6 // g, kh, kw, seed=1), randn(12, seed=2)
    out = L.conv2d_im2col(x, w, b, stride=s, padding=p, dilation=d, groups=g)
    assert rel_error(out, L.conv2d_naive(x, w, b, stride=s, padding=p, dilation=d, groups=g)) < 1e-12
    assert rel_error(L.conv2d_im2col(x, w, groups=g), L.conv2d_naive(x, w, groups=g)) < 1e-12   # no bias


@pytest.mark.parametrize("k,s,p", [(3, 1, 1), (3, 2, 1), (2, 1, 0), ((3, 2), (1, 2), (1, 0)), (3, 1, 2), (5, 1, 1),
                                   ((1, 3), 1, (0, 2))])
def test_channels_first_im2col_has_the_same_rows(k, s, p):
    """The layer's (C*KH*KW, N*OH*OW) layout is im2col's, with the images side by side; col2im_cf is its adjoint.

    The stride-1 cases include paddings smaller than, equal to and larger than the kernel's reach: the flat
    layout's rows are W or OW long, and the entries that cross a row's end must come out zero."""
    pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
    k, s, p = pair(k), pair(s), pair(p)
    x = randn(3, 2, 7, 6)
    cols = im2col(x, k, s, p)                                   # (N, C*KH*KW, OH*OW)
    N, R, P = cols.shape
    OH = L.conv_output_size(7, k[0], s[0], p[0])
    OW = L.conv_output_size(6, k[1], s[1], p[1])
    x_buf, x_in = input_buffer(np, 2, N, 7, 6, k, s, p, (1, 1), x.dtype)
    x_in[...] = x.transpose(1, 0, 2, 3)
    GW = conv_grid_width(6, k[1], s, p[1])
    cols_cf = im2col_cf(x_buf, k, s, (OH, GW), None, (1, 1), 6, p[1]).reshape(R, N, OH, GW)[..., :OW]
    np.testing.assert_array_equal(cols_cf.reshape(R, N * P), cols.transpose(1, 0, 2).reshape(R, N * P))
    c = randn(R, N * P, seed=1)
    c_grid = np.zeros((R, N, OH, GW))      # the junk columns of the grid get a zero gradient
    c_grid[..., :OW] = c.reshape(R, N, OH, OW)
    dx_buf, dx_in = input_buffer(np, 2, N, 7, 6, k, s, p, (1, 1), x.dtype)
    col2im_cf(c_grid.reshape(R, -1), dx_buf, k, s, (OH, GW), (1, 1), 6, p[1])
    expected = col2im(c.reshape(R, N, P).transpose(1, 0, 2), x.shape, k, s, p)
    np.testing.assert_allclose(dx_in.transpose(1, 0, 2, 3), expected, rtol=1e-13, atol=1e-13)


def test_padded_row_length_avoids_rows_a_multiple_of_128_bytes_apart():
    """At least n long, an odd number of 64-byte units: never a multiple of 128 bytes (nor of 4 kB)."""
    for itemsize in (4, 8):
        for n in (1, 15, 16, 17, 1024, 1088, 3072, 3264):
            length = padded_row_length(n, itemsize)
            assert n <= length < n + 2 * 64 // itemsize
            assert (length * itemsize) % 64 == 0 and (length * itemsize) % 128 != 0


@pytest.mark.parametrize("k,s,p", [(3, 1, 1), (3, 2, 1), (1, 2, 0)])
def test_conv2d_in_several_chunks_of_images(monkeypatch, k, s, p):
    """A budget of about two images per chunk: 7 images make 4 chunks, the last one short."""
    positions = L.conv_output_size(6, k, s, p) * conv_grid_width(6, k, (s, s), p)
    per_image = 3 * k * k * positions * 8
    monkeypatch.setattr(buffers, "CPU_CHUNK_BYTES", 2 * per_image)
    monkeypatch.setattr(buffers, "MIN_CHUNK_COLUMNS", 1)
    conv = L.Conv2d(3, 4, k, stride=s, padding=p).astype("float64")
    x = randn(7, 3, 6, 6)
    expected = L.conv2d_naive(x, conv.weight.data, conv.bias.data, stride=s, padding=p)
    assert buffers.images_per_chunk(np, 7, 3 * k * k, positions, 8) == 2
    assert rel_error(conv(x), expected) < 1e-12
    check_module(conv, x)


@pytest.mark.parametrize("k,s,p", [(3, 1, 0), (3, 2, 1), (2, 2, 0), ((3, 2), (1, 2), (1, 0)), (3, 1, 1)])
def test_maxpool_matches_naive(path, k, s, p):
    x = randn(2, 3, 9, 8)
    out = L.MaxPool2d(k, stride=s, padding=p)(x)
    np.testing.assert_array_equal(out, L.maxpool2d_naive(x, k, stride=s, padding=p))


def test_float32_forward_agrees_with_float64(path):
    net = L.Sequential(L.Conv2d(3, 8, 3, padding=1), L.BatchNorm2d(8), L.ReLU(), L.MaxPool2d(3, 2, 1),
                       L.Conv2d(8, 8, 3, stride=2, padding=1), L.GlobalAvgPool2d(), L.Flatten(), L.Linear(8, 4))
    x = randn(4, 3, 16, 16)
    out32 = net(x.astype(np.float32))
    out64 = net.astype("float64")(x)
    assert out32.dtype == np.float32
    assert rel_error(out32, out64) < 1e-5


def test_nothing_upcasts_float32(path):
    """Every output, input gradient and parameter gradient of a float32 network stays float32."""
    layers = [L.Conv2d(3, 4, 3, padding=1), L.BatchNorm2d(4), L.ReLU(), L.MaxPool2d(3, 1, 1),
              L.GlobalAvgPool2d(), L.Flatten(), L.Linear(4, 3)]
    x = randn(2, 3, 6, 6).astype(np.float32)
    for layer in layers:
        y = layer(x)
        assert y.dtype == np.float32, type(layer).__name__
        dx = layer.backward(np.ones_like(y))
        assert dx.dtype == np.float32, type(layer).__name__
        for name, p in layer.named_parameters():
            assert p.grad.dtype == np.float32, f"{type(layer).__name__}.{name}"
        x = y
    bn = L.BatchNorm2d(4)
    bn(randn(2, 4, 3, 3).astype(np.float32))
    assert bn.running_mean.dtype == np.float32 and bn.running_var.dtype == np.float32
    loss = L.SoftmaxCrossEntropy()
    loss(randn(2, 3).astype(np.float32), np.array([0, 2]))
    assert loss.backward().dtype == np.float32


@pytest.mark.parametrize("c_in,c_out", [(2, 5), (5, 2), (4, 4)])
@pytest.mark.parametrize("route", ["auto", "col2im", "transposed"])
def test_every_backward_route_at_stride_1(c_in, c_out, route):
    """"auto": few inputs, many outputs take im2col of x + col2im, the others the transposed convolution. All exact."""
    conv = L.Conv2d(c_in, c_out, 3, padding=1, backward_route=route).astype("float64")
    assert conv.backward_route == route
    check_module(conv, randn(2, c_in, 5, 6))


def test_backward_route_transposed_needs_stride_1():
    with pytest.raises(ValueError, match="transposed backward route needs stride 1"):
        L.Conv2d(3, 4, 3, stride=2, padding=1, backward_route="transposed")
    conv = L.Conv2d(3, 4, 3, padding=3)                     # padding beyond the kernel's reach
    with pytest.raises(ValueError, match="transposed backward route needs stride 1"):
        conv.backward_route = "transposed"
    with pytest.raises(ValueError, match="backward_route must be one of auto, col2im, transposed"):
        L.Conv2d(3, 4, 3, backward_route="fast")
    assert conv.backward_route == "auto"


@pytest.mark.parametrize("c_in,c_out,stride", [(3, 16, 1), (4, 4, 1), (4, 6, 2)])
def test_backward_without_input_grad_gives_the_same_weight_grad(path, c_in, c_out, stride):
    """need_input_grad=False (a network's first layer: its input is the images) returns None, same dW and db.

    (4, 4, 1) normally takes the transposed-convolution route, which makes dW
    from dout's im2col; without dx it must fall back to the route that makes
    dW from the input's im2col, and both must agree.
    """
    x, seed = randn(3, c_in, 7, 6), 1
    conv = L.Conv2d(c_in, c_out, 3, stride=stride, padding=1).astype("float64")
    dout = randn(*conv(x).shape, seed=seed)
    dx = conv.backward(dout)
    dw, db = conv.weight.grad.copy(), conv.bias.grad.copy()
    conv.zero_grad()
    conv(x)
    assert conv.backward(dout, need_input_grad=False) is None
    assert dx is not None and dx.shape == x.shape
    assert rel_error(conv.weight.grad, dw) < 1e-12 and rel_error(conv.bias.grad, db) < 1e-12
