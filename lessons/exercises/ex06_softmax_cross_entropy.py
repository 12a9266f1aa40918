# %% [markdown]
# # Exercise 6 — softmax cross-entropy: the loss and its gradient
#
# **Your task:** compute the loss without overflow, **derive** its gradient
# with respect to the logits, and write `softmax_cross_entropy`.
#
# * Check your work: run the last cell, or
#   `python -m resnet_np.grade lessons/exercises/ex06_softmax_cross_entropy.py`.
# * Stuck? Hints one at a time: `--hint` (then `--hint 2`, ...) on the
#   command line, `grade.hint("ex06", 1)` in a notebook.
#
# ## The definitions
#
# For logits $z$ of shape $(N, K)$ ($N$ examples, $K$ classes) and integer
# labels $y$ of shape $(N,)$, softmax turns each row into probabilities,
# and the loss is the MEAN over the batch of the negative log-probability
# of the true class:
#
# $$
# p_{n,k} = \frac{e^{z_{n,k}}}{\sum_j e^{z_{n,j}}}, \qquad
# L = -\frac{1}{N} \sum_n \log p_{n, y_n}
# $$
#
# ## What you work out
#
# 1. Computed literally, `exp(1000.0)` overflows to `inf`. What can you
#    change in each row of $z$ without changing $p$, so that no exponent is
#    positive? And how do you get $\log p$ without ever taking the log of a
#    number that underflowed to 0?
# 2. $\partial L / \partial z_{n,k}$: differentiate the loss of one example,
#    once for $k = y_n$ and once for $k \ne y_n$. The result is strikingly
#    simple.
#
# ## Shapes
#
# | array | shape |
# | --- | --- |
# | `logits`, `dlogits` | $(N, K)$ |
# | `y` | $(N,)$, integers in $[0, K)$ |
# | `loss` | a Python float |
#
# The grader compares the loss with `resnet_np.layers.SoftmaxCrossEntropy`
# and `dlogits` with finite differences (float64), also for logits in the
# thousands, where an unshifted `exp` overflows.

# %%
import numpy as np


# %%
def softmax_cross_entropy(logits, y):
    """logits (N, K), y (N,) -> loss (float), dlogits (N, K)."""
    N, K = logits.shape
    # TODO:
    #   1. log-probabilities, computed without overflow;
    #   2. loss: minus the mean of the log-probability of the true class
    #      (log_p[np.arange(N), y] picks one entry per row);
    #   3. dlogits from your derivation.
    raise NotImplementedError("TODO: softmax_cross_entropy")


# %% [markdown]
# ## Check your work

# %%
if __name__ == "__main__":  # in Jupyter, or `python ex06_softmax_cross_entropy.py`; not when the grader imports it
    from resnet_np import grade

    grade.check_functions("ex06", globals())
