"""Exercise 1, im2col: the checks, the hints and the planted mistakes."""

from ..backend import host as np
from ..layers import conv_output_size, im2col
from .core import Check, check_shape, compare, randn, run_check

OFF_BY_ONE = ("off by one in the output size: the window at position 0 counts too; count by hand: size 5, "
              "kernel 3, stride 1, no padding has 3 positions (0, 1, 2)")

TITLE = "im2col"

# What the student derives: the library's implementation of it is not to be used (grade/honest.py).
DERIVES = ("im2col*", "conv_output_size", "Conv2d", "conv2d*")
# Which hint a failing check's group starts at (check-name prefix, hint number): --hint starts there.
HINT_START = [("output_size", 1), ("im2col", 3)]
# The lessons the student handout gives with it.
LESSONS = ("02_conv_im2col.py",)

# One at a time, from a nudge to the last step (``python -m resnet_np.grade FILE --hint N``).
HINTS = [
    "Draw one axis: the padded input has size + 2*pad cells. A window of length `kernel` may start at 0, stride, "
    "2*stride, ... as long as it ends inside. How far can its START go?",
    "The last start is at most (size + 2*pad - kernel). Count the starts 0, stride, 2*stride, ... up to there: "
    "integer division counts the steps, and the start at 0 is one more.",
    "For im2col: pad first (np.pad with ((0, 0), (0, 0), (pad, pad), (pad, pad))), then loop over the output "
    "positions (oh, ow); the window of (oh, ow) starts at row oh*stride and column ow*stride of the padded image.",
    "Cut the window as x_pad[:, :, top:top + KH, left:left + KW] (shape (N, C, KH, KW)); window.reshape(N, -1) "
    "puts its values in the required (c, i, j) order; store that in column oh*OW + ow.",
]

# Typical mistakes planted in the reference solution (tests/exercise_solutions/ex01_im2col.py):
# (its text, the text that replaces it, words of the hint the grader must then give). tests/test_grade.py
# plants each one and checks that the grader names it.
PLANTED = [
    ("return (size + 2 * pad - kernel) // stride + 1", "return (size + 2 * pad - kernel) // stride",
     "off by one in the output size"),
    ("return (size + 2 * pad - kernel) // stride + 1", "return (size + pad - kernel) // stride + 1",
     "the padding is on BOTH sides"),
    ("top, left = oh * stride, ow * stride", "top, left = oh, ow", "starts at (oh*stride, ow*stride)"),
    ("window.reshape(N, -1)", "window.transpose(0, 2, 3, 1).reshape(N, -1)", "rows in the wrong order"),
    ("cols[:, :, oh * OW + ow]", "cols[:, :, ow * OH + oh]", "columns in the wrong order"),
]


def checks(mod):
    """Yield the outcome of every check of the student's module ``mod``."""
    rng = np.random.default_rng(1)
    sizes = [(5, 3, 1, 1), (7, 3, 2, 1), (6, 3, 2, 0), (4, 1, 1, 0), (8, 2, 2, 0), (7, 3, 2, 0), (9, 3, 3, 1)]

    def output_size():
        got = [mod.output_size(*args) for args in sizes]
        if not all(isinstance(v, (int, np.integer)) for v in got):
            return Check(False, note=f"got {got}", hint="return an int: use floor division // (a window that "
                                                         "would stick out of the padded input is dropped)")
        want = [conv_output_size(s, k, st, p) for s, k, st, p in sizes]
        mistakes = [
            ([(s + 2 * p - k) // st for s, k, st, p in sizes], OFF_BY_ONE),
            ([(s + 2 * p - k) // st + 2 for s, k, st, p in sizes], OFF_BY_ONE),
            ([(s + p - k) // st + 1 for s, k, st, p in sizes], "the padding is on BOTH sides: size + 2*pad"),
            ([(s - k) // st + 1 for s, k, st, p in sizes], "the padding is missing: size + 2*pad"),
            ([-(-(s + 2 * p - k) // st) + 1 for s, k, st, p in sizes],
             "round down (//), not up: a window that would stick out of the padded input is dropped"),
        ]
        return compare(got, want, mistakes, hint="count the window positions by hand for one failing case: "
                                                 "size 7, kernel 3, stride 2, pad 1 has 4 (starts 0, 2, 4, 6 of 9)")

    yield run_check("output_size on 7 cases (stride 1..3, pad 0..1)", output_size)

    layout_hint = ("compare with the layout in the exercise: column oh*OW + ow holds the window at (oh, ow), "
                   "its values in the order window.reshape(N, -1) gives (channel, kernel row, kernel column)")
    error_hint = ("pad with np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) and cut each window as "
                  "x_pad[:, :, oh*stride:oh*stride + KH, ow*stride:ow*stride + KW]")

    def mistakes_for(x, KH, KW, stride, pad):
        N, C, H, W = x.shape
        OH, OW = conv_output_size(H, KH, stride, pad), conv_output_size(W, KW, stride, pad)
        R, L = C * KH * KW, OH * OW
        six = im2col(x, (KH, KW), (stride, stride), (pad, pad)).reshape(N, C, KH, KW, OH, OW)
        unstrided = im2col(x, (KH, KW), (1, 1), (pad, pad))
        unstrided = unstrided.reshape(N, C, KH, KW, H + 2 * pad - KH + 1, W + 2 * pad - KW + 1)[..., :OH, :OW]
        row_order = ("rows in the wrong order: row c*KH*KW + i*KW + j (channel, then kernel row, then kernel "
                     "column), the order of window.reshape(N, -1) and of w.reshape(F, -1)")
        return [
            (six.transpose(0, 2, 3, 1, 4, 5).reshape(N, R, L), row_order),
            (six.transpose(0, 1, 3, 2, 4, 5).reshape(N, R, L), row_order),
            (six.transpose(0, 1, 2, 3, 5, 4).reshape(N, R, L),
             "columns in the wrong order: the window at output position (oh, ow) goes to column oh*OW + ow"),
            (unstrided.reshape(N, R, L), "the window at (oh, ow) starts at (oh*stride, ow*stride): multiply by stride"),
            ((N, L, R), "layout (N, C*KH*KW, OH*OW): one ROW per (c, i, j), one COLUMN per output position"),
            ((N, R, OH, OW), "merge the output positions into one axis: shape (N, C*KH*KW, OH*OW)"),
            ((N, C, KH, KW, OH, OW), "merge the axes: shape (N, C*KH*KW, OH*OW)"),
            ((N, R, (OH - 1) * (OW - 1)), OFF_BY_ONE),
            ((N, R, (OH + 1) * (OW + 1)), OFF_BY_ONE),
        ]

    cases = [
        ("3x3 kernel, stride 1, pad 1 (windows overlap)", (2, 3, 5, 4), 3, 3, 1, 1),
        ("non-square 3x2 kernel, stride 2, no padding", (2, 2, 7, 6), 3, 2, 2, 0),
        ("2x3 kernel, stride 2, pad 1, non-square input", (2, 2, 6, 7), 2, 3, 2, 1),
    ]
    for k, (label, x_shape, KH, KW, stride, pad) in enumerate(cases):
        x = randn(rng, *x_shape)
        want = im2col(x, (KH, KW), (stride, stride), (pad, pad))
        mistakes = mistakes_for(x, KH, KW, stride, pad)
        if k == 0:
            yield run_check(f"im2col shape, {label}",
                            lambda: check_shape(mod.im2col(x.copy(), KH, KW, stride, pad), want.shape,
                                                [m for m in mistakes if isinstance(m[0], tuple)], layout_hint),
                            error_hint)
        yield run_check(f"im2col values, {label}",
                        lambda: compare(mod.im2col(x.copy(), KH, KW, stride, pad), want, mistakes, layout_hint),
                        error_hint)
