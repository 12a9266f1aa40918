"""The stand-in's array type, its ufuncs and functions, and the traffic counters.

Everything here computes with NumPy; what it adds is CuPy's refusals and a
count of what would cross the PCIe bus on a real GPU.
"""

import os
import sys
import warnings

from ..backend import host as numpy  # NumPy: the stand-in computes on the host (only backend.py imports it)
from ._api import ARRAY_MEMBERS, CUPY_VERSION, FUNCTIONS, UFUNC_METHODS

# CuPy's own words (cupy/_core/core.pyx, _scalar.pyx), so a test written against the stand-in
# matches what a GPU run prints.
IMPLICIT_CONVERSION = ("Implicit conversion to a NumPy array is not allowed. "
                       "Please use `.get()` to construct a NumPy array explicitly.")
NON_SCALAR_FILL = "non-scalar numpy.ndarray cannot be used for fill"


# ----------------------------------------------------------------------------
# Traffic: host -> device uploads, device -> host downloads, synchronisations
# ----------------------------------------------------------------------------

class Traffic:
    """Counts of host<->device traffic. A download always synchronises (the host waits for the
    GPU's queue to drain before the copy); so do explicit ``synchronize()`` calls and the
    operations whose output size depends on the data (boolean masks, ``nonzero``, ``unique``).

    ``events`` lists ``(kind, where)`` for each, ``where`` being the first caller outside the
    stand-in and ``resnet_np/backend.py`` — what to read when a budget test fails.
    """

    def __init__(self):
        self.uploads = 0
        self.downloads = 0
        self.synchronizations = 0
        self.events = []

    def __repr__(self):
        return (f"Traffic(uploads={self.uploads}, downloads={self.downloads}, "
                f"synchronizations={self.synchronizations})")

    def summary(self):
        """One line per event, for an assertion message."""
        return "\n".join(f"  {kind:<9} {where}" for kind, where in self.events) or "  (none)"


_listeners = []  # the Traffic objects of the counting() blocks now open
totals = Traffic()  # since import (events are not kept here: unbounded)

_HERE = os.path.dirname(os.path.abspath(__file__))
_BACKEND = os.path.join(os.path.dirname(_HERE), "backend.py")


def _caller():
    frame = sys._getframe(2)
    while frame is not None:
        path = os.path.abspath(frame.f_code.co_filename)
        if not path.startswith(_HERE) and path != _BACKEND:
            return f"{os.path.relpath(path)}:{frame.f_lineno} in {frame.f_code.co_name}"
        frame = frame.f_back
    return "?"


def _record(kind):
    if kind == "upload":
        totals.uploads += 1
    elif kind == "download":
        totals.downloads += 1
        totals.synchronizations += 1
    else:
        totals.synchronizations += 1
    if not _listeners:
        return
    where = _caller()
    for t in _listeners:
        if kind == "upload":
            t.uploads += 1
        elif kind == "download":
            t.downloads += 1
            t.synchronizations += 1
        else:
            t.synchronizations += 1
        t.events.append((kind, where))


class counting:
    """``with counting() as t: ...`` counts the traffic of the block into ``t`` (a ``Traffic``)."""

    def __enter__(self):
        self.traffic = Traffic()
        _listeners.append(self.traffic)
        return self.traffic

    def __exit__(self, *exc):
        _listeners.remove(self.traffic)
        return False


# ----------------------------------------------------------------------------
# Moving between the stand-in and NumPy
# ----------------------------------------------------------------------------

def _unsupported(value):
    return TypeError(f"Unsupported type {type(value)} (cupy_strict: CuPy takes device arrays and scalars here; "
                     "move a NumPy array with cupy.asarray first)")


def _is_scalar(value):
    return isinstance(value, (bool, int, float, complex, numpy.generic))


def _unwrap(value):
    """The NumPy array under a stand-in array; device arrays inside lists and tuples too.

    A NumPy array refuses, as CuPy's kernels do (``Unsupported type``).
    """
    if isinstance(value, ndarray):
        return value._a
    if isinstance(value, numpy.ndarray):
        raise _unsupported(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v) for v in value)
    return value


def _unwrap_kernel_arg(value):
    """An argument of a ufunc: a device array or a scalar, nothing else (no NumPy array, no list)."""
    if isinstance(value, ndarray):
        return value._a
    if value is None or _is_scalar(value):
        return value
    raise _unsupported(value)


def _wrap(value):
    """NumPy results as stand-in arrays; a NumPy scalar becomes a 0-d array, as CuPy returns."""
    if isinstance(value, numpy.ndarray):
        return _from_numpy(value)
    if isinstance(value, numpy.generic):
        return _from_numpy(numpy.asarray(value))
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def _from_numpy(a):
    obj = ndarray.__new__(ndarray)
    obj._a = a
    return obj


def _index(key):
    """An index for NumPy: device arrays unwrapped (a boolean mask synchronises: its result's size
    depends on the data); NumPy arrays and lists are uploaded first, as CuPy does."""
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    if isinstance(key, ndarray):
        if key.dtype == numpy.bool_:
            _record("sync")
        return key._a
    if isinstance(key, (numpy.ndarray, list)):
        _record("upload")
        key = numpy.asarray(key)
        if key.dtype == numpy.bool_:
            _record("sync")
        return key
    return key


def _check_value(value):
    """The right-hand side of ``a[...] = value``: a device array or a scalar (CuPy's ``fill``)."""
    if isinstance(value, ndarray):
        return value._a
    if isinstance(value, (numpy.ndarray, list, tuple)):
        if numpy.ndim(value) != 0:
            raise ValueError(f"{NON_SCALAR_FILL} (cupy_strict: assigning a host array into a device array; "
                             "move it with cupy.asarray first)")
        return numpy.asarray(value)[()]
    return value


# ----------------------------------------------------------------------------
# The array
# ----------------------------------------------------------------------------

def _ufunc_call(np_ufunc, *args, out=None, **kwargs):
    args = [_unwrap_kernel_arg(a) for a in args]
    if out is not None:
        if not isinstance(out, ndarray):
            raise _unsupported(out)
        np_ufunc(*args, out=out._a, **kwargs)
        return out
    return _wrap(np_ufunc(*args, **kwargs))


def _binary(np_ufunc):
    def forward(self, other):
        if other is None:
            return NotImplemented
        return _ufunc_call(np_ufunc, self, other)

    def reflected(self, other):
        if other is None:
            return NotImplemented
        return _ufunc_call(np_ufunc, other, self)

    def inplace(self, other):
        return _ufunc_call(np_ufunc, self, other, out=self)
    return forward, reflected, inplace


class _Device:
    """``a.device``: the one pretend device."""

    id = 0

    def __repr__(self):
        return "<CUDA Device 0 (cupy_strict stand-in)>"


class _MemoryPointer:
    """``a.data``: only its ``ptr`` (the NumPy buffer's address) is offered."""

    def __init__(self, a):
        self.ptr = a.ctypes.data
        self.device_id = 0


class ndarray:
    """A device array of the stand-in: a NumPy array inside, CuPy's rules outside.

    It refuses implicit conversion to NumPy (``numpy.asarray(a)``), arithmetic
    with NumPy arrays and assignment from them; ``.get()`` (or ``cupy.asnumpy``)
    is the way back to the host. Only the members CuPy's ``ndarray`` has exist.
    """

    __slots__ = ("_a", "__weakref__")
    __array_priority__ = 100.0  # above NumPy's: numpy_array + device_array asks this class first
    __hash__ = None

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        if memptr is not None or strides is not None:
            raise NotImplementedError("cupy_strict: ndarray(memptr=..., strides=...) is not emulated")
        self._a = numpy.empty(shape, dtype=dtype, order=order)

    # -- attributes ---------------------------------------------------------------

    @property
    def shape(self):
        return self._a.shape

    @shape.setter
    def shape(self, value):
        self._a.shape = value

    @property
    def dtype(self):
        return self._a.dtype

    @property
    def ndim(self):
        return self._a.ndim

    @property
    def size(self):
        return self._a.size

    @property
    def nbytes(self):
        return self._a.nbytes

    @property
    def itemsize(self):
        return self._a.itemsize

    @property
    def strides(self):
        return self._a.strides

    @property
    def T(self):
        return _from_numpy(self._a.T)

    @property
    def device(self):
        return _Device()

    @property
    def data(self):
        return _MemoryPointer(self._a)

    @property
    def base(self):
        return None if self._a.base is None else _wrap(self._a.base)

    def __getattr__(self, name):
        # Only reached for names not defined above: the rest of CuPy's members, taken from NumPy's.
        if name in ARRAY_MEMBERS and not name.startswith("__") and hasattr(numpy.ndarray, name):
            member = getattr(self._a, name)
            if not callable(member):
                return _wrap(member)

            def method(*args, **kwargs):
                kwargs = {k: _unwrap(v) for k, v in kwargs.items()}
                return _wrap(member(*_unwrap(args), **kwargs))
            method.__name__ = name
            return method
        raise AttributeError(f"'cupy.ndarray' object has no attribute {name!r} "
                             f"(cupy_strict: not a member of cupy.ndarray in CuPy {CUPY_VERSION})")

    # -- the ways back to the host (each one a download, so a synchronisation) -----

    def get(self, stream=None, order="C", out=None, blocking=True):
        _record("download")
        if out is not None:
            out[...] = self._a
            return out
        return self._a.copy(order=order)

    def set(self, arr, stream=None):
        if not isinstance(arr, numpy.ndarray):
            raise TypeError(f"Only numpy.ndarray can be set to cupy.ndarray, got {type(arr)}")
        _record("upload")
        self._a[...] = arr

    def item(self):
        _record("download")
        return self._a.item()

    def tolist(self):
        _record("download")
        return self._a.tolist()

    def tobytes(self, order="C"):
        _record("download")
        return self._a.tobytes(order)

    def __int__(self):
        _record("download")
        return int(self._a)

    def __float__(self):
        _record("download")
        return float(self._a)

    def __complex__(self):
        _record("download")
        return complex(self._a)

    def __bool__(self):
        if self.size == 0:
            warnings.warn("The truth value of an empty array is ambiguous. Returning False, but in future this "
                          "will result in an error. Use `array.size > 0` to check that an array is not empty.",
                          DeprecationWarning, stacklevel=2)
            return False
        if self.size == 1:
            _record("download")
            return bool(self._a)
        raise ValueError("The truth value of an array with more than one element is ambiguous. "
                         "Use a.any() or a.all()")

    def __repr__(self):
        _record("download")
        return repr(self._a)

    def __str__(self):
        _record("download")
        return str(self._a)

    def __format__(self, spec):
        _record("download")
        return format(self._a, spec)

    def __array__(self, dtype=None, copy=None):
        raise TypeError(IMPLICIT_CONVERSION)

    def __reduce__(self):
        return _array_from_host, (self.get(order="A"),)

    # -- copies stay on the device ---------------------------------------------------

    def __copy__(self):
        return _from_numpy(self._a.copy())

    def __deepcopy__(self, memo):
        return _from_numpy(self._a.copy())

    def copy(self, order="C"):
        return _from_numpy(self._a.copy(order=order))

    def fill(self, value):
        self._a.fill(_check_value(value))

    def nonzero(self):
        _record("sync")  # the number of non-zeros decides the output's size
        return _wrap(self._a.nonzero())

    # -- containers -------------------------------------------------------------------

    def __len__(self):
        if self._a.ndim == 0:
            raise TypeError("len() of unsized object")
        return len(self._a)

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self._a.shape[0]))

    def __getitem__(self, key):
        key = _index(key)
        out = self._a[key]
        if isinstance(out, numpy.generic):  # CuPy returns a 0-d view, not a scalar
            out = self._a[(key if isinstance(key, tuple) else (key,)) + (Ellipsis,)]
        return _from_numpy(out)

    def __setitem__(self, key, value):
        self._a[_index(key)] = _check_value(value)

    # -- NumPy's protocols: numpy.exp(a), numpy.sum(a) run the stand-in's own functions ----

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if ufunc.__name__ not in FUNCTIONS:
            return NotImplemented
        if "out" in kwargs:
            (kwargs["out"],) = kwargs["out"]
        target = ufunc_for(ufunc)
        if method != "__call__":
            target = getattr(target, method)
        return target(*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        from . import linalg
        module = {"numpy": sys.modules[__package__], "numpy.linalg": linalg}.get(func.__module__)
        if module is None:
            return NotImplemented
        try:
            ours = getattr(module, func.__name__)
        except AttributeError:
            return NotImplemented
        return ours(*args, **kwargs)

    # -- arithmetic ----------------------------------------------------------------------

    __add__, __radd__, __iadd__ = _binary(numpy.add)
    __sub__, __rsub__, __isub__ = _binary(numpy.subtract)
    __mul__, __rmul__, __imul__ = _binary(numpy.multiply)
    __matmul__, __rmatmul__, __imatmul__ = _binary(numpy.matmul)
    __truediv__, __rtruediv__, __itruediv__ = _binary(numpy.true_divide)
    __floordiv__, __rfloordiv__, __ifloordiv__ = _binary(numpy.floor_divide)
    __mod__, __rmod__, __imod__ = _binary(numpy.remainder)
    __pow__, __rpow__, __ipow__ = _binary(numpy.power)
    __lshift__, __rlshift__, __ilshift__ = _binary(numpy.left_shift)
    __rshift__, __rrshift__, __irshift__ = _binary(numpy.right_shift)
    __and__, __rand__, __iand__ = _binary(numpy.bitwise_and)
    __or__, __ror__, __ior__ = _binary(numpy.bitwise_or)
    __xor__, __rxor__, __ixor__ = _binary(numpy.bitwise_xor)
    __lt__ = _binary(numpy.less)[0]
    __le__ = _binary(numpy.less_equal)[0]
    __gt__ = _binary(numpy.greater)[0]
    __ge__ = _binary(numpy.greater_equal)[0]
    __eq__ = _binary(numpy.equal)[0]
    __ne__ = _binary(numpy.not_equal)[0]

    def __divmod__(self, other):
        return _ufunc_call(numpy.floor_divide, self, other), _ufunc_call(numpy.remainder, self, other)

    def __neg__(self):
        return _from_numpy(-self._a)

    def __pos__(self):
        return _from_numpy(+self._a)

    def __abs__(self):
        return _from_numpy(abs(self._a))

    def __invert__(self):
        return _from_numpy(~self._a)


def _array_from_host(a):
    """Unpickling: the host copy goes back up."""
    _record("upload")
    return _from_numpy(numpy.array(a))


# ----------------------------------------------------------------------------
# Ufuncs and functions
# ----------------------------------------------------------------------------

class ufunc:
    """A CuPy ufunc: device arrays and scalars in, a device array out; only CuPy's methods."""

    def __init__(self, np_ufunc):
        self._u = np_ufunc
        self.__name__ = np_ufunc.__name__
        self.nin, self.nout, self.nargs = np_ufunc.nin, np_ufunc.nout, np_ufunc.nargs

    def __repr__(self):
        return f"<ufunc '{self.__name__}'>"

    def __call__(self, *args, **kwargs):
        return _ufunc_call(self._u, *args, **kwargs)

    def _method(self, name):
        allowed = UFUNC_METHODS[name]
        if allowed is not None and self.__name__ not in allowed:
            raise NotImplementedError(f"cupy.{self.__name__}.{name} is not supported by CuPy {CUPY_VERSION} "
                                      f"(only for {', '.join(sorted(allowed))})")
        return getattr(self._u, name)

    def reduce(self, a, axis=0, dtype=None, out=None, keepdims=False):
        reduce = self._method("reduce")
        result = reduce(_unwrap_kernel_arg(a), axis=axis, dtype=dtype, keepdims=keepdims)
        return _into(out, result)

    def accumulate(self, a, axis=0, dtype=None, out=None):
        result = self._method("accumulate")(_unwrap_kernel_arg(a), axis=axis, dtype=dtype)
        return _into(out, result)

    def reduceat(self, a, indices, axis=0, dtype=None, out=None):
        result = self._method("reduceat")(_unwrap_kernel_arg(a), _unwrap_kernel_arg(indices), axis=axis,
                                          dtype=dtype)
        return _into(out, result)

    def outer(self, a, b, **kwargs):
        return _wrap(self._method("outer")(_unwrap_kernel_arg(a), _unwrap_kernel_arg(b), **kwargs))

    def at(self, a, indices, b=None):
        if not isinstance(a, ndarray):
            raise _unsupported(a)
        at = self._method("at")
        indices = _unwrap(indices)
        if b is None:
            at(a._a, indices)
        else:
            at(a._a, indices, _unwrap_kernel_arg(b))


def _into(out, result):
    if out is None:
        return _wrap(result)
    if not isinstance(out, ndarray):
        raise _unsupported(out)
    out._a[...] = result
    return out


_ufuncs = {}


def ufunc_for(np_ufunc):
    """The stand-in ufunc for a NumPy ufunc (one object per name)."""
    if np_ufunc.__name__ not in _ufuncs:
        _ufuncs[np_ufunc.__name__] = ufunc(np_ufunc)
    return _ufuncs[np_ufunc.__name__]


# Functions whose output size depends on the data: CuPy must wait for the GPU to know it.
SYNCHRONIZING = {"nonzero", "argwhere", "flatnonzero", "unique", "compress", "extract", "unique_values",
                 "unique_counts", "unique_inverse", "unique_all", "trim_zeros"}


# CuPy's file writers copy the arrays to the host first (numpy.savez(f, device_array) lands here too).
DOWNLOADING = {"save", "savez", "savez_compressed", "savetxt"}


def function_for(np_function, name):
    """A CuPy function computed by NumPy's: device arrays in (NumPy arrays refused), device arrays out."""
    def function(*args, **kwargs):
        if name in DOWNLOADING:
            _record("download")
        elif name in SYNCHRONIZING or (name == "where" and len(args) + len(kwargs) == 1):
            _record("sync")
        kwargs = {k: _unwrap(v) for k, v in kwargs.items()}
        return _wrap(np_function(*_unwrap(args), **kwargs))
    function.__name__ = name
    function.__qualname__ = name
    function.__doc__ = f"cupy.{name}, emulated on NumPy by cupy_strict."
    return function


def missing(module, name):
    return AttributeError(f"module {module!r} has no attribute {name!r} "
                          f"(cupy_strict: not in CuPy {CUPY_VERSION}'s documented API)")


def not_emulated(module, name):
    return AttributeError(f"cupy_strict does not emulate {module}.{name} (it is CuPy API, but NumPy has no "
                          "function of that name to compute it with)")


def lookup(module, names, np_module, name, cache):
    """``module.name`` of the stand-in: CuPy's name, NumPy's computation."""
    if name in cache:
        return cache[name]
    if name not in names:
        raise missing(module, name)
    if not hasattr(np_module, name):
        raise not_emulated(module, name)
    found = getattr(np_module, name)
    if isinstance(found, numpy.ufunc):
        value = ufunc_for(found)
    elif callable(found) and not isinstance(found, type):
        value = function_for(found, name)
    else:
        value = found  # dtypes, dtype classes, constants: NumPy's own objects, as in CuPy
    cache[name] = value
    return value
