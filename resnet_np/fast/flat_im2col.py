"""im2col on channels-first images, the batch's columns side by side: the twin of ``layers/im2col.py``.

``im2col_cf`` and ``col2im_cf`` compute what ``im2col`` and ``col2im`` do (the
same rows, the same numbers), in the layout the fast convolution
(``fast/conv.py``) multiplies fastest; ``tests/test_conv.py`` checks them
against the plain pair at paddings below, at and above the kernel's reach.
"""

from ..backend import get_array_module
from ..layers.im2col import conv_output_size

# ---------------------------------------------------------------------------
# The layout the fast Conv2d uses: images side by side in the columns.
#
# The plain ``im2col`` gives each image its own (C*KH*KW, OH*OW) matrix, so a
# batch costs N small matrix products. Putting the channel axis first,
# (C, N, H, W), lets the columns of all images sit side by side:
#
#     cols: (C*KH*KW, N*OH*GW)      out = W_mat @ cols:  (F, N*OH*GW)
#
# one large product, the shape BLAS is fastest at. The rows are the same as
# im2col's; the columns are ordered (image, oh, ow). fast/conv.py calls these on a
# few images at a time, so that ``cols`` (KH*KW times the size of its
# images) stays in the processor's cache instead of streaming through memory.
#
# GW, the number of columns per output row, is OW — except at stride 1,
# where the images are laid out so that every kernel tap is ONE contiguous
# run of memory (a memcpy, not a strided gather):
#
# * each image is flattened row by row with rows R = max(W, OW) long (R = W
#   for a "same" convolution such as ResNet's 3x3, padding 1), with PH rows
#   of zeros above and below, and its first pixel PW places in;
# * output position (oh, ow) under tap (i, j) then reads the flat index
#   (i*DH*R + j*DW) + (oh*R + ow): tap (i, j) of all the OH*R positions of
#   the grid is the run starting at i*DH*R + j*DW. So GW = R.
#
# A horizontal padding costs no memory: the column left of a row is the end
# of the row above. So a tap that looks dj = j*DW - PW columns sideways reads,
# at the |dj| positions of each row next to the edge, a pixel of the next or
# previous row where the padded image has a zero; those entries of cols are
# set to zero after the copy (``_zero_the_edges``; a few per row). Compared
# with rows as wide as the padded image (W + 2*PW, the obvious layout), the
# matrix product loses no columns to the padding: 2 of every 10 at 8x8,
# 2 of every 9 at 7x7 (measured: 11-20 % faster convolutions there).
# The R - OW positions of a row past OW, if any, are junk outputs,
# computed and dropped (their upstream gradient is set to zero).
# ---------------------------------------------------------------------------


def conv_grid_width(W, kernel_w, stride, padding_w, dilation_w=1):
    """GW: OW in general, the row length R = max(W, OW) of the flat layout at stride 1 (see above)."""
    OW = conv_output_size(W, dilation_w * (kernel_w - 1) + 1, stride[1], padding_w)
    return max(W, OW) if stride == (1, 1) else OW


def input_buffer(xp, C, B, H, W, kernel_size, stride, padding, dilation, dtype):
    """A zeroed buffer for B channels-first images, laid out for ``im2col_cf``, and the (C, B, H, W) view of it
    where the images go (the rest stays zero: the padding).

    At stride 1 the buffer is (C, B, L): each image flat, in rows of GW (see above); else (C, B, Hp, Wp).
    """
    KW, (PH, PW), DW = kernel_size[1], padding, dilation[1]
    if stride != (1, 1):
        buffer = xp.zeros((C, B, H + 2 * PH, W + 2 * PW), dtype=dtype)
        return buffer, buffer[:, :, PH:PH + H, PW:PW + W]
    R = conv_grid_width(W, KW, stride, PW, DW)
    first = PH * R + PW                                       # where the first pixel goes
    buffer = xp.zeros((C, B, (H + 2 * PH) * R + (KW - 1) * DW + PW), dtype=dtype)  # the last run's end, at least
    return buffer, buffer[:, :, first:first + H * R].reshape(C, B, H, R)[..., :W]


def padded_row_length(n, itemsize):
    """A row length >= n whose size in bytes is an odd multiple of 64, for a matrix BLAS reads row by row.

    Rows a multiple of 4 kB apart (1024 float32 columns, say: one 32x32 image)
    fall into the same few sets of the CPU's cache and evict each other: a
    product over such rows was measured 30 % slower. The extra columns are
    never read.
    """
    unit = max(1, 64 // itemsize)
    units = -(-n // unit)
    return (units + 1 - units % 2) * unit


def _zero_the_edges(taps, kernel_size, out_size, dilation, image_width, padding_w):
    """Zero the entries of tap (i, j) that read across a row's end in the flat layout (stride 1, see above).

    ``taps``: (C, KH, KW, B, OH*GW). At output column ow, tap j reads image
    column ow + dj, dj = j*DW - PW; outside 0..W-1 that is padding (a zero).
    """
    C, KH, KW, B, _ = taps.shape
    (OH, GW), DW, W = out_size, dilation[1], image_width
    grid = taps.reshape(C, KH, KW, B, OH, GW)
    for j in range(KW):
        dj = j * DW - padding_w
        if dj < 0:
            grid[:, :, j, :, :, :min(-dj, GW)] = 0
        elif dj > 0:
            grid[:, :, j, :, :, max(W - dj, 0):] = 0


def im2col_cf(x_buf, kernel_size, stride, out_size, cols=None, dilation=(1, 1), image_width=None, padding_w=0):
    """An ``input_buffer`` (C, B, ...) -> cols (C*KH*KW, B*OH*GW); out_size is (OH, GW).

    ``cols``, if given, is a buffer of that shape to fill (reused between calls).
    With a dilation (DH, DW), kernel tap (i, j) reads the pixel (i*DH, j*DW)
    away from the window's corner instead of (i, j): the taps spread out, the
    copies stay the same. At stride 1, ``image_width`` (W) and ``padding_w``
    (PW) say which entries cross a row's end (``_zero_the_edges``).
    """
    xp = get_array_module(x_buf)
    C, B = x_buf.shape[:2]
    (KH, KW), (SH, SW), (OH, GW), (DH, DW) = kernel_size, stride, out_size, dilation
    if cols is None:
        cols = xp.empty((C * KH * KW, B * OH * GW), dtype=x_buf.dtype)
    if stride == (1, 1):
        taps = cols.reshape(C, KH, KW, B, OH * GW)
        for i in range(KH):
            for j in range(KW):
                start = i * DH * GW + j * DW
                taps[:, i, j] = x_buf[:, :, start:start + OH * GW]
        _zero_the_edges(taps, kernel_size, out_size, dilation, image_width, padding_w)
    else:
        taps = cols.reshape(C, KH, KW, B, OH, GW)
        for i in range(KH):
            for j in range(KW):
                taps[:, i, j] = x_buf[:, :, i * DH:i * DH + SH * OH:SH, j * DW:j * DW + SW * GW:SW]
    return cols


def col2im_cf(dcols, dx_buf, kernel_size, stride, out_size, dilation=(1, 1), image_width=None, padding_w=0):
    """The adjoint of ``im2col_cf``: adds cols (C*KH*KW, B*OH*GW) into an ``input_buffer`` dx_buf.

    ``dx_buf`` must start at zero; pixels under several windows collect the
    sum. At stride 1 the entries ``im2col_cf`` zeroes are zeroed in ``dcols``
    first (so ``dcols`` is changed): they belong to no pixel.
    """
    C, B = dx_buf.shape[:2]
    (KH, KW), (SH, SW), (OH, GW), (DH, DW) = kernel_size, stride, out_size, dilation
    if stride == (1, 1):
        taps = dcols.reshape(C, KH, KW, B, OH * GW)
        _zero_the_edges(taps, kernel_size, out_size, dilation, image_width, padding_w)
        for i in range(KH):
            for j in range(KW):
                start = i * DH * GW + j * DW
                dx_buf[:, :, start:start + OH * GW] += taps[:, i, j]
    else:
        taps = dcols.reshape(C, KH, KW, B, OH, GW)
        for i in range(KH):
            for j in range(KW):
                dx_buf[:, :, i * DH:i * DH + SH * OH:SH, j * DW:j * DW + SW * GW:SW] += taps[:, i, j]
    return dx_buf


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
