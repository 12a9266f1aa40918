# %% [markdown]
# # Exercise 4 — batch normalisation's backward pass (train mode)
#
# **Your task: derive** the gradients of batch normalisation in train mode
# with respect to its input and its two parameters, and write
# `batchnorm_backward`. Do it before lesson 4, which works the answer out.
#
# * Check your work: run the last cell, or
#   `python -m resnet_np.grade lessons/exercises/ex04_batchnorm_backward.py`.
# * Stuck? Hints one at a time: `--hint` (then `--hint 2`, ...) on the
#   command line, `grade.hint("ex04", 1)` in a notebook.
#
# ## The forward pass (given below)
#
# Each channel $c$ is normalised over its $M = N H W$ values in the batch
# (all sums and means below run over those values: axes (0, 2, 3)):
#
# $$
# \mu_c = \frac{1}{M} \sum x, \qquad
# \sigma_c^2 = \frac{1}{M} \sum (x - \mu_c)^2, \qquad
# \hat{x} = \frac{x - \mu_c}{\sqrt{\sigma_c^2 + \varepsilon}}, \qquad
# \text{out} = \gamma_c\, \hat{x} + \beta_c
# $$
#
# ## What you derive
#
# Given `dout` $= \partial L / \partial\, \text{out}$:
#
# 1. $\partial L / \partial \beta_c$ and $\partial L / \partial \gamma_c$:
#    each touches all $M$ outputs of its channel.
# 2. $\partial L / \partial x$. The hard part: $\mu_c$ and $\sigma_c^2$
#    depend on EVERY $x$ of the channel, so one $x$ moves the loss by three
#    paths: directly, through the mean, and through the variance. Work out
#    each one and add them up. A tidy way: first $\partial L / \partial
#    \hat{x}$, then the three paths from $\hat{x}$ back to $x$.
#
# Why does the grader use a random upstream gradient? With `dout` $= 1$ (the
# gradient of `sum(out)`), the gradient of $x$ is exactly zero whatever you
# forget: each channel's output sums to a constant.
#
# ## Shapes
#
# | array | shape |
# | --- | --- |
# | `x`, `x_hat`, `dout`, `dx` | $(N, C, H, W)$ |
# | `gamma`, `beta`, `mean`, `var`, `dgamma`, `dbeta` | $(C,)$ |
# | `cache` | `(x, x_hat, mean, var, gamma, eps)` |
#
# The grader checks `dx`, `dgamma` and `dbeta` against finite differences
# (float64, random `dout`) for square and non-square inputs, and compares
# with `resnet_np.layers.BatchNorm2d`.

# %%
import numpy as np


# %%
def batchnorm_forward(x, gamma, beta, eps=1e-5):
    """Given: train-mode forward pass. x (N, C, H, W) -> out (N, C, H, W) and the cache."""
    axes = (0, 2, 3)
    mean = x.mean(axis=axes)                                   # (C,)
    var = x.var(axis=axes)                                     # (C,), biased: divides by M
    x_hat = (x - mean.reshape(1, -1, 1, 1)) / np.sqrt(var.reshape(1, -1, 1, 1) + eps)
    out = gamma.reshape(1, -1, 1, 1) * x_hat + beta.reshape(1, -1, 1, 1)
    cache = (x, x_hat, mean, var, gamma, eps)
    return out, cache


# %%
def batchnorm_backward(dout, cache):
    """dout (N, C, H, W) and the cache of batchnorm_forward -> dx (N, C, H, W), dgamma (C,), dbeta (C,)."""
    x, x_hat, mean, var, gamma, eps = cache
    N, C, H, W = dout.shape
    M = N * H * W
    # TODO: dbeta, dgamma, then dx from your derivation. Reshape (C,) vectors
    # to (1, C, 1, 1) to broadcast; sum with axis=(0, 2, 3) (keepdims=True
    # keeps the (1, C, 1, 1) shape for broadcasting).
    raise NotImplementedError("TODO: batchnorm_backward")


# %% [markdown]
# ## Check your work

# %%
if __name__ == "__main__":  # in Jupyter, or `python ex04_batchnorm_backward.py`; not when the grader imports it
    from resnet_np import grade

    grade.check_functions("ex04", globals())
