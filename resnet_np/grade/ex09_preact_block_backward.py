"""Exercise 9, the pre-activation block's backward pass: the checks, the hints and the planted mistakes."""

import math

from ..backend import host as np
from ..gradcheck import numerical_gradient
from ..models import PreActBasicBlock
from .core import Check, compare, randn, run_check

TITLE = "pre-activation block backward pass (PreActBasicBlock: nothing after the addition)"

# What the student derives: the library's implementation of it is not to be used (grade/honest.py).
DERIVES = ("block.backward", "PreActBasicBlock", "PreAct*")
# Which hint a failing check's group starts at (check-name prefix, hint number): --hint starts there.
HINT_START = [("dx", 1), ("parameter", 2)]
# The lessons the student handout gives with it.
LESSONS = ("06_basic_block.py", "12_after_resnet.py")

# One at a time, from a nudge to the last step (``python -m resnet_np.grade FILE --hint N``).
HINTS = [
    "Draw the graph with every arrow: where does x go, where does pre = relu1(bn1(x)) go, and what comes after "
    "the addition? Compare with exercise 5's block.",
    "Nothing comes after the addition, so both the branch and the shortcut receive dout itself. The branch runs "
    "backward from its last layer: conv2, relu2, bn2, conv1. That gives the branch's gradient of pre.",
    "A variable used twice gets the SUM of the gradients of its uses. With the identity shortcut, x is used "
    "twice: by bn1 and by the addition.",
    "With a downsample, the shortcut reads pre, not x: pre is used twice (by conv1 and by the downsample). Add "
    "the two gradients at pre, and only then go back through relu1 and bn1.",
]

# Typical mistakes planted in the reference solution (tests/exercise_solutions/ex09_preact_block_backward.py):
# (its text, the text that replaces it, words of the hint the grader must then give). tests/test_grade.py
# plants each one and checks that the grader names it.
PLANTED = [
    ("return dx_branch + d_shortcut", "return dx_branch", "the identity shortcut's gradient is missing"),
    ("d_pre = d_pre + block.downsample.backward(d_shortcut)\n"
     "        return block.bn1.backward(block.relu1.backward(d_pre))",
     "return block.bn1.backward(block.relu1.backward(d_pre)) + block.downsample.backward(d_shortcut)",
     "the downsample reads pre"),
    ("d_branch = dout\n    d_shortcut = dout", "d_branch = d_shortcut = block.relu2.backward(dout)",
     "nothing comes after the addition"),
    ("dx_branch = block.bn1.backward(block.relu1.backward(d_pre))", "dx_branch = block.bn1.backward(d_pre)",
     "relu1's backward is missing"),
    ("d_branch = block.relu2.backward(d_branch)\n    d_branch = block.bn2.backward(d_branch)",
     "d_branch = block.bn2.backward(d_branch)\n    d_branch = block.relu2.backward(d_branch)",
     "the reverse order of the forward pass"),
]


def _block_backward_switched_off(dout):
    raise RuntimeError("block.backward is switched off by the grader: write the chain rule yourself, "
                       "with the sub-layers' backward methods")


def _make_block(rng, c_in, c_out, stride):
    """A float64 PreActBasicBlock with random weights (a bare 1x1-conv downsample when the shape changes)."""
    block = PreActBasicBlock(c_in, c_out, stride).astype("float64")
    for name, p in block.named_parameters():
        if p.data.ndim == 4:  # a convolution's weight, He-scaled
            p.data = randn(rng, *p.shape, scale=math.sqrt(2.0 / (p.shape[1] * p.shape[2] * p.shape[3])))
        elif name.endswith("weight"):  # batch-norm gamma
            p.data = 1.0 + randn(rng, *p.shape, scale=0.3)
        else:  # batch-norm beta
            p.data = randn(rng, *p.shape, scale=0.3)
    block.backward = _block_backward_switched_off
    return block


def _dx(block, dout, mistake=None):
    """dx through the block's layers, right (mistake None) or with one typical mistake; block(x) has run."""
    d = block.relu2.backward(dout) if mistake == "relu after add" else dout
    d_branch = block.conv2.backward(d)
    if mistake == "bn2 before relu2":
        d_branch = block.relu2.backward(block.bn2.backward(d_branch))
    else:
        d_branch = block.bn2.backward(block.relu2.backward(d_branch))
    d_pre = block.conv1.backward(d_branch) if mistake != "no branch" else 0 * block.conv1.backward(d_branch)

    def back_to_x(g):
        return block.bn1.backward(g if mistake == "no relu1" else block.relu1.backward(g))

    if mistake == "no shortcut":
        return back_to_x(d_pre)
    if block.downsample is None:
        return back_to_x(d_pre) + d
    if mistake == "downsample at x":
        return back_to_x(d_pre) + block.downsample.backward(d)
    return back_to_x(d_pre + block.downsample.backward(d))


def checks(mod):
    """Yield the outcome of every check of the student's module ``mod``."""
    rng = np.random.default_rng(9)
    cases = [("identity shortcut", 2, 2, 1, (2, 2, 5, 4)),
             ("downsample shortcut (stride 2, 2->4 channels)", 2, 4, 2, (2, 2, 6, 5))]
    for label, c_in, c_out, stride, x_shape in cases:
        block = _make_block(rng, c_in, c_out, stride)
        x = randn(rng, *x_shape)
        dout = randn(rng, *block(x).shape)  # a random upstream gradient

        def loss():
            return float((dout * block(x)).sum())

        dx_fd = numerical_gradient(loss, x)
        params_fd = {name: numerical_gradient(loss, p.data) for name, p in block.named_parameters()}

        block(x)
        shortcut_missing = ("the identity shortcut's gradient is missing: x is used twice (by bn1 and by the "
                            "addition), so dx is the sum of the two gradients" if block.downsample is None else
                            "the shortcut's gradient is missing: the downsample's backward gives a gradient of pre "
                            "that joins conv1's")
        dx_mistakes = [
            (_dx(block, dout, "no shortcut"), shortcut_missing),
            (_dx(block, dout, "no branch"), "the residual branch's gradient is missing: go back through conv2, "
                                            "relu2, bn2, conv1, then relu1 and bn1"),
            (_dx(block, dout, "relu after add"), "nothing comes after the addition in a pre-activation block: both "
                                                 "paths receive dout itself (relu2 sits between bn2 and conv2)"),
            (_dx(block, dout, "no relu1"), "relu1's backward is missing, between the gradient of pre and bn1"),
            (_dx(block, dout, "bn2 before relu2"), "backward runs in the reverse order of the forward pass: conv2, "
                                                   "then relu2, then bn2"),
        ]
        if block.downsample is not None:
            dx_mistakes.append((_dx(block, dout, "downsample at x"),
                                "the downsample reads pre = relu1(bn1(x)), not x: its gradient joins conv1's at pre, "
                                "BEFORE relu1's and bn1's backward"))
        block.zero_grad()
        error_hint = ("the downsample takes pre (x's shape) to the output's shape: its backward takes dout back to "
                      "pre's shape" if block.downsample is not None else
                      "each layer's backward takes the gradient of its output; go from conv2 back to bn1")

        def student(block=block, x=x, dout=dout):
            block.zero_grad()
            block(x)
            dx = mod.preact_block_backward(block, dout.copy())
            grads = {name: None if p.grad is None else p.grad.copy() for name, p in block.named_parameters()}
            return dx, grads

        def params(student=student, params_fd=params_fd):
            _, grads = student()
            worst = 0.0
            for name, want in params_fd.items():
                layer = name.rsplit(".", 1)[0]
                if grads[name] is None:
                    return Check(False, note=f"{name} got no gradient", hint=f"block.{layer}.backward was never called")
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
                                        "follow the graph backward: what each path receives from the addition, the "
                                        "branch's layers in reverse, and where the shortcut's gradient joins"),
                        error_hint)
        yield run_check(f"parameter gradients: finite differences, {label}", params, error_hint)
