import pytest

from resnet_np import backend


@pytest.fixture(autouse=True)
def _numpy_backend_and_seed():
    """Every test starts on the NumPy backend with the same seed."""
    previous = backend.current()
    backend.use("numpy")
    backend.manual_seed(0)
    yield
    backend.use(previous)


# Property tests draw the same examples on every run: a CI failure can be
# reproduced, and a rare draw cannot fail one run and pass the next.
try:
    from hypothesis import settings
except ImportError:  # the test extra is not installed: the property tests skip themselves
    pass
else:
    settings.register_profile("resnet_np", derandomize=True)
    settings.load_profile("resnet_np")
