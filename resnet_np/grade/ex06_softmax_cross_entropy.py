"""Exercise 6, softmax cross-entropy: the checks, the hints and the planted mistakes."""

from ..backend import host as np
from ..gradcheck import numerical_gradient
from ..layers import SoftmaxCrossEntropy
from .core import compare, randn, run_check

TITLE = "softmax cross-entropy, loss and gradient"

# What the student derives: the library's implementation of it is not to be used (grade/honest.py).
DERIVES = ("SoftmaxCrossEntropy", "*softmax*", "*cross_entropy*")
# Which hint a failing check's group starts at (check-name prefix, hint number): --hint starts there.
HINT_START = [("loss", 1), ("dlogits", 3)]
# The lessons the student handout gives with it.
LESSONS = ("08_training_mnist.py",)

# One at a time, from a nudge to the last step (``python -m resnet_np.grade FILE --hint N``).
HINTS = [
    "Stability first: what happens to exp(z) / sum exp(z) when you subtract the same number from every z of a "
    "row? Choose the number that makes every exponent <= 0.",
    "Take the log of the softmax before you compute anything: log p[n, k] is the shifted logit minus one "
    "log-sum-exp of the row. No exp of a large number, no log of 0.",
    "For the gradient, write the loss of ONE example as -z[y] + log sum_j exp(z[j]) and differentiate by z[k], "
    "once for k = y and once for k != y. What does the derivative of the log-sum-exp look like?",
    "Then the batch: the loss is a mean over N examples, so each example's gradient is scaled accordingly.",
]

# Typical mistakes planted in the reference solution (tests/exercise_solutions/ex06_softmax_cross_entropy.py):
# (its text, the text that replaces it, words of the hint the grader must then give). tests/test_grade.py
# plants each one and checks that the grader names it.
PLANTED = [
    ("dlogits /= N", "dlogits /= 1", "the 1/N is missing"),
    ("dlogits[np.arange(N), y] -= 1.0", "dlogits[np.arange(N), y] -= 0.0", "subtract 1 at the true class"),
    ("shifted = logits - logits.max(axis=1, keepdims=True)", "shifted = logits", "exp overflowed"),
    ("loss = -log_p[np.arange(N), y].mean()", "loss = -log_p[np.arange(N), y].sum()",
     "the loss is the MEAN over the batch"),
]


DERIVE = ("differentiate ONE example's loss by z[k], once for k = y and once for k != y; check one row by hand "
          "(N = 1, K = 2)")


def checks(mod):
    """Yield the outcome of every check of the student's module ``mod``."""
    rng = np.random.default_rng(6)
    N, K = 5, 4
    y = rng.integers(0, K, N)
    overflow = "exp overflowed: subtract each row's maximum from the logits before exp"
    for label, logits in (("", randn(rng, N, K, scale=2.0)),
                          (", logits in the thousands", randn(rng, N, K, scale=3.0) + 2000.0)):
        criterion = SoftmaxCrossEntropy()
        want_loss = criterion(logits, y)
        want_dlogits = criterion.backward()
        probs = want_dlogits * N
        probs[np.arange(N), y] += 1.0
        onehot = np.eye(K)[y]
        col_softmax = np.exp(logits - logits.max(axis=0)) / np.exp(logits - logits.max(axis=0)).sum(axis=0)
        axis_hint = "softmax runs over the classes (axis=1): each row separately"
        loss_mistakes = [
            (want_loss * N, "the loss is the MEAN over the batch: divide the sum by N"),
            (-want_loss, "the sign: loss = -mean(log p[n, y[n]]), a positive number"),
            (-np.log(probs).mean(), "pick only the true class's log-probability in each row: log_p[np.arange(N), y]"),
            (-np.log(col_softmax[np.arange(N), y]).mean(), axis_hint),
        ]
        dlogits_mistakes = [
            (want_dlogits * N, "the 1/N is missing: the loss is a mean over the batch, so is its gradient"),
            (probs / N, "subtract 1 at the true class: dz = (p - onehot(y)) / N"),
            (-want_dlogits, "the sign: dz = (p - onehot(y)) / N, not (onehot(y) - p) / N"),
            ((col_softmax - onehot) / N, axis_hint),
            (-onehot / N, overflow),  # exp(z) = inf makes every probability 0
        ]
        if not label:
            yield run_check("loss against SoftmaxCrossEntropy (N=5, K=4)",
                            lambda: compare(mod.softmax_cross_entropy(logits.copy(), y.copy())[0], want_loss,
                                            loss_mistakes, "loss = -mean over n of log p[n, y[n]]", overflow))

            def dlogits_fd(logits=logits, dlogits_mistakes=dlogits_mistakes):
                got = mod.softmax_cross_entropy(logits.copy(), y.copy())[1]
                want = numerical_gradient(lambda: SoftmaxCrossEntropy()(logits, y), logits)
                return compare(got, want, dlogits_mistakes, DERIVE, overflow)

            yield run_check("dlogits: finite differences (N=5, K=4)", dlogits_fd)
        else:
            yield run_check("loss, logits in the thousands",
                            lambda: compare(mod.softmax_cross_entropy(logits.copy(), y.copy())[0], want_loss,
                                            loss_mistakes, "work with log-probabilities of the shifted logits",
                                            overflow))
            yield run_check("dlogits, logits in the thousands, against SoftmaxCrossEntropy",
                            lambda: compare(mod.softmax_cross_entropy(logits.copy(), y.copy())[1], want_dlogits,
                                            dlogits_mistakes, DERIVE, overflow))
