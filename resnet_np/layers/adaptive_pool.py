"""Adaptive average pooling: PyTorch's ``AdaptiveAvgPool2d``, any output size (torchvision's ResNet head uses (1, 1)).

Instead of a kernel and a stride, the output size (OH, OW) is given and the
windows adapt to the input: along an axis of length H, window i covers the
rows

    start_i = floor(i * H / OH)        end_i = ceil((i + 1) * H / OH)

Neighbouring windows may overlap by a row (H = 5, OH = 3: rows 0-1, 1-3,
3-4), and an output larger than the input repeats rows. Averaging rows is a
matrix product: P_H (OH, H) has 1 / (end_i - start_i) on window i's rows of
row i, P_W likewise, and the pooled map is P_H @ x @ P_W.T.
"""

from ..backend import get_array_module
from ..checks import check_forward_done
from ..module import Module
from .pool_windows import batched, batched_grad


def adaptive_windows(size, out):
    """[(start_i, end_i)] of the ``out`` windows along an axis of length ``size``, as PyTorch places them.

        start_i = floor(i * size / out)      end_i = ceil((i + 1) * size / out)

    Window i covers positions start_i to end_i - 1.
    """
    return [((i * size) // out, -(-((i + 1) * size) // out)) for i in range(out)]


def pooling_matrix(size, out, dtype, xp):
    """(out, size): row i averages window i, P[i, start_i:end_i] = 1 / (end_i - start_i), zeros elsewhere."""
    P = xp.zeros((out, size), dtype=dtype)
    for i, (start, end) in enumerate(adaptive_windows(size, out)):
        P[i, start:end] = 1.0 / (end - start)
    return P


def adaptive_avg_pool2d(x, output_size):
    """(N, C, H, W) -> (N, C, OH, OW), each output the mean of its window; returns (out, P_H, P_W).

        out = P_H @ x @ P_W.T           (N, C, OH, OW)

    P_H averages the rows of each map, P_W.T its columns (``pooling_matrix``).
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    OH, OW = output_size
    P_H, P_W = pooling_matrix(H, OH, x.dtype, xp), pooling_matrix(W, OW, x.dtype, xp)
    return P_H @ x @ P_W.T, P_H, P_W


def adaptive_avg_pool2d_backward(dout, P_H, P_W):
    """dx: each output's gradient shared out evenly over its window; overlapping windows add up.

        dx = P_H.T @ dout @ P_W         (N, C, H, W)

    The forward pass is linear in x: its backward multiplies by the transposed matrices.
    """
    return P_H.T @ dout @ P_W


def output_size_pair(output_size):
    """``output_size`` as (OH or None, OW or None): an int, None, or a pair of them."""
    value = output_size if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    if len(value) != 2:
        raise ValueError(f"AdaptiveAvgPool2d: output_size must be 2, got {output_size!r} (an int, None, "
                         f"or a pair of them)")
    for v in value:
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise ValueError(f"AdaptiveAvgPool2d: output_size must be an int, None, or a pair of them, "
                             f"got {output_size!r}")
        if v is not None and v < 0:
            raise ValueError(f"AdaptiveAvgPool2d: elements of output_size must be greater than or equal to 0 "
                             f"but received {output_size!r}")
    return tuple(value)


class AdaptiveAvgPool2d(Module):
    """(N, C, H, W) -> (N, C, OH, OW): the mean of each adaptive window; ``output_size`` as in PyTorch.

        out = P_H @ x @ P_W.T
        dx  = P_H.T @ dout @ P_W

    ``output_size`` is an int (OH = OW), or a pair whose None entries keep
    the input's size along that axis. ``AdaptiveAvgPool2d((1, 1))`` is
    ``GlobalAvgPool2d``: P_H is a row of 1 / H, P_W a row of 1 / W. An
    unbatched (C, H, W) input gives (C, OH, OW).
    """

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size
        self._size = output_size_pair(output_size)
        self._cache = None
        self._unbatched = False

    def forward(self, x):
        self._cache = None
        x, self._unbatched = batched(self, x)
        H, W = x.shape[2:]
        OH, OW = (H if self._size[0] is None else self._size[0]), (W if self._size[1] is None else self._size[1])
        out, P_H, P_W = adaptive_avg_pool2d(x, (OH, OW))
        self._cache = (out.shape, P_H, P_W)
        return out[0] if self._unbatched else out

    def backward(self, dout):
        check_forward_done(self, self._cache)
        out_shape, P_H, P_W = self._cache
        dout = batched_grad(self, dout, out_shape, self._unbatched)
        dx = adaptive_avg_pool2d_backward(dout, P_H, P_W)
        return dx[0] if self._unbatched else dx

    def extra_repr(self):
        return f"output_size={self.output_size}"
