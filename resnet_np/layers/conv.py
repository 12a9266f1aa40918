"""2-D convolution: a naive reference and the im2col layer used in practice."""

from .. import init
from ..backend import get_array_module
from ..checks import (check_dim, check_dout, check_float_input, check_forward_done, check_not_empty_image, layer_name,
                      pair, positive_int)
from ..module import Module, Parameter
from .im2col import col2im_cf, conv_grid_width, conv_output_size, im2col_cf, pad2d


def conv2d_naive(x, weight, bias=None, stride=1, padding=0):
    """Direct convolution, one output position at a time: slow, obviously right.

        out[n, f, oh, ow] = b[f] + sum_{c, i, j} x_pad[n, c, oh*SH + i, ow*SW + j] * W[f, c, i, j]

    x: (N, C, H, W), weight: (F, C, KH, KW), bias: (F,) or None -> (N, F, OH, OW).
    Kept for teaching and as the reference the fast layer is tested against.
    """
    xp = get_array_module(x)
    SH, SW = pair(stride, "stride", "conv2d_naive", 1)
    PH, PW = pair(padding, "padding", "conv2d_naive", 0)
    N, C, H, W = x.shape
    F, _, KH, KW = weight.shape
    OH = conv_output_size(H, KH, SH, PH)
    OW = conv_output_size(W, KW, SW, PW)
    x_pad = pad2d(x, PH, PW)
    out = xp.zeros((N, F, OH, OW), dtype=x.dtype)
    for oh in range(OH):
        for ow in range(OW):
            window = x_pad[:, :, oh * SH:oh * SH + KH, ow * SW:ow * SW + KW]  # (N, C, KH, KW)
            out[:, :, oh, ow] = xp.tensordot(window, weight, axes=([1, 2, 3], [1, 2, 3]))
    if bias is not None:
        out += bias.reshape(1, F, 1, 1)
    return out


# How many bytes of ``cols`` one chunk of images may fill. Small enough to
# stay in the CPU's cache between im2col writing it and the matrix product
# reading it (measured best at 1-4 MB here); on a GPU, one chunk is the batch.
CPU_CHUNK_BYTES = 2 ** 21
# ... but at least this many columns: a matrix product only a few dozen
# columns wide (deep layers with tiny maps) runs at a fraction of BLAS's speed.
MIN_CHUNK_COLUMNS = 512


class Conv2d(Module):
    """2-D convolution (cross-correlation, as in every deep-learning library).

    With the input's channels put first, x_pad: (C, N, Hp, Wp), im2col gives
    cols of shape (C*KH*KW, N*OH*OW) — one column per (image, output
    position) — and with W_mat = weight reshaped to (F, C*KH*KW):

        out    = W_mat @ cols + b                        (F, N*OH*OW)

    Backward, for an upstream gradient dout as D of shape (F, N*OH*OW):

        dW_mat = D @ cols.T                              (F, C*KH*KW)
        db     = D summed over its columns               (F,)
        dcols  = W_mat.T @ D                             (C*KH*KW, N*OH*OW)
        dx     = col2im(dcols)                           (N, C, H, W)

    Both passes run over the batch a few images at a time (the columns of D
    and cols split by image), so ``cols`` never exists for the whole batch:
    it stays in cache, and the backward pass recomputes it from x rather than
    keeping KH*KW copies of every input alive between the passes.

    ``weight`` has PyTorch's shape (out_channels, in_channels, KH, KW) and is
    initialised as torchvision's ResNet does (He normal, fan_out). The input
    and output are ordinary (N, C, H, W) arrays.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        super().__init__()
        self.in_channels = positive_int(in_channels, "in_channels", "Conv2d")
        self.out_channels = positive_int(out_channels, "out_channels", "Conv2d")
        self.kernel_size = pair(kernel_size, "kernel_size", "Conv2d", 1)
        self.stride = pair(stride, "stride", "Conv2d", 1)
        self.padding = pair(padding, "padding", "Conv2d", 0)
        shape = (out_channels, in_channels) + self.kernel_size
        self.weight = Parameter(init.kaiming_normal(shape, mode="fan_out"))
        fan_in, _ = init.fans(shape)
        self.bias = Parameter(init.uniform_fan_in((out_channels,), fan_in)) if bias else None
        self._cache = None

    def forward(self, x):
        self._cache = None
        check_float_input(self, x, 4, "(N, C, H, W)", like=self.weight.data)
        check_dim(self, x, 1, self.in_channels, "input channels")
        check_not_empty_image(self, x)
        N, C, H, W = x.shape
        (KH, KW), (SH, SW), (PH, PW) = self.kernel_size, self.stride, self.padding
        if KH > H + 2 * PH or KW > W + 2 * PW:
            raise ValueError(
                f"{layer_name(self)}: kernel {KH}x{KW} is larger than the padded input "
                f"{H + 2 * PH}x{W + 2 * PW} (input {H}x{W}, padding {PH},{PW})"
            )
        OH, OW = conv_output_size(H, KH, SH, PH), conv_output_size(W, KW, SW, PW)
        GW = conv_grid_width(W, KW, self.stride, PW)     # columns per output row in cols (see im2col.py)
        xp = get_array_module(x)
        F = self.out_channels
        w_mat = self.weight.data.reshape(F, -1)                             # (F, C*KH*KW)
        B = self._images_per_chunk(xp, N, x.dtype.itemsize, OH * GW)

        out = xp.empty((N, F, OH, OW), dtype=x.dtype)
        x_pad = xp.zeros((C, B, H + 2 * PH + 1, W + 2 * PW), dtype=x.dtype)  # borders stay zero
        cols = xp.empty((C * KH * KW, B * OH * GW), dtype=x.dtype)
        for n0 in range(0, N, B):
            b = min(B, N - n0)
            x_pad[:, :b, PH:PH + H, PW:PW + W] = x[n0:n0 + b].transpose(1, 0, 2, 3)
            cols_b = im2col_cf(x_pad[:, :b], self.kernel_size, self.stride, (OH, GW), cols[:, :b * OH * GW])
            out_b = (w_mat @ cols_b).reshape(F, b, OH, GW)[:, :, :, :OW]      # (F, b, OH, OW)
            if self.bias is not None:
                out_b += self.bias.data.reshape(F, 1, 1, 1)
            out[n0:n0 + b] = out_b.transpose(1, 0, 2, 3)
        self._cache = (x, out.shape)
        return out

    def backward(self, dout):
        check_forward_done(self, self._cache)
        x, out_shape = self._cache
        check_dout(self, dout, out_shape)
        xp = get_array_module(dout)
        N, C, H, W = x.shape
        F, OH, OW = out_shape[1:]
        (KH, KW), (PH, PW) = self.kernel_size, self.padding
        GW = conv_grid_width(W, KW, self.stride, PW)
        w_mat = self.weight.data.reshape(F, -1)
        need_dw = self.weight.requires_grad
        B = self._images_per_chunk(xp, N, x.dtype.itemsize, OH * GW)

        dx = xp.empty(x.shape, dtype=dout.dtype)
        dw_mat = xp.zeros(w_mat.shape, dtype=dout.dtype) if need_dw else None
        x_pad = xp.zeros((C, B, H + 2 * PH + 1, W + 2 * PW), dtype=x.dtype)
        dx_pad = xp.empty_like(x_pad)
        d_grid = xp.zeros((F, B, OH, GW), dtype=dout.dtype)   # junk columns stay zero: they add nothing
        cols = xp.empty((C * KH * KW, B * OH * GW), dtype=x.dtype)
        for n0 in range(0, N, B):
            b = min(B, N - n0)
            d_grid[:, :b, :, :OW] = dout[n0:n0 + b].transpose(1, 0, 2, 3)
            d_b = d_grid[:, :b].reshape(F, b * OH * GW)                    # D's columns of these images
            if need_dw:  # cols again, from x: cheaper than having kept it since the forward pass
                x_pad[:, :b, PH:PH + H, PW:PW + W] = x[n0:n0 + b].transpose(1, 0, 2, 3)
                cols_b = im2col_cf(x_pad[:, :b], self.kernel_size, self.stride, (OH, GW), cols[:, :b * OH * GW])
                dw_mat += d_b @ cols_b.T
            dcols = w_mat.T @ d_b                                           # (C*KH*KW, b*OH*GW)
            dx_pad[:, :b] = 0
            col2im_cf(dcols, dx_pad[:, :b], self.kernel_size, self.stride, (OH, GW))
            dx[n0:n0 + b] = dx_pad[:, :b, PH:PH + H, PW:PW + W].transpose(1, 0, 2, 3)
        if need_dw:
            self.weight.accumulate_grad(dw_mat.reshape(self.weight.shape))
        if self.bias is not None and self.bias.requires_grad:
            self.bias.accumulate_grad(dout.sum(axis=(0, 2, 3)))
        return dx

    def _images_per_chunk(self, xp, N, itemsize, positions):
        """How many images' cols fit in the chunk budget (the whole batch on a GPU)."""
        if xp.__name__ != "numpy":
            return N
        per_image = self.in_channels * self.kernel_size[0] * self.kernel_size[1] * positions * itemsize
        by_bytes = CPU_CHUNK_BYTES // per_image
        by_columns = -(-MIN_CHUNK_COLUMNS // positions)  # ceil
        return max(1, min(N, max(by_bytes, by_columns)))

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}")
