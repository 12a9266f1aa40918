"""The one place that chooses between NumPy (CPU) and CuPy (GPU).

Every other module writes its array code against a module called ``xp``::

    xp = get_array_module(x)      # numpy for a numpy array, cupy for a cupy array
    y = xp.maximum(x, 0)

so the same lines run on either device. Arrays are *created* only through
``xp`` (or through the helpers below), never through ``numpy`` directly:
a stray ``numpy.zeros`` in a layer would silently build a host array in the
middle of a GPU computation. ``tests/test_backend.py`` scans the package
source to keep it that way.

The default backend is NumPy. Switch with ``use("cupy")`` or by setting the
environment variable ``RESNET_NP_BACKEND=cupy`` before importing resnet_np.

``use("cupy-strict")`` puts ``resnet_np.cupy_strict`` behind the name "cupy":
a stand-in that emulates CuPy's strictness (no implicit conversion to NumPy,
no NumPy operands, only CuPy's functions) on NumPy, and counts host<->device
transfers. It emulates the rules, not a GPU: CI runs the CuPy code paths
through it on machines without one. Everything else keeps saying "cupy"
(``backend_of``, ``to_device(x, "cupy")``, ``model.to("cupy")``).
"""

import os
import sys

import numpy

BACKENDS = ("numpy", "cupy", "cupy-strict")

# NumPy, for what must live on the host whatever the backend: reading and
# writing files, decoding datasets. Array code uses get_array_module instead.
host = numpy

_current = "numpy"
_cupy = None  # the real cupy module, once imported successfully
_device = None  # the module behind "cupy": real CuPy, or the stand-in after use("cupy-strict")

# Random numbers are drawn on the host with one NumPy generator and then
# moved to the device, so a seed gives the same weights on CPU and GPU.
_rng = numpy.random.default_rng(0)
# What is drawn at every step (dropout's masks) is drawn on the device by its
# own generator instead (``uniform_like``), seeded by ``manual_seed`` too.
_seed = 0
_device_generators = {}  # device module -> its RandomState, made at the first draw after a seed


def _import_cupy():
    """Import CuPy and make sure a GPU is visible, or say clearly why not."""
    global _cupy
    if _cupy is not None:
        return _cupy
    try:
        import cupy
    except ImportError as e:
        raise RuntimeError(
            "backend 'cupy' requested but CuPy is not importable "
            f"({e}). Install the GPU extra: pip install -e '.[gpu]' (CUDA 12) or '.[gpu-cuda13]' (CUDA 13)"
        ) from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CUDA driver missing or broken
        raise RuntimeError(
            f"backend 'cupy' requested: CuPy is installed but no GPU is visible ({e})"
        ) from None
    if count < 1:
        raise RuntimeError("backend 'cupy' requested: CuPy is installed but no GPU is visible (0 devices)")
    _cupy = cupy
    return cupy


def _stand_in():
    from . import cupy_strict
    return cupy_strict


def _device_module():
    """The module behind "cupy": the one ``use`` chose last, else real CuPy."""
    global _device
    if _device is None:
        _device = _import_cupy()
    return _device


def cupy_available():
    """True when (real) CuPy imports and at least one GPU is visible."""
    try:
        _import_cupy()
    except RuntimeError:
        return False
    return True


def use(name):
    """Make ``name`` ("numpy", "cupy" or "cupy-strict") the backend for new arrays.

    "cupy-strict" is the CuPy stand-in (``resnet_np.cupy_strict``): after it,
    the backend is called "cupy" and ``is_stand_in()`` is True, until
    ``use("cupy")`` puts real CuPy back behind the name.
    """
    global _current, _device
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    if name == "cupy":
        _device = _import_cupy()
    elif name == "cupy-strict":
        _device = _stand_in()
    _current = "numpy" if name == "numpy" else "cupy"


def current():
    """The name of the backend new arrays are created on: "numpy" or "cupy" (the stand-in too)."""
    return _current


def is_stand_in():
    """True when the "cupy" backend is the strict stand-in (emulated CuPy on NumPy, not a GPU).

    For the few places where the stand-in would say something untrue: timings.
    """
    return _device is not None and _device is sys.modules.get(__package__ + ".cupy_strict")


def _module(name):
    return _device_module() if name == "cupy" else numpy


def _device_module_of(a):
    """Real CuPy or the stand-in for an array of either, else None."""
    if _cupy is not None and isinstance(a, _cupy.ndarray):
        return _cupy
    stand_in = sys.modules.get(__package__ + ".cupy_strict")  # none of its arrays exists before its import
    if stand_in is not None and isinstance(a, stand_in.ndarray):
        return stand_in
    return None


def is_cupy_array(a):
    """True for an array on the GPU (or on the stand-in of one)."""
    return _device_module_of(a) is not None


def get_array_module(*arrays):
    """The array module (numpy or cupy) for ``arrays``.

    With no arguments, the module of the current backend: use it to create
    new arrays. With arrays, cupy if any of them lives on the GPU.
    """
    if not arrays:
        return _module(_current)
    for a in arrays:
        module = _device_module_of(a)
        if module is not None:
            return module
    return numpy


def backend_of(a):
    """"cupy" for an array on the GPU, else "numpy"."""
    return "cupy" if is_cupy_array(a) else "numpy"


def to_numpy(a):
    """A NumPy array on the host, whatever ``a`` is (a copy only when needed)."""
    if is_cupy_array(a):
        return a.get()
    return numpy.asarray(a)


def to_device(a, backend=None):
    """``a`` as an array of ``backend`` (default: the current backend)."""
    backend = backend or _current
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "numpy":
        return to_numpy(a)
    if backend == "cupy-strict":
        return _stand_in().asarray(a)
    module = _device_module_of(a)
    if module is not None:
        return a  # already on the device
    return _device_module().asarray(a)


def is_floating(a):
    """True for an array of a floating-point dtype (float16/32/64)."""
    return numpy.issubdtype(a.dtype, numpy.floating)


def is_integer(a):
    """True for an array of a signed or unsigned integer dtype."""
    return numpy.issubdtype(a.dtype, numpy.integer)


# ----------------------------------------------------------------------------
# Random numbers
# ----------------------------------------------------------------------------

def manual_seed(seed):
    """Reset the generators behind every random draw of the package (the host's and the device's)."""
    global _rng, _seed
    _rng = numpy.random.default_rng(seed)
    _seed = seed
    _device_generators.clear()


def get_rng_state():
    """The generator's state, to store in a checkpoint."""
    return _rng.bit_generator.state


def set_rng_state(state):
    _rng.bit_generator.state = state


def randn(shape, dtype="float32", backend=None, rng=None):
    """Standard normal samples of ``shape`` on ``backend``.

    ``rng`` is a ``numpy.random.Generator``; the package's own one by default.
    """
    rng = rng if rng is not None else _rng
    return to_device(rng.standard_normal(shape).astype(dtype), backend)


def uniform(low, high, shape, dtype="float32", backend=None, rng=None):
    """Uniform samples in [low, high) of ``shape`` on ``backend``."""
    rng = rng if rng is not None else _rng
    return to_device(rng.uniform(low, high, shape).astype(dtype), backend)


def uniform_like(a, low=0.0, high=1.0, dtype="float32"):
    """Uniform samples in [low, high) of ``a``'s shape, drawn where ``a`` is.

    On the host, from the package's generator (as ``uniform``). On the GPU,
    by the device's own generator (``cupy.random``, seeded by
    ``manual_seed``): nothing is uploaded, as dropout needs at every step. A
    seed gives reproducible draws on each device, but not the same numbers
    on both, and the device's generator is not stored in checkpoints.
    """
    module = _device_module_of(a)
    if module is None:
        return uniform(low, high, a.shape, dtype, "numpy")
    generator = _device_generators.get(module)
    if generator is None:
        seed = None if _seed is None else int(_seed) % 2**32  # the range RandomState takes
        generator = _device_generators[module] = module.random.RandomState(seed)
    return generator.uniform(low, high, a.shape, dtype=dtype)


def default_rng(seed=None):
    """A fresh ``numpy.random.Generator`` to pass as ``rng=`` above."""
    return numpy.random.default_rng(seed)


_env = os.environ.get("RESNET_NP_BACKEND")
if _env:
    use(_env.strip().lower())
