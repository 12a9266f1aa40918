"""Exercise 12, the Bottleneck block's backward pass with a projection shortcut: checks, hints, planted mistakes."""

import math

from ..backend import host as np
from ..gradcheck import numerical_gradient
from ..layers import BatchNorm2d, Conv2d, Sequential
from ..models import Bottleneck
from .core import Check, compare, randn, run_check

TITLE = "Bottleneck backward pass with a projection shortcut (a strided 1x1 convolution, then batch norm)"

# What the student derives: the library's implementation of it is not to be used (grade/honest.py).
DERIVES = ("block.backward", "block.downsample.backward", "Bottleneck", "Conv2d", "conv2d*", "col2im*")
# Which hint a failing check's group starts at (check-name prefix, hint number): --hint starts there.
HINT_START = [("projection_forward", 1), ("projection dx", 2), ("projection dw", 1), ("projection, stride 1", 1),
              ("block dx", 3), ("block parameter", 5)]
# The lessons the student handout gives with it.
LESSONS = ("06_basic_block.py", "07_bottleneck_and_resnet.py")

# One at a time, from a nudge to the last step (``python -m resnet_np.grade FILE --hint N``).
HINTS = [
    "The projection is a matrix product per position: proj[n, :, oh, ow] = W @ x[n, :, oh*s, ow*s] with W = "
    "w[:, :, 0, 0] of shape (F, C). Differentiate by W[f, c]: which products of dout and x meet, summed over what?",
    "By x[n, c, i, j]: a pixel with i or j not a multiple of the stride is never read, so nothing depends on it. "
    "A pixel that is read meets W's column c once: its gradient is W transposed times dout at that position.",
    "The block: draw the graph. x goes into two paths that meet at an addition, and relu3 comes after the "
    "addition: both paths receive relu3's backward of dout, and x's gradient is the SUM of what comes back.",
    "The shortcut goes back through the projection's batch norm (block.downsample[1].backward) first, then "
    "through your projection_backward, with the block's input x and block.downsample[0].weight.data.",
    "The branch, last layer first: bn3, conv3, relu2, bn2, conv2, relu1, bn1, conv1; each layer's backward once "
    "(parameter gradients add up). Return (dx, dw of the projection), or (dx, None) for the identity shortcut.",
]

# Typical mistakes planted in the reference solution (tests/exercise_solutions/ex12_bottleneck_backward.py):
# (its text, the text that replaces it, words of the hint the grader must then give). tests/test_grade.py
# plants each one and checks that the grader names it.
PLANTED = [
    ("dx[:, :, ::stride, ::stride] = np.einsum(\"fc,nfhw->nchw\", w[:, :, 0, 0], dout)",
     "dx = np.einsum(\"fc,nfhw->nchw\", w[:, :, 0, 0], dout).repeat(stride, 2).repeat(stride, 3)"
     "[:, :, :x.shape[2], :x.shape[3]]", "never read"),
    ("return dx_branch + dx_shortcut, dw_projection", "return dx_branch, dw_projection",
     "the shortcut's gradient is missing"),
    ("d_proj = bn.backward(d_shortcut)", "d_proj = d_shortcut", "batch norm"),
    ("d_sum = block.relu3.backward(dout)", "d_sum = dout", "relu3's backward is missing"),
    ("dw = np.einsum(\"nfhw,nchw->fc\", dout, x_read).reshape(w.shape)",
     "dw = np.einsum(\"nfhw,nchw->fc\", dout, x_read).reshape(w.shape) / len(x)", "sums over the batch"),
    ("dw = np.einsum(\"nfhw,nchw->fc\", dout, x_read).reshape(w.shape)",
     "dw = np.einsum(\"nfhw,nchw->cf\", dout, x_read).reshape(w.shape)", "transposed"),
]


def _switched_off(what):
    def backward(dout):
        raise RuntimeError(f"{what} is switched off by the grader: write the chain rule yourself, with the "
                           "sub-layers' backward methods and your projection_backward")
    return backward


def _make_block(rng, c_in, planes, stride):
    """A float64 Bottleneck with random weights; a projection shortcut when the shape changes."""
    downsample = None
    if stride != 1 or c_in != planes * Bottleneck.expansion:
        downsample = Sequential(Conv2d(c_in, planes * Bottleneck.expansion, 1, stride=stride, bias=False),
                                BatchNorm2d(planes * Bottleneck.expansion))
    block = Bottleneck(c_in, planes, stride, downsample=downsample).astype("float64")
    for name, p in block.named_parameters():
        if p.data.ndim == 4:  # a convolution's weight, He-scaled
            p.data = randn(rng, *p.shape, scale=math.sqrt(2.0 / (p.shape[1] * p.shape[2] * p.shape[3])))
        elif name.endswith("weight"):  # batch-norm gamma
            p.data = 1.0 + randn(rng, *p.shape, scale=0.3)
        else:  # batch-norm beta
            p.data = randn(rng, *p.shape, scale=0.3)
    block.backward = _switched_off("block.backward")
    if downsample is not None:
        downsample.backward = _switched_off("block.downsample.backward")
        downsample[0].backward = _switched_off("the projection convolution's backward (block.downsample[0])")
    return block


def _projection_checks(mod, rng):
    skipped = ("the pixels a strided 1x1 convolution never reads get NO gradient (zero): dx is w^T dout at "
               "x[:, :, ::stride, ::stride] and 0 elsewhere, not dout spread over the neighbours")
    for label, x_shape, F, stride in (("stride 2, odd-sized input", (2, 3, 7, 6), 4, 2),
                                      ("stride 1", (2, 3, 4, 5), 2, 1)):
        x, w = randn(rng, *x_shape), randn(rng, F, x_shape[1], 1, 1)
        conv = Conv2d(x_shape[1], F, 1, stride=stride, bias=False).astype("float64")
        conv.weight.data = w
        out = conv(x)
        dout = randn(rng, *out.shape)
        dx_fd = numerical_gradient(lambda: float((dout * conv.forward(x)).sum()), x)
        dw_fd = numerical_gradient(lambda: float((dout * conv.forward(x)).sum()), w)
        spread = np.einsum("fc,nfhw->nchw", w[:, :, 0, 0], dout).repeat(stride, 2).repeat(stride, 3)
        dx_mistakes = [(spread[:, :, :x_shape[2], :x_shape[3]], skipped),
                       ((x_shape[0], x_shape[1]) + out.shape[2:], "dx has x's shape: the pixels the stride skips "
                                                                  "are there too, with gradient 0")]
        batch = "dw sums over the batch (and the positions): every image contributes its own term"
        transposed = "dw transposed: it has w's shape (F, C, 1, 1), one row per output channel"
        dw_mistakes = [(dw_fd / x_shape[0], batch),
                       (np.einsum("fhw,chw->fc", dout[0], x[0, :, ::stride, ::stride]).reshape(w.shape), batch),
                       (dw_fd[:, :, 0, 0].T.reshape(w.shape), transposed),  # C*F values in the wrong order
                       ((x_shape[1], F, 1, 1), transposed), ((F, x_shape[1]), "reshape dw to w's shape (F, C, 1, 1)")]

        def student(x=x, w=w, dout=dout, stride=stride):
            return mod.projection_backward(dout.copy(), x.copy(), w.copy(), stride)

        if stride == 2:
            yield run_check("projection_forward (given code) still matches Conv2d(1x1, stride 2)",
                            lambda: compare(mod.projection_forward(x.copy(), w.copy(), 2), out,
                                            hint="projection_forward is given: restore it from the original file"))
            yield run_check(f"projection dx: finite differences, {label}",
                            lambda: compare(student()[0], dx_fd, dx_mistakes,
                                            "differentiate the sum by one pixel x[n, c, i, j]: which outputs read "
                                            "it?"), "return (dx, dw); dx has x's shape")
            yield run_check(f"projection dw: finite differences, {label}",
                            lambda: compare(student()[1], dw_fd, dw_mistakes,
                                            "differentiate the sum by one weight w[f, c]"), "return (dx, dw)")
        else:
            def both(student=student, dx_fd=dx_fd, dw_fd=dw_fd):
                dx, dw = student()
                result = compare(dx, dx_fd, dx_mistakes, "with stride 1 every pixel is read once")
                if result.passed:
                    result = compare(dw, dw_fd, dw_mistakes, "differentiate the sum by one weight w[f, c]")
                    result.note = "dw" if not result.passed else ""
                else:
                    result.note = "dx"
                return result

            yield run_check(f"projection, {label}: dx and dw against finite differences", both, "return (dx, dw)")


def checks(mod):
    """Yield the outcome of every check of the student's module ``mod``."""
    rng = np.random.default_rng(12)
    yield from _projection_checks(mod, rng)
    cases = [("projection shortcut (stride 2, 4 -> 8 channels)", 4, 2, 2, (2, 4, 5, 4)),
             ("identity shortcut (8 channels)", 8, 2, 1, (2, 8, 3, 4))]
    for label, c_in, planes, stride, x_shape in cases:
        block = _make_block(rng, c_in, planes, stride)
        x = randn(rng, *x_shape)
        dout = randn(rng, *block(x).shape)  # a random upstream gradient

        def loss():
            return float((dout * block(x)).sum())

        dx_fd = numerical_gradient(loss, x)
        params_fd = {name: numerical_gradient(loss, p.data) for name, p in block.named_parameters()}

        # dx when one step of the chain rule is skipped, from the library's layers.
        block(x)
        d_sum = block.relu3.backward(dout)

        def branch(d):
            for layer in (block.bn3, block.conv3, block.relu2, block.bn2, block.conv2, block.relu1, block.bn1,
                          block.conv1):
                d = layer.backward(d)
            return d

        def shortcut(d, bn=True):
            if block.downsample is None:
                return d
            conv = block.downsample[0]
            d = block.downsample[1].backward(d) if bn else d
            dx = np.zeros(x_shape)
            dx[:, :, ::stride, ::stride] = np.einsum("fc,nfhw->nchw", conv.weight.data[:, :, 0, 0], d)
            return dx

        dx_mistakes = [
            (branch(d_sum), "the shortcut's gradient is missing: x feeds both paths, so dx = (branch's dx) + "
                            "(shortcut's dx)"),
            (shortcut(d_sum), "the residual branch's gradient is missing: dx = (branch's dx) + (shortcut's dx)"),
            (branch(dout) + shortcut(dout), "relu3's backward is missing: the addition comes BEFORE the final "
                                            "ReLU, so both paths get relu3.backward(dout)"),
            (branch(d_sum) + shortcut(dout), "the shortcut must get the gradient AFTER relu3's backward, as the "
                                             "branch does: the split is at the addition"),
        ]
        if block.downsample is not None:
            dx_mistakes.append((branch(d_sum) + shortcut(d_sum, bn=False),
                                "the projection is a convolution THEN a batch norm: go back through the batch "
                                "norm (block.downsample[1].backward) before your projection_backward"))

        def student(block=block, x=x, dout=dout):
            block.zero_grad()
            block(x)
            dx, dw_projection = mod.bottleneck_backward(block, x.copy(), dout.copy())
            grads = {name: None if p.grad is None else p.grad.copy() for name, p in block.named_parameters()}
            if block.downsample is not None:
                grads["downsample.0.weight"] = dw_projection
            return dx, grads

        def params(student=student, params_fd=params_fd):
            _, grads = student()
            worst = 0.0
            for name, want in params_fd.items():
                layer = name.rsplit(".", 1)[0]
                if grads[name] is None:
                    return Check(False, note=f"{name} got no gradient",
                                 hint="return the projection's dw from your projection_backward"
                                 if name == "downsample.0.weight" else f"block.{layer}.backward was never called")
                result = compare(grads[name], want,
                                 [(2 * want, "a backward ran twice: parameter gradients ADD UP (+=); call each "
                                             "layer's backward once")],
                                 "each layer's backward must get the gradient of its own output: fix dx first")
                if not result.passed:
                    result.note = f"worst: {name}"
                    return result
                worst = max(worst, result.error)
            return Check(True, error=worst)

        error_hint = ("return (dx, dw of the projection); the shortcut goes back through block.downsample[1] and "
                      "your projection_backward" if block.downsample is not None else
                      "return (dx, None): with the identity shortcut there is no projection")
        yield run_check(f"block dx: finite differences, {label}",
                        lambda: compare(student()[0], dx_fd, dx_mistakes,
                                        "follow the graph backward: relu3, the split at the addition, both paths, "
                                        "and what x receives from each"), error_hint)
        if block.downsample is not None:
            yield run_check(f"block parameter gradients (the projection's dw too), {label}", params, error_hint)
