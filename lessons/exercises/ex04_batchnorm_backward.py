"""Exercise 4 — batch normalisation's backward pass (train mode).

Check your work:   python -m resnet_np.grade lessons/exercises/ex04_batchnorm_backward.py

The forward pass (given below)
------------------------------
Each channel c is normalised over its M = N*H*W values in the batch:

    mean[c]  = mean of x[:, c, :, :]                    var[c] = mean of (x[:, c] - mean[c])**2
    x_hat    = (x - mean) / sqrt(var + eps)             out = gamma * x_hat + beta

(mean, var, gamma and beta have shape (C,) and broadcast as (1, C, 1, 1).)

The backward pass
-----------------
All sums below run over the M values of a channel: axes (0, 2, 3).

    dbeta  = sum(dout)                                  (C,)
    dgamma = sum(dout * x_hat)                          (C,)
    dx_hat = dout * gamma

Now the hard part. mean and var depend on EVERY x of the channel, so dx
gets, besides the direct path dx_hat / sqrt(var + eps), one term through the
mean and one through the variance. Working them out (try it on paper first)
gives, with inv_std = 1 / sqrt(var + eps):

    dx = (M * dx_hat  -  sum(dx_hat)  -  x_hat * sum(dx_hat * x_hat)) * inv_std / M
          direct         mean term       variance term

Why does the grader use a random upstream gradient? With dout = 1 (the
gradient of sum(out)), dx is exactly zero whatever you forget: each
channel's output sums to a constant.

Shapes
------
    x, x_hat, dout, dx   (N, C, H, W)
    gamma, beta, mean, var, dgamma, dbeta   (C,)
    cache = (x, x_hat, mean, var, gamma, eps)

The grader checks dx, dgamma and dbeta against finite differences (float64,
random dout) for square and non-square inputs, and compares with
``resnet_np.layers.BatchNorm2d``.
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
    # TODO: dbeta, dgamma, then dx from the formula above. Reshape (C,) vectors
    # to (1, C, 1, 1) to broadcast; sum with axis=(0, 2, 3) (keepdims=True
    # keeps the (1, C, 1, 1) shape for broadcasting).
    raise NotImplementedError("TODO: batchnorm_backward")
