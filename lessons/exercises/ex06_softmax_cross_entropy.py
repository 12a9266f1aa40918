"""Exercise 6 — softmax cross-entropy: the loss and its gradient.

Check your work:   python -m resnet_np.grade lessons/exercises/ex06_softmax_cross_entropy.py

The math
--------
For logits z of shape (N, K) (N examples, K classes) and integer labels y
of shape (N,), softmax turns each row into probabilities

    p[n, k] = exp(z[n, k]) / sum_j exp(z[n, j])

and the loss is the MEAN over the batch of -log p[n, y[n]]:

    loss = -(1/N) * sum_n log p[n, y[n]]

Computed literally, exp(1000.0) overflows to inf. Subtracting each row's
maximum first changes nothing mathematically (it cancels in the ratio) and
keeps every exponent <= 0. Work with logarithms:

    shifted  = z - max_j z[n, j]
    log p    = shifted - log(sum_j exp(shifted))

The gradient is strikingly simple — the probabilities minus the one-hot
label, divided by N because the loss is a mean:

    dz[n, k] = (p[n, k] - [k == y[n]]) / N

Shapes
------
    logits, dlogits   (N, K)        y   (N,) integers in [0, K)        loss   a Python float

The grader compares the loss with ``resnet_np.layers.SoftmaxCrossEntropy``
and dlogits with finite differences (float64), also for logits in the
thousands, where an unshifted exp overflows.
"""

import numpy as np


def softmax_cross_entropy(logits, y):
    """logits (N, K), y (N,) -> loss (float), dlogits (N, K)."""
    N, K = logits.shape
    # TODO:
    #   1. log-probabilities, shifted by each row's max (see above);
    #   2. loss: minus the mean of the log-probability of the true class
    #      (log_p[np.arange(N), y] picks one entry per row);
    #   3. dlogits: probabilities, minus 1 at the true class, divided by N.
    raise NotImplementedError("TODO: softmax_cross_entropy")
