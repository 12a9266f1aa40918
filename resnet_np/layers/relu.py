"""The rectified linear unit (derived in lesson 05).

``resnet_np/fast/relu.py`` holds the twins of ``relu`` and
``relu_backward``; ``ReLU`` takes one or the other as ``resnet_np.use_fast`` says.
"""

from .. import fast
from ..backend import get_array_module
from ..checks import check_array, check_dout, check_forward_done
from ..fast import relu as fast_relu
from ..module import Module


def relu(x):
    """out = max(x, 0), and the mask x > 0 that backward needs. Returns (out, mask)."""
    xp = get_array_module(x)
    return xp.asarray(xp.maximum(x, 0)), x > 0   # asarray: a 0-d input stays an array


def relu_backward(dout, mask):
    """dx = dout * (x > 0): the gradient passes where x was positive."""
    xp = get_array_module(dout)
    return xp.asarray(dout * mask)


class ReLU(Module):
    """out = max(x, 0); the gradient passes where x > 0 and is blocked elsewhere:

        dx = dout * (x > 0)

    (At x = 0 exactly the derivative is taken as 0, as in PyTorch.)

    ``inplace=True`` (torchvision writes ``nn.ReLU(inplace=True)``) writes the
    result over the input and returns the input array itself, as PyTorch does;
    the values and the gradient are the same either way.
    """

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = bool(inplace)
        self._cache = None  # the mask x > 0

    def forward(self, x):
        self._cache = None
        check_array(self, x)
        out, mask = fast_relu.relu(x) if fast.fast_enabled() else relu(x)
        self._cache = mask
        if self.inplace:
            x[...] = out
            return x
        return out

    def backward(self, dout):
        check_forward_done(self, self._cache)
        mask = self._cache
        check_dout(self, dout, mask.shape)
        return fast_relu.relu_backward(dout, mask) if fast.fast_enabled() else relu_backward(dout, mask)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""

    def kink_pattern(self):
        """Which side of the kink at 0 each input was on (used by gradcheck)."""
        return self._cache
