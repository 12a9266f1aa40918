"""Exercise 11 — Adam and AdamW (reference solution).

Check it:   python -m resnet_np.grade tests/exercise_solutions/ex11_adam.py

    Adam:  g = dw + wd * w          AdamW:  w = w * (1 - lr * wd),  g = dw
    m = b1 m + (1 - b1) g,   v = b2 v + (1 - b2) g^2,   w = w - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
"""

import numpy as np


def adam_step(w, dw, m, v, t, lr, beta1, beta2, eps, weight_decay, decoupled):
    """Step t (from 1) of Adam (decoupled=False) or AdamW (decoupled=True) -> (w, m, v)."""
    if decoupled:
        w = w * (1 - lr * weight_decay)
        g = dw
    else:
        g = dw + weight_decay * w
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    m_hat = m / (1 - beta1 ** t)
    v_hat = v / (1 - beta2 ** t)
    w = w - lr * m_hat / (np.sqrt(v_hat) + eps)
    return w, m, v
