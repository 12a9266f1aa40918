"""A 1x1 convolution at stride 1 as one matrix product per image, straight on the (N, C, H, W) arrays.

The twin of ``conv.py``'s im2col route for the 1x1 convolutions of a
Bottleneck (ResNet-50 and deeper): the same results, to rounding, with no
copy of the input or the output. A 1x1 convolution mixes channels at each
pixel and nothing else, so image n's output is a matrix product of the
kernel with the image itself, read as a (C, H*W) matrix — which is what an
(N, C, H, W) array already holds, image after image:

    out[n] (F, H*W) = W (F, C) @ x[n] (C, H*W)
    dx[n]  (C, H*W) = W.T @ dout[n]
    dW     (F, C)   = sum over n of dout[n] @ x[n].T

The im2col route first copies the images channels-first (C, b*H*W) and,
after its one product per chunk, copies the output back: two passes over
memory that this route does not make. Each product has H*W columns, so the
route pays where images are large enough for a long product
(``MIN_POSITIONS``); on small maps (7x7: 49 columns) the chunked route's
products over several images stay faster.
"""

from ..backend import get_array_module
from . import threads

# Fewer output positions per image than this and a product per image is too short for BLAS to run at speed.
MIN_POSITIONS = 196


def applies(kernel_size, stride, padding, groups):
    """Whether the route exists: a 1x1 kernel, stride 1, no padding, no groups (dilation means nothing at 1x1)."""
    return kernel_size == (1, 1) and stride == (1, 1) and padding == (0, 0) and groups == 1


def pays(xp, kernel_size, stride, padding, groups, H, W):
    """Whether the engine takes the route by itself: where it applies, on NumPy, with images of at least
    ``MIN_POSITIONS`` pixels."""
    return applies(kernel_size, stride, padding, groups) and xp.__name__ == "numpy" and H * W >= MIN_POSITIONS


def conv2d(x, weight, bias=None):
    """out (N, F, H, W) of a 1x1 convolution at stride 1, one product per image, a share of the images per thread."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    F = weight.shape[0]
    w_mat = weight.reshape(F, C)
    out = xp.empty((N, F, H, W), dtype=x.dtype)
    images, outputs = x.reshape(N, C, H * W), out.reshape(N, F, H * W)

    def share(n0, n1):
        xp.matmul(w_mat, images[n0:n1], out=outputs[n0:n1])
        if bias is not None:
            outputs[n0:n1] += bias.reshape(F, 1)

    threads.for_each_part(share, N, xp=xp)
    return out


def conv2d_backward(x, weight, dout, need_input_grad=True, need_weight_grad=True):
    """(dx, dW) of ``conv2d``, either None when not asked for."""
    xp = get_array_module(dout)
    N, C, H, W = x.shape
    F = weight.shape[0]
    w_mat = weight.reshape(F, C)
    images, grads = x.reshape(N, C, H * W), dout.reshape(N, F, H * W)
    dx = xp.empty(x.shape, dtype=dout.dtype) if need_input_grad else None

    def share(n0, n1):  # one thread's images: dx written in place, dW summed image by image
        if need_input_grad:
            xp.matmul(w_mat.T, grads[n0:n1], out=dx.reshape(N, C, H * W)[n0:n1])
        if not need_weight_grad:
            return None
        dw, product = xp.zeros((F, C), dtype=dout.dtype), xp.empty((F, C), dtype=dout.dtype)
        for n in range(n0, n1):
            dw += xp.matmul(grads[n], images[n].T, out=product)
        return dw

    parts = threads.for_each_part(share, N, xp=xp)
    if not need_weight_grad:
        return dx, None
    dw = parts[0]
    for part in parts[1:]:  # in a fixed order: the same sum on every run
        dw += part
    return dx, dw.reshape(weight.shape)
