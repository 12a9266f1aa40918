"""The rectified linear unit."""

from ..fast import threads as parallel
from ..backend import get_array_module
from ..checks import check_array, check_dout, check_forward_done
from ..module import Module


class ReLU(Module):
    """out = max(x, 0); the gradient passes where x > 0 and is blocked elsewhere:

        dx = dout * (x > 0)

    (At x = 0 exactly the derivative is taken as 0, as in PyTorch.)
    """

    def __init__(self):
        super().__init__()
        self._cache = None  # the mask x > 0

    def forward(self, x):
        self._cache = None
        check_array(self, x)
        xp = get_array_module(x)
        mask = xp.empty(x.shape, dtype=bool)
        out = xp.empty_like(x)
        x1, mask1, out1 = (a.reshape(-1) if a.ndim == 0 else a for a in (x, mask, out))  # a scalar: one part
        # max(x, 0) against zeros the shape of one image, not the scalar 0: NumPy's
        # loop for a scalar (stride 0) operand runs at a third of the speed.
        zeros = xp.zeros(x1.shape[1:], dtype=x.dtype)

        def relu(n0, n1):  # a share of the images per thread (parallel.py)
            xp.greater(x1[n0:n1], 0, out=mask1[n0:n1])
            xp.maximum(x1[n0:n1], zeros, out=out1[n0:n1])
        parallel.for_each_part(relu, len(x1), parallel.min_images(x1), xp)
        self._cache = mask
        return out

    def backward(self, dout):
        check_forward_done(self, self._cache)
        mask = self._cache
        check_dout(self, dout, mask.shape)
        xp = get_array_module(dout)
        dx = xp.empty_like(dout)
        d1, mask1, dx1 = (a.reshape(-1) if a.ndim == 0 else a for a in (dout, mask, dx))
        parallel.for_each_part(lambda n0, n1: xp.multiply(d1[n0:n1], mask1[n0:n1], out=dx1[n0:n1]),
                               len(d1), parallel.min_images(d1), xp)
        return dx

    def kink_pattern(self):
        """Which side of the kink at 0 each input was on (used by gradcheck)."""
        return self._cache
