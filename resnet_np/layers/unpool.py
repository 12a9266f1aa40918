"""Max unpooling: PyTorch's ``MaxUnpool2d``, the partial inverse of ``MaxPool2d(return_indices=True)``.

Each pooled value goes back to the position its window's winner came from;
every other position is zero. The indices are ``MaxPool2d``'s: the
winner's flat position h * W + w in its (H, W) plane.
"""

from ..backend import get_array_module, is_integer
from ..checks import check_array, check_forward_done, layer_name, pair
from ..module import Module
from .pool_windows import batched, batched_grad


def max_unpool2d(x, indices, out_size):
    """(N, C, H, W) values scattered into zeros of (N, C, OH, OW), plane by plane, to the flat positions ``indices``.

        out[n, c].flat[indices[n, c, h, w]] = x[n, c, h, w]      (zero elsewhere)

    Two values sent to one position (overlapping windows with one winner)
    leave one of them, as in PyTorch, whose documentation leaves which open.
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    OH, OW = out_size
    out = xp.zeros((N * C, OH * OW), dtype=x.dtype)
    plane = xp.arange(N * C).reshape(-1, 1)                    # each value stays in its own (n, c) plane
    out[plane, indices.reshape(N * C, H * W)] = x.reshape(N * C, H * W)
    return out.reshape(N, C, OH, OW)


def max_unpool2d_backward(dout, indices):
    """dx: each input's gradient is read back from the position it was sent to (the scatter's transpose, a gather).

        dx[n, c, h, w] = dout[n, c].flat[indices[n, c, h, w]]

    Every input went to one position, so its gradient is that position's.
    """
    xp = get_array_module(dout)
    N, C, OH, OW = dout.shape
    flat = indices.reshape(N, C, -1)
    return xp.take_along_axis(dout.reshape(N, C, OH * OW), flat, axis=2).reshape(indices.shape)


def unpool_output_size(layer, in_size, kernel_size, stride, padding, output_size):
    """(OH, OW): PyTorch's default (H - 1) * SH - 2 * PH + KH, or ``output_size``, which must lie within a stride."""
    default = [(h - 1) * s - 2 * p + k for h, k, s, p in zip(in_size, kernel_size, stride, padding)]
    size = default
    if output_size is not None:
        size = list(output_size)[-2:] if len(output_size) == 4 else list(output_size)
        if len(size) != 2:
            raise ValueError(f"{layer_name(layer)}: output_size should be a sequence containing 2 or 4 elements, "
                             f"but it has a length of '{len(output_size)}'")
        for d, (want, low, s) in enumerate(zip(size, default, stride)):
            if not low - s < want < low + s:
                raise ValueError(f'{layer_name(layer)}: invalid output_size "{tuple(output_size)}" (dim {d} must be '
                                 f'between {low - s} and {low + s})')
    for d, v in enumerate(size):
        if v < 0:
            raise ValueError(f"{layer_name(layer)}: max_unpooling: output_size must contain non-negative spatial "
                             f"dimensions, but got output_size[{d}]={v}")
    return tuple(size)


def check_indices(layer, x, indices, out_size):
    """The indices of ``MaxPool2d(return_indices=True)``: integers, x's shape, each inside the output plane."""
    check_array(layer, indices)
    if not is_integer(indices):
        raise ValueError(f"{layer_name(layer)}: elements in indices should be type int64 but got: {indices.dtype}")
    if tuple(indices.shape) != tuple(x.shape):
        raise ValueError(f"{layer_name(layer)}: Expected shape of indices to be same as that of the input tensor "
                         f"({tuple(x.shape)}) but got indices tensor with shape: {tuple(indices.shape)}")
    OH, OW = out_size
    if indices.size and (int(indices.min()) < 0 or int(indices.max()) >= OH * OW):
        bad = int(indices.min()) if int(indices.min()) < 0 else int(indices.max())
        raise ValueError(f"{layer_name(layer)}: Found an invalid max index: {bad} (output volumes are of size "
                         f"{OH}x{OW})")


class MaxUnpool2d(Module):
    """out: each x sent back to the position ``indices`` names in its plane, zeros elsewhere; as in PyTorch.

        out[n, c].flat[indices[n, c, h, w]] = x[n, c, h, w]
        dx[n, c, h, w] = dout[n, c].flat[indices[n, c, h, w]]

    ``forward(x, indices, output_size=None)``: the output is
    (H - 1) * SH - 2 * PH + KH rows (likewise columns) unless
    ``output_size`` ((OH, OW) or (N, C, OH, OW)) picks another size within
    a stride of it, the input size a ``MaxPool2d`` rounded down. The indices
    get no gradient. An unbatched (C, H, W) input gives (C, OH, OW).
    """

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size", "MaxUnpool2d", 1)
        self.stride = pair(stride if stride is not None else kernel_size, "stride", "MaxUnpool2d", 1)
        self.padding = pair(padding, "padding", "MaxUnpool2d", 0)
        self._cache = None
        self._unbatched = False

    def __call__(self, x, indices, output_size=None):
        """As ``Module.__call__``, and ``output_size`` may be given by name, as in PyTorch."""
        return super().__call__(x, indices, output_size)

    def forward(self, x, indices, output_size=None):
        self._cache = None
        x, self._unbatched = batched(self, x)
        check_array(self, indices)
        indices = indices[None] if self._unbatched and indices.ndim == 3 else indices
        out_size = unpool_output_size(self, x.shape[2:], self.kernel_size, self.stride, self.padding, output_size)
        check_indices(self, x, indices, out_size)
        out = max_unpool2d(x, indices, out_size)
        self._cache = (out.shape, indices)
        return out[0] if self._unbatched else out

    def backward(self, dout):
        check_forward_done(self, self._cache)
        out_shape, indices = self._cache
        dout = batched_grad(self, dout, out_shape, self._unbatched)
        dx = max_unpool2d_backward(dout, indices)
        return dx[0] if self._unbatched else dx

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
