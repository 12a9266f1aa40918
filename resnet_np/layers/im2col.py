"""im2col and col2im: turning a convolution into one matrix product (derived in lesson 02; col2im in lesson 03).

A convolution slides a KH x KW window over the (padded) input. im2col copies
every window into a column, so that the whole convolution becomes

    out[n] = W_mat @ cols[n]        (W_mat: (F, C*KH*KW), cols[n]: (C*KH*KW, OH*OW))

Rather than looping over the OH*OW output positions (many small copies), we
loop over the KH*KW kernel offsets: for the offset (i, j), the input pixels
that meet kernel tap (i, j) form ONE strided slice of the padded input,
``x_pad[:, :, i : i + SH*OH : SH, j : j + SW*OW : SW]``. So im2col is KH*KW
big copies, and col2im — its adjoint, used by the backward pass — is KH*KW
big additions of a slice. Overlapping windows (stride < kernel) simply add
into the same pixels one offset after the other: no ``np.add.at`` (slow on
the CPU, atomic and non-deterministic on the GPU), and the result is the
same bit for bit on every run.

(``resnet_np/fast/flat_im2col.py`` computes the same matrix in the layout
the fast convolution multiplies fastest.)
"""

from ..backend import get_array_module


def conv_output_size(size, kernel, stride, padding):
    """Output length along one axis: floor((size + 2*padding - kernel) / stride) + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def pad2d(x, ph, pw, value=0.0):
    """Pad the last two axes of an (N, C, H, W) array by (ph, pw) on each side."""
    if ph == 0 and pw == 0:
        return x
    xp = get_array_module(x)
    N, C, H, W = x.shape
    out = xp.full((N, C, H + 2 * ph, W + 2 * pw), value, dtype=x.dtype)
    out[:, :, ph:ph + H, pw:pw + W] = x
    return out


def im2col(x, kernel_size, stride, padding, dilation=(1, 1)):
    """(N, C, H, W) -> cols of shape (N, C*KH*KW, OH*OW).

    Row ``c*KH*KW + i*KW + j`` of ``cols[n]`` holds, for every output
    position, the input pixel under kernel tap (i, j) of channel c — the
    same order as a weight of shape (F, C, KH, KW) flattened to (F, C*KH*KW).
    With a dilation (DH, DW), tap (i, j) reads the pixel (i*DH, j*DW) away
    from the window's corner instead of (i, j).
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    (KH, KW), (SH, SW), (PH, PW), (DH, DW) = kernel_size, stride, padding, dilation
    OH = conv_output_size(H, DH * (KH - 1) + 1, SH, PH)
    OW = conv_output_size(W, DW * (KW - 1) + 1, SW, PW)
    x_pad = pad2d(x, PH, PW)
    cols = xp.empty((N, C, KH, KW, OH, OW), dtype=x.dtype)
    for i in range(KH):
        for j in range(KW):
            cols[:, :, i, j] = x_pad[:, :, i * DH:i * DH + SH * OH:SH, j * DW:j * DW + SW * OW:SW]
    return cols.reshape(N, C * KH * KW, OH * OW)


def col2im(cols, x_shape, kernel_size, stride, padding, dilation=(1, 1)):
    """The adjoint of ``im2col``: (N, C*KH*KW, OH*OW) -> (N, C, H, W).

    Each column entry is added back to the input pixel it was copied from;
    a pixel shared by several windows receives the sum of their entries.
    """
    xp = get_array_module(cols)
    N, C, H, W = x_shape
    (KH, KW), (SH, SW), (PH, PW), (DH, DW) = kernel_size, stride, padding, dilation
    OH = conv_output_size(H, DH * (KH - 1) + 1, SH, PH)
    OW = conv_output_size(W, DW * (KW - 1) + 1, SW, PW)
    cols = cols.reshape(N, C, KH, KW, OH, OW)
    dx_pad = xp.zeros((N, C, H + 2 * PH, W + 2 * PW), dtype=cols.dtype)
    for i in range(KH):
        for j in range(KW):
            dx_pad[:, :, i * DH:i * DH + SH * OH:SH, j * DW:j * DW + SW * OW:SW] += cols[:, :, i, j]
    return dx_pad[:, :, PH:PH + H, PW:PW + W]
