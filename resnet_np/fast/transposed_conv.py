"""The backward pass of a stride-1 convolution as a convolution of dout (the "transposed convolution").

The plain backward computes dx in two steps: dcols = W_mat.T @ dout (a product
whose inner dimension is F), then col2im's KH*KW additions. At stride 1
each input pixel receives W[f, c, i, j] * dout from the output KH-1-i rows
and KW-1-j columns away, so dx is itself a convolution — of dout, padded
by Q = dilation*(K-1) - P, with the kernel flipped (rotated 180 degrees) and its
in/out channels swapped. That costs one im2col (copies) and one product
whose inner dimension is F*KH*KW — and the same im2col of dout gives dW
too (``backward``). It gives the plain backward's dx and dW, to rounding.
"""

from ..backend import get_array_module
from . import threads
from .buffers import column_buffer, images_per_chunk
from .flat_im2col import conv_grid_width, grouped_matmul, im2col_cf, input_buffer


def applies(kernel_size, stride, padding, dilation):
    """Whether the route exists: stride 1 and padding P <= dilation*(K-1) (else dout's padding would be negative)."""
    (KH, KW), (PH, PW), (DH, DW) = kernel_size, padding, dilation
    return stride == (1, 1) and PH <= DH * (KH - 1) and PW <= DW * (KW - 1)


def check_applies(kernel_size, stride, padding, dilation, name):
    if not applies(kernel_size, stride, padding, dilation):
        raise ValueError(f"{name}: the transposed backward route needs stride 1 and padding <= dilation*(kernel-1), "
                         f"got kernel {kernel_size}, stride {stride}, padding {padding}, dilation {dilation}; "
                         f"use backward_route='col2im' or 'auto'")


def pays(in_channels, out_channels, kernel_size, stride, padding, dilation):
    """Whether "auto" takes this route: where it applies, and dout's im2col (F*KH*KW rows) is not much bigger
    than the input's (C*KH*KW rows) — not for a stem that turns 3 colour channels into 16 or 64 maps."""
    return applies(kernel_size, stride, padding, dilation) and 2 * in_channels >= out_channels


def transposed_kernel(weight, groups):
    """The kernel of the transposed convolution, as a matrix (C, F/G*KH*KW).

    w_t[g*C/G + c, (f, i, j)] = W[g*F/G + f, c, KH-1-i, KW-1-j]: rotated by
    180 degrees, input and output channels swapped within each group.
    """
    F, Cg, KH, KW = weight.shape
    w_flip = weight[:, :, ::-1, ::-1].reshape(groups, F // groups, Cg, KH, KW)
    return w_flip.transpose(0, 2, 1, 3, 4).reshape(groups * Cg, (F // groups) * KH * KW)


def backward(x, weight, dout, padding, dilation, groups, need_dw):
    """dx and dW (None without ``need_dw``) of a stride-1 convolution, both from ONE im2col: that of dout.

    dx is the convolution of dout (padded by Q = dilation*(K-1) - P) with the
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
    G = groups
    Cg, Fg = C // G, F // G
    KH, KW = weight.shape[2:]
    (PH, PW), (DH, DW) = padding, dilation
    QH, QW = DH * (KH - 1) - PH, DW * (KW - 1) - PW      # dout's padding
    GW = conv_grid_width(OW, KW, (1, 1), QW, DW)          # dcols' columns per row of dx (W of them useful)
    w_t = transposed_kernel(weight, G)                    # (C, F/G*KH*KW)
    B = images_per_chunk(xp, N, F * KH * KW, H * GW, dout.dtype.itemsize)
    dx = xp.empty(x.shape, dtype=dout.dtype)

    def images(n_start, n_stop):  # one thread's share: its own buffers (no larger than it) and its own partial dW
        Bt = min(B, n_stop - n_start)
        d_buf, d_in = input_buffer(xp, F, Bt, OH, OW, (KH, KW), (1, 1), (QH, QW), (DH, DW), dout.dtype)
        dcols = column_buffer(xp, F * KH * KW, Bt * H * GW, dout.dtype)
        x_grid = xp.zeros((C, Bt, H, GW), dtype=x.dtype) if need_dw else None  # extra columns stay zero
        dw_t = xp.zeros((G, Fg * KH * KW, Cg), dtype=dout.dtype) if need_dw else None
        for n0 in range(n_start, n_stop, B):
            b = min(B, n_stop - n0)
            d_in[:, :b] = dout[n0:n0 + b].transpose(1, 0, 2, 3)
            dcols_b = im2col_cf(d_buf[:, :b], (KH, KW), (1, 1), (H, GW), dcols[:, :b * H * GW], dilation, OW, QW)
            dx_b = grouped_matmul(w_t, dcols_b, G).reshape(C, b, H, GW)[:, :, :, :W]
            dx[n0:n0 + b] = dx_b.transpose(1, 0, 2, 3)
            if need_dw:
                x_grid[:, :b, :, :W] = x[n0:n0 + b].transpose(1, 0, 2, 3)
                x_b = x_grid[:, :b].reshape(G, Cg, b * H * GW)
                dw_t += dcols_b.reshape(G, Fg * KH * KW, b * H * GW) @ x_b.transpose(0, 2, 1)
        return dw_t

    parts = threads.for_each_part(images, N, xp=xp)
    if not need_dw:
        return dx, None
    dw_t = parts[0]
    for part in parts[1:]:  # in a fixed order: the same sum on every run
        dw_t += part
    # dw_t[g, (f, i', j'), c] is dW[g*F/G + f, c, KH-1-i', KW-1-j']: unflip, and put c after f.
    dw = dw_t.reshape(G, Fg, KH, KW, Cg)[:, :, ::-1, ::-1].transpose(0, 1, 4, 2, 3)
    return dx, dw.reshape(weight.shape)
