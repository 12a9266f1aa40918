"""The Module protocol: names, state dicts, gradients, modes, dtypes, init.

A small residual block (conv1/bn1 branch + a ``downsample`` Sequential
shortcut, then a ``fc`` head) stands in for a ResNet: it has nested modules,
parameters, buffers and integer buffers, so every part of the protocol is
exercised in a fraction of a second.
"""

import copy
import math

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
    ReLU,
    Sequential,
)
from resnet_np.module import Module, Parameter


class Block(Module):
    """conv1 -> bn1 -> relu, plus downsample(x), then pool -> flatten -> fc."""

    def __init__(self, cin=3, cout=4, classes=5):
        super().__init__()
        self.conv1 = Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = BatchNorm2d(cout)
        self.relu = ReLU()
        self.downsample = Sequential(Conv2d(cin, cout, 1, bias=False), BatchNorm2d(cout))
        self.add = Add()
        self.pool = GlobalAvgPool2d()
        self.flatten = Flatten()
        self.fc = Linear(cout, classes)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.add(out, self.downsample(x))
        return self.fc(self.flatten(self.pool(out)))

    def backward(self, dout):
        d = self.pool.backward(self.flatten.backward(self.fc.backward(dout)))
        d_branch, d_short = self.add.backward(d)
        dx = self.conv1.backward(self.bn1.backward(self.relu.backward(d_branch)))
        return dx + self.downsample.backward(d_short)


PARAM_NAMES = [
    "conv1.weight",
    "bn1.weight", "bn1.bias",
    "downsample.0.weight",
    "downsample.1.weight", "downsample.1.bias",
    "fc.weight", "fc.bias",
]

STATE_KEYS = [
    "conv1.weight",
    "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked",
    "downsample.0.weight",
    "downsample.1.weight", "downsample.1.bias",
    "downsample.1.running_mean", "downsample.1.running_var", "downsample.1.num_batches_tracked",
    "fc.weight", "fc.bias",
]

STATE_SHAPES = {
    "conv1.weight": (4, 3, 3, 3),
    "bn1.weight": (4,), "bn1.bias": (4,), "bn1.running_mean": (4,), "bn1.running_var": (4,),
    "bn1.num_batches_tracked": (),
    "downsample.0.weight": (4, 3, 1, 1),
    "downsample.1.weight": (4,), "downsample.1.bias": (4,),
    "downsample.1.running_mean": (4,), "downsample.1.running_var": (4,),
    "downsample.1.num_batches_tracked": (),
    "fc.weight": (5, 4), "fc.bias": (5,),
}


@pytest.fixture(autouse=True)
def _numpy_backend_and_rng_state():
    """Run on NumPy; tests that reseed must not change the random stream other tests see."""
    previous = backend.current()
    backend.use("numpy")
    state = backend.get_rng_state()
    yield
    backend.set_rng_state(state)
    backend.use(previous)


def x_batch(dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal((2, 3, 5, 5)).astype(dtype)


def snapshot(model):
    return {k: np.array(v, copy=True) for k, v in model.state_dict().items()}


def trained_model():
    """A Block whose running statistics and weights are no longer the initial ones."""
    m = Block()
    for i in range(3):
        m(x_batch(seed=i))
    for p in m.parameters():
        p.data += 0.1 * np.random.default_rng(7).standard_normal(p.shape).astype(p.dtype)
    return m


# ----------------------------------------------------------------------------
# Names and order
# ----------------------------------------------------------------------------

def test_named_parameters_names_and_order():
    m = Block()
    named = list(m.named_parameters())
    assert [k for k, _ in named] == PARAM_NAMES
    assert all(isinstance(p, Parameter) for _, p in named)
    assert named[0][1] is m.conv1.weight
    assert dict(named)["downsample.1.bias"] is m.downsample[1].bias


def test_parameters_are_named_parameters_in_order():
    m = Block()
    assert [id(p) for p in m.parameters()] == [id(p) for _, p in m.named_parameters()]
    assert sum(p.size for p in m.parameters()) == 4 * 27 + 4 + 4 + 4 * 3 + 4 + 4 + 5 * 4 + 5


def test_named_modules_and_children():
    m = Block()
    names = [n for n, _ in m.named_modules()]
    assert names == ["", "conv1", "bn1", "relu", "downsample", "downsample.0", "downsample.1",
                     "add", "pool", "flatten", "fc"]
    assert [n for n, _ in m.named_children()] == ["conv1", "bn1", "relu", "downsample", "add", "pool",
                                                  "flatten", "fc"]
    assert dict(m.named_modules())["downsample.1"] is m.downsample[1]


def test_named_buffers():
    m = Block()
    assert [k for k, _ in m.named_buffers()] == [
        "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked",
        "downsample.1.running_mean", "downsample.1.running_var", "downsample.1.num_batches_tracked",
    ]


def test_state_dict_keys_in_pytorch_order():
    sd = Block().state_dict()
    assert list(sd.keys()) == STATE_KEYS


def test_state_dict_keys_match_torch():
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class TorchBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(4)
            self.relu = nn.ReLU()
            self.downsample = nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), nn.BatchNorm2d(4))
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.flatten = nn.Flatten()
            self.fc = nn.Linear(4, 5)

    ref = TorchBlock().state_dict()
    ours = Block().state_dict()
    assert list(ours.keys()) == list(ref.keys())
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in ref.items()}
    assert [k for k, _ in Block().named_parameters()] == [k for k, _ in TorchBlock().named_parameters()]


def test_state_dict_shapes_and_dtypes():
    sd = Block().state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == STATE_SHAPES
    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):
            assert v.dtype == np.int64, k
            assert int(v) == 0
        else:
            assert v.dtype == np.float32, k


def test_state_dict_values_are_the_modules_own_arrays():
    m = Block()
    sd = m.state_dict()
    assert sd["conv1.weight"] is m.conv1.weight.data
    assert sd["bn1.running_var"] is m.bn1.running_var


def test_num_batches_tracked_counts_train_batches_only():
    m = Block()
    m(x_batch())
    m(x_batch())
    m.eval()(x_batch())
    sd = m.state_dict()
    assert int(sd["bn1.num_batches_tracked"]) == 2
    assert sd["bn1.num_batches_tracked"].dtype == np.int64


# ----------------------------------------------------------------------------
# load_state_dict
# ----------------------------------------------------------------------------

def test_load_state_dict_round_trip_copies_values():
    src = trained_model()
    dst = Block()
    result = dst.load_state_dict(src.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    before_ids = {k: id(v) for k, v in dst.state_dict().items()}
    for k, v in src.state_dict().items():
        np.testing.assert_array_equal(dst.state_dict()[k], v, err_msg=k)
    # the same model outputs
    src.eval()
    dst.eval()
    np.testing.assert_array_equal(dst(x_batch()), src(x_batch()))
    # copied, not aliased: changing the source afterwards leaves the target alone
    saved = snapshot(dst)
    for v in src.state_dict().values():
        v[...] = 42
    for k, v in dst.state_dict().items():
        np.testing.assert_array_equal(v, saved[k], err_msg=k)
        assert not np.shares_memory(v, src.state_dict()[k]), k
    # loading wrote into the existing arrays (optimisers hold references to them)
    assert {k: id(v) for k, v in dst.state_dict().items()} == before_ids


def test_load_state_dict_keeps_target_dtype():
    src = trained_model()
    sd64 = {k: np.asarray(v, dtype=np.float64) for k, v in src.state_dict().items()}
    dst = Block()
    dst.load_state_dict(sd64)
    for k, v in dst.state_dict().items():
        assert v.dtype == (np.int64 if k.endswith("num_batches_tracked") else np.float32), k
        np.testing.assert_allclose(v, sd64[k], rtol=1e-6, err_msg=k)
    assert int(dst.bn1.num_batches_tracked) == 3


def test_load_state_dict_from_torch_tensors():
    torch = pytest.importorskip("torch")
    src = trained_model()
    sd = {k: torch.from_numpy(np.array(v)) for k, v in src.state_dict().items()}
    dst = Block()
    dst.load_state_dict(sd)
    for k, v in src.state_dict().items():
        np.testing.assert_array_equal(dst.state_dict()[k], v, err_msg=k)
        assert isinstance(dst.state_dict()[k], np.ndarray), k


def test_load_state_dict_accepts_nested_lists():
    """The docstring promises array-likes; a nested list of the right shape must load."""
    lin = Linear(3, 2)
    lin.load_state_dict({"weight": [[1, 2, 3], [4, 5, 6]], "bias": [7, 8]})
    np.testing.assert_array_equal(lin.weight.data, [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(lin.bias.data, [7, 8])
    assert lin.weight.dtype == np.float32


def test_strict_load_reports_every_problem_at_once_and_loads_nothing():
    dst = Block()
    before = snapshot(dst)
    sd = dict(trained_model().state_dict())
    del sd["bn1.running_var"]
    del sd["fc.bias"]
    sd["layer9.weight"] = np.zeros(3, np.float32)
    sd["bn1.extra"] = np.zeros(4, np.float32)
    sd["conv1.weight"] = np.zeros((4, 3, 5, 5), np.float32)
    sd["fc.weight"] = np.zeros((4, 5), np.float32)  # transposed
    with pytest.raises(ValueError) as excinfo:
        dst.load_state_dict(sd)
    msg = str(excinfo.value)
    assert "Block" in msg
    for fragment in ["missing keys", "bn1.running_var", "fc.bias",
                     "unexpected keys", "layer9.weight", "bn1.extra",
                     "conv1.weight: expected shape (4, 3, 3, 3), got (4, 3, 5, 5)",
                     "fc.weight: expected shape (5, 4), got (4, 5)"]:
        assert fragment in msg, f"{fragment!r} missing from {msg!r}"
    # nothing was loaded, not even the keys that fit
    after = snapshot(dst)
    for k in before:
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)


def test_non_strict_load_returns_missing_and_unexpected_and_loads_the_rest():
    src = trained_model()
    dst = Block()
    before = snapshot(dst)
    sd = dict(src.state_dict())
    del sd["bn1.running_var"]
    del sd["fc.bias"]
    sd["head.weight"] = np.zeros(3, np.float32)
    missing, unexpected = dst.load_state_dict(sd, strict=False)
    assert missing == ["bn1.running_var", "fc.bias"]
    assert unexpected == ["head.weight"]
    for k, v in dst.state_dict().items():
        expected = before[k] if k in ("bn1.running_var", "fc.bias") else src.state_dict()[k]
        np.testing.assert_array_equal(v, expected, err_msg=k)


def test_non_strict_load_still_refuses_shape_mismatches():
    dst = Block()
    before = snapshot(dst)
    sd = dict(trained_model().state_dict())
    sd["fc.weight"] = np.zeros((4, 5), np.float32)
    with pytest.raises(ValueError, match=r"fc\.weight: expected shape \(5, 4\), got \(4, 5\)"):
        dst.load_state_dict(sd, strict=False)
    for k, v in dst.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


# ----------------------------------------------------------------------------
# Gradients
# ----------------------------------------------------------------------------

def test_zero_grad_sets_grads_to_none():
    m = Block()
    m(x_batch())
    m.backward(np.ones((2, 5), np.float32))
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())


def test_gradients_accumulate_over_backward_passes():
    m = Block()
    m(x_batch())
    dout = np.random.default_rng(1).standard_normal((2, 5)).astype(np.float32)
    dout_copy = dout.copy()
    dx1 = m.backward(dout)
    first = {k: p.grad.copy() for k, p in m.named_parameters()}
    dx2 = m.backward(dout)
    for k, p in m.named_parameters():
        np.testing.assert_allclose(p.grad, 2 * first[k], rtol=1e-5, atol=1e-7, err_msg=k)
    np.testing.assert_allclose(dx2, dx1, rtol=1e-6)          # dx does not accumulate
    np.testing.assert_array_equal(dout, dout_copy)          # the upstream gradient was not modified
    m.zero_grad()
    m.backward(dout)
    for k, p in m.named_parameters():
        np.testing.assert_allclose(p.grad, first[k], rtol=1e-5, atol=1e-7, err_msg=k)


def test_accumulate_grad_checks_shape():
    p = Parameter(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(2, 3\)"):
        p.accumulate_grad(np.zeros((3, 2), np.float32))


def test_frozen_parameter_gets_no_gradient_but_input_gradient_is_right():
    m = Block().astype("float64")
    ref = copy.deepcopy(m)
    m.conv1.weight.requires_grad = False
    m.fc.bias.requires_grad = False
    x = x_batch(np.float64)
    dout = np.random.default_rng(2).standard_normal((2, 5))
    m(x)
    ref(x)
    dx = m.backward(dout)
    dx_ref = ref.backward(dout)
    assert m.conv1.weight.grad is None
    assert m.fc.bias.grad is None
    for k, p in m.named_parameters():
        if k not in ("conv1.weight", "fc.bias"):
            np.testing.assert_allclose(p.grad, dict(ref.named_parameters())[k].grad, rtol=1e-12, err_msg=k)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-12)


def test_frozen_conv_input_gradient_matches_finite_differences():
    conv = Conv2d(2, 3, 3, stride=2, padding=1).astype("float64")
    conv.weight.requires_grad = False
    conv.bias.requires_grad = False
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 5, 5))
    dout = rng.standard_normal(conv(x).shape)
    conv(x)
    dx = conv.backward(dout)
    assert conv.weight.grad is None and conv.bias.grad is None
    eps = 1e-6
    num = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        num[idx] = ((conv(xp) * dout).sum() - (conv(xm) * dout).sum()) / (2 * eps)
    np.testing.assert_allclose(dx, num, rtol=1e-6, atol=1e-8)


# ----------------------------------------------------------------------------
# Modes, dtypes, devices
# ----------------------------------------------------------------------------

def test_train_eval_propagate_and_return_self():
    m = Block()
    assert all(mod.training for mod in m.modules())
    assert m.eval() is m
    assert [mod.training for mod in m.modules()] == [False] * 11
    assert m.downsample[1].training is False
    assert m.train() is m
    assert all(mod.training for mod in m.modules())
    assert m.train(False) is m
    assert not any(mod.training for mod in m.modules())


def test_eval_mode_uses_running_statistics():
    m = trained_model().eval()
    n_before = int(m.bn1.num_batches_tracked)
    x = x_batch(seed=5)
    y_full = m(x)
    y_single = m(x[:1])
    np.testing.assert_allclose(y_single, y_full[:1], rtol=1e-5, atol=1e-6)  # no batch dependence
    assert int(m.bn1.num_batches_tracked) == n_before


def test_astype_float64_converts_floats_keeps_int_buffers():
    m = Block()
    m(x_batch())
    m.backward(np.ones((2, 5), np.float32))
    values = snapshot(m)
    assert m.astype("float64") is m
    for k, v in m.state_dict().items():
        if k.endswith("num_batches_tracked"):
            assert v.dtype == np.int64, k
        else:
            assert v.dtype == np.float64, k
        np.testing.assert_array_equal(v, values[k], err_msg=k)
    assert all(p.grad.dtype == np.float64 for p in m.parameters())
    assert m(x_batch(np.float64)).dtype == np.float64
    with pytest.raises(ValueError, match="float32"):
        m(x_batch(np.float32))
    assert m.astype(np.float32) is m
    assert all(p.dtype == np.float32 for p in m.parameters())
    assert m.bn1.num_batches_tracked.dtype == np.int64


def test_to_numpy_returns_self():
    m = Block()
    assert m.to("numpy") is m
    assert all(type(v) is np.ndarray for v in m.state_dict().values())
    with pytest.raises(ValueError, match="tensorflow"):
        m.to("tensorflow")


# ----------------------------------------------------------------------------
# Sequential and repr
# ----------------------------------------------------------------------------

def test_sequential_indexing_len_iteration():
    a, b, c = Conv2d(1, 2, 1), ReLU(), BatchNorm2d(2)
    seq = Sequential(a, b, c)
    assert len(seq) == 3
    assert seq[0] is a and seq[1] is b and seq[2] is c
    assert seq[-1] is c and seq[-3] is a
    assert list(seq) == [a, b, c]
    for bad in (3, -4):
        with pytest.raises(IndexError, match="out of range"):
            seq[bad]
    assert seq.append(Flatten()) is seq
    assert len(seq) == 4 and isinstance(seq[3], Flatten)
    assert [k for k, _ in seq.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert len(Sequential()) == 0 and list(Sequential()) == []


def test_sequential_forward_backward_order():
    seq = Sequential(Linear(3, 4), ReLU(), Linear(4, 2)).astype("float64")
    x = np.random.default_rng(4).standard_normal((5, 3))
    np.testing.assert_allclose(seq(x), seq[2](seq[1](seq[0](x))))
    dout = np.ones((5, 2))
    seq(x)
    dx = seq.backward(dout)
    expected = seq[0].backward(seq[1].backward(seq[2].backward(dout)))
    np.testing.assert_allclose(dx, expected)


def test_repr_shows_nested_children():
    text = repr(Block())
    assert text.startswith("Block(")
    for fragment in ["(conv1): Conv2d(3, 4, kernel_size=(3, 3)",
                     "(bn1): BatchNorm2d(4, eps=1e-05, momentum=0.1)",
                     "(downsample): Sequential(",
                     "(0): Conv2d(3, 4, kernel_size=(1, 1)",
                     "(1): BatchNorm2d(4",
                     "(fc): Linear(in_features=4, out_features=5, bias=True)"]:
        assert fragment in text, f"{fragment!r} missing from\n{text}"
    # the Sequential's children are indented one level deeper than the block's
    lines = text.splitlines()
    ds = next(i for i, line in enumerate(lines) if "(downsample)" in line)
    indent = len(lines[ds]) - len(lines[ds].lstrip())
    assert len(lines[ds + 1]) - len(lines[ds + 1].lstrip()) > indent
    assert repr(Linear(2, 3)) == "Linear(in_features=2, out_features=3, bias=True)"


# ----------------------------------------------------------------------------
# Initialisation
# ----------------------------------------------------------------------------

def test_manual_seed_gives_identical_weights():
    backend.manual_seed(123)
    a = snapshot(Block())
    backend.manual_seed(123)
    b = snapshot(Block())
    backend.manual_seed(124)
    c = snapshot(Block())
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert not np.array_equal(a["conv1.weight"], c["conv1.weight"])
    assert not np.array_equal(a["fc.weight"], c["fc.weight"])
    # without reseeding, the next model differs from the previous one
    assert not np.array_equal(snapshot(Block())["conv1.weight"], c["conv1.weight"])


def test_conv_he_init_fan_out():
    backend.manual_seed(0)
    conv = Conv2d(64, 128, 3, bias=False)
    w = conv.weight.data
    assert w.dtype == np.float32
    fan_out, fan_in = 128 * 9, 64 * 9
    expected = math.sqrt(2.0 / fan_out)
    assert abs(w.std() / expected - 1) < 0.02, (w.std(), expected)   # 73k samples: ~0.3% noise
    assert abs(w.mean()) < 0.05 * expected
    assert abs(w.std() - math.sqrt(2.0 / fan_in)) > 0.1 * expected   # not the fan_in variant


def test_conv_bias_init_within_fan_in_bound():
    backend.manual_seed(0)
    conv = Conv2d(2, 1000, 3)
    bound = 1 / math.sqrt(2 * 9)
    b = conv.bias.data
    assert np.all(np.abs(b) <= bound)
    assert np.abs(b).max() > 0.95 * bound


def test_linear_init_within_bound_and_fills_it():
    backend.manual_seed(0)
    lin = Linear(256, 100)
    bound = 1 / math.sqrt(256)
    for p in (lin.weight.data, lin.bias.data):
        assert p.dtype == np.float32
        assert np.all(np.abs(p) <= bound)
        assert p.max() > 0.9 * bound and p.min() < -0.9 * bound
    # uniform: std = bound / sqrt(3)
    assert abs(lin.weight.data.std() / (bound / math.sqrt(3)) - 1) < 0.03


def test_batchnorm_init():
    bn = BatchNorm2d(6)
    np.testing.assert_array_equal(bn.weight.data, np.ones(6))
    np.testing.assert_array_equal(bn.bias.data, np.zeros(6))
    np.testing.assert_array_equal(bn.running_mean, np.zeros(6))
    np.testing.assert_array_equal(bn.running_var, np.ones(6))
    assert bn.num_batches_tracked.shape == () and bn.num_batches_tracked.dtype == np.int64
    assert all(a.dtype == np.float32 for a in (bn.weight.data, bn.bias.data, bn.running_mean, bn.running_var))
    assert bn.weight.requires_grad and bn.bias.requires_grad
    assert bn.weight.grad is None


# -- hooks -------------------------------------------------------------------------------------

def test_forward_hook_runs_in_call_not_in_forward_and_is_removable():
    layer, seen = ReLU(), []
    handle = layer.register_forward_hook(lambda module, inputs, out: seen.append((module, inputs, out)))
    x = np.array([[-1.0, 2.0]])
    out = layer(x)
    assert len(seen) == 1 and seen[0][0] is layer and seen[0][1][0] is x and seen[0][2] is out
    layer.forward(x)  # the computation alone, as PyTorch's forward: no hooks
    assert len(seen) == 1
    handle.remove()
    layer(x)
    assert len(seen) == 1
    handle.remove()  # a second remove is harmless
    with pytest.raises(ValueError, match="hook must be callable"):
        layer.register_forward_hook("not a function")


def test_backward_hook_runs_in_run_backward_with_the_gradients_in_order_of_registration():
    layer, seen = Linear(3, 2).astype("float64"), []
    layer.register_full_backward_hook(lambda module, dx, dout: seen.append(("first", module, dx, dout)))
    handle = layer.register_full_backward_hook(lambda module, dx, dout: seen.append(("second", module, dx, dout)))
    x, dout = np.ones((4, 3)), np.ones((4, 2))
    layer(x)
    dx = layer.run_backward(dout)
    assert [s[0] for s in seen] == ["first", "second"]
    assert seen[0][1] is layer and seen[0][2] is dx and seen[0][3] is dout
    np.testing.assert_array_equal(dx, layer.backward(dout))  # the same computation, without the hooks
    assert len(seen) == 2
    handle.remove()
    layer.run_backward(dout)
    assert [s[0] for s in seen] == ["first", "second", "first"]


def test_post_accumulate_grad_hook_sees_the_accumulated_gradient():
    p, seen = Parameter(np.zeros(3)), []
    handle = p.register_post_accumulate_grad_hook(lambda param: seen.append(param.grad.copy()))
    p.accumulate_grad(np.ones(3))
    p.accumulate_grad(np.full(3, 2.0))
    np.testing.assert_array_equal(seen[0], np.ones(3))
    np.testing.assert_array_equal(seen[1], np.full(3, 3.0))  # after the addition, not before
    handle.remove()
    p.accumulate_grad(np.ones(3))
    assert len(seen) == 2


def network_of_every_family():
    from resnet_np import models as M
    return [M.resnet20(shortcut="B"), M.resnet18(num_classes=3), M.preact_resnet20(num_classes=3),
            M.wrn(10, 1, dropout=0.3, num_classes=3), M.cifar_resnext(11, 4, 4, base_planes=16, num_classes=3),
            M.plain20(num_classes=3)]


@pytest.mark.parametrize("index", range(6), ids=["resnet20-B", "resnet18", "preact20", "wrn", "resnext", "plain20"])
def test_every_layer_runs_its_hooks_once_in_a_networks_passes(index):
    """The networks, blocks and Sequential call their layers through ``__call__`` and ``run_backward``.

    A block whose backward called ``self.bn2.backward(d)`` instead would skip
    bn2's hooks, and the NaN search and any tool on the hooks would not see it.
    """
    model = network_of_every_family()[index]
    forward_calls, backward_calls, accumulated = [], [], []
    for name, module in model.named_modules():
        module.register_forward_hook(lambda m, inputs, out, name=name: forward_calls.append(name))
        module.register_full_backward_hook(lambda m, dx, dout, name=name: backward_calls.append(name))
    for name, p in model.named_parameters():
        p.register_post_accumulate_grad_hook(lambda p, name=name: accumulated.append(name))
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    out = model(x)
    model.run_backward(np.ones_like(out))
    names = sorted(name for name, _ in model.named_modules())
    assert sorted(forward_calls) == names
    assert sorted(backward_calls) == names
    assert sorted(accumulated) == sorted(name for name, _ in model.named_parameters())
