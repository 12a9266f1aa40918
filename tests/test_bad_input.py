"""Bad input must fail early with a clear ValueError.

Every message must name the layer, what it expected and what it actually got,
so a learner reads "Conv2d(3, ...): expected 3 input channels, got 1" instead
of a NumPy broadcasting error three calls deeper. The tests therefore check
the message text, not only the exception type.
"""

import importlib.util
import math
import warnings

import numpy as np
import pytest

from resnet_np import backend
from resnet_np.layers import (
    Add,
    BatchNorm2d,
    Conv2d,
    Flatten,
    GlobalAvgPool2d,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
    SoftmaxCrossEntropy,
)


def expect_error(exc_type, fn, *fragments):
    """Call ``fn``, require ``exc_type`` and every fragment in its message; return the message."""
    with pytest.raises(exc_type) as excinfo:
        fn()
    msg = str(excinfo.value)
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} missing from the error message: {msg!r}"
    return msg


def f32(*shape):
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


@pytest.fixture(autouse=True)
def _numpy_backend():
    """Run on NumPy whatever another test file left selected, and put it back afterwards."""
    previous = backend.current()
    backend.use("numpy")
    yield
    backend.use(previous)


# ----------------------------------------------------------------------------
# Wrong number of dimensions
# ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "make_layer, shape, name, expected, got",
    [
        (lambda: Conv2d(3, 4, 3), (8, 8), "Conv2d", "4-D", "got 2-D shape (8, 8)"),  # (C, H, W) is unbatched
        (lambda: Conv2d(3, 4, 3), (1, 1, 3, 8, 8), "Conv2d", "4-D", "got 5-D shape (1, 1, 3, 8, 8)"),
        (lambda: BatchNorm2d(3), (2, 3, 8), "BatchNorm2d", "4-D", "got 3-D shape (2, 3, 8)"),
        (lambda: BatchNorm2d(3), (2, 3), "BatchNorm2d", "4-D", "got 2-D shape (2, 3)"),
        (lambda: MaxPool2d(2), (8, 8), "MaxPool2d", "4-D", "got 2-D shape (8, 8)"),  # (C, H, W) is unbatched
        (lambda: GlobalAvgPool2d(), (2, 3), "GlobalAvgPool2d", "4-D", "got 2-D shape (2, 3)"),
        (lambda: Linear(12, 5), (2, 3, 2, 2), "Linear", "2-D", "got 4-D shape (2, 3, 2, 2)"),
        (lambda: Linear(12, 5), (12,), "Linear", "2-D", "got 1-D shape (12,)"),
    ],
)
def test_wrong_ndim(make_layer, shape, name, expected, got):
    layer = make_layer()
    expect_error(ValueError, lambda: layer(f32(*shape)), name, expected, got)


def test_wrong_ndim_logits():
    loss = SoftmaxCrossEntropy()
    expect_error(ValueError, lambda: loss(f32(5), np.array([0])),
                 "SoftmaxCrossEntropy", "2-D", "got 1-D shape (5,)")
    expect_error(ValueError, lambda: loss(f32(2, 3, 1, 1), np.array([0, 1])),
                 "SoftmaxCrossEntropy", "2-D", "got 4-D shape (2, 3, 1, 1)")


def test_wrong_ndim_labels():
    loss = SoftmaxCrossEntropy()
    expect_error(ValueError, lambda: loss(f32(2, 3), np.array([[0], [1]])),
                 "SoftmaxCrossEntropy", "1-D", "got 2-D shape (2, 1)")


def test_flatten_needs_a_batch_axis():
    expect_error(ValueError, lambda: Flatten()(f32(6)), "Flatten", "got shape (6,)")


@pytest.mark.parametrize("layer", [Conv2d(3, 4, 3), ReLU(), Flatten(), GlobalAvgPool2d()],
                         ids=lambda layer: type(layer).__name__)
def test_not_an_array(layer):
    expect_error(ValueError, lambda: layer([[1.0, 2.0]]), type(layer).__name__, "expected an array", "got list")


# ----------------------------------------------------------------------------
# Channel / feature counts that do not match the layer
# ----------------------------------------------------------------------------

def test_conv_in_channels_mismatch():
    expect_error(ValueError, lambda: Conv2d(3, 16, 3)(f32(2, 1, 8, 8)),
                 "Conv2d(3, 16", "expected 3 input channels", "got 1", "(2, 1, 8, 8)")


def test_batchnorm_num_features_mismatch():
    expect_error(ValueError, lambda: BatchNorm2d(4)(f32(2, 3, 5, 5)),
                 "BatchNorm2d(4", "expected 4 channels", "got 3", "(2, 3, 5, 5)")


def test_linear_in_features_mismatch():
    expect_error(ValueError, lambda: Linear(10, 5)(f32(2, 7)),
                 "Linear(in_features=10", "expected 10 input features", "got 7", "(2, 7)")


# ----------------------------------------------------------------------------
# Kernel larger than the padded input
# ----------------------------------------------------------------------------

def test_conv_kernel_larger_than_input():
    expect_error(ValueError, lambda: Conv2d(1, 1, 5)(f32(1, 1, 3, 3)),
                 "Conv2d", "kernel 5x5", "padded input 3x3")
    expect_error(ValueError, lambda: Conv2d(1, 1, 5, padding=1)(f32(1, 1, 2, 2)),
                 "Conv2d", "kernel 5x5", "padded input 4x4", "input 2x2")
    # only one axis too small
    expect_error(ValueError, lambda: Conv2d(1, 1, (5, 1))(f32(1, 1, 3, 8)),
                 "Conv2d", "kernel 5x1", "padded input 3x8")


def test_conv_kernel_equal_to_padded_input_is_fine():
    out = Conv2d(1, 2, 4, padding=1)(f32(1, 1, 2, 2))  # 2 + 2*1 == 4: exactly one window
    assert out.shape == (1, 2, 1, 1)


def test_maxpool_kernel_larger_than_input():
    expect_error(ValueError, lambda: MaxPool2d(3)(f32(1, 2, 2, 2)),
                 "MaxPool2d", "kernel 3x3", "padded input 2x2")
    expect_error(ValueError, lambda: MaxPool2d(4, stride=1, padding=1)(f32(1, 2, 1, 3)),
                 "MaxPool2d", "kernel 4x4", "padded input 3x5")
    expect_error(ValueError, lambda: MaxPool2d(3, stride=1, padding=1)(f32(1, 2, 1, 0)),
                 "MaxPool2d", "empty 1x0")
    assert MaxPool2d(3, stride=1, padding=1)(f32(1, 2, 1, 1)).shape == (1, 2, 1, 1)


# ----------------------------------------------------------------------------
# Labels
# ----------------------------------------------------------------------------

def test_float_labels():
    expect_error(ValueError, lambda: SoftmaxCrossEntropy()(f32(2, 3), np.array([0.0, 1.0])),
                 "SoftmaxCrossEntropy", "integers", "got dtype float64")


def test_bool_labels():
    expect_error(ValueError, lambda: SoftmaxCrossEntropy()(f32(2, 3), np.array([True, False])),
                 "SoftmaxCrossEntropy", "integers", "got dtype bool")


def test_negative_label():
    expect_error(ValueError, lambda: SoftmaxCrossEntropy()(f32(2, 3), np.array([0, -1])),
                 "SoftmaxCrossEntropy", "[0, 2]", "3 classes", "got -1")


def test_label_too_large():
    expect_error(ValueError, lambda: SoftmaxCrossEntropy()(f32(2, 3), np.array([3, 1])),
                 "SoftmaxCrossEntropy", "[0, 2]", "3 classes", "got 3")
    # the largest valid label is fine
    assert math.isfinite(SoftmaxCrossEntropy()(f32(2, 3), np.array([2, 0])))


def test_wrong_number_of_labels():
    expect_error(ValueError, lambda: SoftmaxCrossEntropy()(f32(4, 3), np.array([0, 1, 2])),
                 "SoftmaxCrossEntropy", "expected 4 labels", "got 3")
    expect_error(ValueError, lambda: SoftmaxCrossEntropy()(f32(2, 3), np.array([0, 1, 2])),
                 "SoftmaxCrossEntropy", "expected 2 labels", "got 3")


def test_labels_not_an_array():
    expect_error(ValueError, lambda: SoftmaxCrossEntropy()(f32(2, 3), [0, 1]),
                 "SoftmaxCrossEntropy", "expected an array", "got list")


def test_empty_batch_loss_says_so():
    """An empty batch must not be reported as 'the logits contain NaN or Inf' (nor warn from NumPy)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Mean of empty slice" is not a clear error
        msg = expect_error(ValueError,
                           lambda: SoftmaxCrossEntropy()(np.zeros((0, 3), np.float32), np.zeros(0, np.int64)),
                           "SoftmaxCrossEntropy")
    assert "NaN" not in msg, msg
    assert any(s in msg for s in ("(0, 3)", "got 0", "empty")), msg


# ----------------------------------------------------------------------------
# NaN / Inf in the loss
# ----------------------------------------------------------------------------

def _quiet(fn):
    def call():
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            return fn()
    return call


@pytest.mark.parametrize("bad, label", [
    (np.nan, 0),      # NaN anywhere in a row poisons the row
    (np.inf, 0),      # +inf - max(+inf) = nan
    (-np.inf, 1),     # log p[label] = -inf: the loss is +inf
    (-np.inf, 0),     # finite in exact arithmetic, but -inf logits only come from a diverged network
])
def test_non_finite_loss(bad, label):
    logits = f32(2, 3)
    logits[0, 1] = bad
    labels = np.array([label, 2])
    loss = SoftmaxCrossEntropy()
    expect_error(ValueError, _quiet(lambda: loss(logits, labels)), "SoftmaxCrossEntropy",
                 "logits contain NaN or Inf", "lower learning rate")
    # the failed forward left nothing behind to differentiate
    expect_error(RuntimeError, loss.backward, "backward called before forward")


# ----------------------------------------------------------------------------
# Add: no broadcasting, no dtype mixing
# ----------------------------------------------------------------------------

def test_add_shape_mismatch_no_broadcasting():
    expect_error(ValueError, lambda: Add()(f32(2, 3, 4, 4), f32(2, 3, 1, 1)),
                 "Add", "same shape", "(2, 3, 4, 4)", "(2, 3, 1, 1)")
    expect_error(ValueError, lambda: Add()(f32(2, 3, 4, 4), f32(3, 4, 4)),
                 "Add", "same shape", "(2, 3, 4, 4)", "(3, 4, 4)")
    expect_error(ValueError, lambda: Add()(f32(2, 8, 2, 2), f32(2, 4, 2, 2)),
                 "Add", "(2, 8, 2, 2)", "(2, 4, 2, 2)")


def test_add_dtype_mismatch():
    expect_error(ValueError, lambda: Add()(f32(2, 3), f32(2, 3).astype(np.float64)),
                 "Add", "same dtype", "float32", "float64")


def test_add_not_an_array():
    expect_error(ValueError, lambda: Add()(f32(2, 3), 1.0), "Add", "expected an array", "got float")


# ----------------------------------------------------------------------------
# dtypes: no silent upcast, no integer images
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("make_layer, shape, name", [
    (lambda: Conv2d(3, 4, 3), (2, 3, 5, 5), "Conv2d"),
    (lambda: BatchNorm2d(3), (2, 3, 5, 5), "BatchNorm2d"),
    (lambda: Linear(3, 4), (2, 3), "Linear"),
])
def test_float64_input_into_float32_layer(make_layer, shape, name):
    layer = make_layer()
    expect_error(ValueError, lambda: layer(f32(*shape).astype(np.float64)),
                 name, "input dtype float64", "layer's dtype float32")
    expect_error(ValueError, lambda: layer(f32(*shape).astype(np.float16)),
                 name, "input dtype float16", "layer's dtype float32")


def test_float32_input_into_float64_layer():
    conv = Conv2d(3, 4, 3).astype("float64")
    expect_error(ValueError, lambda: conv(f32(2, 3, 5, 5)), "Conv2d", "input dtype float32", "float64")
    assert conv(f32(2, 3, 5, 5).astype(np.float64)).dtype == np.float64


@pytest.mark.parametrize("make_layer, shape, name", [
    (lambda: Conv2d(3, 4, 3), (2, 3, 5, 5), "Conv2d"),
    (lambda: MaxPool2d(2), (2, 3, 4, 4), "MaxPool2d"),
    (lambda: GlobalAvgPool2d(), (2, 3, 4, 4), "GlobalAvgPool2d"),
    (lambda: BatchNorm2d(3), (2, 3, 4, 4), "BatchNorm2d"),
    (lambda: Linear(3, 4), (2, 3), "Linear"),
])
def test_integer_image_input(make_layer, shape, name):
    layer = make_layer()
    x = np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)
    expect_error(ValueError, lambda: layer(x), name, "floating-point", "got dtype uint8")


# ----------------------------------------------------------------------------
# Constructor arguments
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("make, fragments", [
    (lambda: Conv2d(3, 4, 0), ("Conv2d", "kernel_size", ">= 1", "got (0, 0)")),
    (lambda: Conv2d(3, 4, (3, 0)), ("Conv2d", "kernel_size", ">= 1", "got (3, 0)")),
    (lambda: Conv2d(3, 4, (3, 3, 3)), ("Conv2d", "kernel_size", "pair", "(3, 3, 3)")),
    (lambda: Conv2d(3, 4, 3.0), ("Conv2d", "kernel_size", "3.0")),
    (lambda: Conv2d(3, 4, 3, padding=-1), ("Conv2d", "padding", ">= 0", "got (-1, -1)")),
    (lambda: Conv2d(3, 4, 3, stride=0), ("Conv2d", "stride", ">= 1", "got (0, 0)")),
    (lambda: Conv2d(3, 4, 3, stride=(1, -2)), ("Conv2d", "stride", ">= 1", "got (1, -2)")),
    (lambda: Conv2d(3, 0, 3), ("Conv2d", "out_channels", "positive", "got 0")),
    (lambda: Conv2d(0, 4, 3), ("Conv2d", "in_channels", "positive", "got 0")),
    (lambda: Conv2d(3.0, 4, 3), ("Conv2d", "in_channels", "got 3.0")),
    (lambda: MaxPool2d(0), ("MaxPool2d", "kernel_size", ">= 1", "got (0, 0)")),
    (lambda: MaxPool2d(3, stride=0), ("MaxPool2d", "stride", ">= 1", "got (0, 0)")),
    (lambda: MaxPool2d(3, padding=-1), ("MaxPool2d", "padding", ">= 0", "got (-1, -1)")),
    (lambda: MaxPool2d(3, padding=2), ("MaxPool2d", "padding", "half the kernel", "(2, 2)", "(3, 3)")),
    (lambda: MaxPool2d(2, padding=(0, 2)), ("MaxPool2d", "padding", "half the kernel", "(0, 2)", "(2, 2)")),
    (lambda: Linear(0, 3), ("Linear", "in_features", "positive", "got 0")),
    (lambda: Linear(3, -1), ("Linear", "out_features", "positive", "got -1")),
    (lambda: BatchNorm2d(0), ("BatchNorm2d", "num_features", "positive", "got 0")),
])
def test_invalid_constructor_arguments(make, fragments):
    expect_error(ValueError, make, *fragments)


def test_valid_constructor_boundaries():
    # the smallest legal values must still be accepted
    MaxPool2d(3, stride=2, padding=1)   # padding exactly half the kernel (rounded down)
    MaxPool2d(2, padding=1)             # 2 * 1 == 2
    Conv2d(1, 1, 1, stride=1, padding=0)
    Conv2d(1, 1, (1, 3), stride=(2, 1), padding=(0, 1))


def test_sequential_rejects_non_modules():
    expect_error(ValueError, lambda: Sequential(Conv2d(1, 1, 1), np.zeros(3)), "Sequential", "Module", "ndarray")


# ----------------------------------------------------------------------------
# Backward before forward; upstream gradient of the wrong shape
# ----------------------------------------------------------------------------

# (layer factory, forward inputs, shape of the forward output, a wrong upstream shape)
LAYER_CASES = [
    ("Conv2d", lambda: Conv2d(3, 4, 3, padding=1), lambda: (f32(2, 3, 5, 5),), (2, 4, 5, 5), (2, 4, 3, 3)),
    ("BatchNorm2d", lambda: BatchNorm2d(3), lambda: (f32(2, 3, 4, 4),), (2, 3, 4, 4), (2, 3, 4, 1)),
    ("MaxPool2d", lambda: MaxPool2d(2), lambda: (f32(2, 3, 4, 4),), (2, 3, 2, 2), (2, 3, 4, 4)),
    ("GlobalAvgPool2d", lambda: GlobalAvgPool2d(), lambda: (f32(2, 3, 4, 4),), (2, 3, 1, 1), (2, 3)),
    ("Linear", lambda: Linear(3, 4), lambda: (f32(2, 3),), (2, 4), (2, 3)),
    ("ReLU", lambda: ReLU(), lambda: (f32(2, 3),), (2, 3), (2, 1)),
    ("Flatten", lambda: Flatten(), lambda: (f32(2, 3, 2, 2),), (2, 12), (2, 3, 2, 2)),
    ("Add", lambda: Add(), lambda: (f32(2, 3), f32(2, 3)), (2, 3), (1, 3)),
]


@pytest.mark.parametrize("name, make, inputs, out_shape, bad_shape", LAYER_CASES, ids=[c[0] for c in LAYER_CASES])
def test_backward_before_forward(name, make, inputs, out_shape, bad_shape):
    expect_error(RuntimeError, lambda: make().backward(f32(*out_shape)), name, "backward called before forward")


def test_loss_backward_before_forward():
    expect_error(RuntimeError, SoftmaxCrossEntropy().backward, "SoftmaxCrossEntropy", "backward called before forward")


def test_sequential_backward_before_forward():
    seq = Sequential(Conv2d(1, 2, 1), ReLU())
    expect_error(RuntimeError, lambda: seq.backward(f32(1, 2, 3, 3)), "backward called before forward")


@pytest.mark.parametrize("name, make, inputs, out_shape, bad_shape", LAYER_CASES, ids=[c[0] for c in LAYER_CASES])
def test_backward_wrong_upstream_shape(name, make, inputs, out_shape, bad_shape):
    layer = make()
    out = layer(*inputs())
    assert out.shape == out_shape
    expect_error(ValueError, lambda: layer.backward(f32(*bad_shape)),
                 name, f"expected an upstream gradient of shape {out_shape}", f"got {bad_shape}")
    expect_error(ValueError, lambda: layer.backward(3.0), name, str(out_shape), "got float")


def test_sequential_backward_wrong_upstream_shape():
    seq = Sequential(Conv2d(1, 2, 3), ReLU())
    seq(f32(1, 1, 5, 5))
    expect_error(ValueError, lambda: seq.backward(f32(1, 2, 5, 5)), "ReLU", "(1, 2, 3, 3)", "got (1, 2, 5, 5)")


# ----------------------------------------------------------------------------
# BatchNorm2d with a single value per channel
# ----------------------------------------------------------------------------

def test_batchnorm_train_one_value_per_channel():
    bn = BatchNorm2d(3)
    expect_error(ValueError, lambda: bn(f32(1, 3, 1, 1)),
                 "BatchNorm2d(3", "more than 1 value per channel", "(1, 3, 1, 1)")
    # nothing was learned from the rejected batch
    assert int(bn.num_batches_tracked) == 0
    np.testing.assert_array_equal(bn.running_mean, 0)
    np.testing.assert_array_equal(bn.running_var, 1)


def test_batchnorm_two_values_per_channel_and_eval_are_fine():
    bn = BatchNorm2d(3)
    assert bn(f32(2, 3, 1, 1)).shape == (2, 3, 1, 1)
    assert bn(f32(1, 3, 2, 1)).shape == (1, 3, 2, 1)
    bn.eval()
    assert bn(f32(1, 3, 1, 1)).shape == (1, 3, 1, 1)


# ----------------------------------------------------------------------------
# Empty spatial input to the global pool
# ----------------------------------------------------------------------------

def test_global_avg_pool_empty_map():
    """A 0x0 feature map has no mean: it must be a clear error, not a silent NaN output."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expect_error(ValueError, lambda: GlobalAvgPool2d()(np.zeros((2, 3, 0, 0), np.float32)),
                     "GlobalAvgPool2d", "(2, 3, 0, 0)")


# ----------------------------------------------------------------------------
# Backend selection
# ----------------------------------------------------------------------------

def test_use_cupy_without_gpu_says_why():
    if backend.cupy_available():
        pytest.skip("CuPy and a GPU are available here")
    msg = expect_error(RuntimeError, lambda: backend.use("cupy"), "cupy")
    if importlib.util.find_spec("cupy") is None:
        assert "CuPy is not importable" in msg, msg
        assert "pip install" in msg, msg
    else:
        assert "no GPU is visible" in msg, msg
    assert backend.current() == "numpy"
    # and the package still works on NumPy afterwards
    assert Conv2d(1, 1, 1)(f32(1, 1, 2, 2)).shape == (1, 1, 2, 2)


def test_use_unknown_backend():
    expect_error(ValueError, lambda: backend.use("tensorflow"), "'tensorflow'", "numpy", "cupy")
    assert backend.current() == "numpy"
    expect_error(ValueError, lambda: backend.to_device(f32(2), "tensorflow"), "'tensorflow'", "numpy")


@pytest.mark.parametrize("layer,good,bad", [
    (lambda: Conv2d(3, 4, 3), (2, 3, 5, 5), (2, 1, 5, 5)),
    (lambda: BatchNorm2d(3), (2, 3, 5, 5), (2, 2, 5, 5)),
    (lambda: Linear(3, 2), (4, 3), (4, 5)),
    (lambda: ReLU(), (2, 3), "not an array"),
    (lambda: MaxPool2d(3), (1, 1, 4, 4), (1, 1, 2, 2)),
    (lambda: GlobalAvgPool2d(), (1, 2, 3, 3), (1, 2, 0, 0)),
    (lambda: Flatten(), (2, 3), (2,)),
], ids=["Conv2d", "BatchNorm2d", "Linear", "ReLU", "MaxPool2d", "GlobalAvgPool2d", "Flatten"])
def test_failed_forward_leaves_no_stale_state_for_backward(layer, good, bad):
    """After a rejected input, backward must not silently reuse the previous batch."""
    m = layer()
    y = m(np.ones(good, np.float32))
    bad_input = bad if isinstance(bad, str) else np.ones(bad, np.float32)
    with pytest.raises(ValueError):
        m(bad_input)
    with pytest.raises(RuntimeError, match="before forward"):
        m.backward(np.ones_like(y))
