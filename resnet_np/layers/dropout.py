"""Dropout (Srivastava et al., 2014), in its inverted form as in PyTorch (used by lesson 12's wide ResNets)."""

import numbers

from .. import backend
from ..checks import check_dout, check_float_input, check_forward_done
from ..module import Module


def dropout_probability(p, owner="Dropout", name="p"):
    """``p`` as a float in [0, 1), or a ValueError naming ``owner`` and the argument ``name``.

    p = 1 would drop everything and divide by zero to rescale; NaN and
    booleans are refused too (``Dropout(True)`` is a typo, not a rate).
    """
    if not isinstance(p, numbers.Real) or isinstance(p, bool) or not 0 <= p < 1:
        raise ValueError(f"{owner}: {name} must be a number in [0, 1), got {p!r}")
    return float(p)


class Dropout(Module):
    """Train mode: zero each element with probability p and scale the rest by 1/(1-p).

        keep ~ Bernoulli(1 - p), one draw per element      out = x * keep / (1 - p)

    Scaling at training time ("inverted" dropout) keeps the expected output
    equal to x, so eval mode is the identity: nothing to rescale at test time.
    Backward sends the gradient through the same kept elements, scaled alike:

        dx = dout * keep / (1 - p)

    The mask is drawn where x is (``backend.uniform_like``): on the host
    from the package's generator, on a GPU by the device's own generator,
    so that no mask is uploaded at every step. Both are seeded by
    ``backend.manual_seed``: a seeded run drops the same elements every
    time. With p = 0 nothing is drawn, and the rest of the run sees the same
    random numbers as without the layer.

    ``mask`` holds the last mask drawn (a boolean array, True = kept). Set
    ``reuse_mask = True`` to make the next forward passes reuse it rather
    than draw a new one (while the input keeps its shape): a gradient check
    needs one fixed function to differentiate, not a new one per evaluation.
    """

    def __init__(self, p=0.5):
        super().__init__()
        self.p = dropout_probability(p)
        self.reuse_mask = False
        self.mask = None
        self._cache = None  # (input shape, mask or None when the layer is the identity)

    def forward(self, x):
        self._cache = None
        check_float_input(self, x, None, "")
        if not self.training or self.p == 0:
            self._cache = (x.shape, None)
            return x
        if not (self.reuse_mask and self.mask is not None and self.mask.shape == x.shape):
            self.mask = backend.uniform_like(x) >= self.p  # P(u >= p) = 1 - p
        self._cache = (x.shape, self.mask)
        return x * self.mask * (1.0 / (1.0 - self.p))

    def backward(self, dout):
        check_forward_done(self, self._cache)
        x_shape, mask = self._cache
        check_dout(self, dout, x_shape)
        if mask is None:
            return dout
        return dout * mask * (1.0 / (1.0 - self.p))

    def extra_repr(self):
        return f"p={self.p}"
