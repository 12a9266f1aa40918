"""im2col and col2im: turning a convolution into one matrix product.

A convolution slides a KH x KW window over the (padded) input. im2col copies
every window into a column, so that the whole convolution becomes

    out[n] = W_mat @ cols[n]        W_mat: (F, C*KH*KW)   cols[n]: (C*KH*KW, OH*OW)

Rather than looping over the OH*OW output positions (many small copies), we
loop over the KH*KW kernel offsets: for the offset (i, j), the input pixels
that meet kernel tap (i, j) form ONE strided slice of the padded input,
``x_pad[:, :, i : i + SH*OH : SH, j : j + SW*OW : SW]``. So im2col is KH*KW
big copies, and col2im — its adjoint, used by the backward pass — is KH*KW
big additions of a slice. Overlapping windows (stride < kernel) simply add
into the same pixels one offset after the other: no ``np.add.at`` (slow on
the CPU, atomic and non-deterministic on the GPU), and the result is the
same bit for bit on every run.
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


def im2col(x, kernel_size, stride, padding):
    """(N, C, H, W) -> cols of shape (N, C*KH*KW, OH*OW).

    Row ``c*KH*KW + i*KW + j`` of ``cols[n]`` holds, for every output
    position, the input pixel under kernel tap (i, j) of channel c — the
    same order as a weight of shape (F, C, KH, KW) flattened to (F, C*KH*KW).
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    (KH, KW), (SH, SW), (PH, PW) = kernel_size, stride, padding
    OH = conv_output_size(H, KH, SH, PH)
    OW = conv_output_size(W, KW, SW, PW)
    x_pad = pad2d(x, PH, PW)
    cols = xp.empty((N, C, KH, KW, OH, OW), dtype=x.dtype)
    for i in range(KH):
        for j in range(KW):
            cols[:, :, i, j] = x_pad[:, :, i:i + SH * OH:SH, j:j + SW * OW:SW]
    return cols.reshape(N, C * KH * KW, OH * OW)


def col2im(cols, x_shape, kernel_size, stride, padding):
    """The adjoint of ``im2col``: (N, C*KH*KW, OH*OW) -> (N, C, H, W).

    Each column entry is added back to the input pixel it was copied from;
    a pixel shared by several windows receives the sum of their entries.
    """
    xp = get_array_module(cols)
    N, C, H, W = x_shape
    (KH, KW), (SH, SW), (PH, PW) = kernel_size, stride, padding
    OH = conv_output_size(H, KH, SH, PH)
    OW = conv_output_size(W, KW, SW, PW)
    cols = cols.reshape(N, C, KH, KW, OH, OW)
    dx_pad = xp.zeros((N, C, H + 2 * PH, W + 2 * PW), dtype=cols.dtype)
    for i in range(KH):
        for j in range(KW):
            dx_pad[:, :, i:i + SH * OH:SH, j:j + SW * OW:SW] += cols[:, :, i, j]
    if PH == 0 and PW == 0:
        return dx_pad
    return dx_pad[:, :, PH:PH + H, PW:PW + W]


# ---------------------------------------------------------------------------
# The layout the Conv2d layer uses: images side by side in the columns.
#
# ``im2col`` above gives each image its own (C*KH*KW, OH*OW) matrix, so a
# batch costs N small matrix products. Putting the channel axis first,
# (C, N, H, W), lets the columns of all images sit side by side:
#
#     cols: (C*KH*KW, N*OH*GW)      out = W_mat @ cols:  (F, N*OH*GW)
#
# one large product, the shape BLAS is fastest at. The rows are the same as
# im2col's; the columns are ordered (image, oh, ow). Conv2d calls these on a
# few images at a time, so that ``cols`` (KH*KW times the size of its
# images) stays in the processor's cache instead of streaming through memory.
#
# GW, the number of columns per output row, is OW — except at stride 1,
# where it is the padded width Wp. Then output position (oh, ow) under tap
# (i, j) reads pixel (oh + i, ow + j): in the image flattened row by row,
# that is index (i*Wp + j) + (oh*Wp + ow). So tap (i, j) of every position
# of the wide (OH, Wp) grid is ONE contiguous run of the flattened image,
# starting at i*Wp + j: the copy is a memcpy, not a strided gather. The
# Wp - OW extra positions of each row straddle the right edge; their outputs
# are junk, computed and dropped (their upstream gradient is set to zero).
# The last run reads KW - 1 values past the image, so the padded buffer has
# one spare row.
# ---------------------------------------------------------------------------


def conv_grid_width(W, kernel_w, stride, padding_w, dilation_w=1):
    """GW: OW in general, the padded width W + 2*PW at stride 1 (see above)."""
    if stride == (1, 1):
        return W + 2 * padding_w
    return conv_output_size(W, dilation_w * (kernel_w - 1) + 1, stride[1], padding_w)


def im2col_cf(x_pad, kernel_size, stride, out_size, cols=None, dilation=(1, 1)):
    """Padded channels-first (C, B, Hp + 1, Wp) -> cols (C*KH*KW, B*OH*GW); out_size is (OH, GW).

    ``cols``, if given, is a buffer of that shape to fill (reused between calls).
    With a dilation (DH, DW), kernel tap (i, j) reads the pixel (i*DH, j*DW)
    away from the window's corner instead of (i, j): the taps spread out, the
    copies stay the same.
    """
    xp = get_array_module(x_pad)
    C, B, _, Wp = x_pad.shape
    (KH, KW), (SH, SW), (OH, GW), (DH, DW) = kernel_size, stride, out_size, dilation
    if cols is None:
        cols = xp.empty((C * KH * KW, B * OH * GW), dtype=x_pad.dtype)
    if stride == (1, 1):
        flat = x_pad.reshape(C, B, -1)                      # each image one row of pixels
        taps = cols.reshape(C, KH, KW, B, OH * GW)
        for i in range(KH):
            for j in range(KW):
                start = i * DH * Wp + j * DW
                taps[:, i, j] = flat[:, :, start:start + OH * GW]
    else:
        taps = cols.reshape(C, KH, KW, B, OH, GW)
        for i in range(KH):
            for j in range(KW):
                taps[:, i, j] = x_pad[:, :, i * DH:i * DH + SH * OH:SH, j * DW:j * DW + SW * GW:SW]
    return cols


def col2im_cf(dcols, dx_pad, kernel_size, stride, out_size, dilation=(1, 1)):
    """The adjoint of ``im2col_cf``: adds cols (C*KH*KW, B*OH*GW) into dx_pad (C, B, Hp + 1, Wp).

    ``dx_pad`` must start at zero; pixels under several windows collect the sum.
    """
    C, B, _, Wp = dx_pad.shape
    (KH, KW), (SH, SW), (OH, GW), (DH, DW) = kernel_size, stride, out_size, dilation
    if stride == (1, 1):
        flat = dx_pad.reshape(C, B, -1)
        taps = dcols.reshape(C, KH, KW, B, OH * GW)
        for i in range(KH):
            for j in range(KW):
                start = i * DH * Wp + j * DW
                flat[:, :, start:start + OH * GW] += taps[:, i, j]
    else:
        taps = dcols.reshape(C, KH, KW, B, OH, GW)
        for i in range(KH):
            for j in range(KW):
                dx_pad[:, :, i * DH:i * DH + SH * OH:SH, j * DW:j * DW + SW * GW:SW] += taps[:, i, j]
    return dx_pad
