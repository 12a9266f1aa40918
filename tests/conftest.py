import os

# Under pytest-xdist (the README's `-n auto`) each worker process gets one thread for BLAS and for the
# engine, and so do the processes its tests start: N workers on N cores, not N x N threads fighting for
# them. Set before NumPy is imported, which is when OpenBLAS reads it. A test that wants threads asks.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "RESNET_NP_NUM_THREADS"):
        os.environ.setdefault(_variable, "1")

import pytest  # noqa: E402

from resnet_np import backend  # noqa: E402


@pytest.fixture(autouse=True)
def _numpy_backend_and_seed():
    """Every test starts on the NumPy backend with the same seed.

    Afterwards the module behind "cupy" is put back too: a test that chose the
    strict stand-in (``use("cupy-strict")``) leaves real CuPy to the next one.
    """
    previous, device = backend.current(), backend._device
    backend.use("numpy")
    backend.manual_seed(0)
    yield
    backend._device = device
    backend._current = previous


@pytest.fixture
def strict_cupy():
    """The strict CuPy stand-in as the backend for this test (``resnet_np.cupy_strict``), on any machine."""
    from resnet_np import cupy_strict
    backend.use("cupy-strict")
    yield cupy_strict
    backend.use("numpy")


# Property tests draw the same examples on every run: a CI failure can be
# reproduced, and a rare draw cannot fail one run and pass the next.
try:
    from hypothesis import settings
except ImportError:  # the test extra is not installed: the property tests skip themselves
    pass
else:
    settings.register_profile("resnet_np", derandomize=True)
    settings.load_profile("resnet_np")
