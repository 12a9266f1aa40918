"""2-D convolution: a naive reference and the im2col layer used in practice."""

from .. import init
from ..fast import threads as parallel
from ..backend import get_array_module
from ..checks import (
    check_dim,
    check_dout,
    check_float_input,
    check_forward_done,
    check_not_empty_image,
    layer_name,
    pair,
    positive_int,
)
from ..module import Module, Parameter
from .im2col import col2im_cf, conv_grid_width, conv_output_size, im2col_cf, input_buffer, pad2d, padded_row_length


def conv2d_naive(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Direct convolution, one output position at a time: slow, obviously right.

        out[n, f, oh, ow] = b[f] + sum_{c, i, j} x_pad[n, g*Cg + c, oh*SH + i*DH, ow*SW + j*DW] * W[f, c, i, j]

    with G groups: output channel f belongs to group g = f // (F/G) and sees
    only that group's Cg = C/G input channels (c runs over 0..Cg-1).
    x: (N, C, H, W), weight: (F, C/G, KH, KW), bias: (F,) or None -> (N, F, OH, OW).
    Kept for teaching and as the reference the fast layer is tested against.
    """
    xp = get_array_module(x)
    SH, SW = pair(stride, "stride", "conv2d_naive", 1)
    PH, PW = pair(padding, "padding", "conv2d_naive", 0)
    DH, DW = pair(dilation, "dilation", "conv2d_naive", 1)
    N, C, H, W = x.shape
    F, Cg, KH, KW = weight.shape
    G = C // Cg
    Fg = F // G
    OH = conv_output_size(H, DH * (KH - 1) + 1, SH, PH)
    OW = conv_output_size(W, DW * (KW - 1) + 1, SW, PW)
    x_pad = pad2d(x, PH, PW)
    out = xp.zeros((N, F, OH, OW), dtype=x.dtype)
    for oh in range(OH):
        for ow in range(OW):
            window = x_pad[:, :, oh * SH:oh * SH + DH * (KH - 1) + 1:DH,
                           ow * SW:ow * SW + DW * (KW - 1) + 1:DW]  # (N, C, KH, KW)
            for g in range(G):
                out[:, g * Fg:(g + 1) * Fg, oh, ow] = xp.tensordot(
                    window[:, g * Cg:(g + 1) * Cg], weight[g * Fg:(g + 1) * Fg], axes=([1, 2, 3], [1, 2, 3]))
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


def images_per_chunk(xp, N, rows, positions, itemsize):
    """How many images' cols (``rows`` x ``positions`` each) fit in the chunk budget (the whole batch on a GPU)."""
    if xp.__name__ != "numpy":
        return N
    by_bytes = CPU_CHUNK_BYTES // (rows * positions * itemsize)
    by_columns = -(-MIN_CHUNK_COLUMNS // positions)  # ceil
    return max(1, min(N, max(by_bytes, by_columns)))


def column_buffer(xp, rows, columns, dtype):
    """An empty (rows, columns) matrix for im2col, its rows spaced as ``padded_row_length`` says (a view)."""
    return xp.empty((rows, padded_row_length(columns, dtype.itemsize)), dtype=dtype)[:, :columns]


def grouped_matmul(w_mat, cols, groups, out=None):
    """(F, Cg*KH*KW) weights times (G*Cg*KH*KW, P) cols -> (F, P), group by group.

    Group g's output channels (rows g*F/G ...) see only group g's block of
    rows of cols; all G products run as one batched matrix product.
    ``out``, if given, is a contiguous (F, P) buffer to write the product into.
    """
    xp = get_array_module(cols)
    F, K = w_mat.shape
    P = cols.shape[1]
    if out is None:
        out = xp.empty((F, P), dtype=cols.dtype)
    if groups == 1:
        return xp.matmul(w_mat, cols, out=out)
    Fg = F // groups
    xp.matmul(w_mat.reshape(groups, Fg, K), cols.reshape(groups, K, P), out=out.reshape(groups, Fg, P))
    return out


def transposed_kernel(weight, groups):
    """The kernel of the transposed convolution, as a matrix (C, F/G*KH*KW).

    w_t[g*C/G + c, (f, i, j)] = W[g*F/G + f, c, KH-1-i, KW-1-j]: rotated by
    180 degrees, input and output channels swapped within each group.
    """
    F, Cg, KH, KW = weight.shape
    w_flip = weight[:, :, ::-1, ::-1].reshape(groups, F // groups, Cg, KH, KW)
    return w_flip.transpose(0, 2, 1, 3, 4).reshape(groups * Cg, (F // groups) * KH * KW)


def conv2d_im2col(x, w_mat, kernel_size, stride, padding, dilation=(1, 1), groups=1, bias=None):
    """out (N, F, OH, OW) of a convolution of x (N, C, H, W), weight as a matrix (F, C/G*KH*KW).

    The images go through in chunks: each chunk is transposed to channels
    first into a zero-padded buffer (``input_buffer``), unrolled by im2col
    into cols (C*KH*KW, B*OH*GW), multiplied, and transposed back.
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    F = w_mat.shape[0]
    (KH, KW), (SH, SW), (PH, PW), (DH, DW) = kernel_size, stride, padding, dilation
    OH = conv_output_size(H, DH * (KH - 1) + 1, SH, PH)
    OW = conv_output_size(W, DW * (KW - 1) + 1, SW, PW)
    GW = conv_grid_width(W, KW, stride, PW, DW)     # columns per output row in cols (see im2col.py)
    B = images_per_chunk(xp, N, C * KH * KW, OH * GW, x.dtype.itemsize)

    out = xp.empty((N, F, OH, OW), dtype=x.dtype)

    def images(n_start, n_stop):  # one thread's share of the batch, with buffers of its own
        x_buf, x_in = input_buffer(xp, C, B, H, W, kernel_size, stride, padding, dilation, x.dtype)
        cols = column_buffer(xp, C * KH * KW, B * OH * GW, x.dtype)
        product = xp.empty(F * B * OH * GW, dtype=x.dtype)   # W_mat @ cols lands here: no new array per chunk
        for n0 in range(n_start, n_stop, B):
            b = min(B, n_stop - n0)
            x_in[:, :b] = x[n0:n0 + b].transpose(1, 0, 2, 3)   # the padding around stays zero
            cols_b = im2col_cf(x_buf[:, :b], kernel_size, stride, (OH, GW), cols[:, :b * OH * GW], dilation, W, PW)
            out_b = grouped_matmul(w_mat, cols_b, groups, product[:F * b * OH * GW].reshape(F, -1))
            out_b = out_b.reshape(F, b, OH, GW)[:, :, :, :OW]  # (F, b, OH, OW)
            if bias is not None:
                out_b += bias.reshape(F, 1, 1, 1)
            out[n0:n0 + b] = out_b.transpose(1, 0, 2, 3)

    parallel.for_each_part(images, N, xp=xp)
    return out


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

    At stride 1 the last two lines have a faster equivalent: each input pixel
    receives W[f, c, i, j] * dout from the output KH-1-i rows and KW-1-j
    columns away, so dx is itself a convolution — of dout, padded by
    D*(K-1) - P, with the kernel flipped (rotated 180 degrees) and its in/out
    channels swapped (the "transposed convolution"). That costs one im2col
    (copies) and one product whose inner dimension is F*KH*KW, instead of a
    product with inner dimension F followed by col2im's KH*KW additions —
    and that same im2col of dout gives dW too (``_backward_transposed``).

    Every pass runs over the batch a few images at a time (the columns of D
    and cols split by image), so ``cols`` never exists for the whole batch:
    it stays in cache, and the backward pass recomputes it from x rather than
    keeping KH*KW copies of every input alive between the passes. On the
    CPU the images are shared out among threads, one share per core
    (``resnet_np.parallel``), since im2col's copies run on one core only.

    ``groups`` = G splits the channels into G independent convolutions
    (C/G inputs -> F/G outputs each; ResNeXt's "cardinality"; G = C is a
    depthwise convolution): the weight is (F, C/G, KH, KW) and each product
    above becomes G products, one per block of rows (``grouped_matmul``).
    ``dilation`` spreads the kernel taps D pixels apart.

    ``weight`` has PyTorch's shape (out_channels, in_channels/groups, KH, KW)
    and is initialised as torchvision's ResNet does (He normal, fan_out).
    The input and output are ordinary (N, C, H, W) arrays.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True):
        super().__init__()
        self.in_channels = positive_int(in_channels, "in_channels", "Conv2d")
        self.out_channels = positive_int(out_channels, "out_channels", "Conv2d")
        self.kernel_size = pair(kernel_size, "kernel_size", "Conv2d", 1)
        self.stride = pair(stride, "stride", "Conv2d", 1)
        self.padding = pair(padding, "padding", "Conv2d", 0)
        self.dilation = pair(dilation, "dilation", "Conv2d", 1)
        self.groups = positive_int(groups, "groups", "Conv2d")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: in_channels ({in_channels}) and out_channels ({out_channels}) must both be "
                             f"divisible by groups ({groups})")
        shape = (out_channels, in_channels // groups) + self.kernel_size
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
        (KH, KW), (PH, PW), (DH, DW) = self.kernel_size, self.padding, self.dilation
        if DH * (KH - 1) + 1 > H + 2 * PH or DW * (KW - 1) + 1 > W + 2 * PW:
            dilated = f" (dilated to {DH * (KH - 1) + 1}x{DW * (KW - 1) + 1})" if (DH, DW) != (1, 1) else ""
            raise ValueError(
                f"{layer_name(self)}: kernel {KH}x{KW}{dilated} is larger than the padded input "
                f"{H + 2 * PH}x{W + 2 * PW} (input {H}x{W}, padding {PH},{PW})"
            )
        w_mat = self.weight.data.reshape(self.out_channels, -1)            # (F, C/G*KH*KW)
        bias = self.bias.data if self.bias is not None else None
        out = conv2d_im2col(x, w_mat, self.kernel_size, self.stride, self.padding, self.dilation, self.groups, bias)
        self._cache = (x, out.shape)
        return out

    def backward(self, dout, need_input_grad=True):
        """dx (None with ``need_input_grad=False``: the first layer, whose input is the images)."""
        check_forward_done(self, self._cache)
        x, out_shape = self._cache
        check_dout(self, dout, out_shape)
        need_dw = self.weight.requires_grad
        dx = dw = None
        if need_input_grad and self._transposed_conv_applies():
            dx, dw = self._backward_transposed(x, dout, need_dw)
        else:
            dw = self._weight_grad(x, dout) if need_dw else None
            if need_input_grad:
                dx = self._input_grad_col2im(x.shape, dout)
        if need_dw:
            self.weight.accumulate_grad(dw)
        if self.bias is not None and self.bias.requires_grad:
            self.bias.accumulate_grad(dout.sum(axis=(0, 2, 3)))
        return dx

    def _weight_grad(self, x, dout):
        """dW = D @ cols.T, summed over chunks of images; cols recomputed from x."""
        xp = get_array_module(dout)
        N, C, H, W = x.shape
        F, OH, OW = dout.shape[1:]
        G = self.groups
        (KH, KW), PW, DW = self.kernel_size, self.padding[1], self.dilation[1]
        GW = conv_grid_width(W, KW, self.stride, PW, DW)
        K = C // G * KH * KW
        B = images_per_chunk(xp, N, C * KH * KW, OH * GW, x.dtype.itemsize)

        def images(n_start, n_stop):  # one thread's share: its own buffers and its own partial sum
            dw_t = xp.zeros((G, K, F // G), dtype=dout.dtype)       # dW transposed, group by group
            x_buf, x_in = input_buffer(xp, C, B, H, W, self.kernel_size, self.stride, self.padding, self.dilation,
                                       x.dtype)
            d_grid = xp.zeros((F, B, OH, GW), dtype=dout.dtype)     # junk columns stay zero: they add nothing
            cols = column_buffer(xp, C * KH * KW, B * OH * GW, x.dtype)
            for n0 in range(n_start, n_stop, B):
                b = min(B, n_stop - n0)
                d_grid[:, :b, :, :OW] = dout[n0:n0 + b].transpose(1, 0, 2, 3)
                d_b = d_grid[:, :b].reshape(G, F // G, b * OH * GW)              # D's columns of these images
                x_in[:, :b] = x[n0:n0 + b].transpose(1, 0, 2, 3)
                cols_b = im2col_cf(x_buf[:, :b], self.kernel_size, self.stride, (OH, GW), cols[:, :b * OH * GW],
                                   self.dilation, W, PW)
                # cols @ D.T rather than D @ cols.T: the same numbers, but BLAS runs this
                # orientation about twice as fast when F is small (the result is tiny).
                dw_t += cols_b.reshape(G, K, b * OH * GW) @ d_b.transpose(0, 2, 1)
            return dw_t

        parts = parallel.for_each_part(images, N, xp=xp)
        dw_t = parts[0]
        for part in parts[1:]:  # in a fixed order: the same sum on every run
            dw_t += part
        return dw_t.transpose(0, 2, 1).reshape(self.weight.shape)

    def _transposed_conv_applies(self):
        """Whether backward takes the transposed-convolution route (``_backward_transposed``).

        It needs stride 1 and padding P <= D*(K-1) (else dout's padding would
        be negative), and it pays only if dout's im2col (F*KH*KW rows) is not
        much bigger than the input's (C*KH*KW rows): not for a stem that
        turns 3 colour channels into 16 or 64 maps.
        """
        (KH, KW), (PH, PW), (DH, DW) = self.kernel_size, self.padding, self.dilation
        return (self.stride == (1, 1) and PH <= DH * (KH - 1) and PW <= DW * (KW - 1)
                and 2 * self.in_channels >= self.out_channels)

    def _backward_transposed(self, x, dout, need_dw):
        """dx and dW of a stride-1 convolution, both from ONE im2col: that of dout.

        dx is the convolution of dout (padded by Q = D*(K-1) - P) with the
        transposed kernel: dcols = im2col(dout), dx = W_t @ dcols. The same
        dcols gives the weight gradient: row (f, KH-1-i, KW-1-j) of dcols
        holds, for every input pixel (n, h, w), the dout that pixel met
        through tap (i, j) of filter f, so

            dW[f, c, i, j] = sum over (n, h, w) of dcols[(f, KH-1-i, KW-1-j), (n, h, w)] * x[n, c, h, w]

        one product dcols @ x.T — and the input never needs an im2col of
        its own in backward. (x is laid on dcols' grid of GW columns per row,
        the extra columns zero, so they add nothing.)
        """
        xp = get_array_module(dout)
        N, C, H, W = x.shape
        F, OH, OW = dout.shape[1:]
        G = self.groups
        Cg, Fg = C // G, F // G
        (KH, KW), (PH, PW), (DH, DW) = self.kernel_size, self.padding, self.dilation
        QH, QW = DH * (KH - 1) - PH, DW * (KW - 1) - PW      # dout's padding
        GW = conv_grid_width(OW, KW, (1, 1), QW, DW)          # dcols' columns per row of dx (W of them useful)
        w_t = transposed_kernel(self.weight.data, G)          # (C, F/G*KH*KW)
        B = images_per_chunk(xp, N, F * KH * KW, H * GW, dout.dtype.itemsize)
        dx = xp.empty(x.shape, dtype=dout.dtype)

        def images(n_start, n_stop):  # one thread's share: its own buffers and its own partial dW
            d_buf, d_in = input_buffer(xp, F, B, OH, OW, (KH, KW), (1, 1), (QH, QW), (DH, DW), dout.dtype)
            dcols = column_buffer(xp, F * KH * KW, B * H * GW, dout.dtype)
            x_grid = xp.zeros((C, B, H, GW), dtype=x.dtype) if need_dw else None  # extra columns stay zero
            dw_t = xp.zeros((G, Fg * KH * KW, Cg), dtype=dout.dtype) if need_dw else None
            for n0 in range(n_start, n_stop, B):
                b = min(B, n_stop - n0)
                d_in[:, :b] = dout[n0:n0 + b].transpose(1, 0, 2, 3)
                dcols_b = im2col_cf(d_buf[:, :b], (KH, KW), (1, 1), (H, GW), dcols[:, :b * H * GW], self.dilation,
                                    OW, QW)
                dx_b = grouped_matmul(w_t, dcols_b, G).reshape(C, b, H, GW)[:, :, :, :W]
                dx[n0:n0 + b] = dx_b.transpose(1, 0, 2, 3)
                if need_dw:
                    x_grid[:, :b, :, :W] = x[n0:n0 + b].transpose(1, 0, 2, 3)
                    x_b = x_grid[:, :b].reshape(G, Cg, b * H * GW)
                    dw_t += dcols_b.reshape(G, Fg * KH * KW, b * H * GW) @ x_b.transpose(0, 2, 1)
            return dw_t

        parts = parallel.for_each_part(images, N, xp=xp)
        if not need_dw:
            return dx, None
        dw_t = parts[0]
        for part in parts[1:]:  # in a fixed order: the same sum on every run
            dw_t += part
        # dw_t[g, (f, i', j'), c] is dW[g*F/G + f, c, KH-1-i', KW-1-j']: unflip, and put c after f.
        dw = dw_t.reshape(G, Fg, KH, KW, Cg)[:, :, ::-1, ::-1].transpose(0, 1, 4, 2, 3)
        return dx, dw.reshape(self.weight.shape)

    def _input_grad_col2im(self, x_shape, dout):
        """dx = col2im(W_mat.T @ D), chunk by chunk (any stride)."""
        xp = get_array_module(dout)
        N, C, H, W = x_shape
        F, OH, OW = dout.shape[1:]
        G = self.groups
        (KH, KW), PW, DW = self.kernel_size, self.padding[1], self.dilation[1]
        GW = conv_grid_width(W, KW, self.stride, PW, DW)
        w_mat_t = self.weight.data.reshape(G, F // G, -1).transpose(0, 2, 1)   # (G, Cg*KH*KW, F/G)
        B = images_per_chunk(xp, N, C * KH * KW, OH * GW, dout.dtype.itemsize)

        dx = xp.empty(x_shape, dtype=dout.dtype)

        def images(n_start, n_stop):
            dx_buf, dx_in = input_buffer(xp, C, B, H, W, self.kernel_size, self.stride, self.padding, self.dilation,
                                         dout.dtype)
            d_grid = xp.zeros((F, B, OH, GW), dtype=dout.dtype)
            for n0 in range(n_start, n_stop, B):
                b = min(B, n_stop - n0)
                d_grid[:, :b, :, :OW] = dout[n0:n0 + b].transpose(1, 0, 2, 3)
                d_b = d_grid[:, :b].reshape(G, F // G, b * OH * GW)
                dcols = (w_mat_t @ d_b).reshape(C * KH * KW, b * OH * GW)           # W_mat.T @ D, group by group
                dx_buf[:, :b] = 0
                col2im_cf(dcols, dx_buf[:, :b], self.kernel_size, self.stride, (OH, GW), self.dilation, W, PW)
                dx[n0:n0 + b] = dx_in[:, :b].transpose(1, 0, 2, 3)

        parallel.for_each_part(images, N, xp=xp)
        return dx

    def extra_repr(self):
        extra = ""
        if self.dilation != (1, 1):
            extra += f", dilation={self.dilation}"
        if self.groups != 1:
            extra += f", groups={self.groups}"
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}{extra}, bias={self.bias is not None}")
