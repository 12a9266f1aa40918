"""Batch normalisation's statistics, computed by hand (on the fast and the plain path)."""

import numpy as np
import pytest

from resnet_np import layers as L
from resnet_np import use_fast


@pytest.fixture(params=[True, False], ids=["fast", "plain"], autouse=True)
def path(request):
    """Every test runs on both paths: the fast layers and the plain ones (resnet_np.use_fast)."""
    with use_fast(request.param):
        yield request.param


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def test_train_mode_normalises_with_the_biased_batch_variance():
    bn = L.BatchNorm2d(3).astype("float64")
    x = randn(4, 3, 5, 5) * 3 + 2
    y = bn(x)
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    var = ((x - mean) ** 2).mean(axis=(0, 2, 3), keepdims=True)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5), rtol=1e-12)


def test_running_statistics_by_hand():
    bn = L.BatchNorm2d(2, momentum=0.1).astype("float64")
    x1 = randn(3, 2, 4, 4) + 1
    x2 = randn(3, 2, 4, 4, seed=1) * 2
    bn(x1)
    bn(x2)
    m = 3 * 4 * 4
    rm, rv = np.zeros(2), np.ones(2)
    for x in (x1, x2):
        mean = x.mean(axis=(0, 2, 3))
        unbiased = x.var(axis=(0, 2, 3)) * m / (m - 1)
        rm = 0.9 * rm + 0.1 * mean
        rv = 0.9 * rv + 0.1 * unbiased
    np.testing.assert_allclose(bn.running_mean, rm, rtol=1e-12)
    np.testing.assert_allclose(bn.running_var, rv, rtol=1e-12)
    assert int(bn.num_batches_tracked) == 2


def test_momentum_none_is_the_cumulative_average():
    bn = L.BatchNorm2d(2, momentum=None).astype("float64")
    xs = [randn(2, 2, 3, 3, seed=s) + s for s in range(3)]
    for x in xs:
        bn(x)
    np.testing.assert_allclose(bn.running_mean, np.mean([x.mean(axis=(0, 2, 3)) for x in xs], axis=0),
                               rtol=1e-12)


def test_eval_mode_uses_running_statistics_and_leaves_them_alone():
    bn = L.BatchNorm2d(2).astype("float64")
    bn.running_mean[...] = [1.0, -2.0]
    bn.running_var[...] = [4.0, 0.25]
    bn.weight.data[...] = [2.0, 1.0]
    bn.bias.data[...] = [0.0, 0.5]
    bn.eval()
    x = randn(1, 2, 3, 3)  # one image: eval mode does not need a batch
    y = bn(x)
    expected = (x - np.array([1.0, -2.0]).reshape(1, 2, 1, 1)) / np.sqrt(
        np.array([4.0, 0.25]).reshape(1, 2, 1, 1) + 1e-5)
    expected = expected * np.array([2.0, 1.0]).reshape(1, 2, 1, 1) + np.array([0.0, 0.5]).reshape(1, 2, 1, 1)
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    np.testing.assert_array_equal(bn.running_mean, [1.0, -2.0])
    assert int(bn.num_batches_tracked) == 0
