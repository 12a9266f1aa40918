"""Exercise 6 — softmax cross-entropy: the loss and its gradient (reference solution).

Check it:   python -m resnet_np.grade tests/exercise_solutions/ex06_softmax_cross_entropy.py

    log p = z - max(z) - log(sum(exp(z - max(z))))      loss = -mean(log p[n, y[n]])
    dz    = (p - onehot(y)) / N
"""

import numpy as np


def softmax_cross_entropy(logits, y):
    """logits (N, K), y (N,) -> loss (float), dlogits (N, K)."""
    N, K = logits.shape
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_p[np.arange(N), y].mean()
    dlogits = np.exp(log_p)
    dlogits[np.arange(N), y] -= 1.0
    dlogits /= N
    return float(loss), dlogits
