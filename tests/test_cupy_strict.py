"""The strict CuPy stand-in itself: it refuses what CuPy refuses, offers only CuPy's names, counts transfers.

``resnet_np.cupy_strict`` emulates CuPy's strictness on NumPy (not a GPU). If
it were lenient where CuPy is strict, the library tests that run through it
(tests/test_cupy.py, tests/test_cupy_strict_library.py) would pass code that
breaks on a GPU: each rule is pinned here.
"""

import copy
import pickle

import numpy as np
import pytest

from resnet_np import backend, cupy_strict
from resnet_np.cupy_strict import _api

cp = cupy_strict


def device(a):
    return cp.asarray(np.asarray(a))


# -- conversions -----------------------------------------------------------------------


def test_implicit_conversion_to_numpy_is_refused_with_cupys_message():
    a = device(np.arange(6.0).reshape(2, 3))
    for convert in (np.asarray, np.array, np.ascontiguousarray, lambda x: np.mean(np.asarray(x))):
        with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed. "
                                            "Please use `.get\\(\\)` to construct a NumPy array explicitly."):
            convert(a)
    assert type(a.get()) is np.ndarray and type(cp.asnumpy(a)) is np.ndarray
    np.testing.assert_array_equal(a.get(), np.arange(6.0).reshape(2, 3))


def test_host_arrays_are_refused_as_operands():
    a = device(np.ones((2, 3)))
    host = np.ones((2, 3))
    for operate in (lambda: a + host, lambda: host + a, lambda: a * host, lambda: cp.maximum(a, host),
                    lambda: cp.add(a, [1.0, 2.0, 3.0]), lambda: cp.concatenate([a, host]),
                    lambda: cp.where(a > 0, host, 0.0), lambda: a.__iadd__(host),
                    lambda: a.sum(out=np.zeros(()))):
        with pytest.raises(TypeError, match="Unsupported type"):
            operate()
    # scalars are fine, NumPy's too
    assert isinstance(a * 2 + np.float32(0.5) - np.int64(1), cp.ndarray)
    assert isinstance(np.float32(2.0) * a, cp.ndarray)


def test_assigning_a_host_array_into_a_device_array_is_refused():
    a = device(np.zeros((2, 3)))
    for key in (slice(None), Ellipsis, (0,), (slice(None), 1)):
        with pytest.raises(ValueError, match="non-scalar numpy.ndarray cannot be used for fill"):
            a[key] = np.ones((2, 3))[key]
    with pytest.raises(ValueError, match="non-scalar"):
        a.fill(np.ones(3))
    a[...] = device(np.ones((2, 3)))  # device to device
    a[0, 0] = np.float64(5.0)  # a host scalar is fine
    a[1] = 7
    np.testing.assert_array_equal(a.get(), [[5, 1, 1], [7, 7, 7]])


def test_reductions_and_indexing_return_device_arrays():
    a = device(np.arange(6.0).reshape(2, 3))
    for value in (a.sum(), a.max(), a[0, 1], a.mean(axis=None), cp.sum(a), np.sum(a), a.argmax()):
        assert isinstance(value, cp.ndarray) and value.shape == (), type(value)
    view = a[1, 2]
    view[...] = 50.0  # a 0-d view, as CuPy's, writes through
    assert float(a[1, 2]) == 50.0
    assert isinstance(np.exp(a), cp.ndarray)  # NumPy's ufuncs dispatch to the stand-in's
    assert cp.get_array_module(a) is cp and cp.get_array_module(np.ones(1)) is np


def test_copies_stay_on_the_device_and_pickle_goes_through_the_host():
    a = device(np.arange(3.0))
    for b in (copy.copy(a), copy.deepcopy(a), a.copy()):
        assert isinstance(b, cp.ndarray) and b._a is not a._a
    with cp.counting() as traffic:
        c = pickle.loads(pickle.dumps(a))
    assert isinstance(c, cp.ndarray) and (traffic.downloads, traffic.uploads) == (1, 1)


def test_no_index_protocol_as_in_cupy():
    """CuPy arrays have no __index__: range(n) with a device n fails on a GPU, so it fails here."""
    with pytest.raises(TypeError):
        range(device(np.array(3)))


# -- only CuPy's names ---------------------------------------------------------------------


def test_api_file_names_its_cupy_release():
    assert _api.CUPY_VERSION.startswith("v14.")
    text = open(_api.API_FILE).read()
    assert "commit dc1552a32f5489bdf6a5a721dfd952a92d47d934" in text
    for name in ("add", "matmul", "pad", "asnumpy", "float32", "abs", "ndarray"):
        assert name in _api.FUNCTIONS, name
    for name in ("get", "astype", "reshape", "sum", "argmax", "shape", "dtype"):
        assert name in _api.ARRAY_MEMBERS, name
    assert {"standard_normal", "default_rng", "seed"} <= _api.RANDOM


@pytest.mark.parametrize("name", ["busday_count", "trapz", "fromregex", "nanquantile_foo"])
def test_numpy_only_functions_do_not_exist(name):
    assert name not in _api.FUNCTIONS
    with pytest.raises(AttributeError, match="has no attribute"):
        getattr(cp, name)


def test_numpy_only_array_members_do_not_exist():
    a = device(np.ones(3))
    for name in ("tostring", "itemset", "newbyteorder", "ctypes", "setflags", "resize"):
        assert name not in _api.ARRAY_MEMBERS, name
        with pytest.raises(AttributeError, match="cupy.ndarray"):
            getattr(a, name)


def test_ufunc_methods_only_where_cupy_has_them():
    a = device(np.arange(4.0))
    assert float(cp.add.reduce(a)) == 6.0
    cp.add.at(a, device(np.array([0, 0])), 1.0)
    assert float(a[0]) == 2.0
    with pytest.raises(NotImplementedError, match="maximum.reduce"):
        cp.maximum.reduce(a)


def test_random_draws_on_the_device():
    cp.random.seed(3)
    x = cp.random.standard_normal((2, 3), dtype="float32")
    assert isinstance(x, cp.ndarray) and x.dtype == np.float32
    assert isinstance(cp.random.default_rng(0).random(4), cp.ndarray)
    with pytest.raises(AttributeError):
        cp.random.bit_generator  # numpy.random's, not CuPy's


# -- counting ------------------------------------------------------------------------------


def test_every_way_to_the_host_is_counted_as_a_synchronisation():
    a = device(np.arange(4.0))
    reads = [lambda: float(a[0]), lambda: int(a[1]), lambda: bool(a[2] > 0), lambda: a[0].item(),
             lambda: a.get(), lambda: cp.asnumpy(a), lambda: a.tolist(), lambda: f"{a[0]:.2f}",
             lambda: a[a > 1], lambda: cp.nonzero(a), lambda: cp.cuda.Device().synchronize()]
    for read in reads:
        with cp.counting() as traffic:
            read()
        assert traffic.synchronizations == 1 and traffic.uploads == 0, (traffic, traffic.summary())
        assert "test_cupy_strict.py" in traffic.events[0][1]  # where: the caller, not the stand-in


def test_uploads_are_counted_and_device_work_is_free():
    host = np.ones((2, 3))
    with cp.counting() as traffic:
        a = cp.asarray(host)
        b = cp.asarray(a)  # already there
        c = (a * 2 + b).sum(axis=0) / 3
        cp.zeros((4,))
        a[:, cp.arange(2)] = 0.0
    assert (traffic.uploads, traffic.downloads, traffic.synchronizations) == (1, 0, 0), traffic.summary()
    assert b is a and isinstance(c, cp.ndarray)
    with cp.counting() as traffic:
        a[[0, 1]]  # a list index is uploaded, as CuPy does
    assert traffic.uploads == 1


# -- the backend ------------------------------------------------------------------------------


def test_backend_selects_the_stand_in(strict_cupy):
    assert backend.current() == "cupy" and backend.is_stand_in()
    x = backend.randn((2, 3))
    assert isinstance(x, cp.ndarray) and backend.is_cupy_array(x) and backend.backend_of(x) == "cupy"
    assert backend.get_array_module(x) is cp and backend.get_array_module() is cp
    assert type(backend.to_numpy(x)) is np.ndarray
    assert backend.to_device(x, "cupy") is x
    backend.use("numpy")
    assert not backend.is_stand_in() or backend.current() == "numpy"
    assert backend.get_array_module() is np
    assert isinstance(backend.to_device(np.ones(2), "cupy"), cp.ndarray)  # "cupy" still names the stand-in


def test_environment_variable_selects_the_stand_in():
    import subprocess
    import sys
    code = "import resnet_np; print(resnet_np.backend.current(), resnet_np.backend.is_stand_in())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**__import__("os").environ, "RESNET_NP_BACKEND": "cupy-strict"})
    assert result.returncode == 0 and result.stdout.split() == ["cupy", "True"], result.stderr


def test_the_stand_in_says_what_it_is():
    doc = cupy_strict.__doc__
    assert "emulates CuPy's rules, not a GPU" in doc
