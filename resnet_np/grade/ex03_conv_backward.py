"""Exercise 3, the convolution's backward pass and col2im: the checks, the hints and the planted mistakes."""

from ..backend import host as np
from ..gradcheck import numerical_gradient
from ..layers import Conv2d, col2im, conv_output_size, im2col
from .core import check_shape, check_shapes, compare, randn, run_check

TITLE = "convolution backward pass and col2im"

# What the student derives: the library's implementation of it is not to be used (grade/honest.py).
DERIVES = ("col2im*", "Conv2d", "conv2d*")
# Which hint a failing check's group starts at (check-name prefix, hint number): --hint starts there.
HINT_START = [("col2im", 5), ("shapes", 1), ("db", 1), ("dw", 2), ("dx", 4)]
# The lessons the student handout gives with it.
LESSONS = ("02_conv_im2col.py", "03_conv_backward.py")

# One at a time, from a nudge to the last step (``python -m resnet_np.grade FILE --hint N``).
HINTS = [
    "Start with db: b[f] is added to every output value of filter f, in every image. A small change of b[f] "
    "changes the loss by how much, in terms of dout?",
    "For dw: out[n] = W_mat @ cols[n] is linear in W_mat. Write out[n][f, p] as a sum over k and differentiate "
    "L = sum dout * out by one entry W_mat[f, k]: which entries of dout[n] and of cols[n] meet?",
    "That sum over p of dout[n][f, p] * cols[n][k, p] is a matrix product of dout[n] with the TRANSPOSE of "
    "cols[n]; sum it over the images, then reshape to w's shape.",
    "For dx, first the gradient of cols: differentiate by cols[n][k, p] instead; the same product rule gives a "
    "product with the transposed weight matrix. Then col2im takes that back to the pixels.",
    "col2im: each pixel was COPIED into every window that covers it, so its gradient collects one term per "
    "copy. Walk the windows as im2col does and add (+=) each column back into the place it came from; then cut "
    "the padding off.",
]

# Typical mistakes planted in the reference solution (tests/exercise_solutions/ex03_conv_backward.py):
# (its text, the text that replaces it, words of the hint the grader must then give). tests/test_grade.py
# plants each one and checks that the grader names it.
PLANTED = [
    ("dx_pad[:, :, top:top + KH, left:left + KW] += window", "dx_pad[:, :, top:top + KH, left:left + KW] = window",
     "col2im must ADD (+=), not assign"),
    ("dw = (dout_mat @ cols.transpose(0, 2, 1)).sum(axis=0)",
     "dw = (cols @ dout_mat.transpose(0, 2, 1)).sum(axis=0)", "dw transposed"),
    ("w_mat = w.reshape(F, -1)", "w_mat = w[:, :, ::-1, ::-1].reshape(F, -1)", "the wrong weight orientation"),
    ("db = dout_mat.sum(axis=(0, 2))", "db = dout_mat.mean(axis=(0, 2))", "db is a SUM"),
    ("return dx_pad[:, :, pad:pad + H, pad:pad + W]", "return dx_pad", "cut the padding off"),
    ("dw = (dout_mat @ cols.transpose(0, 2, 1)).sum(axis=0)",
     "dw = (dout_mat @ cols.transpose(0, 2, 1)).mean(axis=0)", "dw sums over the batch"),
]


def _col2im_loop(dcols, x_shape, KH, KW, stride, pad, assign=False, by_offset=False, step=None):
    """col2im and its typical mistakes: assigning instead of adding, forgetting the stride."""
    N, C, H, W = x_shape
    OH, OW = conv_output_size(H, KH, stride, pad), conv_output_size(W, KW, stride, pad)
    step = stride if step is None else step
    dx_pad = np.zeros((N, C, H + 2 * pad, W + 2 * pad))
    six = dcols.reshape(N, C, KH, KW, OH, OW)
    if by_offset:
        for i in range(KH):
            for j in range(KW):
                window = (slice(None), slice(None), slice(i, i + step * OH, step), slice(j, j + step * OW, step))
                dx_pad[window] = six[:, :, i, j] if assign else dx_pad[window] + six[:, :, i, j]
    else:
        for oh in range(OH):
            for ow in range(OW):
                window = (slice(None), slice(None), slice(oh * step, oh * step + KH), slice(ow * step, ow * step + KW))
                dx_pad[window] = six[..., oh, ow] if assign else dx_pad[window] + six[..., oh, ow]
    return dx_pad[:, :, pad:pad + H, pad:pad + W]


def checks(mod):
    """Yield the outcome of every check of the student's module ``mod``."""
    rng = np.random.default_rng(3)
    assign_hint = ("col2im must ADD (+=), not assign: windows overlap, and a pixel's gradient is the sum over "
                   "every window that copied it")
    stride_hint = "the window of column (oh, ow) starts at (oh*stride, ow*stride): multiply by stride"
    crop_hint = "cut the padding off: return dx_pad[:, :, pad:pad + H, pad:pad + W]"

    # -- col2im ------------------------------------------------------------
    col_cases = [
        ("overlapping 3x3 windows, stride 1, pad 1", (2, 2, 5, 4), 3, 3, 1, 1),
        ("3x2 kernel, stride 2, pad 1", (2, 2, 7, 6), 3, 2, 2, 1),
        ("stride 2, no padding, a row no window covers", (2, 2, 6, 5), 3, 3, 2, 0),
    ]
    for k, (label, x_shape, KH, KW, stride, pad) in enumerate(col_cases):
        N, C, H, W = x_shape
        L = conv_output_size(H, KH, stride, pad) * conv_output_size(W, KW, stride, pad)
        dcols = randn(rng, N, C * KH * KW, L)
        want = col2im(dcols, x_shape, (KH, KW), (stride, stride), (pad, pad))
        args = (dcols, x_shape, KH, KW, stride, pad)
        mistakes = [
            (_col2im_loop(*args, assign=True), assign_hint),
            (_col2im_loop(*args, assign=True, by_offset=True), assign_hint),
            (_col2im_loop(*args, step=1), stride_hint),
            ((N, C, H + 2 * pad, W + 2 * pad), crop_hint),
        ]
        general = ("col2im walks the windows as im2col does and puts each column back where it came from; try a "
                   "column matrix of ones: each pixel must then hold the number of windows that cover it")
        if k == 0:
            yield run_check(f"col2im shape, {label}",
                            lambda: check_shape(mod.col2im(dcols.copy(), x_shape, KH, KW, stride, pad), x_shape,
                                                [m for m in mistakes if isinstance(m[0], tuple)], general))
        yield run_check(f"col2im values, {label}",
                        lambda: compare(mod.col2im(dcols.copy(), x_shape, KH, KW, stride, pad), want, mistakes,
                                        general))

    # -- conv_backward ------------------------------------------------------
    conv_cases = [
        ("overlapping windows, stride 1, pad 1", (2, 2, 5, 4), (3, 2, 3, 3), 1, 1),
        ("3x2 kernel, stride 2, pad 1", (2, 2, 7, 6), (3, 2, 3, 2), 2, 1),
        ("stride 2, no padding", (2, 2, 6, 5), (2, 2, 3, 3), 2, 0),
    ]
    error_hint = ("work with dout as (N, F, OH*OW) and check the shape of every product: the weight's gradient "
                  "is (F, C*KH*KW) before its reshape, the gradient of cols has cols' shape (N, C*KH*KW, OH*OW)")
    for k, (label, x_shape, w_shape, stride, pad) in enumerate(conv_cases):
        x, w, b = randn(rng, *x_shape), randn(rng, *w_shape), randn(rng, w_shape[0])
        N, C, H, W = x_shape
        F, _, KH, KW = w_shape
        conv = Conv2d(C, F, (KH, KW), stride=stride, padding=pad).astype("float64")
        conv.weight.data, conv.bias.data = w, b
        out = conv(x)
        dout = randn(rng, *out.shape)  # a random upstream gradient
        OH, OW = out.shape[2:]

        def loss():
            return float((dout * conv.forward(x)).sum())

        dx_fd, dw_fd, db_fd = (numerical_gradient(loss, a) for a in (x, w, b))
        cols = im2col(x, (KH, KW), (stride, stride), (pad, pad))
        dout_mat = dout.reshape(N, F, OH * OW)
        dcols = w.reshape(F, -1).T @ dout_mat
        dw_ref = (dout_mat @ cols.transpose(0, 2, 1)).sum(axis=0).reshape(w.shape)

        def dx_with_weight(w_wrong):
            return col2im(w_wrong.reshape(F, -1).T @ dout_mat, x_shape, (KH, KW), (stride, stride), (pad, pad))

        orientation = ("dx from the wrong weight orientation: the gradient of cols uses the SAME W_mat = "
                       "w.reshape(F, -1) as the forward pass, no flip (col2im does the sliding)")
        args = (dcols, x_shape, KH, KW, stride, pad)
        dx_mistakes = [
            (_col2im_loop(*args, assign=True), assign_hint),
            (_col2im_loop(*args, assign=True, by_offset=True), assign_hint),
            (_col2im_loop(*args, step=1), stride_hint),
            (dx_with_weight(w[:, :, ::-1, ::-1]), orientation),
            ((N, C, H + 2 * pad, W + 2 * pad), crop_hint),
        ]
        if KH == KW:
            dx_mistakes.append((dx_with_weight(w.transpose(0, 1, 3, 2)), orientation))
        transposed = ("dw transposed: the weight matrix's gradient has ITS shape (F, C*KH*KW), one row per filter; "
                      "the transpose reshaped to w.shape scrambles the weights")
        batch = "dw sums over the batch: every image contributes its own term, and they add up"
        dw_mistakes = [
            (dw_ref.reshape(F, -1).T.reshape(w.shape), transposed),
            ((C * KH * KW, F), transposed),
            (dw_ref / N, batch),
            ((dout_mat[0] @ cols[0].T).reshape(w.shape), batch),
            ((N, F, C * KH * KW), batch),
            ((N,) + w.shape, batch),
            (dw_ref[:, :, ::-1, ::-1], "dw has the orientation of w: no flip"),
            ((F, C * KH * KW), "reshape dW_mat to the weight's shape (F, C, KH, KW)"),
        ]
        db_mistakes = [
            (db_fd / (N * OH * OW), "db is a SUM of dout over n, oh and ow, not a mean"),
            ((N, F), "db sums over the batch too: shape (F,)"),
            ((F, OH * OW), "db sums over the positions too: shape (F,)"),
            ((F, OH, OW), "db sums over the positions too: shape (F,)"),
        ]

        def student(x=x, w=w, b=b, stride=stride, pad=pad, dout=dout):
            _, cache = mod.conv_forward(x.copy(), w.copy(), b.copy(), stride, pad)
            return mod.conv_backward(dout.copy(), cache)

        if k == 0:
            yield run_check("conv_forward (given code) still matches conv2d_naive",
                            lambda: compare(mod.conv_forward(x.copy(), w.copy(), b.copy(), stride, pad)[0], out,
                                            hint="conv_forward is given: restore it from the original file"))

            def shapes(student=student, x=x, w=w, dx_mistakes=dx_mistakes, dw_mistakes=dw_mistakes,
                       db_mistakes=db_mistakes):
                dx, dw, db = student()
                return check_shapes([(name, got, want.shape, mistakes, f"{name} has the shape of {name[1:]}: "
                                      f"{want.shape}")
                                     for name, got, want, mistakes in (("dx", dx, x, dx_mistakes),
                                                                       ("dw", dw, w, dw_mistakes),
                                                                       ("db", db, b, db_mistakes))])

            yield run_check("shapes of dx, dw, db", shapes, error_hint)
            yield run_check(f"db: finite differences, {label}",
                            lambda: compare(student()[2], db_fd, db_mistakes,
                                            "b[f] is added to every output value of filter f in every image: "
                                            "which values of dout does it touch?"),
                            error_hint)
        yield run_check(f"dw: finite differences, {label}",
                        lambda: compare(student()[1], dw_fd, dw_mistakes,
                                        "differentiate out[n] = W_mat @ cols[n] by one weight W_mat[f, k] and "
                                        "compare a 1-image case by hand"), error_hint)
        yield run_check(f"dx: finite differences, {label}",
                        lambda: compare(student()[0], dx_fd, dx_mistakes,
                                        "check your col2im first (its own checks above), then the gradient of "
                                        "cols that you give it"), error_hint)
