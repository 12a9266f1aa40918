"""The residual addition, as a layer of its own (derived in lesson 05)."""

from .. import fast
from ..checks import check_array, check_dout, check_forward_done, layer_name
from ..fast import add as fast_add
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
        if fast.fast_enabled():
            return fast_add.add(a, b)
        return a + b

    def backward(self, dout):
        check_forward_done(self, self._cache)
        check_dout(self, dout, self._cache)
        # The same array goes to both branches; backward passes never modify
        # their upstream gradient in place, so sharing it is safe.
        return dout, dout
