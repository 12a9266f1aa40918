"""Flatten every axis but the batch axis (a reshape and its inverse; in the head of lesson 07's ResNet)."""

import math

from ..checks import check_array, check_dout, check_forward_done, layer_name
from ..module import Module


class Flatten(Module):
    """(N, d1, d2, ...) -> (N, d1*d2*...); backward reshapes the gradient back."""

    def __init__(self):
        super().__init__()
        self._cache = None  # (input shape, output shape)

    def forward(self, x):
        self._cache = None
        check_array(self, x)
        if x.ndim < 2:
            raise ValueError(f"{layer_name(self)}: expected an input with a batch axis and at least one more, "
                             f"got shape {tuple(x.shape)}")
        out = x.reshape(x.shape[0], math.prod(x.shape[1:]))  # not -1: NumPy cannot infer it for an empty batch
        self._cache = (x.shape, out.shape)
        return out

    def backward(self, dout):
        check_forward_done(self, self._cache)
        x_shape, out_shape = self._cache
        check_dout(self, dout, out_shape)
        return dout.reshape(x_shape)
