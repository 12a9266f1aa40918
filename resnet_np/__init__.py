"""resnet_np: residual networks written from scratch on NumPy (and CuPy).

Every layer's forward and backward pass is written by hand; see
``resnet_np.layers`` and ``resnet_np.gradcheck``.
"""

from . import backend, gradcheck, init, layers, memory
from .backend import get_array_module, to_device, to_numpy, use
from .module import Module, Parameter

# A step frees and re-allocates the same few hundred MB: keep them (see memory.py).
memory.keep_freed_memory()

__version__ = "0.1.0"

__all__ = ["backend", "gradcheck", "init", "layers", "get_array_module", "to_device", "to_numpy", "use",
           "Module", "Parameter", "__version__"]
