"""A "same" convolution at stride 1 as KH matrix products over KW shifted copies: the 3x3 convolutions of a ResNet.

The twin of ``conv.py``'s im2col route for the convolutions ResNet is made
of (3x3, stride 1, padding 1): the same results (to rounding), fewer
copies. im2col copies the input KH*KW times (nine for 3x3) and multiplies
once. Here the input is copied only KW times (three), each copy shifted
sideways by one tap; a shift by a whole row needs no copy at all, because
in a flat layout it is a view that starts W places later. So the
convolution is KH products, one per kernel row, whose sum is the output
(computed as one product of the stacked kernel rows, see
``sum_of_row_products``):

    out = sum over i of  W_i @ taps[:, i*W : i*W + L]
          W_i:  (F, KW*C)   kernel row i, columns ordered (j, c)
          taps: (KW*C, ...)  copy j = the images shifted j - PW places

The layout (one chunk of b images, one row of the buffer per channel):
PH rows of zeros, image 0, PH rows of zeros, image 1, ..., image b-1, 2*PH
rows of zeros, every row W long, with PW zeros before the first and after
the last. The PH zero rows between two images are the bottom padding of
one and the top padding of the next. Output row r of image k sits at
position q = (k*(H+PH) + r)*W + c; it reads input pixel (r+i-PH, c+j-PW)
at q + i*W + j of the buffer, which is taps[j*C + ch, q + i*W]. The PH
rows after each image are computed and dropped (PH/(H+PH) of the product:
1/33 at 32x32, 1/9 at 8x8). A tap that looks sideways past a row's end
reads the neighbouring row instead of the padding: those entries of the
copy (a column or two of each row) are set to zero.

Measured here (one thread, 64 images, float32, OpenBLAS Haswell kernel),
against the im2col route including its transposes, with KH separate
products: the forward pass 8.2 ms against 10.3 at 16 channels 32x32, 6.9
against 8.2 at 32 channels 16x16; dx and dW together 13.7 against 18.7 and
11.4 against 14.4. The products read the same copies from the cache (a
chunk's copies fill a megabyte), and the two extra additions of an (F, L)
block cost less than six more copies of the input. Taking the KH products
as one stacked product made the forward pass and dx another 0-20 % faster.

The backward pass: a "same" convolution's dx is the same kind of
convolution of dout, with the kernel rotated by 180 degrees and its
channels swapped (``transposed_conv.py`` derives it); and the shifted copies
of dout give dW as well:

    dW[:, :, KH-1-i, KW-1-j] (F, C) = taps_dout[j*F : (j+1)*F, i*W : i*W + L] @ x_grid.T

where x_grid is x laid out as the outputs (its PH extra rows per image zero,
so that they add nothing).

Only on the CPU (NumPy): on a GPU, one im2col product over the batch is
what the hardware is best at.
"""

from ..backend import get_array_module
from . import threads

# How many bytes the shifted copies of one chunk may fill: small enough to stay in the cache while the stacked
# product (as large again) is written and added up, large enough for long products. Measured here with two
# threads, alternating against the KH separate products with 2 MB chunks (the route before): 1 MB chunks with the
# stacked product 0.79-0.97x the time at 16 channels 32x32 and 0.84-1.01x at 32 channels 16x16 (forward and
# backward, batch 32 and 128, three runs), even at 64 channels 8x8 (0.95-1.08x); 2 MB chunks with the stacked
# product were mixed (0.91-1.17x); ResNet-18's 64 and 128 channels at batch 16 even (0.87-1.07x). Before, with KH
# products: 0.5 MB 40 % slower at 16 channels, 8 MB 35 %.
CHUNK_BYTES = 2 ** 20
# Fewer channels than this and the products are too thin to pay for the copies (a stem's 3 colour channels:
# its weight gradient took twice as long as by im2col). More than MAX_CHANNELS and im2col's one long product
# is fast enough that its copies matter less than the additions here (batch 16, two threads: 64 and 128
# channels at 56x56 and 28x28 7-15 % faster by rows, 256 at 14x14 3-5 % slower, 512 at 7x7 27 % slower).
MIN_CHANNELS = 8
MAX_CHANNELS = 128


def applies(kernel_size, stride, padding, dilation, groups):
    """Whether the route exists: an odd kernel larger than 1x1, stride 1, padding (K-1)/2, no dilation or groups."""
    (KH, KW), (PH, PW) = kernel_size, padding
    return (stride == (1, 1) and dilation == (1, 1) and groups == 1 and KH % 2 == 1 and KW % 2 == 1
            and KH * KW > 1 and PH == KH // 2 and PW == KW // 2)


def check_applies(kernel_size, stride, padding, dilation, groups, name):
    if not applies(kernel_size, stride, padding, dilation, groups):
        raise ValueError(f"{name}: the rows backward route needs an odd kernel with padding (kernel-1)/2, stride 1, "
                         f"no dilation and no groups, got kernel {kernel_size}, stride {stride}, padding {padding}, "
                         f"dilation {dilation}, groups {groups}; use backward_route='auto'")


def pays(xp, in_channels, out_channels, kernel_size, stride, padding, dilation, groups):
    """Whether the engine takes the route by itself: where it applies, on NumPy, with ``MIN_CHANNELS`` to
    ``MAX_CHANNELS`` channels in and out."""
    return (applies(kernel_size, stride, padding, dilation, groups) and xp.__name__ == "numpy"
            and MIN_CHANNELS <= min(in_channels, out_channels) and max(in_channels, out_channels) <= MAX_CHANNELS)


def images_per_chunk(N, channels, H, W, kernel_size, itemsize):
    """How many images' shifted copies fit in ``CHUNK_BYTES`` (at least one)."""
    PH, KW = kernel_size[0] // 2, kernel_size[1]
    per_image = KW * channels * (H + PH) * W * itemsize
    return max(1, min(N, CHUNK_BYTES // per_image))


class Chunk:
    """The buffers of one thread: the padded images, their KW shifted copies, the product and its partial sums.

    ``load(images)`` writes b images (b, C, H, W) into the padded layout and
    makes the copies; ``taps`` is then (KW*C, b*(H+PH)*W + 2*PH*W) and
    ``rows(i, b)`` the view of it that kernel row i multiplies.
    """

    def __init__(self, xp, C, B, H, W, kernel_size, dtype):
        KH, KW = kernel_size
        self.xp, self.C, self.H, self.W, self.KW = xp, C, H, W, KW
        self.PH, self.PW = KH // 2, KW // 2
        self.length = B * (H + self.PH) * W            # output positions of a full chunk, dropped rows included
        span = self.length + 2 * self.PH * W           # what the KH products read of each copy
        self.padded = xp.zeros((C, self.PW + span + self.PW), dtype=dtype)
        self.taps = xp.empty((KW * C, span), dtype=dtype)

    def images_view(self, b):
        """(C, b, H, W): where b images go in the padded buffer (the zero rows around stay zero)."""
        start = self.PW + self.PH * self.W
        rows = self.padded[:, start:start + b * (self.H + self.PH) * self.W]
        return rows.reshape(self.C, b, self.H + self.PH, self.W)[:, :, :self.H]

    def load(self, images):
        """The shifted copies of ``images`` (b, C, H, W); returns b."""
        b, C, W = len(images), self.C, self.W
        self.images_view(b)[...] = images.transpose(1, 0, 2, 3)
        span = b * (self.H + self.PH) * W + 2 * self.PH * W
        for j in range(self.KW):
            self.taps[j * C:(j + 1) * C, :span] = self.padded[:, j:j + span]
            dj = j - self.PW                # how far tap j looks sideways: past a row's end is padding, not a pixel
            grid = self.taps[j * C:(j + 1) * C, :span].reshape(C, -1, W)
            if dj < 0:
                grid[:, :, :-dj] = 0
            elif dj > 0:
                grid[:, :, W - dj:] = 0
        return b

    def rows(self, i, b):
        """(KW*C, b*(H+PH)*W): the copies as kernel row i reads them."""
        start = i * self.W
        return self.taps[:, start:start + b * (self.H + self.PH) * self.W]


def kernel_rows(weight):
    """(KH, F, KW*C): kernel row i as the matrix W_i, its columns ordered (j, c) as the copies' rows."""
    F, C, KH, KW = weight.shape
    return weight.transpose(2, 0, 3, 1).reshape(KH, F, KW * C)


def sum_of_row_products(w_rows, chunk, b, out, stacked):
    """out (F, L) = sum over i of w_rows[i] @ chunk.rows(i, b), L = b*(H+PH)*W.

    Taken as one product: the KH kernel rows stacked (KH*F, KW*C) times all
    the copies, then the KH row blocks of ``stacked`` (KH*F, L + 2*PH*W) added,
    block i shifted i*W places (the view ``rows(i, b)`` would have started
    there). One product of KH*F rows packs the copies once, where KH products
    of F rows packed them KH times; OpenBLAS runs products of 16-32 rows well
    under its best (one thread, batch 64: 7.2 -> 6.3 ms at 16 channels 32x32,
    6.3 -> 5.5 at 32 channels 16x16, additions included).
    """
    xp, W = chunk.xp, chunk.W
    KH, F, _ = w_rows.shape
    L = out.shape[1]
    span = L + (KH - 1) * W
    if KH == 1:
        return xp.matmul(w_rows[0], chunk.taps[:, :span], out=out)
    xp.matmul(w_rows.reshape(KH * F, -1), chunk.taps[:, :span], out=stacked[:, :span])
    xp.add(stacked[:F, :L], stacked[F:2 * F, W:W + L], out=out)
    for i in range(2, KH):
        out += stacked[i * F:(i + 1) * F, i * W:i * W + L]
    return out


def conv2d(x, weight, bias=None):
    """out (N, F, H, W): the convolution of x (N, C, H, W) with an odd kernel, stride 1, padding (K-1)/2."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    F, _, KH, KW = weight.shape
    PH = KH // 2
    w_rows = kernel_rows(weight)
    B = images_per_chunk(N, C, H, W, (KH, KW), x.dtype.itemsize)
    out = xp.empty((N, F, H, W), dtype=x.dtype)

    def images(n_start, n_stop):  # one thread's share, with buffers of its own
        chunk = Chunk(xp, C, min(B, n_stop - n_start), H, W, (KH, KW), x.dtype)
        product = xp.empty((F, chunk.length), dtype=x.dtype)
        stacked = xp.empty((KH * F, chunk.taps.shape[1]), dtype=x.dtype)
        for n0 in range(n_start, n_stop, B):
            b = chunk.load(x[n0:min(n0 + B, n_stop)])
            L = b * (H + PH) * W
            out_b = sum_of_row_products(w_rows, chunk, b, product[:, :L], stacked)
            out_b = out_b.reshape(F, b, H + PH, W)[:, :, :H]
            if bias is not None:
                out_b += bias.reshape(F, 1, 1, 1)
            out[n0:n0 + b] = out_b.transpose(1, 0, 2, 3)

    threads.for_each_part(images, N, xp=xp)
    return out


def conv2d_backward(x, weight, dout, need_input_grad=True, need_weight_grad=True):
    """(dx, dW) of ``conv2d``, either None when not asked for, from the shifted copies of dout alone."""
    xp = get_array_module(dout)
    N, C, H, W = x.shape
    F, _, KH, KW = weight.shape
    PH = KH // 2
    # dx is the same convolution of dout with the kernel turned by 180 degrees, in and out channels swapped.
    w_rows = kernel_rows(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)) if need_input_grad else None
    B = images_per_chunk(N, F, H, W, (KH, KW), dout.dtype.itemsize)
    dx = xp.empty(x.shape, dtype=dout.dtype) if need_input_grad else None

    def images(n_start, n_stop):  # one thread's share: its own buffers and its own partial dW
        chunk = Chunk(xp, F, min(B, n_stop - n_start), H, W, (KH, KW), dout.dtype)
        dw_rows = xp.zeros((KH, KW * F, C), dtype=dout.dtype) if need_weight_grad else None
        x_grid = xp.zeros((C, chunk.length), dtype=x.dtype) if need_weight_grad else None  # dropped rows stay 0
        if need_input_grad:
            product = xp.empty((C, chunk.length), dtype=dout.dtype)
            stacked = xp.empty((KH * C, chunk.taps.shape[1]), dtype=dout.dtype)
        for n0 in range(n_start, n_stop, B):
            b = chunk.load(dout[n0:min(n0 + B, n_stop)])
            L = b * (H + PH) * W
            if need_input_grad:
                dx_b = sum_of_row_products(w_rows, chunk, b, product[:, :L], stacked)
                dx[n0:n0 + b] = dx_b.reshape(C, b, H + PH, W)[:, :, :H].transpose(1, 0, 2, 3)
            if need_weight_grad:
                x_grid[:, :L].reshape(C, b, H + PH, W)[:, :, :H] = x[n0:n0 + b].transpose(1, 0, 2, 3)
                for i in range(KH):
                    dw_rows[i] += chunk.rows(i, b) @ x_grid[:, :L].T
        return dw_rows

    parts = threads.for_each_part(images, N, xp=xp)
    if not need_weight_grad:
        return dx, None
    dw_rows = parts[0]
    for part in parts[1:]:  # in a fixed order: the same sum on every run
        dw_rows += part
    # dw_rows[i, (j, f), c] is dW[f, c, KH-1-i, KW-1-j]: unflip, and order the axes as the weight's.
    dw = dw_rows.reshape(KH, KW, F, C)[::-1, ::-1].transpose(2, 3, 0, 1)
    return dx, xp.ascontiguousarray(dw)
