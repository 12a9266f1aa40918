"""The engine's 1x1 convolution as a product per image (resnet_np/fast/pointwise.py) equals the plain one.

The forward pass, dx and dW against the plain layers' ``conv2d_im2col`` and
``conv2d_backward`` in float64, on one thread and on three; where the engine
takes the route by itself; and planted bugs that the comparisons catch.
"""

import numpy as np
import pytest

from resnet_np import backend, fast
from resnet_np.fast import pointwise
from resnet_np.gradcheck import rel_error
from resnet_np.layers.conv import conv2d_backward, conv2d_im2col
from tests.test_fast import assert_paths_equal, broken_copy, make_conv, randn, run_both

TOL = 1e-12

CASES = {
    # name: (N, C, F, H, W)
    "channels up (a Bottleneck's conv3)": (4, 6, 12, 5, 7),
    "channels down (its conv1)": (3, 12, 5, 6, 6),
    "as many in as out": (5, 8, 8, 4, 9),
    "one image, one pixel": (1, 3, 4, 1, 1),
}


def assert_pointwise_equals_plain(case, threads=1, seed=0):
    N, C, F, H, W = case
    rng = np.random.default_rng(seed)
    x, w, b = rng.standard_normal((N, C, H, W)), rng.standard_normal((F, C, 1, 1)), rng.standard_normal(F)
    out = conv2d_im2col(x, w, b)
    dout = rng.standard_normal(out.shape)
    dx, dw = conv2d_backward(x, w, dout)
    old = fast.get_num_threads()
    fast.set_num_threads(threads)
    try:
        assert rel_error(pointwise.conv2d(x, w, b), out) < TOL, "forward"
        assert rel_error(pointwise.conv2d(x, w), out - b.reshape(1, -1, 1, 1)) < TOL, "forward without bias"
        dx_p, dw_p = pointwise.conv2d_backward(x, w, dout)
        assert rel_error(dx_p, dx) < TOL, "dx"
        assert rel_error(dw_p, dw) < TOL, "dW"
        only_dw = pointwise.conv2d_backward(x, w, dout, need_input_grad=False)
        assert only_dw[0] is None and rel_error(only_dw[1], dw) < TOL
        only_dx = pointwise.conv2d_backward(x, w, dout, need_weight_grad=False)
        assert only_dx[1] is None and rel_error(only_dx[0], dx) < TOL
    finally:
        fast.set_num_threads(old)


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("threads", [1, 3])
def test_pointwise_equals_the_plain_convolution(name, threads):
    assert_pointwise_equals_plain(CASES[name], threads)


def test_float32_stays_float32():
    x = np.ones((2, 4, 3, 3), dtype=np.float32)
    w = np.ones((5, 4, 1, 1), dtype=np.float32)
    out = pointwise.conv2d(x, w)
    dx, dw = pointwise.conv2d_backward(x, w, out)
    assert out.dtype == dx.dtype == dw.dtype == np.float32
    np.testing.assert_array_equal(out, 4)
    np.testing.assert_array_equal(dw, 4 * 2 * 9)


def test_where_the_engine_takes_the_route():
    assert pointwise.pays(np, (1, 1), (1, 1), (0, 0), 1, 56, 56)
    assert pointwise.pays(np, (1, 1), (1, 1), (0, 0), 1, 14, 14)
    assert not pointwise.pays(np, (1, 1), (1, 1), (0, 0), 1, 7, 7)      # 49 columns: chunks of images win
    assert not pointwise.pays(np, (1, 1), (2, 2), (0, 0), 1, 56, 56)    # a downsample's stride 2
    assert not pointwise.pays(np, (1, 1), (1, 1), (1, 1), 1, 56, 56)    # padded
    assert not pointwise.pays(np, (1, 1), (1, 1), (0, 0), 4, 56, 56)    # grouped
    assert not pointwise.pays(np, (3, 3), (1, 1), (0, 0), 1, 56, 56)
    on_device = backend.get_array_module(backend.to_device(np.zeros(1), "cupy-strict"))
    assert not pointwise.pays(on_device, (1, 1), (1, 1), (0, 0), 1, 56, 56)


def test_conv2d_layer_uses_pointwise_and_equals_the_plain_path(monkeypatch):
    calls = []
    for name in ("conv2d", "conv2d_backward"):
        original = getattr(pointwise, name)
        monkeypatch.setattr(pointwise, name, lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k))
    assert_paths_equal(run_both(make_conv(6, 12, 1, 1, 0, 1, 1), randn(3, 6, 16, 16)), tol=TOL)
    assert calls == ["conv2d", "conv2d_backward"]
    calls.clear()
    assert_paths_equal(run_both(make_conv(6, 12, 1, 1, 0, 1, 1), randn(3, 6, 7, 7)), tol=TOL)   # small maps
    assert calls == []


PLANTED = {
    # name: (function, text, replacement)
    "dx with the kernel not transposed": ("conv2d_backward", "xp.matmul(w_mat.T, grads", "xp.matmul(w_mat, grads"),
    "dW summed over the first image of each share only": ("conv2d_backward", "for n in range(n0, n1):",
                                                         "for n in range(n0, n0 + 1):"),
    "a thread's partial dW dropped": ("conv2d_backward", "for part in parts[1:]:", "for part in parts[2:]:"),
    "the bias added to the first share only": ("conv2d", "if bias is not None:", "if bias is not None and n0 == 0:"),
}


@pytest.mark.parametrize("planted", list(PLANTED))
def test_a_planted_bug_in_pointwise_is_caught(planted, monkeypatch):
    name, old, new = PLANTED[planted]
    case = (6, 8, 8, 4, 5)
    assert_pointwise_equals_plain(case, threads=3)          # the engine as it is passes ...
    monkeypatch.setattr(pointwise, name, broken_copy(pointwise, name, old, new))
    with pytest.raises(AssertionError):                     # ... and with the bug it fails
        assert_pointwise_equals_plain(case, threads=3)
