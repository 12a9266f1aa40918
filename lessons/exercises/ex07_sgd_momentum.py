# %% [markdown]
# # Exercise 7 — one step of SGD with momentum and weight decay, as `torch.optim.SGD` does it
#
# **Your task:** turn the description below into the three lines of one
# optimiser step, `sgd_momentum_step`.
#
# * Check your work: run the last cell, or
#   `python -m resnet_np.grade lessons/exercises/ex07_sgd_momentum.py`.
# * Stuck? Hints one at a time: `--hint` (then `--hint 2`, ...) on the
#   command line, `grade.hint("ex07", 1)` in a notebook.
#
# ## The rule, in words
#
# For a weight $w$ with gradient $\partial L / \partial w$, learning rate
# $\eta$, momentum $\mu$ and weight decay $\lambda$, PyTorch's SGD
# (dampening 0, no Nesterov) does, at every step:
#
# 1. **Weight decay** is the gradient of an L2 penalty
#    $\frac{\lambda}{2} \lVert w \rVert^2$ added to the loss. Work out what
#    it adds to the gradient: it goes into the momentum like any gradient.
# 2. **The momentum buffer** $v$ is a running sum of past gradients: each
#    step scales the old buffer by $\mu$ and adds the new gradient. No
#    learning rate in it, and no $(1 - \mu)$ factor.
# 3. **The step** moves $w$ against the new buffer, scaled by this step's
#    learning rate.
#
# The buffer starts at zero, so the first step is plain SGD on the
# gradient. Keeping $\eta$ out of $v$ matters when a schedule changes
# $\eta$: the past gradients are then scaled by the NEW learning rate. The
# ResNet paper trains CIFAR-10 with $\eta = 0.1$, $\mu = 0.9$,
# $\lambda = 10^{-4}$.
#
# ## Shapes
#
# `w`, `dw`, `v`: any shape, all the same (the grader uses (3, 4)); `lr`,
# `momentum`, `weight_decay`: floats. Return the new `w` and the new `v`
# (new arrays, or the inputs updated in place).
#
# The grader runs several steps, with a learning rate that changes between
# steps, and compares `w` and `v` with `resnet_np.optim.SGD` (which matches
# `torch.optim.SGD` step for step).

# %%
import numpy as np  # noqa: F401  (you may need it)


# %%
def sgd_momentum_step(w, dw, v, lr, momentum, weight_decay):
    """One step: w, dw, v arrays of one shape; floats lr, momentum, weight_decay -> (w, v)."""
    # TODO: three lines, from the rule above.
    raise NotImplementedError("TODO: sgd_momentum_step")


# %% [markdown]
# ## Check your work

# %%
if __name__ == "__main__":  # in Jupyter, or `python ex07_sgd_momentum.py`; not when the grader imports this file
    from resnet_np import grade

    grade.check_functions("ex07", globals())
