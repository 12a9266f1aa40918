"""Max and global average pooling (ResNet's stem and head, lesson 07; exercise 10 derives max pooling's backward).

The windows' geometry (output size, ceil mode, padding) is in ``pool_windows.py``.

``resnet_np/fast/pooling.py`` holds the twins of ``maxpool2d_with_argmax``
and ``maxpool2d_backward``; ``MaxPool2d`` takes one or the other as
``resnet_np.use_fast`` says.
"""

from .. import fast
from ..backend import get_array_module
from ..checks import check_dout, check_float_input, check_forward_done, check_not_empty_image, pair
from ..fast import pooling as fast_pooling
from ..module import Module
from .im2col import conv_output_size, pad2d
from .pool_windows import (
    batched,
    batched_grad,
    check_half_kernel_padding,
    pad_windows,
    padded_size,
    pool_output_shape,
    pool_output_size,
    window_stack,
)


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


def maxpool2d_with_argmax(x, kernel_size, stride, padding, dilation=(1, 1), ceil_mode=False):
    """out = the max of each window, and argmax = the offset k = i*KW + j of its winner. Returns (out, argmax).

    Padding, and the overhang of ``ceil_mode``, count as -infinity. Ties go
    to the first offset in row-major order, as in PyTorch; a window whose
    pixels are all -inf (a tie with its padding) is won by its first real
    pixel, so its gradient reaches one.
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    out_size = (pool_output_size(H, kernel_size[0], stride[0], padding[0], dilation[0], ceil_mode),
                pool_output_size(W, kernel_size[1], stride[1], padding[1], dilation[1], ceil_mode))
    geometry = (kernel_size, stride, padding, dilation, out_size)
    windows = window_stack(pad_windows(x, *geometry, value=-xp.inf), kernel_size, stride, out_size, dilation)
    argmax = windows.argmax(axis=2)                                         # (N, C, OH, OW)
    out = windows.max(axis=2)
    real = window_stack(pad_windows(xp.ones((1, 1, H, W)), *geometry, value=0.0), kernel_size, stride, out_size,
                        dilation)
    argmax = xp.where(out == -xp.inf, real.argmax(axis=2), argmax)
    return out, argmax


def maxpool2d_backward(dout, argmax, x_shape, kernel_size, stride, padding, dilation=(1, 1)):
    """dx: each window's dout goes to its winner; an input that won several windows collects their sum.

        dx[n, c, h, w] = sum_{oh,ow} dout[n, c, oh, ow]      (over the windows pixel h, w won)

    Offset by offset: the windows that offset (i, j) won add their dout at
    rows oh*SH + i*DH, columns ow*SW + j*DW of the padded gradient.
    """
    xp = get_array_module(dout)
    N, C, H, W = x_shape
    (KH, KW), (SH, SW), (PH, PW), (DH, DW) = kernel_size, stride, padding, dilation
    OH, OW = argmax.shape[2:]
    dx_pad = xp.zeros((N, C, padded_size(H, KH, SH, PH, DH, OH), padded_size(W, KW, SW, PW, DW, OW)),
                      dtype=dout.dtype)
    for i in range(KH):
        for j in range(KW):
            won = argmax == i * KW + j                  # the windows offset (i, j) won: distinct pixels
            dx_pad[:, :, i * DH:i * DH + SH * OH:SH, j * DW:j * DW + SW * OW:SW] += xp.where(won, dout, 0)
    return dx_pad[:, :, PH:PH + H, PW:PW + W]


def argmax_to_indices(argmax, x_shape, kernel_size, stride, padding, dilation=(1, 1)):
    """PyTorch's ``return_indices``: the winner's flat position h * W + w in its (H, W) plane.

        index = (oh * SH - PH + i * DH) * W + ow * SW - PW + j * DW      (the winner at offset i, j)

    where (i, j) = divmod(argmax, KW) is the kernel offset that won window (oh, ow).
    """
    xp = get_array_module(argmax)
    N, C, H, W = x_shape
    KW, (SH, SW), (PH, PW), (DH, DW) = kernel_size[1], stride, padding, dilation
    OH, OW = argmax.shape[2:]
    k = argmax.astype(xp.int64)
    h = (xp.arange(OH) * SH - PH).reshape(-1, 1) + (k // KW) * DH
    w = xp.arange(OW) * SW - PW + (k % KW) * DW
    return h * W + w


class MaxPool2d(Module):
    """out[n, c, oh, ow] = max of the window of x under that output position.

    The gradient of a max flows only to the element that won it (x_pad is x
    with -inf around it):

        out[n, c, oh, ow] = max(x_pad[n, c, oh*SH + i*DH, ow*SW + j*DW])      (over the offsets i, j)
        dx[n, c, h, w] = sum_{oh,ow} dout[n, c, oh, ow]                          (over the windows pixel h, w won)

    With overlapping windows (stride < kernel, as in ResNet's 3x3/2 stem
    pool) one input can win several windows and collects the sum of their
    gradients. Ties go to the first element in row-major order, as in
    PyTorch. The forward pass records which kernel offset won each window
    (``maxpool2d_with_argmax``); the backward pass sends each gradient to
    its winner through that record (``maxpool2d_backward``).

    PyTorch's options: ``dilation`` spreads the window's taps DH rows apart;
    ``ceil_mode`` keeps a last, partial window (its overhang is -inf, see
    ``pool_windows.py``); ``return_indices`` makes the forward pass return
    (out, indices), each winner's flat position h * W + w in its plane, as
    ``MaxUnpool2d`` takes them. An unbatched (C, H, W) input gives (C, OH, OW).
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size", "MaxPool2d", 1)
        self.stride = pair(stride if stride is not None else kernel_size, "stride", "MaxPool2d", 1)
        self.padding = pair(padding, "padding", "MaxPool2d", 0)
        self.dilation = pair(dilation, "dilation", "MaxPool2d", 1)
        self.return_indices, self.ceil_mode = bool(return_indices), bool(ceil_mode)
        check_half_kernel_padding("MaxPool2d", self.padding, self.kernel_size, self.dilation)
        self._cache = None
        self._unbatched = False

    def forward(self, x):
        self._cache = None
        x, self._unbatched = batched(self, x)
        geometry = (self.kernel_size, self.stride, self.padding, self.dilation)
        pool_output_shape(self, x.shape, *geometry, self.ceil_mode)
        args = (x, *geometry, self.ceil_mode)
        out, argmax = fast_pooling.maxpool2d_with_argmax(*args) if fast.fast_enabled() else maxpool2d_with_argmax(*args)
        self._cache = (x.shape, argmax)
        if self._unbatched:
            out = out[0]
        if not self.return_indices:
            return out
        indices = argmax_to_indices(argmax, x.shape, *geometry)
        return out, indices[0] if self._unbatched else indices

    def backward(self, dout):
        check_forward_done(self, self._cache)
        x_shape, argmax = self._cache
        dout = batched_grad(self, dout, argmax.shape, self._unbatched)
        args = (dout, argmax, x_shape, self.kernel_size, self.stride, self.padding, self.dilation)
        dx = fast_pooling.maxpool2d_backward(*args) if fast.fast_enabled() else maxpool2d_backward(*args)
        return dx[0] if self._unbatched else dx

    def kink_pattern(self):
        """Which element won each window (used by gradcheck to spot ties crossed)."""
        return None if self._cache is None else self._cache[1]

    def extra_repr(self):
        text = f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.ceil_mode:
            text += ", ceil_mode=True"
        return text + (", return_indices=True" if self.return_indices else "")


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
