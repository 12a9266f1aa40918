"""Exercise 4, batch normalisation's backward pass: the checks, the hints and the planted mistakes."""

from ..backend import host as np
from ..gradcheck import numerical_gradient
from ..layers import BatchNorm2d
from .core import check_shapes, compare, randn, run_check

TITLE = "batch normalisation backward pass (train mode)"

# What the student derives: the library's implementation of it is not to be used (grade/honest.py).
DERIVES = ("BatchNorm2d", "batchnorm*", "batch_norm*")
# Which hint a failing check's group starts at (check-name prefix, hint number): --hint starts there.
HINT_START = [("dbeta", 1), ("dgamma", 1), ("dx", 2)]
# The lessons the student handout gives with it.
LESSONS = ("04_batchnorm.py",)

# One at a time, from a nudge to the last step (``python -m resnet_np.grade FILE --hint N``).
HINTS = [
    "dbeta and dgamma first: out = gamma * x_hat + beta, value by value. Each beta[c] and gamma[c] touches all "
    "M = N*H*W outputs of channel c.",
    "For dx, go through x_hat: call dx_hat the gradient of L by x_hat (it follows from out = gamma * x_hat + "
    "beta). x_hat = (x - mean) * inv_std, where mean AND var depend on every x of the channel.",
    "Write the three paths by which one x value moves L: directly through x - mean; through the mean (it moves "
    "every x_hat of the channel); through the variance (it moves inv_std, hence every x_hat). d mean / d x = 1/M; "
    "d var / d x = 2 (x - mean) / M.",
    "Collect the terms: the mean path gives a term in sum(dx_hat) over the channel, the variance path a term in "
    "x_hat * sum(dx_hat * x_hat). Put everything over M and factor out inv_std.",
    "Check each term with the grader: a missing mean or variance term is named. A random dout matters: with "
    "dout = 1 both terms cancel the direct one exactly.",
]

# Typical mistakes planted in the reference solution (tests/exercise_solutions/ex04_batchnorm_backward.py):
# (its text, the text that replaces it, words of the hint the grader must then give). tests/test_grade.py
# plants each one and checks that the grader names it.
PLANTED = [
    ("dx = (M * dx_hat - mean_term - var_term)", "dx = (M * dx_hat - var_term)", "missing the mean term"),
    ("dx = (M * dx_hat - mean_term - var_term)", "dx = (M * dx_hat - mean_term)", "missing the variance term"),
    ("dgamma = (dout * x_hat).sum(axis=axes)", "dgamma = dout.sum(axis=axes)", "you left out x_hat"),
    ("M = N * H * W", "M = N", "not N"),
    ("dx_hat = dout * gamma.reshape(1, C, 1, 1)", "dx_hat = dout", "through gamma"),
    ("dx = (M * dx_hat - mean_term - var_term)", "dx = (M * dx_hat)",
     "missing both the mean and the variance terms"),
]


BETA_HINT = "beta[c] is added to every output of channel c: which values of dout does it touch?"
GAMMA_HINT = "gamma[c] multiplies x_hat in every output of channel c"


def checks(mod):
    """Yield the outcome of every check of the student's module ``mod``."""
    rng = np.random.default_rng(4)
    error_hint = "reshape (C,) vectors to (1, C, 1, 1) to broadcast; sum with axis=(0, 2, 3)"
    cases = [("N=3, C=2, H=3, W=4", (3, 2, 3, 4)), ("N=4, C=3, H=W=2", (4, 3, 2, 2))]
    for k, (label, shape) in enumerate(cases):
        N, C, H, W = shape
        x = randn(rng, *shape, scale=2.0) + 0.5
        gamma, beta = 1.0 + randn(rng, C, scale=0.5), randn(rng, C, scale=0.5)
        eps = 1e-5
        bn = BatchNorm2d(C, eps=eps).astype("float64")
        bn.weight.data, bn.bias.data = gamma, beta
        out = bn(x)
        dout = randn(rng, *shape)  # random: with dout = 1, dx is zero whatever one forgets

        def loss():
            return float((dout * bn.forward(x)).sum())

        dx_fd, dgamma_fd, dbeta_fd = (numerical_gradient(loss, a) for a in (x, gamma, beta))

        # dx as the formula gives it, and with each of its typical mistakes.
        M = N * H * W
        axes = (0, 2, 3)
        mean, var = x.mean(axis=axes).reshape(1, C, 1, 1), x.var(axis=axes).reshape(1, C, 1, 1)
        x_hat = (x - mean) / np.sqrt(var + eps)

        def dx_formula(mean_term=True, var_term=True, with_gamma=True, m=M, sum_axes=axes, eps=eps):
            dx_hat = dout * gamma.reshape(1, C, 1, 1) if with_gamma else dout
            dx = m * dx_hat
            if mean_term:
                dx = dx - dx_hat.sum(axis=sum_axes, keepdims=True)
            if var_term:
                dx = dx - x_hat * (dx_hat * x_hat).sum(axis=sum_axes, keepdims=True)
            return dx / (m * np.sqrt(var + eps))

        dx_mistakes = [
            (dx_formula(mean_term=False), "missing the mean term: subtract sum(dx_hat) over (0, 2, 3): every x "
                                          "moves the mean"),
            (dx_formula(var_term=False), "missing the variance term: subtract x_hat * sum(dx_hat * x_hat): every x "
                                         "moves the variance"),
            (dx_formula(mean_term=False, var_term=False),
             "missing both the mean and the variance terms: dx = dx_hat * inv_std is the eval-mode gradient; "
             "in train mode mean and var depend on x"),
            (dx_formula(with_gamma=False), "dx_hat = dout * gamma: the gradient reaches x_hat through gamma"),
            (dx_formula(m=N), "M is the number of values per channel: N*H*W, not N"),
            (dx_formula(m=N, sum_axes=(0,)), "the sums run over axes (0, 2, 3): all N*H*W values of a channel"),
            (dx_formula(eps=0.0), "inv_std = 1 / sqrt(var + eps): keep the eps of the forward pass"),
            (-dx_fd, "the sign is flipped: check the direction of each term, the direct one is + dx_hat * inv_std"),
        ]
        sum_hint = "a SUM over axes (0, 2, 3), not a mean"
        vector_hint = "return a vector of shape (C,): sum over axis=(0, 2, 3) without keepdims"
        axes_hint = "sum over all of N, H and W: axis=(0, 2, 3)"
        dgamma_mistakes = [
            (dout.sum(axis=axes), "dgamma = sum(dout * x_hat): you left out x_hat"),
            ((dout * x).sum(axis=axes), "dgamma = sum(dout * x_hat): use x_hat (the normalised input), not x"),
            (dgamma_fd / M, sum_hint), ((1, C, 1, 1), vector_hint), ((C, H, W), axes_hint), ((N, C), axes_hint),
        ]
        dbeta_mistakes = [(dbeta_fd / M, sum_hint), ((1, C, 1, 1), vector_hint), ((C, H, W), axes_hint),
                          ((N, C), axes_hint)]

        def student(x=x, gamma=gamma, beta=beta, eps=eps, dout=dout):
            _, cache = mod.batchnorm_forward(x.copy(), gamma.copy(), beta.copy(), eps)
            return mod.batchnorm_backward(dout.copy(), cache)

        if k == 0:
            yield run_check("batchnorm_forward (given code) still matches BatchNorm2d",
                            lambda: compare(mod.batchnorm_forward(x.copy(), gamma.copy(), beta.copy(), eps)[0], out,
                                            hint="batchnorm_forward is given: restore it from the original file"))

            def shapes(student=student, dgamma_mistakes=dgamma_mistakes, dbeta_mistakes=dbeta_mistakes, x=x, C=C):
                dx, dgamma, dbeta = student()
                return check_shapes([(name, got, want, mistakes, f"{name} should have shape {want}")
                                     for name, got, want, mistakes in (("dx", dx, x.shape, ()),
                                                                       ("dgamma", dgamma, (C,), dgamma_mistakes),
                                                                       ("dbeta", dbeta, (C,), dbeta_mistakes))])

            yield run_check("shapes of dx, dgamma, dbeta", shapes, error_hint)
            yield run_check(f"dbeta: finite differences, {label}",
                            lambda: compare(student()[2], dbeta_fd, dbeta_mistakes, BETA_HINT), error_hint)
            yield run_check(f"dgamma: finite differences, {label}",
                            lambda: compare(student()[1], dgamma_fd, dgamma_mistakes, GAMMA_HINT),
                            error_hint)
        yield run_check(f"dx: finite differences, random dout, {label}",
                        lambda: compare(student()[0], dx_fd, dx_mistakes,
                                        "dx has three parts (direct, through the mean, through the variance): "
                                        "check them one by one with --hint"),
                        error_hint)
