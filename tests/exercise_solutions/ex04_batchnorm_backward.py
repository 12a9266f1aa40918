"""Exercise 4 — batch normalisation's backward pass, train mode (reference solution).

Check it:   python -m resnet_np.grade tests/exercise_solutions/ex04_batchnorm_backward.py

Sums over axes (0, 2, 3), M = N*H*W, inv_std = 1 / sqrt(var + eps):

    dbeta  = sum(dout)        dgamma = sum(dout * x_hat)        dx_hat = dout * gamma
    dx     = (M * dx_hat - sum(dx_hat) - x_hat * sum(dx_hat * x_hat)) * inv_std / M
"""

import numpy as np


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    """Given: train-mode forward pass. x (N, C, H, W) -> out (N, C, H, W) and the cache."""
    axes = (0, 2, 3)
    mean = x.mean(axis=axes)                                   # (C,)
    var = x.var(axis=axes)                                     # (C,), biased: divides by M
    x_hat = (x - mean.reshape(1, -1, 1, 1)) / np.sqrt(var.reshape(1, -1, 1, 1) + eps)
    out = gamma.reshape(1, -1, 1, 1) * x_hat + beta.reshape(1, -1, 1, 1)
    cache = (x, x_hat, mean, var, gamma, eps)
    return out, cache


def batchnorm_backward(dout, cache):
    """dout (N, C, H, W) and the cache of batchnorm_forward -> dx (N, C, H, W), dgamma (C,), dbeta (C,)."""
    x, x_hat, mean, var, gamma, eps = cache
    N, C, H, W = dout.shape
    M = N * H * W
    axes = (0, 2, 3)
    dbeta = dout.sum(axis=axes)
    dgamma = (dout * x_hat).sum(axis=axes)
    dx_hat = dout * gamma.reshape(1, C, 1, 1)
    inv_std = 1.0 / np.sqrt(var.reshape(1, C, 1, 1) + eps)
    mean_term = dx_hat.sum(axis=axes, keepdims=True)
    var_term = x_hat * (dx_hat * x_hat).sum(axis=axes, keepdims=True)
    dx = (M * dx_hat - mean_term - var_term) * inv_std / M
    return dx, dgamma, dbeta
