"""A chain of modules, run in order forward and in reverse order backward."""

from ..module import Module


class Sequential(Module):
    """``Sequential(a, b, c)(x) == c(b(a(x)))``.

    The modules are attributes named "0", "1", ... so their parameters get
    PyTorch's keys (``downsample.0.weight``, ``downsample.1.running_mean``).
    Backward is the chain rule read from the end: each module turns the
    gradient of its output into the gradient of its input (through
    ``run_backward``, so that the modules' backward hooks run: see module.py).
    """

    def __init__(self, *modules):
        super().__init__()
        self._length = 0
        for m in modules:
            self.append(m)

    def append(self, module):
        if not isinstance(module, Module):
            raise ValueError(f"Sequential: expected a Module, got {type(module).__name__}")
        setattr(self, str(self._length), module)
        self._length += 1
        return self

    def __len__(self):
        return self._length

    def __getitem__(self, index):
        if isinstance(index, int) and -self._length <= index < self._length:
            return getattr(self, str(index % self._length))
        raise IndexError(f"Sequential index {index} out of range for {self._length} modules")

    def __iter__(self):
        return (getattr(self, str(i)) for i in range(self._length))

    def forward(self, x):
        for module in self:
            x = module(x)
        return x

    def backward(self, dout):
        for module in reversed(list(self)):
            dout = module.run_backward(dout)
        return dout
