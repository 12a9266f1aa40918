"""Plant the backward-pass bugs students and authors really make; the gradient check must catch each.

Every test checks the correct layer too, so a check that fails on everything
would not pass for catching bugs.
"""

import numpy as np
import pytest

from resnet_np import layers as L
from resnet_np import use_fast
from resnet_np.fast import conv as fast_conv
from resnet_np.fast import transposed_conv
from resnet_np.gradcheck import GradcheckError, check_module
from resnet_np.layers import conv as conv_module


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.fixture(params=[True, False], ids=["fast", "plain"])
def path(request):
    """The test runs on both paths: the fast layers and the plain ones (resnet_np.use_fast)."""
    with use_fast(request.param):
        yield request.param


def assert_caught(correct, broken, *inputs):
    check_module(correct, *inputs)  # the real layer passes ...
    with pytest.raises(GradcheckError):  # ... and the planted bug is caught
        check_module(broken, *inputs)


# -- batch norm: dropping a term of dx -----------------------------------------------------

class BatchNormDropMeanTerm(L.BatchNorm2d):
    """dx without the -sum(dx_hat) term (forgets that the mean depends on x)."""

    def backward(self, dout):
        _, x_centered, inv_std, _ = self._cache
        super().backward(dout)
        C = dout.shape[1]
        x_hat = x_centered * inv_std.reshape(1, C, 1, 1)
        M = dout.size // C
        dx_hat = dout * self.weight.data.reshape(1, C, 1, 1)
        return (M * dx_hat - x_hat * (dx_hat * x_hat).sum(axis=(0, 2, 3), keepdims=True)) \
            * inv_std.reshape(1, C, 1, 1) / M


class BatchNormDropVarianceTerm(L.BatchNorm2d):
    """dx without the -x_hat * sum(dx_hat * x_hat) term (forgets that the variance depends on x)."""

    def backward(self, dout):
        _, _, inv_std, _ = self._cache
        super().backward(dout)
        C = dout.shape[1]
        M = dout.size // C
        dx_hat = dout * self.weight.data.reshape(1, C, 1, 1)
        return (M * dx_hat - dx_hat.sum(axis=(0, 2, 3), keepdims=True)) * inv_std.reshape(1, C, 1, 1) / M


class BatchNormEvalFormulaInTrain(L.BatchNorm2d):
    """Train mode using the eval-mode backward: treats the batch statistics as constants."""

    def backward(self, dout):
        _, _, inv_std, _ = self._cache
        super().backward(dout)
        return dout * (self.weight.data * inv_std).reshape(1, -1, 1, 1)


@pytest.mark.parametrize("broken_cls", [BatchNormDropMeanTerm, BatchNormDropVarianceTerm, BatchNormEvalFormulaInTrain])
def test_batchnorm_dx_bugs_are_caught(path, broken_cls):
    assert_caught(L.BatchNorm2d(3), broken_cls(3), randn(4, 3, 3, 3))


class BatchNormDgammaWithoutXhat(L.BatchNorm2d):
    """dweight = sum(dout) instead of sum(dout * x_hat)."""

    def backward(self, dout):
        dx = super().backward(dout)
        self.weight.grad = dout.sum(axis=(0, 2, 3))
        return dx


def test_batchnorm_dweight_bug_is_caught(path):
    assert_caught(L.BatchNorm2d(3), BatchNormDgammaWithoutXhat(3), randn(4, 3, 3, 3))


# -- convolution -----------------------------------------------------------------------------

class ConvTransposedKernelGrad(L.Conv2d):
    """dW with its kernel axes swapped: (F, C, KH, KW) -> (F, C, KW, KH)."""

    def backward(self, dout):
        dx = super().backward(dout)
        self.weight.grad = self.weight.grad.transpose(0, 1, 3, 2).copy()
        return dx


class ConvTransposedChannelGrad(L.Conv2d):
    """dW with in and out channels swapped (shapes agree when in == out)."""

    def backward(self, dout):
        dx = super().backward(dout)
        self.weight.grad = self.weight.grad.transpose(1, 0, 2, 3).copy()
        return dx


@pytest.mark.parametrize("broken_cls", [ConvTransposedKernelGrad, ConvTransposedChannelGrad])
def test_conv_dweight_transposed_is_caught(path, broken_cls):
    assert_caught(L.Conv2d(3, 3, 3, padding=1), broken_cls(3, 3, 3, padding=1), randn(2, 3, 5, 5))


def col2im_cf_assign_instead_of_add(dcols, dx_pad, kernel_size, stride, out_size, dilation=(1, 1), image_width=None,
                                    padding_w=0):
    """The fast path's col2im (the strided form), overwriting where windows overlap instead of summing."""
    C, B = dx_pad.shape[:2]
    (KH, KW), (SH, SW), (OH, GW) = kernel_size, stride, out_size
    taps = dcols.reshape(C, KH, KW, B, OH, GW)
    for i in range(KH):
        for j in range(KW):
            dx_pad[:, :, i:i + SH * OH:SH, j:j + SW * GW:SW] = taps[:, i, j]
    return dx_pad


def col2im_assign_instead_of_add(cols, x_shape, kernel_size, stride, padding, dilation=(1, 1)):
    """The plain col2im, overwriting where windows overlap instead of summing."""
    N, C, H, W = x_shape
    (KH, KW), (SH, SW), (PH, PW) = kernel_size, stride, padding
    OH, OW = L.conv_output_size(H, KH, SH, PH), L.conv_output_size(W, KW, SW, PW)
    cols = cols.reshape(N, C, KH, KW, OH, OW)
    dx_pad = np.zeros((N, C, H + 2 * PH, W + 2 * PW))
    for i in range(KH):
        for j in range(KW):
            dx_pad[:, :, i:i + SH * OH:SH, j:j + SW * OW:SW] = cols[:, :, i, j]
    return dx_pad[:, :, PH:PH + H, PW:PW + W]


def test_col2im_that_does_not_sum_overlaps_is_caught(monkeypatch, path):
    x = randn(2, 2, 6, 6)
    check_module(L.Conv2d(2, 3, 3, stride=2), x)
    if path:
        monkeypatch.setattr(fast_conv, "col2im_cf", col2im_cf_assign_instead_of_add)
    else:
        monkeypatch.setattr(conv_module, "col2im", col2im_assign_instead_of_add)
    with pytest.raises(GradcheckError, match="input"):
        check_module(L.Conv2d(2, 3, 3, stride=2), x)


def transposed_kernel_without_flip(weight, groups):
    """The transposed convolution's kernel with the channels swapped but not rotated by 180 degrees."""
    F, Cg, KH, KW = weight.shape
    w = weight.reshape(groups, F // groups, Cg, KH, KW)
    return w.transpose(0, 2, 1, 3, 4).reshape(groups * Cg, (F // groups) * KH * KW)


def transposed_kernel_ignoring_groups(weight, groups):
    """Channels swapped as if there were one group, then reshaped to (C, F/G*KH*KW): rows of the groups interleaved."""
    F, Cg, KH, KW = weight.shape
    w_t = weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3).reshape(Cg, F * KH * KW)   # (C/G, F*KH*KW)
    return w_t.reshape(groups * Cg, (F // groups) * KH * KW)


def test_transposed_convolution_without_flip_is_caught(monkeypatch):
    x = randn(2, 2, 5, 5)
    check_module(L.Conv2d(2, 3, 3, padding=1), x)
    monkeypatch.setattr(transposed_conv, "transposed_kernel", transposed_kernel_without_flip)
    for conv in (L.Conv2d(2, 3, 3, padding=1), L.Conv2d(2, 3, (3, 2), padding=(2, 0), dilation=(1, 2))):
        with pytest.raises(GradcheckError, match="input"):  # dW is right: only dx uses the kernel
            check_module(conv, x)


def test_transposed_convolution_ignoring_groups_is_caught(monkeypatch):
    x = randn(2, 4, 5, 5)
    check_module(L.Conv2d(4, 6, 3, padding=1, groups=2), x)
    monkeypatch.setattr(transposed_conv, "transposed_kernel", transposed_kernel_ignoring_groups)
    with pytest.raises(GradcheckError, match="input"):
        check_module(L.Conv2d(4, 6, 3, padding=1, groups=2), x)


class ConvForgetsBiasSum(L.Conv2d):
    """db summed over the batch only, taking position 0: a classic shape-juggling slip."""

    def backward(self, dout):
        dx = super().backward(dout)
        self.bias.grad = dout[:, :, 0, 0].sum(axis=0)
        return dx


def test_conv_bias_bug_is_caught():
    assert_caught(L.Conv2d(2, 3, 3), ConvForgetsBiasSum(2, 3, 3), randn(2, 2, 5, 5))


# -- ReLU: the mask routed wrongly -----------------------------------------------------------

class ReLUMaskFromGradient(L.ReLU):
    """Masks with the sign of the upstream gradient instead of the input's."""

    def backward(self, dout):
        super().backward(dout)
        return dout * (dout > 0)


class ReLUInvertedMask(L.ReLU):
    def backward(self, dout):
        super().backward(dout)
        return dout * ~self._cache


class ReLUNoMask(L.ReLU):
    def backward(self, dout):
        super().backward(dout)
        return dout.copy()


@pytest.mark.parametrize("broken_cls", [ReLUMaskFromGradient, ReLUInvertedMask, ReLUNoMask])
def test_relu_mask_bugs_are_caught(path, broken_cls):
    assert_caught(L.ReLU(), broken_cls(), randn(2, 3, 4, 4))


# -- Add: only one branch gets the gradient --------------------------------------------------

class AddShortcutOnly(L.Add):
    def backward(self, dout):
        super().backward(dout)
        return np.zeros_like(dout), dout


class AddHalved(L.Add):
    """Splits the gradient in two halves, as if the sum were an average."""

    def backward(self, dout):
        super().backward(dout)
        return dout / 2, dout / 2


@pytest.mark.parametrize("broken_cls", [AddShortcutOnly, AddHalved])
def test_add_bugs_are_caught(path, broken_cls):
    a, b = randn(2, 3, 4, 4), randn(2, 3, 4, 4, seed=1)
    assert_caught(L.Add(), broken_cls(), a, b)


# -- max pooling, linear, loss -----------------------------------------------------------------

class MaxPoolLastWriteWins(L.MaxPool2d):
    """Overlapping windows: each input keeps only the last window's gradient."""

    def backward(self, dout):
        x_shape, argmax = self._cache
        N, C, H, W = x_shape
        (KH, KW), (SH, SW), (PH, PW) = self.kernel_size, self.stride, self.padding
        OH, OW = argmax.shape[2:]
        dx_pad = np.zeros((N, C, H + 2 * PH, W + 2 * PW))
        for k in range(KH * KW):
            i, j = divmod(k, KW)
            view = dx_pad[:, :, i:i + SH * OH:SH, j:j + SW * OW:SW]
            view[argmax == k] = dout[argmax == k]
        return dx_pad[:, :, PH:PH + H, PW:PW + W]


def test_maxpool_overlap_bug_is_caught_only_with_overlapping_windows(path):
    x = randn(2, 2, 7, 7)
    assert_caught(L.MaxPool2d(3, stride=1), MaxPoolLastWriteWins(3, stride=1), x)
    # Non-overlapping windows hide the bug: the reason the tests use stride < kernel.
    check_module(MaxPoolLastWriteWins(2, stride=2), randn(2, 2, 6, 6))


class LinearTransposedWeightGrad(L.Linear):
    """dW = x.T @ dout (in, out) transposed wrongly; shapes agree when in == out."""

    def backward(self, dout):
        dx = super().backward(dout)
        self.weight.grad = self._cache.T @ dout
        return dx


def test_linear_transposed_weight_grad_is_caught():
    assert_caught(L.Linear(4, 4), LinearTransposedWeightGrad(4, 4), randn(5, 4))


class LossWithoutBatchMean(L.SoftmaxCrossEntropy):
    """Forgets the 1/N of the mean."""

    def backward(self, dloss=1.0):
        return super().backward(dloss) * self._cache[0].shape[0]


def test_loss_without_mean_is_caught():
    logits, labels = randn(4, 3), np.array([0, 2, 1, 1])
    assert_caught(L.SoftmaxCrossEntropy(), LossWithoutBatchMean(), logits, labels)
