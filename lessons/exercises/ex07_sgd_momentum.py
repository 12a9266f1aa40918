"""Exercise 7 — one step of SGD with momentum and weight decay, as torch.optim.SGD does it.

Check your work:   python -m resnet_np.grade lessons/exercises/ex07_sgd_momentum.py

The rule
--------
For a weight w with gradient dw, learning rate lr, momentum mu and weight
decay lambda, PyTorch's SGD (dampening 0, no Nesterov) does, at every step:

    g = dw + lambda * w          weight decay FIRST: it is the gradient of an
                                 L2 penalty (lambda/2)*|w|^2 added to the loss,
                                 so it goes into the momentum like any gradient
    v = mu * v + g               the momentum buffer: a running sum of past
                                 gradients; NO learning rate in it
    w = w - lr * v               the step

The buffer starts at zero, so the first step is plain SGD on g. (PyTorch
writes the first buffer as v = g; with v = 0 and no dampening, mu * 0 + g is
the same thing.) Keeping lr out of v matters when a schedule changes lr:
the past gradients are then scaled by the NEW lr.

The ResNet paper trains CIFAR-10 with lr = 0.1, mu = 0.9, lambda = 1e-4.

Shapes
------
    w, dw, v   any shape, all the same (the grader uses (3, 4));   lr, momentum, weight_decay   floats
    returns the new w and the new v (new arrays, or the inputs updated in place)

The grader runs several steps, with a learning rate that changes between
steps, and compares w and v with ``resnet_np.optim.SGD`` (which matches
``torch.optim.SGD`` step for step).
"""

import numpy as np  # noqa: F401  (you may need it)


def sgd_momentum_step(w, dw, v, lr, momentum, weight_decay):
    """One step: w, dw, v arrays of one shape; floats lr, momentum, weight_decay -> (w, v)."""
    # TODO: three lines, from the rule above.
    raise NotImplementedError("TODO: sgd_momentum_step")
