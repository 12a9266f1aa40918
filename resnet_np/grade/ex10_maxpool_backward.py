"""Exercise 10, max pooling's backward pass (overlapping windows, ties): the checks, the hints and the mistakes."""

from ..backend import host as np
from ..gradcheck import numerical_gradient
from ..layers import MaxPool2d, maxpool2d_naive
from .core import check_shape, compare, randn, run_check

TITLE = "max pooling backward pass (overlapping windows, ties)"

# What the student derives: the library's implementation of it is not to be used (grade/honest.py).
DERIVES = ("MaxPool2d", "maxpool*", "max_pool*")
# Which hint a failing check's group starts at (check-name prefix, hint number): --hint starts there.
HINT_START = [("maxpool_forward", 1), ("dx shape", 4), ("dx: finite", 1), ("dx with ties", 4)]
# The lessons the student handout gives with it.
LESSONS = ("02_conv_im2col.py", "07_bottleneck_and_resnet.py")

# One at a time, from a nudge to the last step (``python -m resnet_np.grade FILE --hint N``).
HINTS = [
    "Think of one window alone: out = max(a, b, c, ...). Nudge the winner by a small e: out moves by e. Nudge a "
    "loser: out does not move. So the window's gradient goes to one place only.",
    "Walk the windows as maxpool_forward does. For each one, find WHERE its maximum is (an index into the "
    "window, not the value) and send dout of that window there.",
    "Windows overlap when the stride is smaller than the kernel: one pixel may win two windows, and its gradient "
    "is the SUM of both. Add (+=) into a zero array of the padded shape; never assign.",
    "np.argmax of the window flattened to KH*KW values gives the first maximum (PyTorch's choice for a tie); "
    "np.divmod(k, KW) turns it back into (row, column) inside the window. Cut the padding off at the end.",
]

# Typical mistakes planted in the reference solution (tests/exercise_solutions/ex10_maxpool_backward.py):
# (its text, the text that replaces it, words of the hint the grader must then give). tests/test_grade.py
# plants each one and checks that the grader names it.
PLANTED = [
    ("dx_pad[n, c, top + i, left + j] += dout[:, :, oh, ow]", "dx_pad[n, c, top + i, left + j] = dout[:, :, oh, ow]",
     "a pixel that wins two windows"),
    ("k = window.argmax(axis=2)", "k = KH * KW - 1 - window[:, :, ::-1].argmax(axis=2)",
     "the FIRST maximum"),
    ("return dx_pad[:, :, pad:pad + H, pad:pad + W]", "return dx_pad", "cut the padding off"),
    ("top, left = oh * stride, ow * stride", "top, left = oh, ow", "multiply by the stride"),
    ("i, j = np.divmod(k, KW)", "i, j = np.divmod(k, KH)", "divmod(k, KW)"),
]


def _backward(dout, x, KH, KW, stride, pad, mistake=None):
    """The max-pool gradient, or the one a typical mistake gives."""
    N, C, H, W = x.shape
    OH, OW = dout.shape[2:]
    step = 1 if mistake == "stride" else stride
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=-np.inf)
    dx_pad = np.zeros(x_pad.shape)
    n, c = np.indices((N, C))
    for oh in range(OH):
        for ow in range(OW):
            top, left = oh * step, ow * step
            window = x_pad[:, :, top:top + KH, left:left + KW].reshape(N, C, KH * KW)
            if mistake == "every tie":  # the whole gradient to every element equal to the max
                mask = (window == window.max(axis=2, keepdims=True)).reshape(N, C, KH, KW)
                dx_pad[:, :, top:top + KH, left:left + KW] += mask * dout[:, :, oh, ow][:, :, None, None]
                continue
            if mistake == "split ties":  # shared among the tied elements
                mask = (window == window.max(axis=2, keepdims=True))
                share = (mask / mask.sum(axis=2, keepdims=True)).reshape(N, C, KH, KW)
                dx_pad[:, :, top:top + KH, left:left + KW] += share * dout[:, :, oh, ow][:, :, None, None]
                continue
            k = KH * KW - 1 - window[:, :, ::-1].argmax(axis=2) if mistake == "last" else window.argmax(axis=2)
            i, j = np.divmod(k, KH if mistake == "divmod" else KW)
            i, j = np.minimum(i, KH - 1), np.minimum(j, KW - 1)  # a wrong divmod may run past the window
            if mistake == "assign":
                dx_pad[n, c, top + i, left + j] = dout[:, :, oh, ow]
            else:
                dx_pad[n, c, top + i, left + j] += dout[:, :, oh, ow]
    return dx_pad if mistake == "no crop" else dx_pad[:, :, pad:pad + H, pad:pad + W]


def checks(mod):
    """Yield the outcome of every check of the student's module ``mod``."""
    rng = np.random.default_rng(10)
    hints = {
        "assign": "a pixel that wins two windows (they overlap when stride < kernel) gets the SUM of their "
                  "gradients: add (+=), do not assign",
        "last": "a tie goes to the FIRST maximum in row-major order (np.argmax of the flattened window), as in "
                "PyTorch, not the last",
        "every tie": "a tie gives the window's gradient to ONE element (the FIRST maximum, np.argmax), not to "
                     "every element equal to the maximum: that counts the gradient twice",
        "split ties": "a tie gives the window's whole gradient to the FIRST maximum (np.argmax), as PyTorch does; "
                      "not a share to each tied element",
        "stride": "the window of output (oh, ow) starts at (oh * stride, ow * stride): multiply by the stride",
        "divmod": "the flat index k of a KH x KW window is row * KW + column: unflatten it with divmod(k, KW)",
        "no crop": "cut the padding off: return dx_pad[:, :, pad:pad + H, pad:pad + W]",
    }
    general = ("walk the windows as the forward pass does and send each window's gradient to its winner; try "
               "dout = 1: each pixel must then hold the number of windows it wins")
    cases = [  # label, x shape, KH, KW, stride, pad, with ties
        ("3x3, stride 2, pad 1 (overlapping)", (2, 3, 7, 6), 3, 3, 2, 1, False),
        ("2x2, stride 2 (no overlap)", (2, 2, 6, 4), 2, 2, 2, 0, False),
        ("3x2, stride 1 (non-square)", (2, 2, 5, 6), 3, 2, 1, 0, False),
        ("3x3, stride 2, pad 1", (2, 2, 7, 7), 3, 3, 2, 1, True),
        ("2x3, stride 1, pad 1", (3, 2, 5, 6), 2, 3, 1, 1, True),
    ]
    for k, (label, x_shape, KH, KW, stride, pad, ties) in enumerate(cases):
        # Small integers make ties certain; distinct values make finite differences valid.
        x = rng.integers(0, 3, x_shape).astype(np.float64) if ties else rng.permutation(
            np.prod(x_shape)).reshape(x_shape) / 7.0 + randn(rng, *x_shape, scale=0.01)
        pool = MaxPool2d((KH, KW), stride=stride, padding=pad)
        out = pool(x)
        dout = randn(rng, *out.shape)
        want = pool.backward(dout)
        if not ties:  # distinct values: no tie crossed by the differences, which then agree with MaxPool2d
            want = numerical_gradient(lambda: float((dout * maxpool2d_naive(x, (KH, KW), stride, pad)).sum()), x)
        mistakes = [(_backward(dout, x, KH, KW, stride, pad, m), hint) for m, hint in hints.items()]
        mistakes.append(((x_shape[0], x_shape[1], x_shape[2] + 2 * pad, x_shape[3] + 2 * pad), hints["no crop"]))

        def student(x=x, KH=KH, KW=KW, stride=stride, pad=pad, dout=dout):
            _, cache = mod.maxpool_forward(x.copy(), KH, KW, stride, pad)
            return mod.maxpool_backward(dout.copy(), cache)

        if k == 0:
            yield run_check("maxpool_forward (given code) still matches maxpool2d_naive",
                            lambda: compare(mod.maxpool_forward(x.copy(), KH, KW, stride, pad)[0], out,
                                            hint="maxpool_forward is given: restore it from the original file"))
            yield run_check("dx shape", lambda: check_shape(student(), x_shape,
                                                            [m for m in mistakes if isinstance(m[0], tuple)],
                                                            "dx has the shape of x"))
        name = f"dx with ties, against MaxPool2d, {label}" if ties else f"dx: finite differences, {label}"
        yield run_check(name, lambda: compare(student(), want, mistakes, general),
                        "an index out of range? The winner's (row, column) inside a KH x KW window come from "
                        "divmod(k, KW), and the window starts at (oh * stride, ow * stride) of the PADDED array")
