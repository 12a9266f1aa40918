"""The rectified linear unit."""

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
        self._cache = x > 0
        return get_array_module(x).maximum(x, 0)

    def backward(self, dout):
        check_forward_done(self, self._cache)
        mask = self._cache
        check_dout(self, dout, mask.shape)
        return dout * mask

    def kink_pattern(self):
        """Which side of the kink at 0 each input was on (used by gradcheck)."""
        return self._cache
