"""Exercise 11, Adam with bias correction and weight decay, and AdamW: the checks, the hints and the mistakes."""

from ..backend import host as np
from ..gradcheck import rel_error
from ..module import Parameter
from ..optim import Adam, AdamW
from .core import TOL, Check, compare, randn, run_check

TITLE = "Adam with bias correction and weight decay, and AdamW (torch.optim.Adam / AdamW's rules)"

# What the student derives: the library's implementation of it is not to be used (grade/honest.py).
DERIVES = ("Adam", "AdamW", "adam*", "Optimizer")
# Which hint a failing check's group starts at (check-name prefix, hint number): --hint starts there.
HINT_START = [("step 1", 2), ("5 steps", 1), ("Adam,", 4), ("AdamW,", 4)]
# The lessons the student handout gives with it.
LESSONS = ("08_training_mnist.py",)

# One at a time, from a nudge to the last step (``python -m resnet_np.grade FILE --hint N``).
HINTS = [
    "The two averages: new = beta * old + (1 - beta) * value, with the gradient as the value of m and its "
    "elementwise square as the value of v. Both start at 0, so after step 1, m = (1 - beta1) * g.",
    "Bias correction: if every gradient were the same g, m after t steps would be (1 - beta1) * (1 + beta1 + ... "
    "+ beta1^(t-1)) * g. Sum the geometric series: that factor is what m is too small by; the same for v with "
    "beta2. t counts from 1.",
    "The step: w moves against m_hat / (sqrt(v_hat) + eps), times lr; eps goes OUTSIDE the square root. On step "
    "1 this is about lr * sign(g) whatever the gradient's size.",
    "Weight decay: Adam (decoupled=False) adds weight_decay * w to the gradient before the averages; AdamW "
    "(decoupled=True) first multiplies w by (1 - lr * weight_decay), then runs the plain Adam step on dw.",
]

# Typical mistakes planted in the reference solution (tests/exercise_solutions/ex11_adam.py):
# (its text, the text that replaces it, words of the hint the grader must then give). tests/test_grade.py
# plants each one and checks that the grader names it.
PLANTED = [
    ("m_hat = m / (1 - beta1 ** t)\n    v_hat = v / (1 - beta2 ** t)", "m_hat = m\n    v_hat = v",
     "bias correction is missing"),
    ("w = w - lr * m_hat / (np.sqrt(v_hat) + eps)", "w = w - lr * m_hat / np.sqrt(v_hat + eps)",
     "eps goes outside the square root"),
    ("    if decoupled:\n        w = w * (1 - lr * weight_decay)\n        g = dw\n    else:\n        g = dw + "
     "weight_decay * w", "    g = dw + weight_decay * w", "AdamW decouples the weight decay"),
    ("m = beta1 * m + (1 - beta1) * g\n    v = beta2 * v + (1 - beta2) * g * g",
     "m = beta1 * m + g\n    v = beta2 * v + g * g", "(1 - beta1)"),
    ("m_hat = m / (1 - beta1 ** t)\n    v_hat = v / (1 - beta2 ** t)",
     "m_hat = m / (1 - beta1 ** (t + 1))\n    v_hat = v / (1 - beta2 ** (t + 1))", "t counts from 1"),
    ("w = w * (1 - lr * weight_decay)", "w = w * (1 - weight_decay)", "times the learning rate"),
]


def _adam_variant(mistake):
    """A step rule: PyTorch's (mistake None) or a typical wrong one."""
    def step(w, dw, m, v, t, lr, b1, b2, eps, wd, decoupled):
        if mistake == "L2 in AdamW":
            decoupled = False
        elif mistake == "decoupled in Adam":
            decoupled = True
        if decoupled and mistake == "decay without lr":
            w, g = w * (1 - wd), dw
        elif decoupled and mistake != "decay after step":
            w, g = w * (1 - lr * wd), dw
        elif decoupled:
            g = dw
        else:
            g = dw + wd * w
        if mistake == "no 1 - beta":
            m, v = b1 * m + g, b2 * v + g * g
        else:
            m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        if mistake == "no correction":
            m_hat, v_hat = m, v
        elif mistake == "t + 1":
            m_hat, v_hat = m / (1 - b1 ** (t + 1)), v / (1 - b2 ** (t + 1))
        elif mistake == "t - 1":
            m_hat, v_hat = m / (1 - b1 ** max(t - 1, 1)), v / (1 - b2 ** max(t - 1, 1))
        elif mistake == "m only":
            m_hat, v_hat = m / (1 - b1 ** t), v
        else:
            m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        if mistake == "eps inside":
            w = w - lr * m_hat / np.sqrt(v_hat + eps)
        else:
            w = w - lr * m_hat / (np.sqrt(v_hat) + eps)
        if decoupled and mistake == "decay after step":
            w = w * (1 - lr * wd)
        return w, m, v
    return step


HINT_OF = {
    "no correction": "the bias correction is missing: m and v start at 0, so divide m by (1 - beta1^t) and v by "
                     "(1 - beta2^t)",
    "t + 1": "t counts from 1 (the first step is t = 1): the correction of step t uses beta^t",
    "t - 1": "t counts from 1 (the first step is t = 1): the correction of step t uses beta^t",
    "m only": "correct v as well as m: v_hat = v / (1 - beta2^t)",
    "eps inside": "eps goes outside the square root: sqrt(v_hat) + eps, as PyTorch does",
    "no 1 - beta": "each average mixes in the new value with weight (1 - beta1) (and (1 - beta2) for v)",
    "L2 in AdamW": "AdamW decouples the weight decay: w = w * (1 - lr * weight_decay) BEFORE the step, and the "
                   "averages see the plain dw",
    "decoupled in Adam": "Adam's weight decay is an L2 penalty: weight_decay * w joins the gradient BEFORE the "
                         "averages (decoupled=False)",
    "decay without lr": "AdamW shrinks w by (1 - lr * weight_decay): the decay is times the learning rate",
    "decay after step": "AdamW shrinks the weight BEFORE the Adam step, from the old w",
}


def checks(mod):
    """Yield the outcome of every check of the student's module ``mod``."""
    rng = np.random.default_rng(11)
    shape = (3, 4)
    cases = [  # label, decoupled, weight decay, eps, steps, lr
        ("step 1, no weight decay: the bias correction", False, 0.0, 1e-8, 1, 0.01),
        ("5 steps, no weight decay, eps 1e-6", False, 0.0, 1e-6, 5, 0.01),
        ("Adam, 5 steps, weight decay 0.1 (an L2 penalty)", False, 0.1, 1e-8, 5, 0.01),
        ("AdamW, 5 steps, weight decay 0.1 (decoupled)", True, 0.1, 1e-8, 5, 0.01),
    ]
    betas = (0.9, 0.999)
    for label, decoupled, weight_decay, eps, steps, lr in cases:
        w0 = randn(rng, *shape)
        scales = np.exp(randn(rng, *shape))  # gradients of different sizes: L2 decay and AdamW's then differ
        grads = [randn(rng, *shape) * scales for _ in range(steps)]
        p = Parameter(w0.copy())
        opt = (AdamW if decoupled else Adam)([p], lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        for g in grads:
            p.grad = g.copy()
            opt.step()
        want = np.stack([p.data, opt.state[p]["exp_avg"], opt.state[p]["exp_avg_sq"]])

        def run(step, w0=w0, grads=grads, decoupled=decoupled, weight_decay=weight_decay, eps=eps, lr=lr):
            w, m, v = w0.copy(), np.zeros(shape), np.zeros(shape)
            for t, g in enumerate(grads, start=1):
                w, m, v = step(w.copy(), g.copy(), m.copy(), v.copy(), t, lr, betas[0], betas[1], eps,
                               weight_decay, decoupled)
            return w, m, v

        mistakes = [(np.stack(run(_adam_variant(m))), hint) for m, hint in HINT_OF.items()]

        def thunk(run=run, want=want, mistakes=mistakes):
            w, m, v = run(mod.adam_step)
            if any(np.shape(a) != shape for a in (w, m, v)):
                return Check(False, note=f"shapes {np.shape(w)}, {np.shape(m)}, {np.shape(v)}, expected {shape}",
                             hint="return (w, m, v), each of w's shape")
            result = compare(np.stack([w, m, v]), want, mistakes, "do step 1 by hand in the order of the rule: "
                             "the decay, the two averages, their correction, the step")
            if not result.passed and rel_error(w, want[0]) <= TOL:
                result.note = "w is right, the returned m or v is not"
            return result

        yield run_check(label, thunk, "return the three arrays (w, m, v)")
