"""Exercise 5, the BasicBlock's backward pass: the checks, the hints and the planted mistakes."""

import math

from ..backend import host as np
from ..gradcheck import numerical_gradient
from ..layers import BatchNorm2d, Conv2d, Sequential
from ..models import BasicBlock
from .core import Check, compare, randn, run_check

TITLE = "BasicBlock backward pass (the chain rule through the shortcut)"

# What the student derives: the library's implementation of it is not to be used (grade/honest.py).
DERIVES = ("block.backward", "BasicBlock")
# Which hint a failing check's group starts at (check-name prefix, hint number): --hint starts there.
HINT_START = [("dx", 1), ("parameter", 4)]
# The lessons the student handout gives with it.
LESSONS = ("05_relu_and_add.py", "06_basic_block.py")

# One at a time, from a nudge to the last step (``python -m resnet_np.grade FILE --hint N``).
HINTS = [
    "Draw the forward pass as a graph: x goes into TWO paths (the branch and the shortcut) that meet again at an "
    "addition, and one layer comes after the addition. Backward visits that graph in reverse.",
    "What is d(r + s)/dr, and d(r + s)/ds? So what does each path receive from the addition, given the gradient "
    "that arrives AT the addition (after the last layer's backward)?",
    "x fed both paths. When one variable is used twice, its gradient is the sum of the gradients that come back "
    "along each use (the multivariable chain rule).",
    "The branch goes back last layer first: bn2, conv2, relu1, bn1, conv1. The shortcut is either nothing (the "
    "identity) or a module with its own backward; what comes out of it has x's shape.",
]

# Typical mistakes planted in the reference solution (tests/exercise_solutions/ex05_basic_block_backward.py):
# (its text, the text that replaces it, words of the hint the grader must then give). tests/test_grade.py
# plants each one and checks that the grader names it.
PLANTED = [
    ("return dx_branch + dx_shortcut", "return dx_branch", "the shortcut's gradient is missing"),
    ("d_sum = block.relu2.backward(dout)", "d_sum = dout", "relu2's backward is missing"),
    ("dx_shortcut = block.downsample.backward(d_shortcut)", "dx_shortcut = d_shortcut",
     "through block.downsample.backward"),
    ("d_shortcut = d_sum", "d_shortcut = dout", "the shortcut must get the gradient AFTER relu2's backward"),
    ("d_branch = block.relu1.backward(d_branch)", "pass", "relu1's backward is missing"),
]


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
            p.data = randn(rng, *p.shape, scale=math.sqrt(2.0 / (p.shape[1] * p.shape[2] * p.shape[3])))
        elif name.endswith("weight"):  # batch-norm gamma
            p.data = 1.0 + randn(rng, *p.shape, scale=0.3)
        else:  # batch-norm beta
            p.data = randn(rng, *p.shape, scale=0.3)
    block.backward = _block_backward_switched_off
    return block


def checks(mod):
    """Yield the outcome of every check of the student's module ``mod``."""
    rng = np.random.default_rng(5)
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
                                        "follow the graph backward: the last layer, the split at the addition, "
                                        "both paths, and what x receives from each"), error_hint)
        yield run_check(f"parameter gradients: finite differences, {label}", params, error_hint)
