"""The grader of the classroom exercises in ``lessons/exercises/``.

    python -m resnet_np.grade lessons/exercises/ex03_conv_backward.py
    python -m resnet_np.grade lessons/exercises/ex0*.py           (several at once)

It imports the student's file by its path, tells the exercise from the file
name (``ex01`` ... ``ex07``), runs that exercise's checks and prints one line
per check::

    PASS  dw: finite differences, stride 1, pad 1        rel error 3.1e-11
    FAIL  dx: finite differences, stride 1, pad 1        rel error 2.7e-01  hint: col2im must ADD ...

The relative error is the one of ``resnet_np.gradcheck``:
max|a - b| / max(1e-8, max(|a| + |b|)). Values are compared with the
library's layers; gradients with central differences in float64 for a
RANDOM upstream gradient (never the gradient of ``sum(out)``, which is zero
for batch norm whatever one forgets).

The hints come from a diagnosis, not from a table of error messages: each
check also computes the answers that typical mistakes give (the weight
gradient transposed, col2im assigning instead of adding, the mean term of
the batch-norm backward left out, ...) and, when the student's output is one
of them, names that mistake. Otherwise the hint is the check's general one.

A function that still raises ``NotImplementedError`` gives "not implemented
yet"; any other exception is one FAIL line with its type and message, never
a traceback. The exit status is 0 when every check passes, 1 otherwise.
"""

import argparse
import functools
import importlib.util
import math
import pathlib
import re
import sys
import warnings
from dataclasses import dataclass
from typing import Optional

from . import backend
from .backend import host as np
from .gradcheck import numerical_gradient, rel_error
from .layers import (BatchNorm2d, Conv2d, Sequential, SoftmaxCrossEntropy, col2im, conv2d_naive, conv_output_size,
                     im2col)
from .models import BasicBlock
from .module import Parameter
from .optim import SGD

TOL = 1e-7        # a right answer lands near 1e-10 (finite differences) or 1e-15 (values) in float64
MATCH_TOL = 1e-6  # the student's output IS a known wrong answer when this close to it

OFF_BY_ONE = "off by one in the output size: OH = (H + 2*pad - KH) // stride + 1 (the window at 0 counts too)"


# ----------------------------------------------------------------------------
# A check and its outcome
# ----------------------------------------------------------------------------

@dataclass
class Check:
    """The outcome of one check: passed or not, the relative error, what went wrong and a hint."""

    passed: bool
    error: Optional[float] = None  # relative error, when the check has one
    note: str = ""                 # what was seen: a shape, an exception, "not implemented yet"
    hint: str = ""                 # on FAIL: the likely mistake
    name: str = ""

    def line(self):
        parts = [f"{'PASS' if self.passed else 'FAIL'}  {self.name:<60}"]
        if self.error is not None:
            parts.append(f"rel error {self.error:.1e}")
        if self.note:
            parts.append(self.note)
        if not self.passed and self.hint:
            parts.append(f"hint: {self.hint}")
        return "  ".join(parts).rstrip()


def run_check(name, thunk, error_hint=""):
    """Run one check; the student's exceptions become a FAIL line, never a traceback."""
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = thunk()
    except NotImplementedError as e:
        result = Check(False, note="not implemented yet" + (f" ({e})" if str(e) else ""))
    except Exception as e:  # noqa: BLE001 - whatever the student's code raises
        message = " ".join(str(e).split())
        if len(message) > 160:
            message = message[:157] + "..."
        result = Check(False, note=f"{type(e).__name__}: {message}", hint=error_hint)
    result.name = name
    return result


def compare(got, want, mistakes=(), hint="", nonfinite_hint="", tol=TOL):
    """PASS when ``got`` is within ``tol`` of ``want``; on FAIL, the hint of the mistake it matches.

    ``mistakes`` are (wrong answer, hint) pairs. A wrong answer is an array,
    matched when ``got`` is within MATCH_TOL of it (the closest one wins), or
    a shape tuple, matched when ``got`` has that shape. ``hint`` is the
    fallback when no mistake matches.
    """
    if got is None:
        return Check(False, note="returned None", hint="did you forget the return statement?")
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        note = f"shape {got.shape}, expected {want.shape}"
        for wrong, wrong_hint in mistakes:
            if isinstance(wrong, tuple) and wrong == got.shape:
                return Check(False, note=note, hint=wrong_hint)
        return Check(False, note=note, hint=_closest(got, mistakes) or hint)
    if not np.isfinite(got).all():
        return Check(False, note="NaN or Inf in the result", hint=nonfinite_hint or hint)
    error = rel_error(got, want)
    if error <= tol:
        return Check(True, error=error)
    return Check(False, error=error, hint=_closest(got, mistakes) or hint)


def _closest(got, mistakes):
    """The hint of the wrong answer closest to ``got``, if one is within MATCH_TOL."""
    best, best_hint = MATCH_TOL, ""
    for wrong, wrong_hint in mistakes:
        if isinstance(wrong, tuple):
            continue
        wrong = np.asarray(wrong, dtype=np.float64)
        if wrong.shape == got.shape and (error := rel_error(got, wrong)) <= best:
            best, best_hint = error, wrong_hint
    return best_hint


def check_shape(got, shape, mistakes=(), hint=""):
    """PASS when ``got`` has ``shape``; the mistakes are (shape, hint) pairs."""
    if got is None:
        return Check(False, note="returned None", hint="did you forget the return statement?")
    got_shape = tuple(np.shape(got))
    if got_shape == tuple(shape):
        return Check(True, note=f"shape {got_shape}")
    for wrong, wrong_hint in mistakes:
        if tuple(wrong) == got_shape:
            return Check(False, note=f"shape {got_shape}, expected {tuple(shape)}", hint=wrong_hint)
    return Check(False, note=f"shape {got_shape}, expected {tuple(shape)}", hint=hint)


def check_shapes(outputs):
    """``check_shape`` over several returned arrays: the first wrong one, its name in front, or PASS.

    ``outputs`` holds (name, got, shape, mistakes, hint) for each array.
    """
    for name, got, shape, mistakes, hint in outputs:
        result = check_shape(got, shape, [m for m in mistakes if isinstance(m[0], tuple)], hint)
        if not result.passed:
            result.note = f"{name}: {result.note}"
            return result
    return Check(True)


def _randn(rng, *shape, scale=1.0):
    return rng.standard_normal(shape) * scale


# ----------------------------------------------------------------------------
# Exercise 1: im2col
# ----------------------------------------------------------------------------

def check_im2col(mod):
    """im2col"""
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
        return compare(got, want, mistakes, hint="OH = (H + 2*pad - KH) // stride + 1")

    yield run_check("output_size on 7 cases (stride 1..3, pad 0..1)", output_size)

    layout_hint = "cols[n, c*KH*KW + i*KW + j, oh*OW + ow] = x_pad[n, c, oh*stride + i, ow*stride + j]"
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
        ("2x3 kernel, stride 2, pad 1, non-square input", (1, 2, 6, 7), 2, 3, 2, 1),
    ]
    for k, (label, x_shape, KH, KW, stride, pad) in enumerate(cases):
        x = _randn(rng, *x_shape)
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


# ----------------------------------------------------------------------------
# Exercise 2: convolution forward
# ----------------------------------------------------------------------------

def check_conv_forward(mod):
    """convolution forward pass (im2col + one matrix product)"""
    rng = np.random.default_rng(2)
    error_hint = ("if a reshape failed, check OH = (H + 2*pad - KH) // stride + 1, OW likewise, and that "
                  "W_mat @ cols has shape (N, F, OH*OW)")
    cases = [
        ("3x3 kernel, stride 1, pad 1", (2, 3, 5, 4), (4, 3, 3, 3), 1, 1),
        ("non-square 3x2 kernel, stride 2, no padding", (2, 2, 7, 6), (3, 2, 3, 2), 2, 0),
        ("2x3 kernel, stride 2, pad 1, non-square input", (1, 2, 6, 7), (2, 2, 2, 3), 2, 1),
    ]
    for k, (label, x_shape, w_shape, stride, pad) in enumerate(cases):
        x, w, b = _randn(rng, *x_shape), _randn(rng, *w_shape), _randn(rng, w_shape[0])
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
        general = "out[n] = w.reshape(F, -1) @ cols[n] + b[:, None], reshaped to (N, F, OH, OW)"
        if k == 0:
            yield run_check(f"output shape, {label}",
                            lambda: check_shape(mod.conv_forward(x.copy(), w.copy(), b.copy(), stride, pad),
                                                want.shape, [m for m in mistakes if isinstance(m[0], tuple)],
                                                general), error_hint)
        yield run_check(f"values against conv2d_naive, {label}",
                        lambda: compare(mod.conv_forward(x.copy(), w.copy(), b.copy(), stride, pad), want,
                                        mistakes, general), error_hint)


# ----------------------------------------------------------------------------
# Exercise 3: convolution backward and col2im
# ----------------------------------------------------------------------------

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


def check_conv_backward(mod):
    """convolution backward pass and col2im"""
    rng = np.random.default_rng(3)
    assign_hint = ("col2im must ADD (+=), not assign: windows overlap, and a pixel's gradient is the sum over "
                   "every window that copied it")
    stride_hint = "the window of column (oh, ow) starts at (oh*stride, ow*stride): multiply by stride"
    crop_hint = "cut the padding off: return dx_pad[:, :, pad:pad + H, pad:pad + W]"

    # -- col2im ------------------------------------------------------------
    col_cases = [
        ("overlapping 3x3 windows, stride 1, pad 1", (2, 2, 5, 4), 3, 3, 1, 1),
        ("3x2 kernel, stride 2, pad 1", (2, 2, 7, 6), 3, 2, 2, 1),
        ("stride 2, no padding, a row no window covers", (1, 2, 6, 5), 3, 3, 2, 0),
    ]
    for k, (label, x_shape, KH, KW, stride, pad) in enumerate(col_cases):
        N, C, H, W = x_shape
        L = conv_output_size(H, KH, stride, pad) * conv_output_size(W, KW, stride, pad)
        dcols = _randn(rng, N, C * KH * KW, L)
        want = col2im(dcols, x_shape, (KH, KW), (stride, stride), (pad, pad))
        args = (dcols, x_shape, KH, KW, stride, pad)
        mistakes = [
            (_col2im_loop(*args, assign=True), assign_hint),
            (_col2im_loop(*args, assign=True, by_offset=True), assign_hint),
            (_col2im_loop(*args, step=1), stride_hint),
            ((N, C, H + 2 * pad, W + 2 * pad), crop_hint),
        ]
        general = "dx_pad[n, c, oh*stride + i, ow*stride + j] += dcols[n, c*KH*KW + i*KW + j, oh*OW + ow]"
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
        ("stride 2, no padding", (1, 2, 6, 5), (2, 2, 3, 3), 2, 0),
    ]
    error_hint = ("work with dout as (N, F, OH*OW): dW_mat = sum_n dout[n] @ cols[n].T is (F, C*KH*KW), "
                  "dcols = W_mat.T @ dout is (N, C*KH*KW, OH*OW)")
    for k, (label, x_shape, w_shape, stride, pad) in enumerate(conv_cases):
        x, w, b = _randn(rng, *x_shape), _randn(rng, *w_shape), _randn(rng, w_shape[0])
        N, C, H, W = x_shape
        F, _, KH, KW = w_shape
        conv = Conv2d(C, F, (KH, KW), stride=stride, padding=pad).astype("float64")
        conv.weight.data, conv.bias.data = w, b
        out = conv(x)
        dout = _randn(rng, *out.shape)  # a random upstream gradient
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

        orientation = ("dx from the wrong weight orientation: dcols = W_mat.T @ dout with the SAME W_mat = "
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
        transposed = ("dw transposed: dW_mat = dout @ cols.T has shape (F, C*KH*KW); cols @ dout.T is its transpose "
                      "and reshaping that to w.shape scrambles the weights")
        batch = "dw sums over the batch: every image contributes dout[n] @ cols[n].T"
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
                            lambda: compare(student()[2], db_fd, db_mistakes, "db = dout summed over axes (0, 2, 3)"),
                            error_hint)
        yield run_check(f"dw: finite differences, {label}",
                        lambda: compare(student()[1], dw_fd, dw_mistakes,
                                        "dW_mat = sum_n dout[n] @ cols[n].T, reshaped to w.shape"), error_hint)
        yield run_check(f"dx: finite differences, {label}",
                        lambda: compare(student()[0], dx_fd, dx_mistakes,
                                        "dx = col2im(W_mat.T @ dout): check your col2im first"), error_hint)


# ----------------------------------------------------------------------------
# Exercise 4: batch-norm backward
# ----------------------------------------------------------------------------

def check_batchnorm_backward(mod):
    """batch normalisation backward pass (train mode)"""
    rng = np.random.default_rng(4)
    error_hint = "reshape (C,) vectors to (1, C, 1, 1) to broadcast; sum with axis=(0, 2, 3)"
    cases = [("N=3, C=2, H=3, W=4", (3, 2, 3, 4)), ("N=4, C=3, H=W=2", (4, 3, 2, 2))]
    for k, (label, shape) in enumerate(cases):
        N, C, H, W = shape
        x = _randn(rng, *shape, scale=2.0) + 0.5
        gamma, beta = 1.0 + _randn(rng, C, scale=0.5), _randn(rng, C, scale=0.5)
        eps = 1e-5
        bn = BatchNorm2d(C, eps=eps).astype("float64")
        bn.weight.data, bn.bias.data = gamma, beta
        out = bn(x)
        dout = _randn(rng, *shape)  # random: with dout = 1, dx is zero whatever one forgets

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
            (-dx_fd, "the sign is flipped: dx = (M*dx_hat - sum(dx_hat) - x_hat*sum(dx_hat*x_hat)) * inv_std / M"),
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
                            lambda: compare(student()[2], dbeta_fd, dbeta_mistakes, "dbeta = sum(dout)"), error_hint)
            yield run_check(f"dgamma: finite differences, {label}",
                            lambda: compare(student()[1], dgamma_fd, dgamma_mistakes, "dgamma = sum(dout * x_hat)"),
                            error_hint)
        yield run_check(f"dx: finite differences, random dout, {label}",
                        lambda: compare(student()[0], dx_fd, dx_mistakes,
                                        "dx = (M*dx_hat - sum(dx_hat) - x_hat*sum(dx_hat*x_hat)) * inv_std / M"),
                        error_hint)


# ----------------------------------------------------------------------------
# Exercise 5: BasicBlock backward
# ----------------------------------------------------------------------------

def _block_backward_switched_off(dout):
    raise RuntimeError("block.backward is switched off by the grader: write the chain rule yourself, "
                       "with the sub-layers' backward methods")


def _make_block(rng, c_in, c_out, stride):
    """A float64 BasicBlock with random weights; a 1x1-conv downsample when the shape changes."""
    downsample = None
    if stride != 1 or c_in != c_out:
        downsample = Sequential(Conv2d(c_in, c_out, 1, stride=stride, bias=False), BatchNorm2d(c_out))
    block = BasicBlock(c_in, c_out, stride, downsample=downsample).astype("float64")
    for name, p in block.named_parameters():
        if p.data.ndim == 4:  # a convolution's weight, He-scaled
            p.data = _randn(rng, *p.shape, scale=math.sqrt(2.0 / (p.shape[1] * p.shape[2] * p.shape[3])))
        elif name.endswith("weight"):  # batch-norm gamma
            p.data = 1.0 + _randn(rng, *p.shape, scale=0.3)
        else:  # batch-norm beta
            p.data = _randn(rng, *p.shape, scale=0.3)
    block.backward = _block_backward_switched_off
    return block


def check_basic_block_backward(mod):
    """BasicBlock backward pass (the chain rule through the shortcut)"""
    rng = np.random.default_rng(5)
    cases = [("identity shortcut", 2, 2, 1, (2, 2, 5, 4)),
             ("downsample shortcut (stride 2, 2->4 channels)", 2, 4, 2, (2, 2, 6, 5))]
    for label, c_in, c_out, stride, x_shape in cases:
        block = _make_block(rng, c_in, c_out, stride)
        x = _randn(rng, *x_shape)
        dout = _randn(rng, *block(x).shape)  # a random upstream gradient

        def loss():
            return float((dout * block(x)).sum())

        dx_fd = numerical_gradient(loss, x)
        params_fd = {name: numerical_gradient(loss, p.data) for name, p in block.named_parameters()}

        # dx when one step of the chain rule is skipped, from the library's layers.
        block(x)
        d_sum = block.relu2.backward(dout)

        def branch(d, relu1=True):
            d = block.conv2.backward(block.bn2.backward(d))
            d = block.relu1.backward(d) if relu1 else d
            return block.conv1.backward(block.bn1.backward(d))

        def shortcut(d):
            return d if block.downsample is None else block.downsample.backward(d)

        dx_mistakes = [
            (branch(d_sum), "the shortcut's gradient is missing: x feeds both paths, so dx = (branch's dx) + "
                            "(shortcut's dx)"),
            (shortcut(d_sum), "the residual branch's gradient is missing: dx = (branch's dx) + (shortcut's dx)"),
            (branch(dout) + shortcut(dout), "relu2's backward is missing: the addition happens BEFORE the final "
                                            "ReLU, so both paths get relu2.backward(dout)"),
            (branch(d_sum) + shortcut(dout), "the shortcut must get the gradient AFTER relu2's backward, as the "
                                             "branch does: the split is at the addition"),
            (branch(dout) + shortcut(d_sum), "the branch must get the gradient AFTER relu2's backward, as the "
                                             "shortcut does: the split is at the addition"),
            (branch(d_sum, relu1=False) + shortcut(d_sum), "relu1's backward is missing, between conv2 and bn1"),
        ]
        block.zero_grad()
        error_hint = ("with a downsample shortcut the shortcut's gradient has the OUTPUT's shape: it goes back "
                      "through block.downsample.backward to reach x's shape" if block.downsample is not None else
                      "each layer's backward takes the gradient of its output; go from relu2 back to conv1")

        def student(block=block, x=x, dout=dout):
            block.zero_grad()
            block(x)
            dx = mod.basic_block_backward(block, dout.copy())
            grads = {name: None if p.grad is None else p.grad.copy() for name, p in block.named_parameters()}
            return dx, grads

        def params(student=student, params_fd=params_fd):
            _, grads = student()
            worst = 0.0
            for name, want in params_fd.items():
                layer = name.rsplit(".", 1)[0]
                if grads[name] is None:
                    return Check(False, note=f"{name} got no gradient",
                                 hint=f"block.{layer}.backward was never called" +
                                      (": the shortcut's gradient goes through block.downsample.backward"
                                       if name.startswith("downsample") else ""))
                result = compare(grads[name], want,
                                 [(2 * want, "a backward ran twice: parameter gradients ADD UP (+=); call each "
                                             "layer's backward once")],
                                 "each layer's backward must get the gradient of its own output: fix dx first")
                if not result.passed:
                    result.note = f"worst: {name}"
                    return result
                worst = max(worst, result.error)
            return Check(True, error=worst)

        yield run_check(f"dx: finite differences, {label}",
                        lambda: compare(student()[0], dx_fd, dx_mistakes,
                                        "dx = branch(d) + shortcut(d) with d = relu2.backward(dout)"), error_hint)
        yield run_check(f"parameter gradients: finite differences, {label}", params, error_hint)


# ----------------------------------------------------------------------------
# Exercise 6: softmax cross-entropy
# ----------------------------------------------------------------------------

def check_softmax_cross_entropy(mod):
    """softmax cross-entropy, loss and gradient"""
    rng = np.random.default_rng(6)
    N, K = 5, 4
    y = rng.integers(0, K, N)
    overflow = "exp overflowed: subtract each row's maximum from the logits before exp"
    for label, logits in (("", _randn(rng, N, K, scale=2.0)),
                          (", logits in the thousands", _randn(rng, N, K, scale=3.0) + 2000.0)):
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
                return compare(got, want, dlogits_mistakes, "dz = (p - onehot(y)) / N", overflow)

            yield run_check("dlogits: finite differences (N=5, K=4)", dlogits_fd)
        else:
            yield run_check("loss, logits in the thousands",
                            lambda: compare(mod.softmax_cross_entropy(logits.copy(), y.copy())[0], want_loss,
                                            loss_mistakes, "work with log-probabilities of the shifted logits",
                                            overflow))
            yield run_check("dlogits, logits in the thousands, against SoftmaxCrossEntropy",
                            lambda: compare(mod.softmax_cross_entropy(logits.copy(), y.copy())[1], want_dlogits,
                                            dlogits_mistakes, "dz = (p - onehot(y)) / N", overflow))


# ----------------------------------------------------------------------------
# Exercise 7: SGD with momentum
# ----------------------------------------------------------------------------

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


def check_sgd_momentum(mod):
    """SGD with momentum and weight decay (torch.optim.SGD's rule)"""
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
        w0 = _randn(rng, *shape)
        grads = [_randn(rng, *shape) for _ in lrs]

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
                result = compare(np.stack([w, v]), want, mistakes, "g = dw + weight_decay * w;  "
                                 "v = momentum * v + g;  w = w - lr * v")
                if not result.passed and rel_error(w, want[0]) <= TOL:
                    result.note = "w is right, the returned v is not"
                return result
        else:
            mistakes = [(run(_sgd_variant(m))[0], hint) for m, hint in hints.items()]

            def thunk(run=run, want=p.data.copy(), mistakes=mistakes):
                return compare(run(mod.sgd_momentum_step)[0], want, mistakes, "with momentum 0: w = w - lr * dw")
        yield run_check(label, thunk, "return the pair (w, v)")


# ----------------------------------------------------------------------------
# Loading a student's file, and the command line
# ----------------------------------------------------------------------------

CHECKERS = {
    1: check_im2col,
    2: check_conv_forward,
    3: check_conv_backward,
    4: check_batchnorm_backward,
    5: check_basic_block_backward,
    6: check_softmax_cross_entropy,
    7: check_sgd_momentum,
}


class GradeError(Exception):
    """The file cannot be graded: missing, or not an exercise."""


def exercise_number(path):
    """The exercise a file is, from its name: ``ex03_conv_backward.py`` -> 3."""
    path = pathlib.Path(path)
    match = re.match(r"ex(\d\d)", path.name)
    if not match or int(match.group(1)) not in CHECKERS:
        known = ", ".join(f"ex{n:02d}" for n in CHECKERS)
        raise GradeError(f"{path}: not an exercise file: the name must start with one of {known} "
                         "(for example ex03_conv_backward.py)")
    if path.suffix != ".py":
        raise GradeError(f"{path}: not a Python file")
    if not path.is_file():
        raise GradeError(f"{path}: no such file")
    return int(match.group(1))


def load_exercise(path):
    """Import the student's file by its path (it is not part of any package)."""
    path = pathlib.Path(path)
    spec = importlib.util.spec_from_file_location(f"_exercise_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def grade(path):
    """Yield the Check of every check of the exercise in ``path`` (raises GradeError for a bad path)."""
    number = exercise_number(path)
    previous = backend.current()
    backend.use("numpy")
    try:
        try:
            module = load_exercise(path)
        except Exception as e:  # noqa: BLE001 - a syntax error, or an exception at import time
            yield run_check(f"import {pathlib.Path(path).name}", functools.partial(_reraise, e),
                            "the file must import without errors: run it with python first")
            return
        with np.errstate(all="ignore"):  # the wrong answers computed for the diagnosis may overflow
            yield from CHECKERS[number](module)
    finally:
        backend.use(previous)


def _reraise(e):
    raise e


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m resnet_np.grade",
        description="Check exercises from lessons/exercises/: one line per check, PASS or FAIL, the relative "
                    "error and a hint. Exit status 0 when every check passes.")
    parser.add_argument("files", nargs="+", help="exercise files, e.g. lessons/exercises/ex03_conv_backward.py")
    args = parser.parse_args(argv)
    all_passed = True
    for file in args.files:
        try:
            number = exercise_number(file)
        except GradeError as e:
            print(f"error: {e}", file=sys.stderr)
            all_passed = False
            continue
        title = CHECKERS[number].__doc__.strip()
        print(f"{file}: exercise {number}, {title}")
        results = []
        for result in grade(file):
            print(result.line(), flush=True)
            results.append(result)
        passed = sum(r.passed for r in results)
        print(f"{passed}/{len(results)} checks pass" + (": well done" if passed == len(results) else ""))
        all_passed = all_passed and passed == len(results)
    return 0 if all_passed else 1


if __name__ == "__main__":
    sys.exit(main())
