"""The engine's "rows" convolution (resnet_np/fast/row_taps.py) equals the plain one, and the layer uses it.

A "same" convolution at stride 1 as KH products over KW shifted copies of
the images: the forward pass, dx and dW against the plain layers'
``conv2d_im2col``/``conv2d_backward`` in float64, with chunks of one image
and several threads (buffers reused, partial sums added), odd and non-square
kernels; where the engine takes the route by itself and where it must not;
and planted bugs that the comparisons catch.
"""

import numpy as np
import pytest

from resnet_np import backend, fast
from resnet_np import layers as L
from resnet_np.fast import conv as fast_conv
from resnet_np.fast import row_taps
from resnet_np.gradcheck import rel_error
from resnet_np.layers.conv import conv2d_backward, conv2d_im2col
from tests.test_fast import assert_paths_equal, broken_copy, make_conv, randn, run_both

TOL = 1e-12

CASES = {
    # name: (N, C, F, H, W, KH, KW)
    "3x3, ResNet's": (5, 8, 8, 6, 7, 3, 3),
    "3x3, more out than in": (3, 8, 12, 5, 5, 3, 3),
    "5x5": (3, 9, 8, 7, 6, 5, 5),
    "5 rows, 3 columns": (4, 8, 10, 9, 5, 5, 3),
    "1 row, 3 columns": (3, 8, 8, 4, 6, 1, 3),
    "3 rows, 1 column": (3, 8, 8, 6, 4, 3, 1),
    "image as small as the kernel": (2, 8, 8, 3, 3, 3, 3),
    "one-pixel-wide image": (3, 8, 8, 5, 1, 3, 3),
}


def plain_and_rows(N, C, F, H, W, KH, KW, seed=0):
    rng = np.random.default_rng(seed)
    x, w, b = rng.standard_normal((N, C, H, W)), rng.standard_normal((F, C, KH, KW)), rng.standard_normal(F)
    padding = (KH // 2, KW // 2)
    out = conv2d_im2col(x, w, b, 1, padding)
    dout = rng.standard_normal(out.shape)
    dx, dw = conv2d_backward(x, w, dout, 1, padding)
    return (x, w, b, dout), (out, dx, dw)


def assert_rows_equal_plain(case, threads=1):
    (x, w, b, dout), (out, dx, dw) = plain_and_rows(*case)
    old = fast.get_num_threads()
    fast.set_num_threads(threads)
    try:
        assert rel_error(row_taps.conv2d(x, w, b), out) < TOL
        assert rel_error(row_taps.conv2d(x, w), out - b.reshape(1, -1, 1, 1)) < TOL
        dx_r, dw_r = row_taps.conv2d_backward(x, w, dout)
        assert rel_error(dx_r, dx) < TOL, "dx"
        assert rel_error(dw_r, dw) < TOL, "dW"
        assert row_taps.conv2d_backward(x, w, dout, need_input_grad=False)[0] is None
        assert rel_error(row_taps.conv2d_backward(x, w, dout, need_input_grad=False)[1], dw) < TOL
        assert row_taps.conv2d_backward(x, w, dout, need_weight_grad=False)[1] is None
        assert rel_error(row_taps.conv2d_backward(x, w, dout, need_weight_grad=False)[0], dx) < TOL
    finally:
        fast.set_num_threads(old)


@pytest.mark.parametrize("name", CASES)
def test_rows_equal_the_plain_convolution(name):
    assert_rows_equal_plain(CASES[name])


@pytest.mark.parametrize("name", ["3x3, ResNet's", "5 rows, 3 columns", "one-pixel-wide image"])
def test_rows_in_chunks_of_one_image_on_three_threads(name, monkeypatch):
    """Buffers reused from chunk to chunk (the zero rows must stay zero), a last chunk shorter than the others,
    and three threads' partial dW added."""
    monkeypatch.setattr(row_taps, "CHUNK_BYTES", 1)
    monkeypatch.setattr(fast.threads, "MIN_PART_BYTES", 1)
    N, C, F, H, W, KH, KW = CASES[name]
    assert_rows_equal_plain((10, C, F, H, W, KH, KW), threads=3)
    monkeypatch.setattr(row_taps, "CHUNK_BYTES", 3 * KW * C * (H + KH // 2) * W * 8)   # chunks of 3, then 1
    assert_rows_equal_plain((10, C, F, H, W, KH, KW), threads=1)


def test_float32_stays_float32_and_close():
    (x, w, b, dout), (out, dx, dw) = plain_and_rows(4, 16, 16, 8, 8, 3, 3)
    x32, w32, d32 = (a.astype(np.float32) for a in (x, w, dout))
    out32 = row_taps.conv2d(x32, w32)
    dx32, dw32 = row_taps.conv2d_backward(x32, w32, d32)
    assert out32.dtype == dx32.dtype == dw32.dtype == np.float32
    assert rel_error(out32, out - b.reshape(1, -1, 1, 1)) < 1e-5
    assert rel_error(dx32, dx) < 1e-5 and rel_error(dw32, dw) < 1e-5


@pytest.mark.parametrize("geometry, expected", [
    (((3, 3), (1, 1), (1, 1), (1, 1), 1), True),
    (((5, 3), (1, 1), (2, 1), (1, 1), 1), True),
    (((1, 1), (1, 1), (0, 0), (1, 1), 1), False),      # a 1x1 convolution is one product already
    (((3, 3), (2, 2), (1, 1), (1, 1), 1), False),      # stride 2
    (((3, 3), (1, 1), (0, 0), (1, 1), 1), False),      # no padding: not "same"
    (((3, 3), (1, 1), (2, 2), (2, 2), 1), False),      # dilated
    (((3, 3), (1, 1), (1, 1), (1, 1), 2), False),      # grouped
    (((2, 2), (1, 1), (1, 1), (1, 1), 1), False),      # an even kernel
])
def test_where_the_route_applies(geometry, expected):
    assert row_taps.applies(*geometry) is expected


def test_the_engine_takes_the_route_only_where_it_pays():
    geometry = ((3, 3), (1, 1), (1, 1), (1, 1), 1)
    assert row_taps.pays(np, 16, 16, *geometry)
    assert not row_taps.pays(np, 3, 16, *geometry)       # a stem: three colour channels
    assert row_taps.pays(np, 128, 128, *geometry)
    assert not row_taps.pays(np, 128, 256, *geometry)    # many channels: im2col's one long product
    on_device = backend.get_array_module(backend.to_device(np.zeros(1), "cupy-strict"))
    assert not row_taps.pays(on_device, 16, 16, *geometry)   # a GPU keeps one im2col product per batch


def test_conv2d_layer_uses_rows_and_equals_the_plain_path(monkeypatch):
    """Conv2d(8, 8, 3, padding=1) on the fast path runs row_taps (forward and backward), with the plain results."""
    calls = []
    for name in ("conv2d", "conv2d_backward"):
        original = getattr(row_taps, name)
        monkeypatch.setattr(row_taps, name, lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k))
    assert_paths_equal(run_both(make_conv(8, 8, 3, 1, 1, 1, 1), randn(3, 8, 6, 6)), tol=TOL)
    assert calls == ["conv2d", "conv2d_backward"]
    calls.clear()
    assert_paths_equal(run_both(make_conv(3, 8, 3, 1, 1, 1, 1), randn(3, 3, 6, 6)), tol=TOL)   # the stem
    assert calls == []
    assert_paths_equal(run_both(make_conv(8, 8, 3, 1, "same", 1, 1, route="rows"), randn(3, 8, 5, 7)), tol=TOL)


def test_the_rows_route_is_refused_where_it_does_not_apply():
    with pytest.raises(ValueError, match="the rows backward route needs an odd kernel with padding"):
        L.Conv2d(8, 8, 3, stride=2, padding=1, backward_route="rows")
    with pytest.raises(ValueError, match="rows backward route needs"):
        L.Conv2d(8, 8, 3, padding=0, backward_route="rows")
    conv = L.Conv2d(8, 8, 3, dilation=2, padding=2)
    with pytest.raises(ValueError, match="rows backward route needs"):
        conv.backward_route = "rows"
    assert conv.backward_route == "auto"
    conv = L.Conv2d(8, 8, 3, padding=1)
    conv.backward_route = "rows"
    assert conv.backward_route == "rows"
    x = randn(2, 8, 5, 5)
    with pytest.raises(ValueError, match="route='auto'"):
        fast_conv.conv2d_backward(x, randn(8, 8, 3, 3), x, 1, 0, route="rows")


PLANTED = {
    # name: (function, text, replacement)
    "no zeroing where a tap looks past a row's end": ("load", "grid[:, :, :-dj] = 0", "pass"),
    "the right-hand edge not zeroed": ("load", "grid[:, :, W - dj:] = 0", "pass"),
    "kernel rows ordered (c, j) instead of (j, c)": ("kernel_rows", "transpose(2, 0, 3, 1)", "transpose(2, 0, 1, 3)"),
    "one kernel row's block dropped": ("sum_of_row_products", "out += stacked[i * F:(i + 1) * F, i * W:i * W + L]",
                                       "pass"),
    "the second row block not shifted": ("sum_of_row_products", "stacked[F:2 * F, W:W + L]", "stacked[F:2 * F, :L]"),
    "dx with the kernel not turned": ("conv2d_backward", "weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)",
                                      "weight.transpose(1, 0, 2, 3)"),
    "dW not unflipped": ("conv2d_backward", "[::-1, ::-1].transpose(2, 3, 0, 1)", ".transpose(2, 3, 0, 1)"),
    "a thread's partial dW dropped": ("conv2d_backward", "for part in parts[1:]:", "for part in parts[2:]:"),
    "the dropped rows of x not kept at zero": ("conv2d_backward", "xp.zeros((C, chunk.length)",
                                               "xp.ones((C, chunk.length)"),
    "each image a row too low in the buffer": ("images_view", "[:, :, :self.H]", "[:, :, self.PH:self.PH + self.H]"),
}


@pytest.mark.parametrize("planted", list(PLANTED))
def test_a_planted_bug_in_rows_is_caught(planted, monkeypatch):
    name, old, new = PLANTED[planted]
    where = row_taps.Chunk if name in ("load", "images_view") else row_taps
    monkeypatch.setattr(row_taps, "CHUNK_BYTES", 3 * 3 * 8 * 7 * 7 * 8)    # chunks of 3 images: 7 = 3 + 3 + 1
    monkeypatch.setattr(fast.threads, "MIN_PART_BYTES", 1)
    case = (7, 8, 8, 6, 7, 3, 3)
    assert_rows_equal_plain(case, threads=2)                # the engine as it is passes ...
    if where is row_taps.Chunk:
        broken = broken_copy(row_taps.Chunk, name, old, new, namespace=vars(row_taps))
    else:
        broken = broken_copy(row_taps, name, old, new)
    monkeypatch.setattr(where, name, broken)
    with pytest.raises(AssertionError):                     # ... and with the bug it fails
        assert_rows_equal_plain(case, threads=2)
