"""The residual addition, as a layer of its own."""

from .. import parallel
from ..backend import get_array_module
from ..checks import check_array, check_dout, check_forward_done, layer_name
from ..module import Module


class Add(Module):
    """out = a + b: where a ResNet's shortcut joins its residual branch.

    Both inputs receive the whole upstream gradient — d(a + b)/da = d(a + b)/db = 1:

        da = dout        db = dout

    This is why a skip connection keeps gradients alive in deep networks:
    whatever the branch does to its gradient, the shortcut passes ``dout``
    to the block's input unchanged. The shapes must match exactly; a
    silently broadcast addition would hide a wrong ``downsample``.
    """

    def __init__(self):
        super().__init__()
        self._cache = None  # the shape of a and b

    def forward(self, a, b):
        self._cache = None
        check_array(self, a)
        check_array(self, b)
        if a.shape != b.shape:
            raise ValueError(f"{layer_name(self)}: the two inputs must have the same shape, "
                             f"got {tuple(a.shape)} and {tuple(b.shape)}")
        if a.dtype != b.dtype:
            raise ValueError(f"{layer_name(self)}: the two inputs must have the same dtype, "
                             f"got {a.dtype} and {b.dtype}")
        self._cache = a.shape
        xp = get_array_module(a)
        out = xp.empty_like(a)
        a1, b1, out1 = (v.reshape(-1) if v.ndim == 0 else v for v in (a, b, out))  # a scalar: one part
        parallel.for_each_part(lambda n0, n1: xp.add(a1[n0:n1], b1[n0:n1], out=out1[n0:n1]),
                               len(a1), parallel.min_images(a1), xp)
        return out

    def backward(self, dout):
        check_forward_done(self, self._cache)
        check_dout(self, dout, self._cache)
        # The same array goes to both branches; backward passes never modify
        # their upstream gradient in place, so sharing it is safe.
        return dout, dout
