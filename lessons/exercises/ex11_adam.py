# %% [markdown]
# # Exercise 11 — Adam with bias correction and weight decay, and AdamW
#
# **Your task:** turn the description below into one optimiser step,
# `adam_step`, as `torch.optim.Adam` (and, with `decoupled=True`,
# `torch.optim.AdamW`) do it.
#
# * Check your work: run the last cell, or
#   `python -m resnet_np.grade lessons/exercises/ex11_adam.py`.
# * Stuck? Hints one at a time: `--hint` (then `--hint 2`, ...) on the
#   command line, `grade.hint("ex11", 1)` in a notebook.
#
# ## The rule, in words
#
# For a weight $w$ with gradient $g = \partial L / \partial w$, learning
# rate $\eta$, decay rates $\beta_1, \beta_2$, a small $\epsilon$ and step
# number $t = 1, 2, \ldots$:
#
# 1. **Two moving averages.** $m$ is an exponential moving average of the
#    gradient and $v$ of its elementwise square: each step keeps a fraction
#    $\beta$ of the old average and mixes in the new value with weight
#    $1 - \beta$. Both start at zero.
# 2. **Bias correction.** Because they start at zero, after $t$ steps the
#    averages are too small. Work out by how much: if every gradient were
#    the same $g$, what would $m$ be after $t$ steps? Divide that factor out
#    (the corrected values are $\hat m$ and $\hat v$).
# 3. **The step** moves $w$ by $\eta$ times $\hat m$ divided by the square
#    root of $\hat v$, with $\epsilon$ added to the denominator (outside the
#    root, as PyTorch does), against the gradient.
#
# **Weight decay**, two ways:
#
# * **Adam** (`decoupled=False`): an L2 penalty
#   $\frac{\lambda}{2}\lVert w \rVert^2$ on the loss. Its gradient joins $g$
#   before the averages, so it is rescaled by $1/\sqrt{\hat v}$ like any
#   gradient: weights with large gradients are barely decayed.
# * **AdamW** (`decoupled=True`): the decay is taken out of the gradient and
#   applied to the weight directly, shrinking it by the factor
#   $1 - \eta\lambda$ before the Adam step (which then sees the plain $g$).
#
# ## Shapes
#
# `w`, `dw`, `m`, `v`: any shape, all the same (the grader uses (3, 4));
# `t`: the number of this step (1 for the first); the rest floats and a
# bool. Return the new `w`, `m` and `v`.
#
# The grader runs several steps and compares `w`, `m` and `v` with
# `resnet_np.optim.Adam` and `AdamW` (which match PyTorch's step for step).

# %%
import numpy as np  # noqa: F401  (you may need it)


# %%
def adam_step(w, dw, m, v, t, lr, beta1, beta2, eps, weight_decay, decoupled):
    """Step t (from 1) of Adam (decoupled=False) or AdamW (decoupled=True) -> (w, m, v)."""
    # TODO: the decay (one of two ways), the two averages, their bias correction, the step.
    raise NotImplementedError("TODO: adam_step")


# %% [markdown]
# ## Check your work

# %%
if __name__ == "__main__":  # in Jupyter, or `python ex11_adam.py`; not when the grader imports this file
    from resnet_np import grade

    grade.check_functions("ex11", globals())
