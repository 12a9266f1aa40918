"""cupy.linalg of the stand-in: CuPy's names, NumPy's computation (see the package's docstring)."""

from ..backend import host as numpy  # NumPy: the stand-in computes on the host (only backend.py imports it)
from ._api import LINALG
from ._core import lookup

_cache = {}


def __getattr__(name):
    return lookup("cupy.linalg", LINALG, numpy.linalg, name, _cache)
