"""Exercise 8, the backward pass of a grouped convolution: the checks, the hints and the planted mistakes."""

from ..backend import host as np
from ..gradcheck import numerical_gradient
from ..layers import Conv2d, col2im, im2col
from .core import check_shapes, compare, randn, run_check

TITLE = "grouped convolution backward pass (groups = G, as Conv2d(..., groups=G))"

# What the student derives: the library's implementation of it is not to be used (grade/honest.py).
DERIVES = ("Conv2d", "conv2d*")
# Which hint a failing check's group starts at (check-name prefix, hint number): --hint starts there.
HINT_START = [("db", 2), ("dw", 3), ("dx", 4)]
# The lessons the student handout gives with it.
LESSONS = ("03_conv_backward.py", "12_after_resnet.py")

# One at a time, from a nudge to the last step (``python -m resnet_np.grade FILE --hint N``).
HINTS = [
    "A grouped convolution is G ordinary convolutions side by side: group g's filters, group g's block of "
    "input channels. Exercise 3's answer holds for each of them. The question is only how to keep the groups "
    "apart.",
    "db does not care about groups: b[f] is added to every output value of filter f.",
    "For dw: view dout group by group, (N, G, F/G, OH*OW), as the forward pass views out; group g's weight "
    "gradient pairs group g's block of dout with group g's block of cols, summed over the images.",
    "For the gradient of cols: the rows of cols of group g were only ever multiplied by group g's filters, so "
    "their gradient comes from those filters alone. A batched product over the group axis keeps the groups "
    "apart; then the (N, G, C/G*KH*KW, OH*OW) result goes back to im2col's row order for col2im.",
    "The rows of cols come channel by channel, and group g's channels are a contiguous block, so a plain "
    "reshape (no transpose) restores (N, C*KH*KW, OH*OW).",
]

# Typical mistakes planted in the reference solution (tests/exercise_solutions/ex08_grouped_conv_backward.py):
# (its text, the text that replaces it, words of the hint the grader must then give). tests/test_grade.py
# plants each one and checks that the grader names it.
PLANTED = [
    ("dout_g = dout.reshape(N, G, Fg, OH * OW)", "dout_g = dout.reshape(N, Fg, G, OH * OW).transpose(0, 2, 1, 3)",
     "contiguous blocks"),
    ("dcols = dcols.reshape(N, G * Cg * KH * KW, OH * OW)",
     "dcols = dcols.transpose(0, 2, 1, 3).reshape(N, G * Cg * KH * KW, OH * OW)", "one contiguous block of rows"),
    ("dcols = w_mat.transpose(0, 2, 1) @ dout_g",
     "dcols = (w_mat.transpose(0, 2, 1) @ dout_g).sum(axis=1, keepdims=True).repeat(G, axis=1)",
     "only from its own group's filters"),
    ("db = dout.sum(axis=(0, 2, 3))", "db = dout.mean(axis=(0, 2, 3))", "db is a SUM"),
    ("dw = (dout_g @ cols.transpose(0, 1, 3, 2)).sum(axis=0)",
     "dw = (dout_g @ cols.transpose(0, 1, 3, 2)).mean(axis=0)", "dw sums over the batch"),
]

INTERLEAVED_OUT = ("the groups of output channels are contiguous blocks, not interleaved: filter f belongs to group "
                   "f // (F/G), so view dout as (N, G, F/G, OH*OW) like the forward pass views out")
INTERLEAVED_IN = ("the rows of cols come channel by channel and group g's channels are one contiguous block of rows: "
                  "reshape the (N, G, C/G*KH*KW, OH*OW) gradient back without a transpose")
DENSE = ("an input channel of group g gets its gradient only from its own group's filters; summing over the groups "
         "treats the convolution as a full one")


def _backward(x, w, dout, stride, pad, G, mistake=None):
    """dx and dw of a grouped convolution, right (mistake None) or with one of the typical mistakes."""
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    Fg, L = F // G, dout.shape[2] * dout.shape[3]
    cols = im2col(x, (KH, KW), (stride, stride), (pad, pad)).reshape(N, G, Cg * KH * KW, L)
    if mistake == "interleaved out":
        dout_g = dout.reshape(N, Fg, G, L).transpose(0, 2, 1, 3)
    else:
        dout_g = dout.reshape(N, G, Fg, L)
    dw = (dout_g @ cols.transpose(0, 1, 3, 2)).sum(axis=0).reshape(w.shape)
    dcols = w.reshape(G, Fg, -1).transpose(0, 2, 1) @ dout_g
    if mistake == "dense":
        dcols = dcols.sum(axis=1, keepdims=True).repeat(G, axis=1)
    if mistake == "interleaved in":
        dcols = dcols.transpose(0, 2, 1, 3)
    dx = col2im(dcols.reshape(N, C * KH * KW, L), x.shape, (KH, KW), (stride, stride), (pad, pad))
    return dx, dw


def checks(mod):
    """Yield the outcome of every check of the student's module ``mod``."""
    rng = np.random.default_rng(8)
    cases = [
        ("2 groups, 4->6 channels, 3x3, stride 1, pad 1", (2, 4, 5, 4), 6, (3, 3), 2, 1, 1),
        ("3 groups, 6->9 channels, 3x2 kernel, stride 2, no padding", (2, 6, 7, 6), 9, (3, 2), 3, 2, 0),
        ("depthwise (4 groups of 1 channel), stride 2, pad 1", (2, 4, 6, 5), 4, (3, 3), 4, 2, 1),
    ]
    error_hint = ("view dout as (N, G, F/G, OH*OW) and check the shape of every product: group g's weight gradient "
                  "is (F/G, C/G*KH*KW), the gradient of cols has the cache's cols shape (N, G, C/G*KH*KW, OH*OW)")
    for k, (label, x_shape, F, (KH, KW), G, stride, pad) in enumerate(cases):
        N, C, H, W = x_shape
        conv = Conv2d(C, F, (KH, KW), stride=stride, padding=pad, groups=G).astype("float64")
        x, w, b = randn(rng, *x_shape), randn(rng, *conv.weight.shape), randn(rng, F)
        conv.weight.data, conv.bias.data = w, b
        out = conv(x)
        dout = randn(rng, *out.shape)  # a random upstream gradient

        def loss():
            return float((dout * conv.forward(x)).sum())

        dx_fd, dw_fd, db_fd = (numerical_gradient(loss, a) for a in (x, w, b))
        variants = {m: _backward(x, w, dout, stride, pad, G, m) for m in ("interleaved out", "interleaved in", "dense")}
        dx_mistakes = [(variants["interleaved out"][0], INTERLEAVED_OUT),
                       (variants["interleaved in"][0], INTERLEAVED_IN), (variants["dense"][0], DENSE)]
        dw_mistakes = [(variants["interleaved out"][1], INTERLEAVED_OUT),
                       (dw_fd / N, "dw sums over the batch: every image contributes its own term, and they add up"),
                       ((G, F // G, w.shape[1] * KH * KW), "reshape the weight gradient to w's shape (F, C/G, KH, KW)"),
                       ((F // G,) + w.shape[1:], "dw has one block per group: do not sum over the groups")]
        db_mistakes = [(db_fd / (N * out.shape[2] * out.shape[3]), "db is a SUM of dout over n, oh and ow, not a mean"),
                       ((G, F // G), "db has one entry per filter: shape (F,)"), ((N, F), "db sums over the batch too")]

        def student(x=x, w=w, b=b, stride=stride, pad=pad, G=G, dout=dout):
            _, cache = mod.grouped_conv_forward(x.copy(), w.copy(), b.copy(), stride, pad, G)
            return mod.grouped_conv_backward(dout.copy(), cache)

        if k == 0:
            yield run_check("grouped_conv_forward (given code) still matches Conv2d(groups=G)",
                            lambda: compare(mod.grouped_conv_forward(x.copy(), w.copy(), b.copy(), stride, pad, G)[0],
                                            out, hint="grouped_conv_forward is given: restore it from the original "
                                                      "file"))

            def shapes(student=student, x=x, w=w, b=b, dw_mistakes=dw_mistakes, db_mistakes=db_mistakes):
                dx, dw, db = student()
                return check_shapes([(name, got, want.shape, mistakes, f"{name} has the shape of {name[1:]}: "
                                      f"{want.shape}")
                                     for name, got, want, mistakes in (("dx", dx, x, ()), ("dw", dw, w, dw_mistakes),
                                                                       ("db", db, b, db_mistakes))])

            yield run_check("shapes of dx, dw, db", shapes, error_hint)
            yield run_check(f"db: finite differences, {label}",
                            lambda: compare(student()[2], db_fd, db_mistakes,
                                            "b[f] is added to every output value of filter f in every image"),
                            error_hint)
        yield run_check(f"dw: finite differences, {label}",
                        lambda: compare(student()[1], dw_fd, dw_mistakes,
                                        "group g's weight gradient pairs group g's dout with group g's cols; compare "
                                        "one group with exercise 3's answer"), error_hint)
        yield run_check(f"dx: finite differences, {label}",
                        lambda: compare(student()[0], dx_fd, dx_mistakes,
                                        "which filters does the gradient of an input channel of group g come from? "
                                        "Then col2im with im2col's row order"), error_hint)
