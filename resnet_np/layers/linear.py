"""The fully connected layer (first used in lesson 05; the classifier of every network)."""

from .. import init
from ..checks import check_dim, check_dout, check_float_input, check_forward_done, positive_int
from ..module import Module, Parameter


class Linear(Module):
    """out = x @ weight.T + bias, with x: (N, in_features), weight: (out_features, in_features).

    Backward:

        dweight = dout.T @ x        dbias = sum_n dout[n]        dx = dout @ weight

    Initialised as PyTorch's ``nn.Linear``: U(-1/sqrt(in), 1/sqrt(in)).
    """

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features = positive_int(in_features, "in_features", "Linear")
        self.out_features = positive_int(out_features, "out_features", "Linear")
        self.weight = Parameter(init.uniform_fan_in((out_features, in_features), in_features))
        self.bias = Parameter(init.uniform_fan_in((out_features,), in_features)) if bias else None
        self._cache = None  # the input x

    def forward(self, x):
        self._cache = None
        check_float_input(self, x, 2, "(N, in_features)", like=self.weight.data)
        check_dim(self, x, 1, self.in_features, "input features")
        self._cache = x
        out = x @ self.weight.data.T
        if self.bias is not None:
            out += self.bias.data
        return out

    def backward(self, dout):
        check_forward_done(self, self._cache)
        x = self._cache
        check_dout(self, dout, (x.shape[0], self.out_features))
        if self.weight.requires_grad:
            self.weight.accumulate_grad(dout.T @ x)
        if self.bias is not None and self.bias.requires_grad:
            self.bias.accumulate_grad(dout.sum(axis=0))
        return dout @ self.weight.data

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
