"""The gradient checker itself: it must catch wrong gradients, say where, and not cry wolf at kinks."""

import numpy as np
import pytest

from resnet_np import layers as L
from resnet_np.gradcheck import GradcheckError, check_module, numerical_gradient, rel_error


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def test_rel_error_is_max_difference_over_max_magnitude():
    a = np.array([1.0, 2.0, -4.0])
    b = np.array([1.0, 2.5, -4.0])
    assert rel_error(a, b) == pytest.approx(0.5 / 8.0)
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
    assert rel_error(np.zeros(2), np.array([0.0, 1e-12])) == pytest.approx(1e-12 / 1e-8)


def test_numerical_gradient_of_a_known_function():
    x = randn(3, 4)
    dout = randn(3, 4, seed=1)
    grad = numerical_gradient(lambda: float((dout * x ** 3).sum()), x)
    np.testing.assert_allclose(grad, 3 * x ** 2 * dout, rtol=1e-7, atol=1e-8)
    np.testing.assert_array_equal(x, randn(3, 4))  # perturbed in place, then restored exactly


class ScaledLinear(L.Linear):
    """A Linear layer whose input gradient is 1% off in one element."""

    def backward(self, dout):
        dx = super().backward(dout)
        dx[1, 2] *= 1.01
        return dx


def test_failure_names_tensor_element_and_both_values():
    with pytest.raises(GradcheckError) as info:
        check_module(ScaledLinear(4, 3), randn(2, 4))
    message = str(info.value)
    assert "input" in message and "(1, 2)" in message
    assert "analytic" in message and "numerical" in message
    assert "weight" not in message  # the parameters are right and are not blamed


def test_report_lists_every_tensor_without_raising():
    report = check_module(ScaledLinear(4, 3), randn(2, 4), raise_on_failure=False)
    assert not report.ok
    assert [r.name for r in report.failures()] == ["input"]
    assert "FAIL input" in str(report)


def test_directional_mode_catches_a_wrong_large_gradient():
    with pytest.raises(GradcheckError, match="direction"):
        check_module(ScaledLinear(40, 30), randn(50, 40), max_elements=10, params=False)


class BatchNormWithoutXhatTerm(L.BatchNorm2d):
    """dx forgets the x_hat * sum(dx_hat * x_hat) term: right whenever dout is constant."""

    def backward(self, dout):
        training, x_centered, inv_std, M = self._cache
        C = dout.shape[1]
        dx_hat = dout * self.weight.data.reshape(1, C, 1, 1)
        dx = (M * dx_hat - dx_hat.sum(axis=(0, 2, 3), keepdims=True)) * inv_std.reshape(1, C, 1, 1) / M
        super().backward(dout)
        return dx


def test_random_upstream_gradient_catches_what_sum_of_outputs_misses():
    """With dout = 1 (the gradient of sum(y)) the true dx of batch norm is zero, and so is the
    broken one: a check against the sum of outputs would pass a wrong backward pass."""
    x = randn(4, 3, 3, 3)
    broken = BatchNormWithoutXhatTerm(3).astype("float64")
    broken(x)
    dx_for_ones = broken.backward(np.ones_like(x))
    numeric_for_ones = numerical_gradient(lambda: float(broken(x).sum()), x)
    assert np.abs(dx_for_ones).max() < 1e-12 and np.abs(numeric_for_ones).max() < 1e-6

    with pytest.raises(GradcheckError):
        check_module(BatchNormWithoutXhatTerm(3), x)


def test_inputs_on_a_relu_kink_are_redrawn():
    """Inputs within eps of 0 would make the finite difference straddle the kink."""
    x = randn(2, 3, 4, 4) * 1e-7  # every value within eps=1e-6 of the kink
    report = check_module(L.ReLU(), x)
    assert report.redraws >= 1 and report.ok


def test_maxpool_ties_are_redrawn():
    x = np.zeros((1, 2, 5, 5))  # every window is a tie: perturbing changes the winner
    report = check_module(L.MaxPool2d(3, stride=1), x)
    assert report.redraws >= 1 and report.ok


def test_integer_inputs_are_passed_through_not_checked():
    report = check_module(L.SoftmaxCrossEntropy(), randn(4, 3), np.array([0, 2, 1, 1]))
    assert [r.name for r in report.results] == ["input"]


def test_module_under_check_is_left_untouched():
    conv = L.Conv2d(2, 2, 3)
    before = conv.weight.data.copy()
    check_module(conv, randn(1, 2, 4, 4))
    assert conv.weight.data.dtype == np.float32 and conv.weight.grad is None
    np.testing.assert_array_equal(conv.weight.data, before)


def test_frozen_parameters_are_not_checked():
    lin = L.Linear(3, 2)
    lin.weight.requires_grad = False
    report = check_module(lin, randn(4, 3))
    assert [r.name for r in report.results] == ["input", "bias"]
