"""Exercise 7 — one step of SGD with momentum and weight decay (reference solution).

Check it:   python -m resnet_np.grade tests/exercise_solutions/ex07_sgd_momentum.py

    g = dw + weight_decay * w        v = momentum * v + g        w = w - lr * v
"""

import numpy as np  # noqa: F401


def sgd_momentum_step(w, dw, v, lr, momentum, weight_decay):
    """One step: w, dw, v arrays of one shape; floats lr, momentum, weight_decay -> (w, v)."""
    g = dw + weight_decay * w
    v = momentum * v + g
    w = w - lr * v
    return w, v
