"""The fast path equals the plain one: every layer, every network family, in float64 (resnet_np.use_fast).

The plain layers (``resnet_np/layers/``) are the formulas; the engine
(``resnet_np/fast/``) holds the tricks. Each test runs the same module on
both paths, from the same weights and inputs, and compares the forward
output, dx, every parameter gradient and the running statistics. The
planted-bug tests at the end break one trick of the engine and check that
these comparisons notice.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import resnet_np
from resnet_np import layers as L
from resnet_np import use_fast
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
    assert rel_error(out_f, out_p) < tol, f"forward: {rel_error(out_f, out_p):.1e}"
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
