"""The fast path equals the plain one: every layer, every network family, in float64 (resnet_np.use_fast).

The plain layers (``resnet_np/layers/``) are the formulas; the engine
(``resnet_np/fast/``) holds the tricks. Each test runs the same module on
both paths, from the same weights and inputs, and compares the forward
output, dx, every parameter gradient and the running statistics. The
planted-bug tests at the end break one trick of the engine and check that
these comparisons notice.
"""

import ast
import inspect
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import resnet_np
from resnet_np import fast, use_fast
from resnet_np import layers as L
from resnet_np.fast import buffers
from resnet_np.gradcheck import rel_error

TOL = 1e-10


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def run_both(make, x, train=True, seed=1, backward_kwargs=None):
    """{fast: (out, dx, grads, buffers), plain: ...} of ``make()`` on x, with a random upstream gradient."""
    results = {}
    for flag in (True, False):
        module = make()
        module.train(train)
        with use_fast(flag):
            out = module(x)
            dout = randn(*out.shape, seed=seed)
            dx = module.backward(dout, **(backward_kwargs or {}))
        grads = {name: p.grad.copy() for name, p in module.named_parameters() if p.grad is not None}
        buffers = {name: np.array(b, copy=True) for name, b in module.named_buffers()}
        results[flag] = (out, dx, grads, buffers)
    return results


def assert_paths_equal(results, tol=TOL):
    (out_f, dx_f, grads_f, buf_f), (out_p, dx_p, grads_p, buf_p) = results[True], results[False]
    assert out_f.shape == out_p.shape and out_f.dtype == out_p.dtype
    if np.isfinite(out_p).all():
        assert rel_error(out_f, out_p) < tol, f"forward: {rel_error(out_f, out_p):.1e}"
    else:                                  # max pooling over windows of -inf: exact
        np.testing.assert_array_equal(out_f, out_p)
    if dx_p is None:
        assert dx_f is None
    else:
        assert rel_error(dx_f, dx_p) < tol, f"dx: {rel_error(dx_f, dx_p):.1e}"
    assert grads_f.keys() == grads_p.keys()
    for name in grads_p:
        assert rel_error(grads_f[name], grads_p[name]) < tol, f"{name}: {rel_error(grads_f[name], grads_p[name]):.1e}"
    assert buf_f.keys() == buf_p.keys()
    for name in buf_p:
        np.testing.assert_allclose(buf_f[name], buf_p[name], rtol=1e-12, atol=1e-14, err_msg=name)


def seeded(make_module, seed=0):
    """A maker that builds the same module (same weights) every time, in float64."""
    def make():
        resnet_np.backend.manual_seed(seed)
        return make_module().astype("float64")
    return make


# --------------------------------------------------------------------------------------------------
# The switch
# --------------------------------------------------------------------------------------------------

def test_use_fast_is_a_call_and_a_context_manager():
    assert resnet_np.fast_enabled()
    with use_fast(False):
        assert not resnet_np.fast_enabled()
        with use_fast(True):
            assert resnet_np.fast_enabled()
        assert not resnet_np.fast_enabled()
    assert resnet_np.fast_enabled()
    use_fast(False)
    try:
        assert not resnet_np.fast_enabled()
    finally:
        use_fast(True)
    with pytest.raises(TypeError, match="use_fast: flag must be True or False"):
        use_fast("no")


@pytest.mark.parametrize("value,expected", [("0", "False"), ("1", "True"), ("", "True")])
def test_environment_variable_chooses_the_path(value, expected):
    env = dict(os.environ, RESNET_NP_FAST=value)
    out = subprocess.run([sys.executable, "-c", "import resnet_np; print(resnet_np.fast_enabled())"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == expected


def test_environment_variable_nonsense_is_named():
    env = dict(os.environ, RESNET_NP_FAST="yes")
    out = subprocess.run([sys.executable, "-c", "import resnet_np"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode != 0 and "RESNET_NP_FAST must be 0" in out.stderr


# --------------------------------------------------------------------------------------------------
# Batch norm and the residual addition
# --------------------------------------------------------------------------------------------------

def make_bn(C, momentum=0.1):
    def make():
        bn = L.BatchNorm2d(C, momentum=momentum).astype("float64")
        bn.weight.data[...] = np.linspace(0.5, 1.5, C)
        bn.bias.data[...] = np.linspace(-0.2, 0.3, C)
        bn.running_mean[...] = np.linspace(-0.1, 0.2, C)
        bn.running_var[...] = np.linspace(0.5, 2.0, C)
        return bn
    return make


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (2, 3, 1, 1), (3, 2, 4, 7), (64, 4, 6, 5)])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_paths_equal(shape, train, momentum):
    x = randn(*shape) * 2 + 0.5
    assert_paths_equal(run_both(make_bn(shape[1], momentum), x, train))


def test_add_paths_equal():
    for shape in [(4, 3, 5, 5), (64, 8, 8, 8), ()]:
        a, b = randn(*shape), randn(*shape, seed=1)
        with use_fast(True):
            fast_out = L.Add()(a, b)
        with use_fast(False):
            plain_out = L.Add()(a, b)
        np.testing.assert_array_equal(fast_out, plain_out)


@pytest.mark.parametrize("forward_fast", [True, False])
def test_batchnorm_forward_on_one_path_backward_on_the_other(forward_fast):
    x = randn(4, 3, 5, 5)
    dout = randn(4, 3, 5, 5, seed=1)
    results = []
    for switch in (False, True):
        bn = make_bn(3)()
        with use_fast(forward_fast):
            bn(x)
        with use_fast(forward_fast != switch):
            results.append((bn.backward(dout), bn.weight.grad.copy(), bn.bias.grad.copy()))
    for a, b in zip(*results):
        assert rel_error(a, b) < TOL


class ScaledStatistics(L.BatchNorm2d):
    """A BatchNorm2d whose batch is pretended twice as large (the way SyncBatchNorm adds other ranks' sums)."""

    calls = []

    def _batch_statistics(self, x):
        self.calls.append("statistics")
        mean, var, M = super()._batch_statistics(x)
        return mean, var, 2 * M

    def _gradient_sums(self, dout, x_centered):
        self.calls.append("sums")
        sum_dout, sum_dout_xc = super()._gradient_sums(dout, x_centered)
        return 2 * sum_dout, 2 * sum_dout_xc


@pytest.mark.parametrize("flag", [True, False], ids=["fast", "plain"])
def test_batchnorm_subclass_hooks_are_called_on_both_paths(flag):
    """SyncBatchNorm's interface: _batch_statistics and _gradient_sums, on both paths; parameter grads stay local."""
    x, dout = randn(4, 3, 5, 5), randn(4, 3, 5, 5, seed=1)
    with use_fast(flag):
        bn, ref = ScaledStatistics(3).astype("float64"), L.BatchNorm2d(3).astype("float64")
        ScaledStatistics.calls.clear()
        out, out_ref = bn(x), ref(x)
        dx, dx_ref = bn.backward(dout), ref.backward(dout)
    assert ScaledStatistics.calls == ["statistics", "sums"]
    np.testing.assert_allclose(out, out_ref, rtol=1e-12)       # same mean and var: the same output
    # M doubled and the sums doubled cancel in dx; the running variance saw M = 2 * 100
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(bn.weight.grad, ref.weight.grad, rtol=1e-12)
    np.testing.assert_allclose(bn.bias.grad, ref.bias.grad, rtol=1e-12)
    var = x.var(axis=(0, 2, 3))
    np.testing.assert_allclose(bn.running_var, 0.9 + 0.1 * var * 200 / 199, rtol=1e-6)


# --------------------------------------------------------------------------------------------------
# Convolution, ReLU, max pooling
# --------------------------------------------------------------------------------------------------

CONV_CASES = {
    # name: (N, C, F, H, W, kernel, stride, padding, dilation, groups)
    "3x3 same": (3, 4, 6, 7, 6, 3, 1, 1, 1, 1),
    "3x3 stride 2": (3, 4, 6, 9, 8, 3, 2, 1, 1, 1),
    "1x1 stride 2 (downsample)": (3, 4, 8, 8, 8, 1, 2, 0, 1, 1),
    "7x7 stem": (2, 3, 8, 15, 13, 7, 2, 3, 1, 1),
    "few in, many out": (3, 2, 9, 6, 7, 3, 1, 1, 1, 1),
    "no padding": (3, 4, 4, 7, 6, 3, 1, 0, 1, 1),
    "padding beyond the kernel": (2, 3, 3, 5, 6, 3, 1, 3, 1, 1),
    "non-square everything": (3, 3, 5, 9, 7, (3, 2), (2, 1), (1, 0), 1, 1),
    "dilation 2": (3, 4, 4, 9, 8, 3, 1, 2, 2, 1),
    "non-square dilation": (2, 4, 6, 9, 8, (3, 2), 1, (2, 1), (1, 2), 2),
    "groups 2, stride 2": (3, 4, 6, 9, 8, 3, 2, 1, 1, 2),
    "depthwise": (3, 6, 6, 7, 7, 3, 1, 1, 1, 6),
    "grouped 1x1": (3, 6, 9, 5, 5, 1, 1, 0, 1, 3),
}


def make_conv(C, F, k, s, p, d, g, route="auto", bias=True):
    return seeded(lambda: L.Conv2d(C, F, k, stride=s, padding=p, dilation=d, groups=g, bias=bias,
                                   backward_route=route))


@pytest.mark.parametrize("name", CONV_CASES)
def test_conv_paths_equal(name):
    N, C, F, H, W, k, s, p, d, g = CONV_CASES[name]
    assert_paths_equal(run_both(make_conv(C, F, k, s, p, d, g), randn(N, C, H, W)))
    assert_paths_equal(run_both(make_conv(C, F, k, s, p, d, g, bias=False), randn(N, C, H, W),
                                backward_kwargs={"need_input_grad": False}))


@pytest.mark.parametrize("route", ["col2im", "transposed"])
@pytest.mark.parametrize("name", ["3x3 same", "few in, many out", "no padding", "dilation 2", "non-square dilation",
                                  "depthwise", "grouped 1x1"])
def test_every_fast_route_equals_the_plain_backward(name, route):
    N, C, F, H, W, k, s, p, d, g = CONV_CASES[name]
    assert_paths_equal(run_both(make_conv(C, F, k, s, p, d, g, route), randn(N, C, H, W)))


def test_conv_in_chunks_and_threads_equals_the_plain_path(monkeypatch):
    """A chunk of one image and three threads: the fast path's buffers reused from chunk to chunk."""
    monkeypatch.setattr(buffers, "CPU_CHUNK_BYTES", 1)
    monkeypatch.setattr(buffers, "MIN_CHUNK_COLUMNS", 1)
    old = fast.get_num_threads()
    fast.set_num_threads(3)
    try:
        for name in ("3x3 same", "3x3 stride 2", "groups 2, stride 2", "few in, many out"):
            N, C, F, H, W, k, s, p, d, g = CONV_CASES[name]
            for route in ("col2im", "auto"):
                assert_paths_equal(run_both(make_conv(C, F, k, s, p, d, g, route), randn(7, C, H, W)))
    finally:
        fast.set_num_threads(old)


def test_helper_threads_raise_share_and_nest():
    """A part's error reaches the caller and leaves the helpers free; a part that shares out work itself runs
    its parts one after the other, with the parts a free call would have had."""
    old = fast.get_num_threads()
    fast.set_num_threads(3)
    try:
        def failing(n0, n1):
            if n0 == 0:
                raise KeyError("part 0")
            return n0
        for _ in range(2):
            with pytest.raises(KeyError, match="part 0"):
                fast.threads.for_each_part(failing, 9)
        assert fast.threads.for_each_part(lambda n0, n1: (n0, n1), 9) == [(0, 3), (3, 6), (6, 9)]
        nested = fast.threads.for_each_part(lambda n0, n1: fast.threads.for_each_part(lambda a, b: (a, b), 6), 2)
        assert nested == [[(0, 2), (2, 4), (4, 6)]] * 2
    finally:
        fast.set_num_threads(old)


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs POSIX signals")
def test_an_interrupted_wait_for_a_helper_leaves_the_next_call_right():
    """Ctrl-C while the caller waits for a helper's part: the next call gets its own parts' results, not the
    interrupted call's (the helper still busy with the old part is not handed the new one)."""
    class Interrupt(Exception):
        pass

    def interrupt(signum, frame):
        raise Interrupt

    old_handler, old = signal.signal(signal.SIGALRM, interrupt), fast.get_num_threads()
    fast.set_num_threads(2)
    try:
        def slow_first_part(n0, n1):
            if n0 == 0:
                time.sleep(0.3)
            return ("old", n0)
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(Interrupt):
            fast.threads.for_each_part(slow_first_part, 4)
        assert fast.threads.for_each_part(lambda n0, n1: ("new", n0), 4) == [("new", 0), ("new", 2)]
        time.sleep(0.3)                      # the old part ends meanwhile ...
        assert fast.threads.for_each_part(lambda n0, n1: ("new", n0), 4) == [("new", 0), ("new", 2)]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        fast.set_num_threads(old)


@pytest.mark.parametrize("forward_fast", [True, False])
def test_conv_forward_on_one_path_backward_on_the_other(forward_fast):
    x = randn(3, 4, 7, 6)
    results = []
    for switch in (False, True):
        conv = make_conv(4, 6, 3, 1, 1, 1, 2)()
        with use_fast(forward_fast):
            out = conv(x)
        with use_fast(forward_fast != switch):
            dx = conv.backward(randn(*out.shape, seed=1))
        results.append((out, dx, conv.weight.grad.copy(), conv.bias.grad.copy()))
    for a, b in zip(*results):
        assert rel_error(a, b) < TOL


def relu_input(shape):
    x = randn(*shape)
    x.reshape(-1)[::5] = 0.0           # exact zeros: the kink, where the gradient is 0
    return x


def test_relu_paths_equal():
    for shape in [(4, 3, 5, 5), (64, 4, 6, 6), (5, 7)]:
        assert_paths_equal(run_both(L.ReLU, relu_input(shape)))


POOL_CASES = [(3, 2, 1), (2, 2, 0), (3, 1, 1), (3, 1, 0), ((3, 2), (1, 2), (1, 0)), ((2, 3), (2, 1), (1, 1))]


@pytest.mark.parametrize("k,s,p", POOL_CASES, ids=str)
def test_maxpool_paths_equal(k, s, p):
    x = randn(4, 3, 9, 8)
    x[0, 0] = -np.inf                      # windows of -inf: their gradient still reaches a real pixel
    x[1, 1, :4, :4] = 0.5                  # ties: the first offset in row-major order wins
    assert_paths_equal(run_both(lambda: L.MaxPool2d(k, stride=s, padding=p), x))


@pytest.mark.parametrize("forward_fast", [True, False])
def test_relu_and_maxpool_forward_on_one_path_backward_on_the_other(forward_fast):
    x = randn(4, 3, 9, 8)
    x[1, 1, :4, :4] = 0.5
    for make in (L.ReLU, lambda: L.MaxPool2d(3, 2, 1)):
        results = []
        for switch in (False, True):
            layer = make()
            with use_fast(forward_fast):
                out = layer(x)
            with use_fast(forward_fast != switch):
                results.append((out, layer.backward(randn(*out.shape, seed=1))))
        (out_a, dx_a), (out_b, dx_b) = results
        np.testing.assert_array_equal(out_a, out_b)
        assert rel_error(dx_a, dx_b) < TOL


# --------------------------------------------------------------------------------------------------
# Every network family, small
# --------------------------------------------------------------------------------------------------

def families():
    from resnet_np import models as M
    return {
        "CIFAR ResNet, shortcut A": (lambda: M.CifarResNet(1, num_classes=5, shortcut="A"), (4, 3, 12, 12)),
        "CIFAR ResNet, shortcut B": (lambda: M.CifarResNet(1, num_classes=5, shortcut="B"), (4, 3, 12, 12)),
        "CIFAR plain": (lambda: M.CifarResNet(1, num_classes=5, in_channels=1, residual=False), (4, 1, 12, 12)),
        "ImageNet ResNet (basic)": (lambda: M.ResNet(M.BasicBlock, [1, 1, 1, 1], num_classes=5), (2, 3, 32, 32)),
        "ImageNet ResNeXt": (lambda: M.ResNet(M.Bottleneck, [1, 1, 1, 1], num_classes=5, groups=4,
                                              width_per_group=2), (2, 3, 32, 32)),
        "ImageNet wide ResNet": (lambda: M.ResNet(M.Bottleneck, [1, 1, 1, 1], num_classes=5, width_per_group=8),
                                 (2, 3, 32, 32)),
        "CIFAR ResNeXt": (lambda: M.CifarResNeXt(1, groups=2, width_per_group=4, num_classes=5, base_planes=16),
                          (4, 3, 12, 12)),
        "pre-activation ResNet (basic)": (lambda: M.PreActResNet(M.PreActBasicBlock, 1, num_classes=5),
                                          (4, 3, 12, 12)),
        "pre-activation ResNet (bottleneck)": (lambda: M.PreActResNet(M.PreActBottleneck, 1, num_classes=5),
                                               (4, 3, 12, 12)),
        "wide ResNet": (lambda: M.WideResNet(10, 2, num_classes=5), (4, 3, 12, 12)),
    }


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("family", list(families()))
def test_every_network_family_is_the_same_on_both_paths(family, train):
    """Logits, dx, every parameter gradient and the running statistics, from the same weights."""
    make, shape = families()[family]
    x = randn(*shape)

    def prepared():
        model = seeded(make)()
        for name, buffer in model.named_buffers():   # eval mode: running statistics that are not 0 and 1
            if name.endswith("running_mean"):
                buffer[...] = np.linspace(-0.2, 0.2, buffer.size)
            elif name.endswith("running_var"):
                buffer[...] = np.linspace(0.5, 1.5, buffer.size)
        return model
    assert_paths_equal(run_both(prepared, x, train))


# --------------------------------------------------------------------------------------------------
# Planted bugs in the engine: the comparisons above must notice each
# --------------------------------------------------------------------------------------------------

def broken_copy(module, name, old, new, namespace=None):
    """A copy of ``module.name`` with one piece of its source replaced (the planted bug); ``namespace``: the
    globals it sees, when ``module`` is a class (a method's: its module's)."""
    source = textwrap.dedent(inspect.getsource(getattr(module, name)))
    assert source.count(old) == 1, f"{name}: {old!r} must occur once"
    namespace = dict(vars(module) if namespace is None else namespace)
    exec(compile(source.replace(old, new), f"<{name} with a planted bug>", "exec"), namespace)
    return namespace[name]


def conv_case(name, route="auto"):
    N, C, F, H, W, k, s, p, d, g = CONV_CASES[name]
    return lambda: assert_paths_equal(run_both(make_conv(C, F, k, s, p, d, g, route), randn(N, C, H, W)))


def bn_case():
    return assert_paths_equal(run_both(make_bn(3), randn(8, 3, 5, 5) * 2 + 0.5, True))


def pool_case():
    x = randn(4, 3, 9, 8)
    x[0, 0] = -np.inf
    x[1, 1, :4, :4] = 0.5
    return assert_paths_equal(run_both(lambda: L.MaxPool2d(3, stride=2, padding=1), x))


PLANTED = {
    # name: (module, function, text, replacement, the check that must fail, where to install the broken copy)
    "flat layout: no edge zeroing": (
        fast.flat_im2col, "im2col_cf", "        _zero_the_edges(taps, kernel_size, out_size, dilation, image_width, "
        "padding_w)\n    else:", "    else:", conv_case("3x3 same"), [fast.conv, fast.transposed_conv]),
    "flat layout: col2im without edge zeroing": (
        fast.flat_im2col, "col2im_cf", "        _zero_the_edges(taps, kernel_size, out_size, dilation, image_width, "
        "padding_w)\n", "", conv_case("3x3 same", "col2im"), [fast.conv]),
    "transposed kernel not flipped": (
        fast.transposed_conv, "transposed_kernel", "weight[:, :, ::-1, ::-1]", "weight",
        conv_case("3x3 same", "transposed"), [fast.transposed_conv]),
    "transposed route: dW not unflipped": (
        fast.transposed_conv, "backward", "[:, :, ::-1, ::-1].transpose(0, 1, 4, 2, 3)", ".transpose(0, 1, 4, 2, 3)",
        conv_case("3x3 same", "transposed"), [fast.transposed_conv]),
    "col2im route: buffer not cleared between chunks": (
        fast.conv, "input_grad_col2im", "dx_buf[:, :b] = 0", "pass", "chunks", [fast.conv]),
    "threads: a thread's partial dW dropped": (
        fast.conv, "weight_grad", "for part in parts[1:]:", "for part in parts[2:]:", "threads", [fast.conv]),
    "batch norm: a thread's partial sum dropped": (
        fast.batchnorm, "add_in_order", "for part in parts[1:]:", "for part in parts[2:]:", "threads bn",
        [fast.batchnorm]),
    "batch norm: fused slope with one inv_std": (
        fast.batchnorm, "input_grad", "inv_std * (sum_dout_xc * inv_std) / M", "(sum_dout_xc * inv_std) / M",
        bn_case, [fast.batchnorm]),
    "batch norm: unbiased variance": (
        fast.batchnorm, "batch_statistics", "xp)) / M\n", "xp)) / (M - 1)\n", bn_case, [fast.batchnorm]),
    "batch norm: mean not subtracted in eval": (
        fast.batchnorm, "normalize", "xp.subtract(x[n0:n1], mean_map", "xp.add(x[n0:n1], mean_map",
        lambda: assert_paths_equal(run_both(make_bn(3), randn(8, 3, 5, 5), False)), [fast.batchnorm]),
    "ReLU: mask x >= 0": (
        fast.relu, "relu_into", "xp.greater(", "xp.greater_equal(",
        lambda: assert_paths_equal(run_both(L.ReLU, relu_input((4, 3, 5, 5)))), [fast.relu]),
    "max pool: ties go to the last offset": (
        fast.pooling, "maxpool2d_with_argmax", "xp.greater(window, best, out=better)",
        "xp.greater_equal(window, best, out=better)", pool_case, [fast.pooling]),
    "max pool: windows of -inf routed to the padding": (
        fast.pooling, "maxpool2d_with_argmax", "if stuck.any():", "if False:", pool_case, [fast.pooling]),
    "max pool: winner's row offset with a wrong width": (
        fast.pooling, "maxpool2d_backward", "offset = (k // KW) * W + k % KW", "offset = (k // KW) * KW + k % KW",
        pool_case, [fast.pooling]),
}


def run_planted_check(check, monkeypatch):
    if callable(check):
        return check()
    monkeypatch.setattr(buffers, "CPU_CHUNK_BYTES", 1)          # one image per chunk
    monkeypatch.setattr(buffers, "MIN_CHUNK_COLUMNS", 1)
    monkeypatch.setattr(fast.threads, "MIN_PART_BYTES", 1)
    old = fast.get_num_threads()
    fast.set_num_threads(1 if check == "chunks" else 3)
    try:
        if check == "threads bn":
            return assert_paths_equal(run_both(make_bn(3), randn(8, 3, 5, 5) * 2 + 0.5, True))
        N, C, F, H, W, k, s, p, d, g = CONV_CASES["3x3 stride 2"]
        assert_paths_equal(run_both(make_conv(C, F, k, s, p, d, g, "col2im"), randn(7, C, H, W)))
    finally:
        fast.set_num_threads(old)


@pytest.mark.parametrize("planted", list(PLANTED))
def test_a_planted_bug_in_the_engine_is_caught(planted, monkeypatch):
    module, name, old, new, check, installs = PLANTED[planted]
    with monkeypatch.context() as clean:
        run_planted_check(check, clean)                          # the engine as it is passes ...
    broken = broken_copy(module, name, old, new)
    for where in installs:
        monkeypatch.setattr(where, name, broken)
    with pytest.raises(AssertionError):                         # ... and with the bug it fails
        run_planted_check(check, monkeypatch)


# --------------------------------------------------------------------------------------------------
# The two houses stay apart
# --------------------------------------------------------------------------------------------------

LAYERS_DIR = pathlib.Path(L.__file__).parent


def test_the_layers_read_as_a_textbook():
    """No function in resnet_np/layers/ longer than 40 lines, and no engine trick named there."""
    tricks = ("for_each_part", "parallel", "memory.", "padded_row_length", "input_buffer", "threads")
    for path in sorted(LAYERS_DIR.glob("*.py")):
        text = path.read_text()
        assert not [t for t in tricks if t in text], f"{path.name} names an engine trick"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                assert length <= 40, f"{path.name}: {node.name} is {length} lines long"


def test_every_engine_function_replaces_a_plain_one_with_its_signature():
    """Each public function of the engine that stands in for a plain layer function takes the same arguments."""
    pairs = [(fast.conv.conv2d_im2col, L.conv.conv2d_im2col), (fast.conv.conv2d_backward, L.conv.conv2d_backward),
             (fast.batchnorm.batch_statistics, L.batchnorm.batch_statistics),
             (fast.batchnorm.normalize, L.batchnorm.normalize),
             (fast.batchnorm.gradient_sums, L.batchnorm.gradient_sums),
             (fast.batchnorm.input_grad, L.batchnorm.input_grad), (fast.relu.relu, L.relu.relu),
             (fast.relu.relu_backward, L.relu.relu_backward),
             (fast.pooling.maxpool2d_with_argmax, L.pooling.maxpool2d_with_argmax),
             (fast.pooling.maxpool2d_backward, L.pooling.maxpool2d_backward)]
    for fast_fn, plain_fn in pairs:
        fast_params = list(inspect.signature(fast_fn).parameters)
        plain_params = list(inspect.signature(plain_fn).parameters)
        assert fast_params[:len(plain_params)] == plain_params, (fast_fn.__name__, fast_params, plain_params)
