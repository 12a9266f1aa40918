"""Exercise 2, the convolution's forward pass: the checks, the hints and the planted mistakes."""

from ..backend import host as np
from ..layers import conv2d_naive
from .core import check_shape, compare, randn, run_check

# The output size is exercise 1's result: here the grader may spell it out.
OFF_BY_ONE = "off by one in the output size: OH = (H + 2*pad - KH) // stride + 1 (the window at 0 counts too)"

TITLE = "convolution forward pass (im2col + one matrix product)"

# What the student derives: the library's implementation of it is not to be used (grade/honest.py).
DERIVES = ("Conv2d", "conv2d*")
# Which hint a failing check's group starts at (check-name prefix, hint number): --hint starts there.
HINT_START = []
# The lessons the student handout gives with it.
LESSONS = ("02_conv_im2col.py",)

# One at a time, from a nudge to the last step (``python -m resnet_np.grade FILE --hint N``).
HINTS = [
    "Write the definition's sum for ONE output value out[n, f, oh, ow]: which numbers of the weight and which "
    "numbers of the input meet, and in which order do they appear in w[f] and in a column of cols[n]?",
    "The sum over (c, i, j) is a dot product: the weight of filter f, flattened, with the window at (oh, ow), "
    "flattened in the same (c, i, j) order, which is a column of cols[n]. All filters at once: a matrix product.",
    "Flatten the weight to a matrix with one ROW per filter, w.reshape(F, -1), and multiply it by cols "
    "(np.matmul broadcasts over the N images); then add each filter's bias to its row, and reshape.",
]

# Typical mistakes planted in the reference solution (tests/exercise_solutions/ex02_conv_forward.py):
# (its text, the text that replaces it, words of the hint the grader must then give). tests/test_grade.py
# plants each one and checks that the grader names it.
PLANTED = [
    ("out = out + b.reshape(1, F, 1)", "out = out", "the bias is missing"),
    ("w_mat = w.reshape(F, -1)", "w_mat = w[:, :, ::-1, ::-1].reshape(F, -1)", "the kernel is flipped"),
    ("OH = (H + 2 * pad - KH) // stride + 1", "OH = (H + 2 * pad - KH) // stride",
     "OH = (H + 2*pad - KH) // stride + 1"),
    ("out = w_mat @ cols ", "out = (w_mat @ np.concatenate(list(cols), axis=1)).reshape(N, F, -1) ",
     "batch and channel axes mixed up"),
    ("w_mat = w.reshape(F, -1)", "w_mat = w.transpose(0, 2, 3, 1).reshape(F, -1)",
     "flatten the weight as w.reshape(F, -1)"),
]


def checks(mod):
    """Yield the outcome of every check of the student's module ``mod``."""
    rng = np.random.default_rng(2)
    error_hint = ("if a reshape failed, check OH = (H + 2*pad - KH) // stride + 1, OW likewise, and the shape of "
                  "your matrix product: one row per filter, one column per output position, for each image")
    cases = [
        ("3x3 kernel, stride 1, pad 1", (2, 3, 5, 4), (4, 3, 3, 3), 1, 1),
        ("non-square 3x2 kernel, stride 2, no padding", (2, 2, 7, 6), (3, 2, 3, 2), 2, 0),
        ("2x3 kernel, stride 2, pad 1, non-square input", (2, 2, 6, 7), (2, 2, 2, 3), 2, 1),
    ]
    for k, (label, x_shape, w_shape, stride, pad) in enumerate(cases):
        x, w, b = randn(rng, *x_shape), randn(rng, *w_shape), randn(rng, w_shape[0])
        want = conv2d_naive(x, w, b, stride, pad)
        N, F, OH, OW = want.shape
        bias = b.reshape(1, F, 1, 1)
        mistakes = [
            (want - bias, "the bias is missing: add b[f] to every position of output channel f"),
            (conv2d_naive(x, w[:, :, ::-1, ::-1], b, stride, pad),
             "the kernel is flipped: deep-learning 'convolution' is a cross-correlation, use w as it is"),
            ((want - bias).transpose(1, 0, 2, 3).reshape(N, F, OH, OW) + bias,
             "batch and channel axes mixed up: a reshape cannot swap axes; the product must have shape "
             "(N, F, OH*OW), or transpose"),
            (conv2d_naive(x, w.transpose(0, 2, 3, 1).reshape(w.shape), b, stride, pad),
             "flatten the weight as w.reshape(F, -1): its (c, i, j) order must match the rows of cols"),
            ((N, F, OH * OW), "reshape the result to (N, F, OH, OW)"),
            ((N, F, OH - 1, OW - 1), OFF_BY_ONE),
            ((N, F, OH + 1, OW + 1), OFF_BY_ONE),
        ]
        general = ("check one value by hand against the definition's sum, out[0, 0, 0, 0]: is it a row of your "
                   "weight matrix times a column of cols[0], plus b[0]?")
        if k == 0:
            yield run_check(f"output shape, {label}",
                            lambda: check_shape(mod.conv_forward(x.copy(), w.copy(), b.copy(), stride, pad),
                                                want.shape, [m for m in mistakes if isinstance(m[0], tuple)],
                                                general), error_hint)
        yield run_check(f"values against conv2d_naive, {label}",
                        lambda: compare(mod.conv_forward(x.copy(), w.copy(), b.copy(), stride, pad), want,
                                        mistakes, general), error_hint)
