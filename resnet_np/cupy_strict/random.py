"""cupy.random of the stand-in: numbers drawn by NumPy, returned as device arrays (no upload counted:
CuPy draws them on the GPU). Only the functions CuPy's ``cupy.random`` documents exist.

As in CuPy, most functions take a ``dtype`` (``cupy.random.standard_normal((2, 3), dtype="float32")``).
"""

from ..backend import host as numpy  # NumPy: the stand-in computes on the host (only backend.py imports it)
from ._api import RANDOM
from ._core import _from_numpy, _unwrap, _wrap, missing, not_emulated


def _draws(method, name):
    def draw(*args, dtype=None, **kwargs):
        kwargs = {k: _unwrap(v) for k, v in kwargs.items()}
        out = method(*_unwrap(args), **kwargs)
        if dtype is not None:
            out = numpy.asarray(out).astype(dtype, copy=False)
        return _wrap(numpy.asarray(out)) if isinstance(out, (numpy.ndarray, numpy.generic, float, int)) else out
    draw.__name__ = name
    return draw


class RandomState:
    """cupy.random.RandomState: NumPy's legacy generator underneath."""

    def __init__(self, seed=None):
        self._rs = numpy.random.RandomState(seed)

    def seed(self, seed=None):
        self._rs.seed(seed)

    def shuffle(self, a):
        self._rs.shuffle(a._a)

    def __getattr__(self, name):
        if name in RANDOM and hasattr(self._rs, name):
            return _draws(getattr(self._rs, name), name)
        raise AttributeError(f"'cupy.random.RandomState' has no attribute {name!r}")


class Generator:
    """cupy.random.Generator (from ``default_rng``): NumPy's Generator underneath."""

    def __init__(self, seed=None):
        self._g = numpy.random.default_rng(seed)

    def shuffle(self, a, axis=0):
        self._g.shuffle(a._a, axis=axis)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return _draws(getattr(self._g, name), name)


_state = RandomState()


def default_rng(seed=None):
    return Generator(seed)


def get_random_state():
    return _state


def set_random_state(rs):
    global _state
    _state = rs


def seed(seed=None):
    _state.seed(seed)


def shuffle(a):
    _state.shuffle(a)


def random(size=None, dtype=float):
    return _from_numpy(numpy.asarray(_state._rs.random_sample(size)).astype(dtype, copy=False))


def __getattr__(name):
    if name not in RANDOM:
        raise missing("cupy.random", name)
    if not hasattr(_state._rs, name):
        raise not_emulated("cupy.random", name)
    return getattr(_state, name)
