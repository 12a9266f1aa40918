"""Every layer's input and parameter gradients against finite differences, in float64.

Configurations cover what breaks a backward pass: kernels 1, 3, 7 and
non-square; stride 1 and 2; padding 0 to 3; overlapping max-pool windows
(stride < kernel), where one input collects gradient from several windows;
batch norm in train and in eval mode.
"""

import numpy as np
import pytest

from resnet_np import layers as L
from resnet_np import use_fast
from resnet_np.gradcheck import check_module
from resnet_np.module import Module

TOL = 1e-7


@pytest.fixture(params=[True, False], ids=["fast", "plain"], autouse=True)
def path(request):
    """Every test runs on both paths: the fast layers and the plain ones (resnet_np.use_fast)."""
    with use_fast(request.param):
        yield request.param


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


CONV_CONFIGS = [
    # (in, out, kernel, stride, padding, bias)
    (3, 4, 1, 1, 0, True),
    (3, 4, 1, 2, 0, False),
    (3, 4, 3, 1, 1, True),
    (3, 4, 3, 2, 1, False),
    (3, 4, 3, 1, 0, True),
    (2, 3, 7, 2, 3, True),
    (2, 3, 7, 1, 2, False),
    (3, 2, (3, 2), (2, 1), (1, 0), True),
    (3, 2, (2, 5), 1, (0, 2), True),
    (3, 2, 3, (1, 2), 3, True),
]


@pytest.mark.parametrize("cin,cout,k,s,p,bias", CONV_CONFIGS, ids=lambda v: str(v).replace(" ", ""))
def test_conv2d_gradients(cin, cout, k, s, p, bias):
    conv = L.Conv2d(cin, cout, k, stride=s, padding=p, bias=bias)
    report = check_module(conv, randn(2, cin, 9, 8), tol=TOL)
    names = [r.name for r in report.results]
    assert names == ["input", "weight"] + (["bias"] if bias else [])


@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (2, 3, 1, 1), (3, 2, 4, 1)])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_train_gradients(shape, momentum):
    bn = L.BatchNorm2d(shape[1], momentum=momentum)
    bn.weight.data[...] = np.linspace(0.5, 1.5, shape[1])  # not all ones, so gamma matters in dx
    bn.bias.data[...] = np.linspace(-0.2, 0.3, shape[1])
    check_module(bn.train(), randn(*shape) * 2 + 0.5, tol=TOL)


def test_batchnorm_eval_gradients():
    bn = L.BatchNorm2d(3)
    bn.weight.data[...] = [0.5, 1.0, 2.0]
    bn.running_mean[...] = [0.1, -0.3, 0.2]
    bn.running_var[...] = [0.5, 2.0, 1.3]
    check_module(bn.eval(), randn(4, 3, 5, 5), tol=TOL)


def test_relu_gradients():
    check_module(L.ReLU(), randn(3, 4, 5, 5), tol=TOL)


POOL_CONFIGS = [
    # (kernel, stride, padding): the first, second and last overlap
    (3, 1, 0),
    (3, 2, 1),
    (2, 2, 0),
    ((3, 2), (1, 2), (1, 0)),
    (3, 1, 1),
]


@pytest.mark.parametrize("k,s,p", POOL_CONFIGS, ids=lambda v: str(v).replace(" ", ""))
def test_maxpool_gradients(k, s, p):
    check_module(L.MaxPool2d(k, stride=s, padding=p), randn(2, 3, 8, 7), tol=TOL)


def test_global_avg_pool_gradients():
    check_module(L.GlobalAvgPool2d(), randn(3, 4, 5, 6), tol=TOL)


def test_flatten_gradients():
    check_module(L.Flatten(), randn(3, 4, 2, 5), tol=TOL)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_gradients(bias):
    check_module(L.Linear(7, 5, bias=bias), randn(6, 7), tol=TOL)


def test_add_gradients():
    report = check_module(L.Add(), randn(2, 3, 4, 4), randn(2, 3, 4, 4, seed=1), tol=TOL)
    assert [r.name for r in report.results] == ["input 0", "input 1"]


def test_softmax_cross_entropy_gradients():
    logits = randn(6, 5) * 3
    labels = np.array([0, 4, 2, 2, 1, 3])
    check_module(L.SoftmaxCrossEntropy(), logits, labels, tol=TOL)


class TinyResidual(Module):
    """conv-bn-relu-conv-bn, plus the identity, then relu: a block built from the layers."""

    def __init__(self, c):
        super().__init__()
        self.conv1 = L.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = L.BatchNorm2d(c)
        self.relu1 = L.ReLU()
        self.conv2 = L.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = L.BatchNorm2d(c)
        self.add = L.Add()
        self.relu2 = L.ReLU()

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(self.add(out, x))

    def backward(self, dout):
        dout = self.relu2.backward(dout)
        d_branch, d_shortcut = self.add.backward(dout)       # the gradient splits
        d_branch = self.conv1.backward(self.bn1.backward(self.relu1.backward(
            self.conv2.backward(self.bn2.backward(d_branch)))))
        return d_branch + d_shortcut                          # and is summed at the input


def test_sequential_network_gradients():
    net = L.Sequential(L.Conv2d(3, 4, 3, stride=2, padding=1, bias=False), L.BatchNorm2d(4), L.ReLU(),
                       L.MaxPool2d(3, stride=2, padding=1), L.GlobalAvgPool2d(), L.Flatten(), L.Linear(4, 3))
    check_module(net, randn(3, 3, 9, 9), tol=TOL)


def test_residual_block_gradients_per_element():
    check_module(TinyResidual(3), randn(2, 3, 5, 5), tol=TOL)


def test_residual_block_gradients_directional():
    """Larger tensors are checked along random directions (two forward passes each)."""
    report = check_module(TinyResidual(8), randn(4, 8, 12, 12), tol=TOL, max_elements=200, num_directions=3)
    assert any(r.method == "directional" for r in report.results)
