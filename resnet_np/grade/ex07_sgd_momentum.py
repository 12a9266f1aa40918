"""Exercise 7, SGD with momentum: the checks, the hints and the planted mistakes."""

from ..backend import host as np
from ..gradcheck import rel_error
from ..module import Parameter
from ..optim import SGD
from .core import TOL, Check, compare, randn, run_check

TITLE = "SGD with momentum and weight decay (torch.optim.SGD's rule)"

# What the student derives: the library's implementation of it is not to be used (grade/honest.py).
DERIVES = ("SGD", "sgd*")
# Which hint a failing check's group starts at (check-name prefix, hint number): --hint starts there.
HINT_START = [("plain", 3), ("1 step", 1), ("5 steps", 2)]
# The lessons the student handout gives with it.
LESSONS = ("08_training_mnist.py",)

# One at a time, from a nudge to the last step (``python -m resnet_np.grade FILE --hint N``).
HINTS = [
    "Weight decay is the gradient of the penalty (weight_decay / 2) * |w|^2 added to the loss. Differentiate it: "
    "what does it add to dw? It is part of the gradient, so everything that follows sees it.",
    "The buffer v is a running sum of GRADIENTS: each step the old buffer is scaled by the momentum and the new "
    "gradient is added, with no learning rate and no (1 - momentum) factor.",
    "The step: the weight moves against the NEW buffer, by the learning rate of this step. Update v before w.",
]

# Typical mistakes planted in the reference solution (tests/exercise_solutions/ex07_sgd_momentum.py):
# (its text, the text that replaces it, words of the hint the grader must then give). tests/test_grade.py
# plants each one and checks that the grader names it.
PLANTED = [
    ("g = dw + weight_decay * w\n    v = momentum * v + g\n    w = w - lr * v",
     "v = momentum * v + dw\n    w = w - lr * (v + weight_decay * w)",
     "weight decay goes into the gradient BEFORE"),
    ("v = momentum * v + g", "v = momentum * v + (1 - momentum) * g", "no dampening"),
    ("v = momentum * v + g\n    w = w - lr * v", "v = momentum * v + lr * g\n    w = w - v",
     "the buffer holds gradients, not steps"),
    ("g = dw + weight_decay * w", "g = dw - weight_decay * w", "pulls the weights toward 0"),
    ("w = w - lr * v", "w = w - lr * g", "the step uses the momentum buffer"),
]


def _sgd_variant(mistake):
    """A step rule: PyTorch's (mistake None) or one of the typical wrong ones."""
    def step(w, dw, v, lr, mu, wd):
        g = dw + wd * w
        if mistake == "decay after momentum":
            v = mu * v + dw
            return w - lr * (v + wd * w), v
        if mistake == "decay sign":
            g = dw - wd * w
        if mistake == "dampening":
            v = mu * v + (1 - mu) * g
        elif mistake == "lr in buffer":
            v = mu * v + lr * g
            return w - v, v
        elif mistake == "step before buffer":
            return w - lr * v, mu * v + g
        else:
            v = mu * v + g
        if mistake == "no momentum":
            return w - lr * g, v
        if mistake == "nesterov":
            return w - lr * (g + mu * v), v
        return w - lr * v, v
    return step


def checks(mod):
    """Yield the outcome of every check of the student's module ``mod``."""
    rng = np.random.default_rng(7)
    shape = (3, 4)
    hints = {
        "decay after momentum": "weight decay goes into the gradient BEFORE the momentum: g = dw + weight_decay * w, "
                                "then v = momentum * v + g",
        "decay sign": "weight decay pulls the weights toward 0: g = dw + weight_decay * w",
        "dampening": "no dampening in PyTorch's default SGD: v = momentum * v + g, not (1 - momentum) * g",
        "lr in buffer": "the buffer holds gradients, not steps: v = momentum * v + g, then w = w - lr * v "
                        "(the two differ when lr changes)",
        "step before buffer": "update the buffer first, then step with the NEW v",
        "no momentum": "the step uses the momentum buffer: w = w - lr * v",
        "nesterov": "that is Nesterov momentum; PyTorch's default steps by w = w - lr * v",
    }
    cases = [
        ("plain SGD: momentum 0, no weight decay, 1 step", 0.0, 0.0, [0.1]),
        ("1 step from v = 0, momentum 0.9, weight decay 0.01", 0.9, 0.01, [0.1]),
        ("5 steps, momentum 0.9, lr changing", 0.9, 0.0, [0.1, 0.1, 0.05, 0.05, 0.01]),
        ("5 steps, momentum 0.9, weight decay 0.1, lr changing", 0.9, 0.1, [0.1, 0.05, 0.05, 0.02, 0.01]),
    ]
    for label, momentum, weight_decay, lrs in cases:
        w0 = randn(rng, *shape)
        grads = [randn(rng, *shape) for _ in lrs]

        # The reference: the library's SGD, which matches torch.optim.SGD step for step.
        p = Parameter(w0.copy())
        opt = SGD([p], lr=lrs[0], momentum=momentum, weight_decay=weight_decay)
        for g, lr in zip(grads, lrs):
            opt.param_groups[0]["lr"] = lr
            p.grad = g.copy()
            opt.step()

        def run(step, w0=w0, grads=grads, lrs=lrs, momentum=momentum, weight_decay=weight_decay):
            w, v = w0.copy(), np.zeros(shape)
            for g, lr in zip(grads, lrs):
                w, v = step(w.copy(), g.copy(), v.copy(), lr, momentum, weight_decay)
            return w, v

        if momentum:  # compare w and the buffer v together
            want = np.stack([p.data, opt.state[p]["momentum_buffer"]])
            mistakes = [(np.stack(run(_sgd_variant(m))), hint) for m, hint in hints.items()]

            def thunk(run=run, want=want, mistakes=mistakes):
                w, v = run(mod.sgd_momentum_step)
                if np.shape(w) != shape or np.shape(v) != shape:
                    return Check(False, note=f"w shape {np.shape(w)}, v shape {np.shape(v)}, expected {shape}",
                                 hint="return (w, v), both of w's shape")
                result = compare(np.stack([w, v]), want, mistakes, "do one step by hand in the order of the rule: the "
                                 "gradient with its decay, then the buffer, then the weight")
                if not result.passed and rel_error(w, want[0]) <= TOL:
                    result.note = "w is right, the returned v is not"
                return result
        else:
            mistakes = [(run(_sgd_variant(m))[0], hint) for m, hint in hints.items()]

            def thunk(run=run, want=p.data.copy(), mistakes=mistakes):
                return compare(run(mod.sgd_momentum_step)[0], want, mistakes, "with momentum 0: w = w - lr * dw")
        yield run_check(label, thunk, "return the pair (w, v)")
