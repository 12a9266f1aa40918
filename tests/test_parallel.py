"""The layers give the same results on one thread and on several (resnet_np.fast.threads)."""

import warnings

import numpy as np
import pytest

from resnet_np import layers as L
from resnet_np.fast import buffers, threads
from resnet_np.gradcheck import check_module, rel_error


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.fixture
def small_parts(monkeypatch):
    """Shares of a single image and chunks of one image: tiny inputs still run on several threads."""
    monkeypatch.setattr(threads, "MIN_PART_BYTES", 1)
    monkeypatch.setattr(buffers, "CPU_CHUNK_BYTES", 1)
    monkeypatch.setattr(buffers, "MIN_CHUNK_COLUMNS", 1)
    yield
    threads.set_num_threads(threads._default_num_threads())


def test_for_each_part_covers_the_range_in_order(small_parts):
    threads.set_num_threads(3)
    seen = threads.for_each_part(lambda n0, n1: list(range(n0, n1)), 10)
    assert len(seen) == 3 and sum(seen, []) == list(range(10))
    assert threads.for_each_part(lambda n0, n1: (n0, n1), 10, min_part=6) == [(0, 10)]  # too small to share
    assert threads.for_each_part(lambda n0, n1: (n0, n1), 0) == [(0, 0)]                 # an empty batch
    threads.set_num_threads(1)
    assert threads.for_each_part(lambda n0, n1: (n0, n1), 10) == [(0, 10)]


def test_set_num_threads_refuses_nonsense():
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="set_num_threads"):
            threads.set_num_threads(bad)


def run_layer(layer, *inputs, seed=1):
    out = layer(*inputs)
    dout = randn(*out.shape, seed=seed)
    layer.zero_grad()
    grads = layer.backward(dout)
    grads = grads if isinstance(grads, tuple) else (grads,)
    return [out, *grads] + [p.grad.copy() for p in layer.parameters()]


LAYERS = [
    ("conv 3x3 s1", lambda: L.Conv2d(3, 4, 3, padding=1), (5, 3, 7, 6)),
    ("conv 3x3 s2", lambda: L.Conv2d(3, 4, 3, stride=2, padding=1), (5, 3, 7, 6)),
    ("conv grouped dilated", lambda: L.Conv2d(4, 6, 3, padding=2, dilation=2, groups=2), (5, 4, 7, 6)),
    ("batchnorm", lambda: L.BatchNorm2d(3), (5, 3, 4, 4)),
    ("relu", L.ReLU, (5, 3, 4, 4)),
]


@pytest.mark.parametrize("name,make,shape", LAYERS, ids=[c[0] for c in LAYERS])
def test_several_threads_give_the_results_of_one(small_parts, name, make, shape):
    x = randn(*shape)
    layer = make().astype("float64")
    threads.set_num_threads(1)
    one = run_layer(layer, x)
    threads.set_num_threads(3)
    several = run_layer(layer, x)
    for a, b in zip(one, several):
        assert rel_error(a, b) < 1e-13


def test_add_and_eval_batchnorm_on_several_threads(small_parts):
    threads.set_num_threads(3)
    a, b = randn(5, 3, 4, 4), randn(5, 3, 4, 4, seed=1)
    np.testing.assert_array_equal(L.Add()(a, b), a + b)
    bn = L.BatchNorm2d(3).astype("float64")
    bn.running_mean[:] = [0.5, -1.0, 2.0]
    bn.running_var[:] = [2.0, 0.5, 1.0]
    bn.eval()
    expected = (a - bn.running_mean.reshape(1, 3, 1, 1)) / np.sqrt(bn.running_var.reshape(1, 3, 1, 1) + bn.eps)
    assert rel_error(bn(a), expected) < 1e-14


@pytest.mark.parametrize("name,make,shape", LAYERS, ids=[c[0] for c in LAYERS])
def test_gradients_on_several_threads(small_parts, name, make, shape):
    threads.set_num_threads(2)
    check_module(make(), randn(*shape)[:3])


def test_a_lost_share_is_caught(small_parts, monkeypatch):
    """A planted bug: the last thread's share of the images never computed."""
    def first_parts_only(fn, N, min_part=1, xp=None):
        bounds = [0, N // 2, N]
        return [fn(bounds[0], bounds[1])]
    x = randn(4, 3, 5, 5)
    conv = L.Conv2d(3, 2, 3, padding=1).astype("float64")
    expected = L.conv2d_naive(x, conv.weight.data, conv.bias.data, padding=1)
    monkeypatch.setattr(threads, "for_each_part", first_parts_only)
    assert rel_error(conv(x), expected) > 1e-3


def test_a_helper_runs_its_part_under_the_callers_numpy_error_state(small_parts):
    """NumPy's error state is per thread: each part must see the caller's, so that what one thread would raise
    (or keep quiet about: a diverging run's overflows) is the same with several."""
    def part(n0, n1):
        np.array([np.inf]) - np.array([np.inf])   # invalid: NaN
        return (n0, n1)

    threads.set_num_threads(2)
    with np.errstate(invalid="raise"):
        for _ in range(3):   # the first part is a helper's (the caller takes the last)
            with pytest.raises(FloatingPointError):
                threads.for_each_part(lambda n0, n1: part(n0, n1) if n0 == 0 else (n0, n1), 8)
    with np.errstate(invalid="ignore"), warnings.catch_warnings(record=True) as recorded:
        warnings.simplefilter("always")
        assert threads.for_each_part(part, 8) == [(0, 4), (4, 8)]
    assert not recorded, [str(w.message) for w in recorded]
