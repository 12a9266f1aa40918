"""cupy_strict: CuPy's strictness on NumPy, for the tests of a machine with no GPU.

**It emulates CuPy's rules, not a GPU.** Every array is a NumPy array inside
a type of its own, computed by NumPy on the CPU, no faster and no slower in
any way that says something about a GPU. What it reproduces is what makes
code written for NumPy fail on CuPy:

* ``numpy.asarray(a)`` (and everything that calls it: ``numpy.savez``,
  ``float(numpy.mean(a))`` through NumPy, matplotlib) refuses with CuPy's
  ``TypeError: Implicit conversion to a NumPy array is not allowed. Please use
  `.get()` to construct a NumPy array explicitly.``
* arithmetic and functions refuse NumPy arrays as operands
  (``Unsupported type <class 'numpy.ndarray'>``), and ``a[...] = host_array``
  refuses (``non-scalar numpy.ndarray cannot be used for fill``);
* ``a.get()``, ``cupy_strict.asnumpy(a)`` (and ``float``, ``int``, ``bool``,
  ``.item()``, ``.tolist()``) are the ways back to the host;
* ``cupy_strict.asarray(host)`` is the way there;
* reductions return 0-d device arrays, not Python numbers, as CuPy does;
* only the names CuPy has exist — the functions, ``cupy.random``,
  ``cupy.linalg`` and the ``ndarray`` members of the CuPy release the ``gpu``
  extra installs, listed in ``cupy_api.txt`` (made from CuPy's documentation
  and source by ``make_api_list.py``). A NumPy-only function is an
  ``AttributeError``.

It also counts what would cross between host and GPU: uploads, downloads and
synchronisations (a download is one; so are ``Device().synchronize()`` and
the operations whose output size depends on the data: boolean masks,
``nonzero``, ``unique``)::

    from resnet_np import cupy_strict
    with cupy_strict.counting() as traffic:
        train_step(...)
    assert traffic.synchronizations <= 1, traffic.summary()

Select it with ``backend.use("cupy-strict")``, ``RESNET_NP_BACKEND=cupy-strict``
or ``--backend cupy-strict``: the package then treats it as its "cupy"
backend. Only where it says nothing true — timings — does code ask
``backend.is_stand_in()``.

What it does not emulate: kernels, streams, memory pools, device memory
limits, CuPy's wrap-around of out-of-range integer indices, dtype rules where
CuPy differs from NumPy, and CuPy's refusal of Python lists outside ufuncs
(``cupy.stack([1.0, a])`` passes here).
"""

import sys

from ..backend import host as numpy  # NumPy: the stand-in computes on the host (only backend.py imports it)
from . import cuda, linalg, random
from ._api import CUPY_VERSION, FUNCTIONS
from ._core import Traffic, _from_numpy, _record, counting, lookup, ndarray, totals, ufunc

__version__ = CUPY_VERSION.lstrip("v") if CUPY_VERSION else "0"
STAND_IN = True  # real CuPy has no such attribute

_cache = {}


def __getattr__(name):
    return lookup("cupy", FUNCTIONS, numpy, name, _cache)


def _upload(obj, dtype, copy, order):
    """A device array from host data (one upload), or from device arrays (no transfer)."""
    if isinstance(obj, ndarray):
        a = obj._a.astype(dtype, order=order, copy=copy) if dtype is not None else obj._a
        return _from_numpy(a.copy(order=order) if copy and a is obj._a else a)
    if isinstance(obj, (list, tuple)) and obj and all(isinstance(v, ndarray) for v in obj):
        return _from_numpy(numpy.array([v._a for v in obj], dtype=dtype, order=order))  # stacked on the device
    _record("upload")
    return _from_numpy(numpy.array(obj, dtype=dtype, order=order, copy=True))


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, blocking=False):
    """cupy.array: a copy on the device (an upload when ``obj`` is host data)."""
    out = _upload(obj, dtype, True, order)
    if ndmin > out.ndim:
        out._a = out._a.reshape((1,) * (ndmin - out.ndim) + out.shape)
    return out


def asarray(a, dtype=None, order=None, blocking=False):
    """cupy.asarray: ``a`` itself when it is already on the device, else an upload."""
    if isinstance(a, ndarray) and (dtype is None or numpy.dtype(dtype) == a.dtype):
        return a
    return _upload(a, dtype, False, order or "K")


asanyarray = asarray


def ascontiguousarray(a, dtype=None):
    if not isinstance(a, ndarray):
        return asarray(numpy.ascontiguousarray(a, dtype=dtype))
    return _from_numpy(numpy.ascontiguousarray(a._a, dtype=dtype))


def asnumpy(a, stream=None, order="C", out=None, blocking=True):
    """cupy.asnumpy: a NumPy copy on the host (a download); host data is returned as NumPy."""
    if isinstance(a, ndarray):
        return a.get(order=order, out=out)
    return numpy.asarray(a, order=order)


def get_array_module(*args):
    """This module if any argument is a stand-in array, else numpy."""
    return sys.modules[__name__] if any(isinstance(a, ndarray) for a in args) else numpy


def is_available():
    return True


def traffic():
    """The totals since import (a copy)."""
    t = Traffic()
    t.uploads, t.downloads, t.synchronizations = totals.uploads, totals.downloads, totals.synchronizations
    return t


__all__ = ["ndarray", "ufunc", "array", "asarray", "asanyarray", "ascontiguousarray", "asnumpy",
           "get_array_module", "is_available", "counting", "traffic", "Traffic", "cuda", "random", "linalg",
           "STAND_IN"]
