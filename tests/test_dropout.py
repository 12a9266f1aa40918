"""Dropout: the mask's statistics, the 1/(1-p) scaling, the same mask in backward, eval mode,
seeded reproducibility, a gradient check with the mask held fixed, and bad rates."""

import math

import numpy as np
import pytest

from resnet_np import backend
from resnet_np import layers as L
from resnet_np.gradcheck import GradcheckError, check_module


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_mask_statistics_and_scaling(p):
    x = np.ones((50, 20, 10, 10), dtype=np.float32)  # 100,000 draws
    out = L.Dropout(p)(x)
    assert out.dtype == np.float32 and out.shape == x.shape
    dropped = float((out == 0).mean())
    # A binomial proportion: 5 standard deviations is a test that does not flake.
    assert abs(dropped - p) < 5 * math.sqrt(p * (1 - p) / x.size), dropped
    # Kept values are scaled by 1/(1-p), so the mean is kept: E[out] = x.
    np.testing.assert_allclose(np.unique(out), [0.0, np.float32(1 / (1 - p))], rtol=1e-6)
    assert abs(float(out.mean()) - 1.0) < 5 * math.sqrt(p / (1 - p) / x.size)


def test_kept_values_are_the_input_scaled_and_the_mask_is_public():
    layer = L.Dropout(0.25)
    x = randn(4, 3, 5, 5).astype(np.float32)
    out = layer(x)
    assert layer.mask.dtype == bool and layer.mask.shape == x.shape
    np.testing.assert_array_equal(out, x * layer.mask * np.float32(1 / 0.75))


def test_backward_uses_the_forward_mask():
    layer = L.Dropout(0.5)
    x = randn(3, 4, 6, 6).astype(np.float32)
    out = layer(x)
    kept = out != 0
    dout = randn(*x.shape, seed=1).astype(np.float32)
    dx = layer.backward(dout)
    assert dx.dtype == np.float32
    np.testing.assert_array_equal(dx, dout * kept * np.float32(2.0))
    assert kept.any() and not kept.all()


def test_a_new_forward_draws_a_new_mask():
    layer = L.Dropout(0.5)
    x = np.ones((2, 3, 8, 8), dtype=np.float32)
    first = layer(x).copy()
    assert not np.array_equal(first, layer(x))


def test_reuse_mask_keeps_the_last_mask():
    layer = L.Dropout(0.5)
    x = np.ones((2, 3, 8, 8), dtype=np.float32)
    first = layer(x).copy()
    layer.reuse_mask = True
    np.testing.assert_array_equal(layer(2 * x), 2 * first)
    # A batch of another shape cannot reuse it: a new mask of the right shape is drawn.
    assert layer(np.ones((1, 3, 8, 8), dtype=np.float32)).shape == (1, 3, 8, 8)


def test_eval_mode_and_p_zero_are_the_identity():
    x = randn(2, 3, 4, 4).astype(np.float32)
    dout = randn(2, 3, 4, 4, seed=1).astype(np.float32)
    for layer in (L.Dropout(0.5).eval(), L.Dropout(0.0), L.Dropout(0)):
        np.testing.assert_array_equal(layer(x), x)
        np.testing.assert_array_equal(layer.backward(dout), dout)


def test_p_zero_draws_no_random_numbers():
    """Adding Dropout(0) to a network leaves the rest of a seeded run exactly as it was."""
    backend.manual_seed(3)
    L.Dropout(0.0)(np.ones((4, 4), dtype=np.float32))
    after = backend.randn((3,))
    backend.manual_seed(3)
    np.testing.assert_array_equal(after, backend.randn((3,)))


def test_the_same_seed_gives_the_same_masks():
    x = np.ones((2, 3, 8, 8), dtype=np.float32)
    layer = L.Dropout(0.3)
    backend.manual_seed(42)
    a, b = layer(x).copy(), layer(x).copy()
    backend.manual_seed(42)
    np.testing.assert_array_equal(layer(x), a)
    np.testing.assert_array_equal(layer(x), b)
    backend.manual_seed(43)
    assert not np.array_equal(layer(x), a)


def test_works_on_any_shape_and_float64():
    x = randn(5, 7)
    out = L.Dropout(0.5)(x)
    assert out.dtype == np.float64 and out.shape == (5, 7)


def test_gradcheck_with_the_mask_held_fixed():
    layer = L.Dropout(0.4)
    layer.reuse_mask = True  # one function to differentiate: every evaluation drops the same elements
    report = check_module(layer, randn(2, 3, 4, 4))
    assert report.worst < 1e-9


def test_gradcheck_fails_when_the_mask_changes_between_evaluations():
    """Why reuse_mask exists: a new mask per forward pass is not a function finite differences can follow."""
    with pytest.raises(GradcheckError):
        check_module(L.Dropout(0.4), randn(2, 3, 4, 4))


class DropoutUnscaledBackward(L.Dropout):
    """Forgets the 1/(1-p) factor in backward."""

    def backward(self, dout):
        super().backward(dout)
        return dout * self._cache[1]


class DropoutFreshMaskInBackward(L.Dropout):
    """Draws a new mask for backward instead of using the forward pass's."""

    def backward(self, dout):
        super().backward(dout)
        keep = backend.uniform(0.0, 1.0, dout.shape, "float32") >= self.p
        return dout * keep / (1 - self.p)


@pytest.mark.parametrize("broken_cls", [DropoutUnscaledBackward, DropoutFreshMaskInBackward])
def test_planted_backward_bugs_are_caught(broken_cls):
    x = randn(2, 3, 4, 4)
    correct, broken = L.Dropout(0.4), broken_cls(0.4)
    correct.reuse_mask = broken.reuse_mask = True
    check_module(correct, x)
    with pytest.raises(GradcheckError):
        check_module(broken, x)


@pytest.mark.parametrize("p", [1, 1.0, -0.1, 1.5, float("nan"), "0.5", None, True])
def test_bad_p_is_a_clear_error(p):
    with pytest.raises(ValueError, match=r"Dropout: p must be a number in \[0, 1\), got " + repr(p)[:3]):
        L.Dropout(p)


def test_bad_input_and_order_errors():
    layer = L.Dropout(0.5)
    with pytest.raises(RuntimeError, match="backward called before forward"):
        layer.backward(np.ones((2, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="expected a floating-point input"):
        layer(np.ones((2, 2), dtype=np.int64))
    layer(np.ones((2, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=r"upstream gradient of shape \(2, 2\)"):
        layer.backward(np.ones((3, 2), dtype=np.float32))


def test_repr_and_no_state():
    layer = L.Dropout(0.3)
    assert repr(layer) == "Dropout(p=0.3)"
    assert list(layer.state_dict()) == []
