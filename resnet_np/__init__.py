"""resnet_np: residual networks written from scratch on NumPy (and CuPy).

Every layer's forward and backward pass is written by hand; see
``resnet_np.layers`` (the plain computation, as the lessons derive it),
``resnet_np.fast`` (the speed tricks, each tested equal to its plain twin)
and ``resnet_np.gradcheck``. Importing the package changes nothing outside
it: ``resnet_np.fast.tuned()`` switches on the process-wide settings a
training loop runs faster with, and restores them.
"""

from . import backend, fast, gradcheck, init, layers
from .backend import get_array_module, to_device, to_numpy, use
from .fast import fast_enabled, use_fast
from .module import Module, Parameter

__version__ = "0.1.0"

__all__ = ["backend", "fast", "gradcheck", "init", "layers", "get_array_module", "to_device", "to_numpy", "use",
           "fast_enabled", "use_fast", "Module", "Parameter", "__version__"]
