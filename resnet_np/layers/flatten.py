"""Flatten a run of axes into one, as ``nn.Flatten`` (a reshape and its inverse; in the head of lesson 07's ResNet)."""

import math

from ..checks import check_array, check_dout, check_forward_done, layer_name
from ..module import Module


class Flatten(Module):
    """Axes start_dim..end_dim become one; backward reshapes the gradient back.

        out = x.reshape(N, C * H * W)      (the defaults, on an N, C, H, W input)
        dx  = dout.reshape(N, C, H, W)

    The axes from ``start_dim`` to ``end_dim`` (both included) become one,
    as long as their product. The defaults (start_dim=1, end_dim=-1) keep
    the batch axis: (N, d1, d2, ...) -> (N, d1*d2*...). Negative dims count
    from the end, as in PyTorch; a 0-D input counts as one of shape (1,).
    """

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        for name, value in (("start_dim", start_dim), ("end_dim", end_dim)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"Flatten: {name} must be an int, got {value!r}")
        self.start_dim, self.end_dim = start_dim, end_dim
        self._cache = None  # (input shape, output shape)

    def dims(self, shape):
        """(start, end) as axes of ``shape``, checked as PyTorch checks them."""
        ndim = max(len(shape), 1)
        dims = []
        for name, d in (("start_dim", self.start_dim), ("end_dim", self.end_dim)):
            if not -ndim <= d < ndim:
                raise ValueError(f"{layer_name(self)}: Dimension out of range (expected to be in range of "
                                 f"[{-ndim}, {ndim - 1}], but got {d}): {name}={d} for an input of "
                                 f"{len(shape)} dims, got shape {tuple(shape)}")
            dims.append(d % ndim)
        if dims[0] > dims[1]:
            raise ValueError(f"{layer_name(self)}: flatten() has invalid args: start_dim cannot come after end_dim "
                             f"(axes {dims[0]} and {dims[1]} of shape {tuple(shape)})")
        return dims

    def forward(self, x):
        self._cache = None
        check_array(self, x)
        start, end = self.dims(x.shape)
        shape = tuple(x.shape) or (1,)
        # math.prod, not -1: NumPy cannot infer a length beside an empty batch
        out = x.reshape(shape[:start] + (math.prod(shape[start:end + 1]),) + shape[end + 1:])
        self._cache = (x.shape, out.shape)
        return out

    def backward(self, dout):
        check_forward_done(self, self._cache)
        x_shape, out_shape = self._cache
        check_dout(self, dout, out_shape)
        return dout.reshape(x_shape)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
