"""Max and global average pooling (ResNet's stem and head, lesson 07; exercise 10 derives max pooling's backward).

``resnet_np/fast/pooling.py`` holds the twins of ``maxpool2d_with_argmax``
and ``maxpool2d_backward``; ``MaxPool2d`` takes one or the other as
``resnet_np.use_fast`` says.
"""

from .. import fast
from ..backend import get_array_module
from ..checks import check_dout, check_float_input, check_forward_done, check_not_empty_image, layer_name, pair
from ..fast import pooling as fast_pooling
from ..module import Module
from .im2col import conv_output_size, pad2d


def maxpool2d_naive(x, kernel_size, stride=None, padding=0):
    """Max over each KH x KW window, one output position at a time (reference).

    Padding counts as -infinity, so it is never the maximum.
    """
    xp = get_array_module(x)
    KH, KW = pair(kernel_size, "kernel_size", "maxpool2d_naive", 1)
    SH, SW = pair(stride if stride is not None else kernel_size, "stride", "maxpool2d_naive", 1)
    PH, PW = pair(padding, "padding", "maxpool2d_naive", 0)
    N, C, H, W = x.shape
    OH, OW = conv_output_size(H, KH, SH, PH), conv_output_size(W, KW, SW, PW)
    x_pad = pad2d(x, PH, PW, value=-xp.inf)
    out = xp.empty((N, C, OH, OW), dtype=x.dtype)
    for oh in range(OH):
        for ow in range(OW):
            out[:, :, oh, ow] = x_pad[:, :, oh * SH:oh * SH + KH, ow * SW:ow * SW + KW].max(axis=(2, 3))
    return out


def window_stack(x_pad, kernel_size, stride, out_size):
    """(N, C, KH*KW, OH, OW): entry k = i*KW + j holds, for every window, its pixel under offset (i, j)."""
    xp = get_array_module(x_pad)
    (KH, KW), (SH, SW), (OH, OW) = kernel_size, stride, out_size
    return xp.stack([x_pad[:, :, i:i + SH * OH:SH, j:j + SW * OW:SW] for i in range(KH) for j in range(KW)], axis=2)


def maxpool2d_with_argmax(x, kernel_size, stride, padding):
    """out = the max of each window, and argmax = the offset k = i*KW + j of its winner. Returns (out, argmax).

    Padding counts as -infinity. Ties go to the first offset in row-major
    order, as in PyTorch; a window whose pixels are all -inf (a tie with its
    padding) is won by its first real pixel, so its gradient reaches one.
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    (KH, KW), (SH, SW), (PH, PW) = kernel_size, stride, padding
    out_size = (conv_output_size(H, KH, SH, PH), conv_output_size(W, KW, SW, PW))
    windows = window_stack(pad2d(x, PH, PW, value=-xp.inf), kernel_size, stride, out_size)
    argmax = windows.argmax(axis=2)                                         # (N, C, OH, OW)
    out = windows.max(axis=2)
    real = window_stack(pad2d(xp.ones((1, 1, H, W)), PH, PW), kernel_size, stride, out_size)
    argmax = xp.where(out == -xp.inf, real.argmax(axis=2), argmax)
    return out, argmax


def maxpool2d_backward(dout, argmax, x_shape, kernel_size, stride, padding):
    """dx: each window's dout goes to its winner; an input that won several windows collects their sum.

        dx_pad[n, c, oh*SH + i, ow*SW + j] += dout[n, c, oh, ow]      (for the offset (i, j) that won the window)
    """
    xp = get_array_module(dout)
    N, C, H, W = x_shape
    (KH, KW), (SH, SW), (PH, PW) = kernel_size, stride, padding
    OH, OW = argmax.shape[2:]
    dx_pad = xp.zeros((N, C, H + 2 * PH, W + 2 * PW), dtype=dout.dtype)
    for i in range(KH):
        for j in range(KW):
            won = argmax == i * KW + j                  # the windows offset (i, j) won: distinct pixels
            dx_pad[:, :, i:i + SH * OH:SH, j:j + SW * OW:SW] += xp.where(won, dout, 0)
    return dx_pad[:, :, PH:PH + H, PW:PW + W]


class MaxPool2d(Module):
    """out[n, c, oh, ow] = max of the window of x under that output position.

    The gradient of a max flows only to the element that won it:

        dx[window's argmax] += dout[n, c, oh, ow]

    With overlapping windows (stride < kernel, as in ResNet's 3x3/2 stem
    pool) one input can win several windows and collects the sum of their
    gradients. Ties go to the first element in row-major order, as in
    PyTorch. The forward pass records which kernel offset won each window
    (``maxpool2d_with_argmax``); the backward pass sends each gradient to
    its winner through that record (``maxpool2d_backward``).
    """

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size", "MaxPool2d", 1)
        self.stride = pair(stride if stride is not None else kernel_size, "stride", "MaxPool2d", 1)
        self.padding = pair(padding, "padding", "MaxPool2d", 0)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"MaxPool2d: padding must be at most half the kernel size, "
                             f"got padding {self.padding} for kernel {self.kernel_size}")
        self._cache = None

    def forward(self, x):
        self._cache = None
        check_float_input(self, x, 4, "(N, C, H, W)")
        check_not_empty_image(self, x)
        N, C, H, W = x.shape
        (KH, KW), (PH, PW) = self.kernel_size, self.padding
        if KH > H + 2 * PH or KW > W + 2 * PW:
            raise ValueError(f"{layer_name(self)}: kernel {KH}x{KW} is larger than the padded input "
                             f"{H + 2 * PH}x{W + 2 * PW} (input {H}x{W}, padding {PH},{PW})")
        args = (x, self.kernel_size, self.stride, self.padding)
        out, argmax = fast_pooling.maxpool2d_with_argmax(*args) if fast.fast_enabled() else maxpool2d_with_argmax(*args)
        self._cache = (x.shape, argmax)
        return out

    def backward(self, dout):
        check_forward_done(self, self._cache)
        x_shape, argmax = self._cache
        check_dout(self, dout, argmax.shape)
        args = (dout, argmax, x_shape, self.kernel_size, self.stride, self.padding)
        return fast_pooling.maxpool2d_backward(*args) if fast.fast_enabled() else maxpool2d_backward(*args)

    def kink_pattern(self):
        """Which element won each window (used by gradcheck to spot ties crossed)."""
        return None if self._cache is None else self._cache[1]

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class GlobalAvgPool2d(Module):
    """(N, C, H, W) -> (N, C, 1, 1): the mean of each channel map.

    As torchvision's ``AdaptiveAvgPool2d((1, 1))``; follow it with ``Flatten``.
    Every input pixel contributed 1/(H*W) of the mean, so

        dx[n, c, h, w] = dout[n, c] / (H * W)
    """

    def __init__(self):
        super().__init__()
        self._cache = None  # the input shape

    def forward(self, x):
        self._cache = None
        check_float_input(self, x, 4, "(N, C, H, W)")
        check_not_empty_image(self, x)  # an empty feature map has no mean
        self._cache = x.shape
        return x.mean(axis=(2, 3), keepdims=True)

    def backward(self, dout):
        check_forward_done(self, self._cache)
        N, C, H, W = self._cache
        check_dout(self, dout, (N, C, 1, 1))
        xp = get_array_module(dout)
        dx = xp.empty(self._cache, dtype=dout.dtype)
        dx[...] = dout / (H * W)
        return dx
