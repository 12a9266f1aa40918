"""The convolution in cache-sized chunks, on every core: the twins of ``layers/conv.py``'s functions.

``conv2d_im2col`` and ``conv2d_backward`` take the arguments of the plain
functions of the same names and give the same results. What is faster here:

* the batch goes through a few images at a time (``buffers.py``), its
  images' columns side by side in one (C*KH*KW, B*OH*GW) matrix
  (``flat_im2col.py``): one large product per chunk instead of one small
  product per image, and ``cols`` stays in cache. The backward pass
  recomputes cols from x rather than keeping KH*KW copies of every input
  alive between the passes;
* each thread takes a share of the images (``threads.py``), with buffers of
  its own, reused from chunk to chunk; partial weight gradients are added
  in a fixed order (the same bits on every run);
* at stride 1, dx is a convolution of dout with the flipped kernel, and the
  same im2col of dout gives dW (``transposed_conv.py``; ``route``).
"""

from ..backend import get_array_module
from ..checks import pair
from ..layers.im2col import conv_output_size
from . import pointwise, row_taps, threads, transposed_conv
from .buffers import column_buffer, images_per_chunk
from .flat_im2col import col2im_cf, conv_grid_width, grouped_matmul, im2col_cf, input_buffer


def geometry(weight, stride, padding, dilation, name):
    """(kernel_size, stride, padding, dilation) as pairs, from the weight's shape and the arguments."""
    return (tuple(weight.shape[2:]), pair(stride, "stride", name, 1), pair(padding, "padding", name, 0),
            pair(dilation, "dilation", name, 1))


def conv2d_im2col(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """out (N, F, OH, OW), as ``layers.conv.conv2d_im2col``.

    The images go through in chunks: each chunk is transposed to channels
    first into a zero-padded buffer (``input_buffer``), unrolled by im2col
    into cols (C*KH*KW, B*OH*GW), multiplied, and transposed back.
    """
    xp = get_array_module(x)
    kernel_size, stride, padding, dilation = geometry(weight, stride, padding, dilation, "conv2d_im2col")
    N, C, H, W = x.shape
    F = weight.shape[0]
    w_mat = weight.reshape(F, -1)                     # (F, C/G*KH*KW)
    (KH, KW), (SH, SW), (PH, PW), (DH, DW) = kernel_size, stride, padding, dilation
    OH = conv_output_size(H, DH * (KH - 1) + 1, SH, PH)
    OW = conv_output_size(W, DW * (KW - 1) + 1, SW, PW)
    GW = conv_grid_width(W, KW, stride, PW, DW)     # columns per output row in cols (see flat_im2col.py)
    image_bytes = padded_image_bytes(x.shape, padding, x.dtype.itemsize)
    B = images_per_chunk(xp, N, C * KH * KW, OH * GW, x.dtype.itemsize, image_bytes)

    if row_taps.pays(xp, C, F, kernel_size, stride, padding, dilation, groups):
        return row_taps.conv2d(x, weight, bias)
    if pointwise.pays(xp, kernel_size, stride, padding, groups, H, W):
        return pointwise.conv2d(x, weight, bias)
    out = xp.empty((N, F, OH, OW), dtype=x.dtype)

    def images(n_start, n_stop):  # one thread's share of the batch, with buffers of its own (no larger than it)
        Bt = min(B, n_stop - n_start)
        x_buf, x_in = input_buffer(xp, C, Bt, H, W, kernel_size, stride, padding, dilation, x.dtype)
        cols = column_buffer(xp, C * KH * KW, Bt * OH * GW, x.dtype)
        product = xp.empty(F * Bt * OH * GW, dtype=x.dtype)   # W_mat @ cols lands here: no new array per chunk
        for n0 in range(n_start, n_stop, B):
            b = min(B, n_stop - n0)
            x_in[:, :b] = x[n0:n0 + b].transpose(1, 0, 2, 3)   # the padding around stays zero
            cols_b = im2col_cf(x_buf[:, :b], kernel_size, stride, (OH, GW), cols[:, :b * OH * GW], dilation, W, PW)
            out_b = grouped_matmul(w_mat, cols_b, groups, product[:F * b * OH * GW].reshape(F, -1))
            out_b = out_b.reshape(F, b, OH, GW)[:, :, :, :OW]  # (F, b, OH, OW)
            if bias is not None:
                out_b += bias.reshape(F, 1, 1, 1)
            out[n0:n0 + b] = out_b.transpose(1, 0, 2, 3)

    threads.for_each_part(images, N, xp=xp)
    return out


def padded_image_bytes(shape, padding, itemsize):
    """The bytes of one zero-padded image (C, H + 2*PH, W + 2*PW): what ``input_buffer`` holds per image."""
    N, C, H, W = shape
    return C * (H + 2 * padding[0]) * (W + 2 * padding[1]) * itemsize


ROUTES = ("auto", "col2im", "transposed", "rows")


def conv2d_backward(x, weight, dout, stride=1, padding=0, dilation=1, groups=1, need_input_grad=True,
                    need_weight_grad=True, route="auto"):
    """(dx, dW), as ``layers.conv.conv2d_backward``; either is None when not asked for.

    ``route`` chooses how dx is computed: "col2im" (any stride: dcols =
    W_mat.T @ dout, then col2im), "transposed" (stride 1 only: a convolution of
    dout, ``transposed_conv.py``), "rows" (a "same" convolution at stride 1:
    the same, by kernel rows, ``row_taps.py``) or "auto" (the rows route
    where it applies and pays, ``row_taps.pays``; for a 1x1 convolution at
    stride 1 on large maps a product per image, ``pointwise.py``; else the
    transposed route where it applies and pays, ``transposed_conv.pays``).
    """
    kernel_size, stride, padding, dilation = geometry(weight, stride, padding, dilation, "conv2d_backward")
    if route not in ROUTES:
        raise ValueError(f"conv2d_backward: route must be one of {', '.join(ROUTES)}, got {route!r}")
    C, F = x.shape[1], weight.shape[0]
    if route == "rows":
        row_taps.check_applies(kernel_size, stride, padding, dilation, groups, "conv2d_backward")
    rows = row_taps.pays(get_array_module(dout), C, F, kernel_size, stride, padding, dilation, groups)
    if route == "rows" or (route == "auto" and rows):
        return row_taps.conv2d_backward(x, weight, dout, need_input_grad, need_weight_grad)
    if route == "auto" and pointwise.pays(get_array_module(dout), kernel_size, stride, padding, groups,
                                          *x.shape[2:]):
        return pointwise.conv2d_backward(x, weight, dout, need_input_grad, need_weight_grad)
    if route == "auto":
        transposed = transposed_conv.pays(C, F, kernel_size, stride, padding, dilation)
    else:
        transposed = route == "transposed"
        if transposed:
            transposed_conv.check_applies(kernel_size, stride, padding, dilation, "conv2d_backward")
    if need_input_grad and transposed:
        return transposed_conv.backward(x, weight, dout, padding, dilation, groups, need_weight_grad)
    dw = weight_grad(x, dout, weight.shape, stride, padding, dilation, groups) if need_weight_grad else None
    dx = input_grad_col2im(x.shape, weight, dout, stride, padding, dilation, groups) if need_input_grad else None
    return dx, dw


def weight_grad(x, dout, weight_shape, stride, padding, dilation, groups):
    """dW = dout @ cols.T, summed over chunks of images; cols recomputed from x."""
    xp = get_array_module(dout)
    N, C, H, W = x.shape
    F, OH, OW = dout.shape[1:]
    G = groups
    kernel_size = tuple(weight_shape[2:])
    (KH, KW), PW, DW = kernel_size, padding[1], dilation[1]
    GW = conv_grid_width(W, KW, stride, PW, DW)
    K = C // G * KH * KW
    image_bytes = padded_image_bytes(x.shape, padding, x.dtype.itemsize)
    B = images_per_chunk(xp, N, C * KH * KW, OH * GW, x.dtype.itemsize, image_bytes)

    def images(n_start, n_stop):  # one thread's share: its own buffers and its own partial sum
        Bt = min(B, n_stop - n_start)
        dw_t = xp.zeros((G, K, F // G), dtype=dout.dtype)       # dW transposed, group by group
        x_buf, x_in = input_buffer(xp, C, Bt, H, W, kernel_size, stride, padding, dilation, x.dtype)
        d_grid = xp.zeros((F, Bt, OH, GW), dtype=dout.dtype)    # junk columns stay zero: they add nothing
        cols = column_buffer(xp, C * KH * KW, Bt * OH * GW, x.dtype)
        for n0 in range(n_start, n_stop, B):
            b = min(B, n_stop - n0)
            d_grid[:, :b, :, :OW] = dout[n0:n0 + b].transpose(1, 0, 2, 3)
            d_b = d_grid[:, :b].reshape(G, F // G, b * OH * GW)              # dout's columns of these images
            x_in[:, :b] = x[n0:n0 + b].transpose(1, 0, 2, 3)
            cols_b = im2col_cf(x_buf[:, :b], kernel_size, stride, (OH, GW), cols[:, :b * OH * GW], dilation, W, PW)
            # cols @ dout.T rather than dout @ cols.T: the same numbers, but BLAS runs this
            # orientation about twice as fast when F is small (the result is tiny).
            dw_t += cols_b.reshape(G, K, b * OH * GW) @ d_b.transpose(0, 2, 1)
        return dw_t

    parts = threads.for_each_part(images, N, xp=xp)
    dw_t = parts[0]
    for part in parts[1:]:  # in a fixed order: the same sum on every run
        dw_t += part
    return dw_t.transpose(0, 2, 1).reshape(weight_shape)


def input_grad_col2im(x_shape, weight, dout, stride, padding, dilation, groups):
    """dx = col2im(W_mat.T @ dout), chunk by chunk (any stride)."""
    xp = get_array_module(dout)
    N, C, H, W = x_shape
    F, OH, OW = dout.shape[1:]
    G = groups
    kernel_size = tuple(weight.shape[2:])
    (KH, KW), PW, DW = kernel_size, padding[1], dilation[1]
    GW = conv_grid_width(W, KW, stride, PW, DW)
    w_mat_t = weight.reshape(G, F // G, -1).transpose(0, 2, 1)   # (G, Cg*KH*KW, F/G)
    image_bytes = padded_image_bytes(x_shape, padding, dout.dtype.itemsize)
    B = images_per_chunk(xp, N, C * KH * KW, OH * GW, dout.dtype.itemsize, image_bytes)

    dx = xp.empty(x_shape, dtype=dout.dtype)

    def images(n_start, n_stop):
        Bt = min(B, n_stop - n_start)
        dx_buf, dx_in = input_buffer(xp, C, Bt, H, W, kernel_size, stride, padding, dilation, dout.dtype)
        d_grid = xp.zeros((F, Bt, OH, GW), dtype=dout.dtype)
        for n0 in range(n_start, n_stop, B):
            b = min(B, n_stop - n0)
            d_grid[:, :b, :, :OW] = dout[n0:n0 + b].transpose(1, 0, 2, 3)
            d_b = d_grid[:, :b].reshape(G, F // G, b * OH * GW)
            dcols = (w_mat_t @ d_b).reshape(C * KH * KW, b * OH * GW)           # W_mat.T @ dout, group by group
            dx_buf[:, :b] = 0
            col2im_cf(dcols, dx_buf[:, :b], kernel_size, stride, (OH, GW), dilation, W, PW)
            dx[n0:n0 + b] = dx_in[:, :b].transpose(1, 0, 2, 3)

    threads.for_each_part(images, N, xp=xp)
    return dx
