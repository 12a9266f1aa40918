"""Pre-activation ResNets and Wide ResNets: sizes, the identity mapping, gradient checks, PyTorch parity,
save/load, fine-tuning, bad arguments and planted mistakes.

The PyTorch references below are written from the papers (torchvision has
neither network), with our attribute names so that the state-dict keys
match one to one; their tests skip where torch is not installed.
"""

import types

import numpy as np
import pytest
from _parity import count, randn, scramble_bn

from resnet_np import backend, finetune
from resnet_np import layers as L
from resnet_np import models as M
from resnet_np.gradcheck import GradcheckError, check_module, rel_error
from resnet_np.layers import SoftmaxCrossEntropy

TOL = 1e-8  # parity with torch, float64

# Worst relative error per (what, name): gradient checks and torch parity; printed at the end (pytest -s).
WORST = {}


@pytest.fixture(autouse=True, scope="module")
def _report_worst_errors():
    yield
    if WORST:
        print("\nworst relative errors:")
        for (what, name), err in sorted(WORST.items()):
            print(f"  {what:<10} {name:<44} {err:.2e}")


def gradcheck(name, module, *inputs, **options):
    report = check_module(module, *inputs, **options)
    WORST["gradcheck", name] = report.worst
    return report


def case(name, *values):
    return pytest.param(name, *values, id=name.replace(" ", "-"))


# -- sizes and structure --------------------------------------------------------------------


@pytest.mark.parametrize("factory,expected", [
    (M.preact_resnet110, 1_730_522), (M.preact_resnet164, 1_703_258), (M.preact_resnet1001, 10_327_706),
    (M.wrn28_10, 36_479_194), (M.wrn16_8, 10_961_370), (M.wrn40_4, 8_949_210), (M.wrn16_4, 2_748_890),
], ids=lambda v: getattr(v, "__name__", str(v)))
def test_parameter_counts(factory, expected):
    assert count(factory()) == expected


def test_layer_counts_and_keys():
    """110 = 6n + 2 and 164 = 9n + 2 weighted layers (the 1x1 downsamples not counted), as in the paper."""
    def convs(model):
        return [name for name, m in model.named_modules() if isinstance(m, L.Conv2d) and "downsample" not in name]
    assert len(convs(M.preact_resnet110())) + 1 == 110
    assert len(convs(M.preact_resnet164())) + 1 == 164
    keys = M.preact_resnet20().state_dict()
    assert "layer2.0.downsample.weight" in keys and "layer3.0.downsample.weight" in keys
    assert not any(k.startswith("layer1.0.downsample") for k in keys)  # 16 -> 16, stride 1: the identity
    assert {"bn.weight", "bn.running_var", "fc.weight", "conv1.weight"} <= set(keys)
    assert "conv1.bias" not in keys and "bn1.weight" not in keys  # the stem is a bare convolution
    # A bottleneck stage and a wide stage widen at once: layer1.0 needs a downsample too.
    assert M.preact_resnet164().state_dict()["layer1.0.downsample.weight"].shape == (64, 16, 1, 1)
    wide = M.wrn(10, 4).state_dict()
    assert wide["layer1.0.downsample.weight"].shape == (64, 16, 1, 1)
    assert wide["layer3.0.conv2.weight"].shape == (256, 256, 3, 3) and wide["fc.weight"].shape == (10, 256)


def test_wrn_dropout_sits_between_the_convolutions():
    block = M.wrn(16, 2, dropout=0.3).layer2[1]
    assert isinstance(block.dropout, L.Dropout) and block.dropout.p == 0.3
    assert M.wrn(16, 2).layer2[1].dropout is None
    assert not any(isinstance(m, L.Dropout) for m in M.preact_resnet20().modules())


@pytest.mark.parametrize("factory", [M.preact_resnet20, lambda **kw: M.wrn(10, 2, dropout=0.3, **kw)],
                         ids=["preact_resnet20", "wrn10_2-dropout"])
def test_float32_forward_and_backward_shapes(factory):
    model = factory(num_classes=7, in_channels=1)
    x = randn(2, 1, 12, 12).astype(np.float32)
    y = model(x)
    assert y.shape == (2, 7) and y.dtype == np.float32
    dx = model.backward(randn(2, 7, seed=1).astype(np.float32))
    assert dx.shape == x.shape and dx.dtype == np.float32
    assert all(p.grad is not None and p.grad.dtype == np.float32 for p in model.parameters())


def test_wrn_dropout_is_random_in_training_reproducible_by_seed_and_off_in_eval():
    model = M.wrn(10, 1, dropout=0.5, num_classes=3)
    x = randn(2, 3, 8, 8).astype(np.float32)
    backend.manual_seed(1)
    a = model(x)
    b = model(x)
    assert not np.allclose(a, b)
    backend.manual_seed(1)
    np.testing.assert_array_equal(model(x), a)
    model.eval()
    np.testing.assert_array_equal(model(x), model(x))


# -- the identity mapping ---------------------------------------------------------------------


def zero_last_conv(block):
    last = block.conv3 if isinstance(block, M.PreActBottleneck) else block.conv2
    last.weight.data[...] = 0
    return block


def assert_silent_block_is_the_identity(block):
    """The point of the paper: nothing after the addition, so x_{l+1} = x_l + F(x_l) and, with F = 0,
    the block passes x forward and dout backward untouched (negative values included)."""
    b = scramble_bn(zero_last_conv(block.astype("float64")))
    x = randn(2, b.bn1.num_features, 5, 5)
    np.testing.assert_array_equal(b(x), x)
    dout = randn(*x.shape, seed=1)
    np.testing.assert_array_equal(b.backward(dout), dout)


def assert_downsample_reads_the_pre_activated_input(block):
    b = scramble_bn(zero_last_conv(block.astype("float64")))
    x = randn(2, b.bn1.num_features, 6, 6)
    pre = np.maximum(b.bn1(x), 0)
    np.testing.assert_allclose(b(x), b.downsample(pre), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("block", [
    pytest.param(lambda: M.PreActBasicBlock(4, 4), id="basic"),
    pytest.param(lambda: M.PreActBottleneck(8, 2), id="bottleneck"),
])
def test_a_block_with_a_silent_branch_is_exactly_the_identity(block):
    assert_silent_block_is_the_identity(block())


@pytest.mark.parametrize("block", [
    pytest.param(lambda: M.PreActBasicBlock(3, 4, stride=2), id="basic"),
    pytest.param(lambda: M.PreActBottleneck(4, 2), id="bottleneck"),
])
def test_the_downsample_reads_the_pre_activated_input(block):
    assert_downsample_reads_the_pre_activated_input(block())


# -- gradient checks (float64, random upstream gradient) --------------------------------------


@pytest.mark.parametrize("name,block,shape", [
    case("PreActBasicBlock identity", lambda: M.PreActBasicBlock(3, 3), (2, 3, 4, 4)),
    case("PreActBasicBlock downsample /2", lambda: M.PreActBasicBlock(2, 4, stride=2), (2, 2, 5, 5)),
    case("PreActBasicBlock downsample width", lambda: M.PreActBasicBlock(2, 3), (2, 2, 4, 4)),
    case("PreActBasicBlock dropout", lambda: M.PreActBasicBlock(3, 3, dropout=0.3), (2, 3, 4, 4)),
    case("PreActBottleneck identity", lambda: M.PreActBottleneck(8, 2), (2, 8, 3, 3)),
    case("PreActBottleneck downsample /2", lambda: M.PreActBottleneck(3, 2, stride=2), (2, 3, 5, 5)),
])
def test_block_gradients_per_element(name, block, shape):
    b = scramble_bn(block())
    for m in b.modules():
        if isinstance(m, L.Dropout):
            m.reuse_mask = True  # one fixed mask for every finite-difference evaluation
    report = gradcheck(name, b, randn(*shape))
    assert all(r.method == "element" for r in report.results)
    assert len(report.results) == 1 + len(list(b.parameters()))


def test_tiny_preact_resnet_gradients():
    model = scramble_bn(M.PreActResNet(M.PreActBasicBlock, 1, num_classes=3, in_channels=1))
    report = gradcheck("PreActResNet n=1", model, randn(2, 1, 6, 6), max_elements=300)
    assert {r.method for r in report.results} == {"element", "directional"}


def test_tiny_preact_bottleneck_resnet_gradients():
    model = scramble_bn(M.PreActResNet(M.PreActBottleneck, 1, num_classes=3, in_channels=1))
    gradcheck("PreActResNet bottleneck n=1", model, randn(2, 1, 6, 6), max_elements=150, num_directions=1)


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_tiny_wrn_gradients(dropout):
    model = scramble_bn(M.wrn(10, 2, dropout=dropout, num_classes=3, in_channels=1))
    for m in model.modules():
        if isinstance(m, L.Dropout):
            m.reuse_mask = True  # one fixed mask for every finite-difference evaluation
    gradcheck(f"WRN-10-2 dropout {dropout}", model, randn(2, 1, 6, 6), max_elements=200, num_directions=1)


# -- planted mistakes --------------------------------------------------------------------------


class ForgetsTheIdentityGradient(M.PreActBasicBlock):
    """Returns only the gradient through the branch: the shortcut's dout never reaches x."""

    def backward(self, dout):
        d_branch, _ = self.add.backward(dout)
        d_branch = self.conv2.backward(d_branch)
        d_branch = self.bn2.backward(self.relu2.backward(d_branch))
        return self.bn1.backward(self.relu1.backward(self.conv1.backward(d_branch)))


class DownsampleGradientBypassesBn1(M.PreActBasicBlock):
    """Forward reads relu(bn1(x)) in the downsample, but backward adds its gradient straight to dx."""

    def backward(self, dout):
        d_branch, d_shortcut = self.add.backward(dout)
        d_branch = self.conv2.backward(d_branch)
        d_branch = self.bn2.backward(self.relu2.backward(d_branch))
        dx = self.bn1.backward(self.relu1.backward(self.conv1.backward(d_branch)))
        return dx + self.downsample.backward(d_shortcut)


class BottleneckForgetsTheIdentityGradient(M.PreActBottleneck):
    def backward(self, dout):
        d_branch, _ = self.add.backward(dout)
        d_branch = self.bn3.backward(self.relu3.backward(self.conv3.backward(d_branch)))
        d_branch = self.bn2.backward(self.relu2.backward(self.conv2.backward(d_branch)))
        return self.bn1.backward(self.relu1.backward(self.conv1.backward(d_branch)))


class NetworkSkipsTheFinalReLU(M.PreActResNet):
    """Backward forgets the ReLU after the final batch norm."""

    def backward(self, dout):
        d = self.avgpool.backward(self.flatten.backward(self.fc.backward(dout)))
        d = self.layer1.backward(self.layer2.backward(self.layer3.backward(self.bn.backward(d))))
        return self.conv1.backward(d)


@pytest.mark.parametrize("correct,broken,shape", [
    (lambda: M.PreActBasicBlock(3, 3), lambda: ForgetsTheIdentityGradient(3, 3), (2, 3, 4, 4)),
    (lambda: M.PreActBasicBlock(2, 3, 2), lambda: DownsampleGradientBypassesBn1(2, 3, 2), (2, 2, 5, 5)),
    (lambda: M.PreActBottleneck(8, 2), lambda: BottleneckForgetsTheIdentityGradient(8, 2), (2, 8, 3, 3)),
    (lambda: M.PreActResNet(M.PreActBasicBlock, 1, 3, 1), lambda: NetworkSkipsTheFinalReLU(M.PreActBasicBlock, 1, 3, 1),
     (2, 1, 6, 6)),
], ids=["identity-gradient", "downsample-gradient-bypasses-bn1", "bottleneck-identity-gradient",
        "final-relu-backward"])
def test_planted_backward_mistakes_fail_the_gradient_check(correct, broken, shape):
    x = randn(*shape)
    check_module(scramble_bn(correct()), x, max_elements=100)  # the real one passes ...
    with pytest.raises(GradcheckError):                          # ... the planted bug does not
        check_module(scramble_bn(broken()), x, max_elements=100)


class DownsampleReadsX(M.PreActBasicBlock):
    """The shortcut's 1x1 convolution reads x instead of relu(bn1(x)); forward and backward agree."""

    def forward(self, x):
        pre = self.relu1(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.conv2(self.relu2(self.bn2(self.conv1(pre))))
        return self.add(out, shortcut)

    def backward(self, dout):
        d_branch, d_shortcut = self.add.backward(dout)
        d_branch = self.bn2.backward(self.relu2.backward(self.conv2.backward(d_branch)))
        dx = self.bn1.backward(self.relu1.backward(self.conv1.backward(d_branch)))
        return dx + (d_shortcut if self.downsample is None else self.downsample.backward(d_shortcut))


class ReLUAfterTheAddition(M.PreActBasicBlock):
    """The original ResNet's habit kept by mistake: relu(branch + shortcut); forward and backward agree."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.relu_out = L.ReLU()

    def forward(self, x):
        return self.relu_out(super().forward(x))

    def backward(self, dout):
        return super().backward(self.relu_out.backward(dout))


@pytest.mark.parametrize("broken_cls", [DownsampleReadsX, ReLUAfterTheAddition])
def test_consistent_wrong_blocks_pass_the_gradient_check_but_not_the_identity_tests(broken_cls):
    """A bug in forward that backward follows faithfully is a different function, correctly
    differentiated: only a reference (the identity mapping here, PyTorch below) catches it."""
    block = scramble_bn(broken_cls(2, 4, stride=2))
    check_module(block, randn(2, 2, 5, 5))
    with pytest.raises(AssertionError):
        if broken_cls is DownsampleReadsX:
            assert_downsample_reads_the_pre_activated_input(DownsampleReadsX(3, 4, stride=2))
        else:
            assert_silent_block_is_the_identity(ReLUAfterTheAddition(4, 4))


# -- save / load, summary, fine-tuning, the command line ----------------------------------------


@pytest.mark.parametrize("factory", [lambda: M.preact_resnet20(num_classes=5, in_channels=1),
                                     lambda: M.wrn(10, 2, dropout=0.3, num_classes=5, in_channels=1),
                                     lambda: M.wrn16_4(num_classes=5, in_channels=1, dropout=0.2)],
                         ids=["preact_resnet20", "wrn10_2", "wrn16_4"])
def test_save_load_round_trip(tmp_path, factory):
    model = scramble_bn(factory())
    path = tmp_path / "model.npz"
    M.save(model, path)
    loaded = M.load(path)
    assert type(loaded) is type(model) and loaded.arch == model.arch and loaded.config == model.config
    assert loaded.dropout == model.dropout
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[key], value, err_msg=key)
    x = randn(2, 1, 8, 8).astype(np.float32)
    np.testing.assert_array_equal(loaded.eval()(x), model.eval()(x))


def test_reset_classifier_is_saved_with_the_new_number_of_classes(tmp_path):
    model = M.wrn(10, 1, dropout=0.1)
    model.reset_classifier(4)
    assert model.fc.weight.shape == (4, 64) and model.config["num_classes"] == 4
    M.save(model, tmp_path / "m.npz")
    loaded = M.load(tmp_path / "m.npz")
    assert loaded.fc.weight.shape == (4, 64) and loaded.depth == 10 and loaded.widen_factor == 1


def test_frozen_backbone_backward_stops_early():
    model = M.preact_resnet20(num_classes=3, in_channels=1)
    finetune.freeze(model, "backbone")
    model.need_input_grad = False
    y = model(randn(2, 1, 8, 8).astype(np.float32))
    assert model.backward(np.ones_like(y)) is None
    assert model.fc.weight.grad is not None and model.conv1.weight.grad is None
    finetune.unfreeze(model, "layer3")  # the last stage trains too: backward goes through bn and layer3 only
    model.zero_grad()
    model(randn(2, 1, 8, 8).astype(np.float32))
    assert model.backward(np.ones_like(y)) is None
    assert model.layer3[0].conv1.weight.grad is not None and model.layer2[0].conv1.weight.grad is None


def test_summary_names_the_blocks_and_the_downsample():
    table = M.summary(M.preact_resnet20(), (1, 3, 8, 8), print_fn=None)
    assert "layer2.0 (PreActBasicBlock)" in table and "downsample (Conv2d)" in table
    assert "bn (BatchNorm2d)" in table and f"Total params: {count(M.preact_resnet20()):,}" in table
    assert "dropout (Dropout)" in M.summary(M.wrn(10, 1, dropout=0.3), (1, 3, 8, 8), print_fn=None)


def test_registered_for_the_command_line():
    """``--model NAME`` builds ``ARCHITECTURES[NAME](num_classes=..., in_channels=...)``."""
    for name in ("preact_resnet20", "preact_resnet110", "preact_resnet164", "preact_resnet1001",
                 "wrn16_4", "wrn16_8", "wrn28_10", "wrn40_4"):
        assert name in M.ARCHITECTURES
    model = M.ARCHITECTURES["preact_resnet20"](num_classes=10, in_channels=1)
    assert model.arch == "preact_resnet20" and model.conv1.in_channels == 1
    model = M.ARCHITECTURES["wrn16_4"](num_classes=100, in_channels=3)
    assert model.arch == "wrn16_4" and model.fc.weight.shape == (100, 256)
    with pytest.raises(ValueError, match="WideResNet: depth must be 6n \\+ 4.*got None.*wrn28_10"):
        M.ARCHITECTURES["wrn"](num_classes=10, in_channels=3)  # a size is needed: the message lists the named ones


# -- bad arguments -------------------------------------------------------------------------------


@pytest.mark.parametrize("args,kwargs,message", [
    ((27, 4), {}, r"WideResNet: depth must be 6n \+ 4 with n >= 1 .*got 27"),
    ((4, 4), {}, r"WideResNet: depth must be 6n \+ 4 with n >= 1 .*got 4"),
    ((28.0, 4), {}, r"WideResNet: depth must be .*got 28\.0"),
    ((28, 0), {}, r"WideResNet: widen_factor must be a positive int, got 0"),
    ((28, 2.5), {}, r"WideResNet: widen_factor must be a positive int, got 2\.5"),
    ((16, 4), {"dropout": 1.0}, r"WideResNet: dropout must be a number in \[0, 1\), got 1\.0"),
    ((16, 4), {"dropout": -0.1}, r"WideResNet: dropout must be a number in \[0, 1\), got -0\.1"),
])
def test_bad_wrn_arguments(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        M.wrn(*args, **kwargs)


def test_bad_preact_arguments():
    with pytest.raises(ValueError, match="PreActResNet: dropout goes between the two convolutions of a "
                                         "PreActBasicBlock, but the block is PreActBottleneck"):
        M.PreActResNet(M.PreActBottleneck, 1, dropout=0.3)
    with pytest.raises(ValueError, match=r"PreActResNet: n \(blocks per stage\) must be a positive int, got 0"):
        M.PreActResNet(M.PreActBasicBlock, 0)
    with pytest.raises(ValueError, match=r"Dropout: p must be a number in \[0, 1\), got 2"):
        M.PreActBasicBlock(3, 3, dropout=2)


# ==============================================================================================
# Parity with PyTorch, in float64 (skipped where torch is not installed)
# ==============================================================================================


def torch_reference(torch):
    """The networks of the papers in plain torch.nn, with our attribute names (hence our state-dict keys)."""
    nn, F = torch.nn, torch.nn.functional

    class PreActBlock(nn.Module):
        """He et al. 2016 (v2): bn-relu-conv twice, the shortcut a 1x1 conv of relu(bn1(x)) where shapes change.
        With ``drop_rate`` > 0 (a WRN block), ``mask`` is the dropout mask to use in train mode."""

        expansion = 1

        def __init__(self, in_planes, planes, stride=1, drop_rate=0.0):
            super().__init__()
            self.bn1 = nn.BatchNorm2d(in_planes)
            self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.downsample = None
            if stride != 1 or in_planes != planes:
                self.downsample = nn.Conv2d(in_planes, planes, 1, stride, bias=False)
            self.drop_rate, self.mask = drop_rate, None

        def forward(self, x):
            pre = F.relu(self.bn1(x))
            shortcut = x if self.downsample is None else self.downsample(pre)
            out = F.relu(self.bn2(self.conv1(pre)))
            if self.training and self.drop_rate > 0:
                out = out * self.mask / (1 - self.drop_rate)
            return self.conv2(out) + shortcut

    class PreActBottleneck(nn.Module):
        expansion = 4

        def __init__(self, in_planes, planes, stride=1):
            super().__init__()
            self.bn1 = nn.BatchNorm2d(in_planes)
            self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(planes)
            self.conv3 = nn.Conv2d(planes, 4 * planes, 1, bias=False)
            self.downsample = None
            if stride != 1 or in_planes != 4 * planes:
                self.downsample = nn.Conv2d(in_planes, 4 * planes, 1, stride, bias=False)

        def forward(self, x):
            pre = F.relu(self.bn1(x))
            shortcut = x if self.downsample is None else self.downsample(pre)
            out = self.conv1(pre)
            out = self.conv2(F.relu(self.bn2(out)))
            out = self.conv3(F.relu(self.bn3(out)))
            return out + shortcut

    class PreActResNet(nn.Module):
        """CIFAR: conv 3x3 (16), stages of 16k/32k/64k (x expansion) at strides 1/2/2, bn-relu, pool, fc."""

        def __init__(self, block, n, num_classes=10, widen_factor=1, drop_rate=0.0):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
            in_planes = 16
            for i, (width, stride) in enumerate([(16, 1), (32, 2), (64, 2)]):
                blocks = []
                for j in range(n):
                    extra = (drop_rate,) if drop_rate > 0 else ()
                    blocks.append(block(in_planes, width * widen_factor, stride if j == 0 else 1, *extra))
                    in_planes = width * widen_factor * block.expansion
                setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            self.bn = nn.BatchNorm2d(in_planes)
            self.fc = nn.Linear(in_planes, num_classes)

        def forward(self, x):
            x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
            x = F.relu(self.bn(x))
            return self.fc(x.mean(dim=(2, 3)))

    return types.SimpleNamespace(PreActBlock=PreActBlock, PreActBottleneck=PreActBottleneck,
                                 PreActResNet=PreActResNet)


@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch", reason="torch not installed: PyTorch parity tests need the 'torch' extra")
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # the cores are shared: float64 CPU kernels gain little from more
    yield torch
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def ref(torch):
    return torch_reference(torch)


def randomize_bn_(torch, model, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                shape, dtype = m.weight.shape, m.weight.dtype
                m.weight.copy_(torch.rand(shape, generator=gen, dtype=dtype) + 0.5)
                m.bias.copy_(0.2 * torch.randn(shape, generator=gen, dtype=dtype))
                m.running_mean.copy_(0.2 * torch.randn(shape, generator=gen, dtype=dtype))
                m.running_var.copy_(torch.rand(shape, generator=gen, dtype=dtype) + 0.5)
                m.num_batches_tracked.fill_(int(torch.randint(1, 100, (1,), generator=gen)))
    return model


def make_pair(torch, ours, theirs, seed=0):
    """ours in float64 with theirs' (randomised) weights; the keys must match one to one, in order."""
    torch.manual_seed(seed)
    theirs = randomize_bn_(torch, theirs.double(), seed + 1)
    ours = ours.astype("float64")
    theirs_sd = theirs.state_dict()
    assert list(ours.state_dict()) == list(theirs_sd), "state-dict keys (or their order) differ from torch's"
    ours.load_state_dict({k: v.numpy() for k, v in theirs_sd.items()})
    return ours, theirs


def close(name, what, ours, theirs):
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else np.asarray(theirs)
    assert np.shape(ours) == theirs.shape, f"{name} {what}: shape {np.shape(ours)} vs torch {theirs.shape}"
    err = rel_error(ours, theirs)
    if not name.startswith("planted"):  # a planted mistake is meant to be far off
        WORST["parity", name] = max(WORST.get(("parity", name), 0.0), err)
    assert err <= TOL, f"{name} {what}: relative error {err:.3e} against torch"


def share_dropout_masks(torch, ours, theirs):
    """Give each torch block the mask our block drew in its last forward pass."""
    our_blocks = [m for m in ours.modules() if isinstance(m, M.PreActBasicBlock) and m.dropout is not None]
    their_blocks = [m for m in theirs.modules() if getattr(m, "drop_rate", 0) > 0]
    assert len(our_blocks) == len(their_blocks) > 0
    for o, t in zip(our_blocks, their_blocks):
        t.mask = torch.from_numpy(o.dropout.mask.astype(np.float64))


def compare_pass(torch, name, ours, theirs, x, train, with_loss=False):
    """One forward and backward pass in both: output, (loss,) input gradient, every parameter
    gradient, and the batch-norm buffers afterwards."""
    ours.train(train)
    theirs.train(train)
    ours.zero_grad()
    theirs.zero_grad()
    mode = "train" if train else "eval"
    out = ours(x)
    if train and any(isinstance(m, L.Dropout) for m in ours.modules()):
        share_dropout_masks(torch, ours, theirs)
    x_t = torch.tensor(x, requires_grad=True)
    out_t = theirs(x_t)
    close(name, f"{mode} output", out, out_t)
    if with_loss:
        labels = np.arange(x.shape[0]) % out.shape[1]
        criterion = SoftmaxCrossEntropy()
        loss = criterion(out, labels)
        loss_t = torch.nn.functional.cross_entropy(out_t, torch.tensor(labels))
        close(name, "loss", loss, loss_t)
        loss_t.backward()
        dx = ours.backward(criterion.backward())
    else:
        dout = randn(*out.shape, seed=7)
        out_t.backward(torch.tensor(dout))
        dx = ours.backward(dout)
    close(name, f"{mode} input gradient", dx, x_t.grad)
    theirs_params = dict(theirs.named_parameters())
    assert list(dict(ours.named_parameters())) == list(theirs_params)
    for key, p in ours.named_parameters():
        close(name, f"{mode} gradient of {key}", p.grad, theirs_params[key].grad)
    theirs_buffers = dict(theirs.named_buffers())
    for key, value in ours.named_buffers():
        if key.endswith("num_batches_tracked"):
            assert int(value) == int(theirs_buffers[key]), key
        else:
            close(name, f"{mode} {key} after the pass", value, theirs_buffers[key])


@pytest.mark.parametrize("name,ours,theirs,shape", [
    case("PreActBasicBlock identity", lambda: M.PreActBasicBlock(4, 4), lambda r: r.PreActBlock(4, 4), (2, 4, 5, 5)),
    case("PreActBasicBlock downsample /2", lambda: M.PreActBasicBlock(3, 6, 2), lambda r: r.PreActBlock(3, 6, 2),
         (2, 3, 7, 7)),
    case("PreActBottleneck identity", lambda: M.PreActBottleneck(8, 2), lambda r: r.PreActBottleneck(8, 2),
         (2, 8, 5, 5)),
    case("PreActBottleneck downsample /2", lambda: M.PreActBottleneck(4, 3, 2),
         lambda r: r.PreActBottleneck(4, 3, 2), (2, 4, 7, 7)),
])
def test_blocks_match_torch(torch, ref, name, ours, theirs, shape):
    x = randn(*shape, seed=3)
    for train in (True, False):
        mine, reference = make_pair(torch, ours(), theirs(ref))
        compare_pass(torch, name, mine, reference, x, train)


@pytest.mark.parametrize("broken_cls", [DownsampleReadsX, ReLUAfterTheAddition])
def test_consistent_wrong_blocks_fail_the_torch_parity(torch, ref, broken_cls):
    mine, reference = make_pair(torch, broken_cls(3, 6, 2), ref.PreActBlock(3, 6, 2))
    with pytest.raises(AssertionError, match="train output"):
        compare_pass(torch, f"planted {broken_cls.__name__}", mine, reference, randn(2, 3, 7, 7, seed=3), train=True)


NETWORKS = [
    pytest.param("preact_resnet20", M.preact_resnet20, lambda r: r.PreActResNet(r.PreActBlock, 3), (2, 3, 8, 8),
                 id="preact_resnet20"),
    pytest.param("preact_resnet110", M.preact_resnet110, lambda r: r.PreActResNet(r.PreActBlock, 18), (2, 3, 8, 8),
                 id="preact_resnet110"),
    pytest.param("preact_resnet164", M.preact_resnet164, lambda r: r.PreActResNet(r.PreActBottleneck, 18),
                 (2, 3, 8, 8), id="preact_resnet164"),
    pytest.param("WRN-10-2", lambda: M.wrn(10, 2), lambda r: r.PreActResNet(r.PreActBlock, 1, widen_factor=2),
                 (2, 3, 8, 8), id="wrn10_2"),
    pytest.param("WRN-16-2 dropout 0.3", lambda: M.wrn(16, 2, dropout=0.3),
                 lambda r: r.PreActResNet(r.PreActBlock, 2, widen_factor=2, drop_rate=0.3), (3, 3, 8, 8),
                 id="wrn16_2-dropout"),
]


@pytest.mark.parametrize("name,ours,theirs,shape", NETWORKS)
def test_networks_match_torch(torch, ref, name, ours, theirs, shape):
    """A training step (logits, loss, dx, every parameter gradient, running statistics), then eval mode."""
    mine, reference = make_pair(torch, ours(), theirs(ref))
    x = randn(*shape, seed=4)
    compare_pass(torch, name, mine, reference, x, train=True, with_loss=True)
    compare_pass(torch, name, mine, reference, x, train=False)  # with the statistics the step left behind


def test_dropout_masks_really_differ_from_one_step_to_the_next(torch, ref):
    """The dropout parity above is not vacuous: our masks drop elements and change between steps."""
    mine, _ = make_pair(torch, M.wrn(10, 1, dropout=0.5), ref.PreActResNet(ref.PreActBlock, 1, drop_rate=0.5))
    x = randn(2, 3, 8, 8)
    mine(x)
    first = mine.layer1[0].dropout.mask.copy()
    mine(x)
    assert 0 < first.mean() < 1 and not np.array_equal(first, mine.layer1[0].dropout.mask)
