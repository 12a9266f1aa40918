"""ResNeXt and the wide ImageNet ResNets: sizes, PyTorch parity, gradient checks, save/load and planted mistakes.

torchvision is not available here, so its ``Bottleneck`` (with ``groups``
and ``base_width``) and ``ResNet`` (with ``groups`` and ``width_per_group``)
are written out below in plain ``torch.nn``, with torchvision's attribute
names: the state-dict keys match ours one to one, and a state dict saved
from them is a torchvision checkpoint as far as ``load_torch_state_dict``
can tell. The CIFAR ResNeXt-29 reference follows the paper (Sec. 5.3): a
3x3 stem of 64 channels, no max-pool, three stages of three bottlenecks.

The parity tests run a training step (logits, loss, dx, the gradient of
EVERY parameter, the running statistics afterwards) and then an eval pass
with a random upstream gradient, in float64, with the torch batch norms
randomised (the defaults 1, 0, 0, 1 would hide bugs), to a relative error
of 1e-8. Their inputs are small: the point is that every layer is there
and every stage sees a map larger than 1x1, not the ImageNet resolution.
They skip where torch is not installed.
"""

import re
import types

import numpy as np
import pytest
from _parity import count, randn, scramble_bn

from resnet_np import finetune
from resnet_np import layers as L
from resnet_np import models as M
from resnet_np.gradcheck import GradcheckError, check_module, rel_error
from resnet_np.layers import SoftmaxCrossEntropy

TOL = 1e-8  # parity with torch, float64

# Worst relative error per (what, name); printed at the end of the module (pytest -s shows it).
WORST = {}


@pytest.fixture(autouse=True, scope="module")
def _report_worst_errors():
    yield
    if WORST:
        print("\nworst relative errors:")
        for (what, name), err in sorted(WORST.items()):
            print(f"  {what:<10} {name:<40} {err:.2e}")


def projection(cin, cout, stride):
    return L.Sequential(L.Conv2d(cin, cout, 1, stride=stride, bias=False), L.BatchNorm2d(cout))


# -- sizes and structure ----------------------------------------------------------------------------

# torchvision's published parameter counts (the ``num_params`` of its weights) for the ImageNet
# networks; for ResNeXt-29 (not in torchvision), those of the paper's definition, checked against
# the torch reference below.
PARAMETER_COUNTS = [
    ("resnext50_32x4d", 25_028_904), ("resnext101_32x8d", 88_791_336), ("resnext101_64x4d", 83_455_272),
    ("wide_resnet50_2", 68_883_240), ("wide_resnet101_2", 126_886_696),
    ("resnext29_8x64d", 34_426_698), ("resnext29_16x64d", 68_155_210),
]


@pytest.mark.parametrize("arch,expected", PARAMETER_COUNTS, ids=[a for a, _ in PARAMETER_COUNTS])
def test_parameter_counts(arch, expected):
    model = M.ARCHITECTURES[arch]()
    assert model.arch == arch
    assert count(model) == expected, f"{arch}: {count(model):,} parameters, expected {expected:,}"


def test_widths_and_groups_follow_torchvisions_formula():
    """width = int(planes * base_width / 64) * groups, on the 3x3 only; the block's output stays planes * 4."""
    x50 = M.resnext50_32x4d()
    block = x50.layer3[0]  # planes 256: width int(256 * 4 / 64) * 32 = 512
    assert block.conv2.groups == 32 and block.conv2.weight.shape == (512, 16, 3, 3)
    assert block.conv1.weight.shape == (512, 512, 1, 1) and block.conv3.weight.shape == (1024, 512, 1, 1)
    assert block.conv2.stride == (2, 2) and block.conv1.stride == (1, 1)  # v1.5: the stride on the 3x3
    wide = M.wide_resnet50_2().layer1[1]  # planes 64: width 64 * 128 / 64 = 128, one group
    assert wide.conv2.groups == 1 and wide.conv2.weight.shape == (128, 128, 3, 3)
    assert wide.conv3.weight.shape == (256, 128, 1, 1)
    x29 = M.resnext29_8x64d()
    assert x29.conv1.weight.shape == (64, 3, 3, 3) and not any(isinstance(m, L.MaxPool2d) for m in x29.modules())
    assert [x29.layer1[0].conv2.weight.shape[0], x29.layer2[0].conv2.weight.shape[0],
            x29.layer3[0].conv2.weight.shape[0]] == [512, 1024, 2048]
    assert x29.layer2[0].conv2.weight.shape[1] == 128 and x29.fc.weight.shape == (10, 1024)
    assert len(x29.layer1) == len(x29.layer2) == len(x29.layer3) == 3
    # 29 layers: 9 bottlenecks of 3 convolutions, the stem and fc (the 1x1 projections not counted).
    assert sum(isinstance(m, L.Conv2d) for name, m in x29.named_modules() if "downsample" not in name) + 1 == 29
    assert M.Bottleneck(64, 64).conv2.groups == 1 and M.Bottleneck(64, 64).width == 64  # ResNet-50's, unchanged


def test_flops_are_the_papers_multiply_adds():
    """torchvision lists 4.09 and 4.23 GFLOPS: ResNeXt-50 costs about what ResNet-50 costs."""
    assert M.flops(M.resnet50(), (1, 3, 224, 224)) == 4_089_184_256
    assert M.flops(M.resnext50_32x4d(), (1, 3, 224, 224)) == 4_230_479_872
    dense, grouped = L.Conv2d(8, 8, 3, padding=1), L.Conv2d(8, 8, 3, padding=1, groups=4)
    assert M.flops(dense, (2, 8, 5, 5)) == 2 * 5 * 5 * 8 * 8 * 3 * 3 == 4 * M.flops(grouped, (2, 8, 5, 5))
    assert M.flops(L.Linear(3, 4), (5, 3)) == 5 * 3 * 4


def test_old_bottleneck_calls_still_work():
    """Positional (in, planes, stride, downsample) and residual= as before the groups arrived."""
    block = M.Bottleneck(8, 4, 2, projection(8, 16, 2), residual=True)
    assert block(randn(2, 8, 5, 5).astype(np.float32)).shape == (2, 16, 3, 3)
    plain = M.Bottleneck(8, 2, residual=False)
    assert plain.add is None and plain.downsample is None
    assert count(M.resnet50()) == 25_557_032 and M.resnet50().groups == 1


@pytest.mark.parametrize("factory,shape", [
    (lambda: M.cifar_resnext(11, 4, 4, base_planes=16, num_classes=7, in_channels=1), (2, 1, 12, 12)),
    (lambda: M.ResNet(M.Bottleneck, [1, 1, 1, 1], num_classes=7, in_channels=1, groups=4, width_per_group=8),
     (2, 1, 32, 32)),
], ids=["cifar_resnext", "imagenet-resnext"])
def test_float32_forward_and_backward_shapes(factory, shape):
    model = factory()
    x = randn(*shape).astype(np.float32)
    y = model(x)
    assert y.shape == (2, 7) and y.dtype == np.float32
    dx = model.backward(randn(2, 7, seed=1).astype(np.float32))
    assert dx.shape == x.shape and dx.dtype == np.float32
    assert all(p.grad is not None and p.grad.dtype == np.float32 for p in model.parameters())


# -- gradient checks (float64, random upstream gradient) ------------------------------------------------


@pytest.mark.parametrize("name,block,shape", [
    ("grouped bottleneck, identity", lambda: M.Bottleneck(8, 2, groups=2, base_width=64), (2, 8, 4, 4)),
    ("grouped bottleneck, projection /2",
     lambda: M.Bottleneck(4, 2, 2, projection(4, 8, 2), groups=2, base_width=64), (2, 4, 5, 5)),
    ("wide bottleneck", lambda: M.Bottleneck(8, 2, groups=1, base_width=128), (2, 8, 3, 3)),
], ids=["identity", "projection", "wide"])
def test_block_gradients(name, block, shape):
    report = check_module(scramble_bn(block()), randn(*shape), max_elements=300)
    WORST["gradcheck", name] = report.worst


def test_tiny_cifar_resnext_gradients():
    model = scramble_bn(M.cifar_resnext(11, 2, 16, base_planes=8, num_classes=3, in_channels=1))
    report = check_module(model, randn(2, 1, 6, 6), max_elements=150, num_directions=1)
    WORST["gradcheck", "ResNeXt-11 2x16d, base 8"] = report.worst


# -- planted mistakes -------------------------------------------------------------------------------------


class ForgetsGroupsInConv2(M.Bottleneck):
    """conv2 built dense: the right width, the groups forgotten. Forward and backward agree."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.conv2 = L.Conv2d(self.width, self.width, 3, stride=self.conv2.stride, padding=1, bias=False)


class WidthIgnoresPlanes(M.Bottleneck):
    """width = base_width * groups: right in layer1 (planes 64), too narrow from layer2 on."""

    def __init__(self, in_channels, out_channels, stride=1, downsample=None, groups=1, base_width=64, **options):
        super().__init__(in_channels, 64, stride, downsample, groups, base_width, **options)
        self.conv3 = L.Conv2d(self.width, out_channels * 4, 1, bias=False)
        self.bn3 = L.BatchNorm2d(out_channels * 4)


class StrideOnConv1(M.Bottleneck):
    """The stride on the first 1x1 (the paper's v1), not on the 3x3 (torchvision's v1.5): same parameters."""

    def __init__(self, in_channels, out_channels, stride=1, downsample=None, groups=1, base_width=64, **options):
        super().__init__(in_channels, out_channels, 1, downsample, groups, base_width, **options)
        self.conv1 = L.Conv2d(in_channels, self.width, 1, stride=stride, bias=False)


class BackwardSkipsBn2(M.Bottleneck):
    """Backward goes from relu2 straight to the grouped conv2, forgetting bn2."""

    def backward(self, dout):
        d_branch, d_identity = self.add.backward(self.relu3.backward(dout))
        d_branch = self.relu2.backward(self.conv3.backward(self.bn3.backward(d_branch)))
        d_branch = self.bn1.backward(self.relu1.backward(self.conv2.backward(d_branch)))
        dx = self.conv1.backward(d_branch)
        return dx + (d_identity if self.downsample is None else self.downsample.backward(d_identity))


def test_forgotten_groups_pass_the_gradient_check_but_not_the_parameter_count():
    """A dense conv2 is a correct layer of the wrong network: only a reference catches it."""
    check_module(scramble_bn(ForgetsGroupsInConv2(8, 2, groups=2, base_width=64)), randn(2, 8, 4, 4),
                 max_elements=100)
    planted = M.ResNet(ForgetsGroupsInConv2, [3, 4, 6, 3], groups=32, width_per_group=4)
    # Caught: 68,883,240 parameters instead of 25,028,904. A dense 3x3 of width 2 * planes is exactly
    # wide_resnet50_2's: forgetting the groups turns a ResNeXt into a wide ResNet.
    counts = dict(PARAMETER_COUNTS)
    assert count(planted) == counts["wide_resnet50_2"] != counts["resnext50_32x4d"]


def test_width_ignoring_planes_is_caught_by_the_parameter_count():
    planted = M.ResNet(WidthIgnoresPlanes, [3, 4, 6, 3], groups=32, width_per_group=4)
    assert planted.layer1[0].conv2.weight.shape == M.resnext50_32x4d().layer1[0].conv2.weight.shape  # right here
    assert count(planted) != 25_028_904


def test_planted_backward_mistake_fails_the_gradient_check():
    x = randn(2, 8, 4, 4)
    check_module(scramble_bn(M.Bottleneck(8, 2, groups=2, base_width=64)), x, max_elements=100)
    with pytest.raises(GradcheckError):
        check_module(scramble_bn(BackwardSkipsBn2(8, 2, groups=2, base_width=64)), x, max_elements=100)


# -- save / load, fine-tuning, the command line, bad arguments ------------------------------------------


def test_resnext50_save_load_round_trip_after_reset_classifier(tmp_path):
    model = M.resnext50_32x4d(in_channels=1)
    model.reset_classifier(7)
    assert model.fc.weight.shape == (7, 2048) and model.config == {"num_classes": 7, "in_channels": 1}
    M.save(model, tmp_path / "x50.npz")
    loaded = M.load(tmp_path / "x50.npz")
    assert loaded.arch == "resnext50_32x4d" and loaded.config == model.config
    assert loaded.layer4[2].conv2.groups == 32 and loaded.layer4[2].conv2.weight.shape == (1024, 32, 3, 3)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[key], value, err_msg=key)
    with pytest.raises(ValueError, match="holds a resnext50_32x4d, but the model to load it into is a resnet50"):
        M.load(tmp_path / "x50.npz", model=M.resnet50(num_classes=7, in_channels=1))


def test_cifar_resnext_save_load_round_trip(tmp_path):
    model = scramble_bn(M.cifar_resnext(11, 4, 4, base_planes=16, num_classes=5, in_channels=1))
    M.save(model, tmp_path / "m.npz")
    loaded = M.load(tmp_path / "m.npz")
    assert type(loaded) is M.CifarResNeXt and loaded.config == model.config
    assert loaded.config == {"depth": 11, "groups": 4, "width_per_group": 4, "base_planes": 16, "num_classes": 5,
                             "in_channels": 1}
    assert loaded.layer2[0].conv2.groups == 4
    x = randn(2, 1, 8, 8).astype(np.float32)
    np.testing.assert_array_equal(loaded.eval()(x), model.eval()(x))
    model.reset_classifier(3)
    M.save(model, tmp_path / "m3.npz")
    assert M.load(tmp_path / "m3.npz").fc.weight.shape == (3, 256)


@pytest.mark.parametrize("factory", [
    lambda: M.cifar_resnext(11, 2, 16, base_planes=8, num_classes=3, in_channels=1),
    lambda: M.ResNet(M.Bottleneck, [1, 1, 1, 1], num_classes=3, in_channels=1, groups=2, width_per_group=8),
], ids=["cifar_resnext", "imagenet-resnext"])
def test_frozen_backbone_backward_stops_early(factory):
    model = factory()
    finetune.freeze(model, "backbone")
    model.need_input_grad = False
    x = randn(2, 1, 32, 32).astype(np.float32)
    y = model(x)
    assert model.backward(np.ones_like(y)) is None
    assert model.fc.weight.grad is not None and model.conv1.weight.grad is None
    finetune.unfreeze(model, "layer3")
    model.zero_grad()
    model(x)
    assert model.backward(np.ones_like(y)) is None
    assert model.layer3[0].conv2.weight.grad is not None and model.layer2[0].conv2.weight.grad is None


def test_registered_for_the_command_line():
    """``--model NAME`` builds ``ARCHITECTURES[NAME](num_classes=..., in_channels=...)``."""
    model = M.ARCHITECTURES["resnext29_8x64d"](num_classes=100, in_channels=1)
    assert model.fc.weight.shape == (100, 1024) and model.conv1.in_channels == 1
    for name, _ in PARAMETER_COUNTS:
        assert name in M.ARCHITECTURES
    with pytest.raises(ValueError, match=r"CifarResNeXt: depth must be 9n \+ 2 .*got None.*resnext29_8x64d"):
        M.ARCHITECTURES["cifar_resnext"](num_classes=10, in_channels=3)


def test_summary_shows_the_grouped_convolution():
    table = M.summary(M.cifar_resnext(11, 4, 4, base_planes=16), (1, 3, 8, 8), print_fn=None)
    # layer2's grouped 3x3: planes 32, width int(32 * 4 / 64) * 4 = 8, stride 2; 8 * (8 / 4) * 9 = 144 weights.
    assert "layer2.0 (Bottleneck)" in table
    assert re.search(r"conv2 \(Conv2d\) +\(1, 8, 4, 4\) +144\n", table), table


@pytest.mark.parametrize("build,message", [
    (lambda: M.ResNet(M.BasicBlock, [2, 2, 2, 2], groups=32, width_per_group=4),
     r"ResNet: BasicBlock only supports groups=1 and width_per_group=64 \(got groups=32, width_per_group=4\)"),
    (lambda: M.ResNet(M.Bottleneck, [1, 1, 1, 1], groups=0), r"ResNet: groups must be a positive int, got 0"),
    (lambda: M.ResNet(M.Bottleneck, [1, 1, 1, 1], width_per_group=2.5),
     r"ResNet: width_per_group must be a positive int, got 2\.5"),
    (lambda: M.Bottleneck(64, 64, groups=0), r"Bottleneck: groups must be a positive int, got 0"),
    (lambda: M.Bottleneck(64, 8, groups=4, base_width=4),
     r"Bottleneck: planes \* base_width / 64 = 8 \* 4 / 64 rounds down to 0 channels per group"),
    (lambda: M.cifar_resnext(28, 8, 64), r"CifarResNeXt: depth must be 9n \+ 2 with n >= 1 .*got 28"),
    (lambda: M.cifar_resnext(29, 0, 64), r"CifarResNeXt: groups must be a positive int, got 0"),
    (lambda: M.cifar_resnext(29, 8, None), r"CifarResNeXt: width_per_group must be a positive int, got None"),
    (lambda: M.CifarResNeXt(0, 8, 64), r"CifarResNeXt: n \(blocks per stage\) must be a positive int, got 0"),
], ids=["basic-block-groups", "groups-0", "width-float", "block-groups-0", "width-rounds-to-0", "depth",
        "cifar-groups-0", "cifar-width-none", "n-0"])
def test_bad_arguments(build, message):
    with pytest.raises(ValueError, match=message):
        build()


# ==============================================================================================
# Parity with PyTorch, in float64 (skipped where torch is not installed)
# ==============================================================================================


def torch_reference(torch):
    """torchvision's Bottleneck and ResNet (groups, width_per_group) and the paper's CIFAR ResNeXt-29."""
    nn = torch.nn

    def conv1x1(cin, cout, stride=1):
        return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)

    class Bottleneck(nn.Module):
        """torchvision.models.resnet.Bottleneck (v1.5: the stride on conv2, the grouped 3x3)."""

        expansion = 4

        def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64):
            super().__init__()
            width = int(planes * (base_width / 64.0)) * groups
            self.conv1 = conv1x1(inplanes, width)
            self.bn1 = nn.BatchNorm2d(width)
            self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
            self.bn2 = nn.BatchNorm2d(width)
            self.conv3 = conv1x1(width, planes * self.expansion)
            self.bn3 = nn.BatchNorm2d(planes * self.expansion)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = downsample

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            return self.relu(out + identity)

    class Stages(nn.Module):
        """torchvision's _make_layer, shared by both networks."""

        def make_layer(self, planes, blocks, stride=1):
            downsample = None
            if stride != 1 or self.inplanes != planes * 4:
                downsample = nn.Sequential(conv1x1(self.inplanes, planes * 4, stride), nn.BatchNorm2d(planes * 4))
            layers = [Bottleneck(self.inplanes, planes, stride, downsample, self.groups, self.base_width)]
            self.inplanes = planes * 4
            for _ in range(1, blocks):
                layers.append(Bottleneck(self.inplanes, planes, groups=self.groups, base_width=self.base_width))
            return nn.Sequential(*layers)

    class ResNet(Stages):
        """torchvision.models.resnet.ResNet with Bottleneck blocks."""

        def __init__(self, layers, num_classes=1000, groups=1, width_per_group=64):
            super().__init__()
            self.inplanes, self.groups, self.base_width = 64, groups, width_per_group
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            self.layer1 = self.make_layer(64, layers[0])
            self.layer2 = self.make_layer(128, layers[1], 2)
            self.layer3 = self.make_layer(256, layers[2], 2)
            self.layer4 = self.make_layer(512, layers[3], 2)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(2048, num_classes)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    class CifarResNeXt(Stages):
        """ResNeXt-29 (Xie et al. 2017, Sec. 5.3): 3x3 stem (64), no max-pool, stages of planes 64/128/256."""

        def __init__(self, n, groups, width_per_group, num_classes=10, base_planes=64):
            super().__init__()
            self.inplanes, self.groups, self.base_width = base_planes, groups, width_per_group
            self.conv1 = nn.Conv2d(3, base_planes, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(base_planes)
            self.relu = nn.ReLU(inplace=True)
            self.layer1 = self.make_layer(base_planes, n)
            self.layer2 = self.make_layer(2 * base_planes, n, 2)
            self.layer3 = self.make_layer(4 * base_planes, n, 2)
            self.fc = nn.Linear(16 * base_planes, num_classes)

        def forward(self, x):
            x = self.relu(self.bn1(self.conv1(x)))
            x = self.layer3(self.layer2(self.layer1(x)))
            return self.fc(x.mean(dim=(2, 3)))

    return types.SimpleNamespace(Bottleneck=Bottleneck, ResNet=ResNet, CifarResNeXt=CifarResNeXt)


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


# name -> (ours, torch reference); both take num_classes.
REFERENCES = {
    "resnext50_32x4d": (M.resnext50_32x4d, lambda r, k: r.ResNet([3, 4, 6, 3], k, groups=32, width_per_group=4)),
    "resnext101_32x8d": (M.resnext101_32x8d, lambda r, k: r.ResNet([3, 4, 23, 3], k, groups=32, width_per_group=8)),
    "resnext101_64x4d": (M.resnext101_64x4d, lambda r, k: r.ResNet([3, 4, 23, 3], k, groups=64, width_per_group=4)),
    "wide_resnet50_2": (M.wide_resnet50_2, lambda r, k: r.ResNet([3, 4, 6, 3], k, width_per_group=128)),
    "wide_resnet101_2": (M.wide_resnet101_2, lambda r, k: r.ResNet([3, 4, 23, 3], k, width_per_group=128)),
    "resnext29_8x64d": (M.resnext29_8x64d, lambda r, k: r.CifarResNeXt(3, 8, 64, k)),
    "resnext29_16x64d": (M.resnext29_16x64d, lambda r, k: r.CifarResNeXt(3, 16, 64, k)),
    "ResNeXt-11 4x4d, base 16": (lambda k: M.cifar_resnext(11, 4, 4, base_planes=16, num_classes=k),
                                 lambda r, k: r.CifarResNeXt(1, 4, 4, k, base_planes=16)),
}


@pytest.mark.parametrize("arch,expected", PARAMETER_COUNTS, ids=[a for a, _ in PARAMETER_COUNTS])
def test_keys_shapes_and_counts_match_the_torch_reference(torch, ref, arch, expected):
    with torch.device("meta"):  # keys and shapes only: no memory, no initialisation
        theirs = REFERENCES[arch][1](ref, 1000 if arch.startswith(("resnext50", "resnext101", "wide")) else 10)
    ours = M.ARCHITECTURES[arch]()
    assert sum(p.numel() for p in theirs.parameters()) == expected
    theirs_sd = theirs.state_dict()
    assert list(ours.state_dict()) == list(theirs_sd), "state-dict keys (or their order) differ from torch's"
    for key, value in ours.state_dict().items():
        assert tuple(value.shape) == tuple(theirs_sd[key].shape), key


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


def compare_pass(torch, name, ours, theirs, x, train):
    """One forward and backward pass in both: the output, (for a network in train mode: the loss,) dx,
    every parameter gradient, and the batch-norm buffers afterwards."""
    ours.train(train)
    theirs.train(train)
    ours.zero_grad()
    theirs.zero_grad()
    mode = "train" if train else "eval"
    out = ours(x)
    x_t = torch.tensor(x, requires_grad=True)
    out_t = theirs(x_t)
    close(name, f"{mode} output", out, out_t)
    if train and out.ndim == 2:
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


# ImageNet nets at 48x48: 24 after conv1, 12 after the max-pool, then 12, 6, 3, 2 (a stride-2 grouped
# 3x3 on an odd 3x3 map). CIFAR nets at 8x8: 8, 4, 2.
@pytest.mark.parametrize("arch,shape", [
    ("resnext50_32x4d", (2, 3, 48, 48)),
    ("wide_resnet50_2", (2, 3, 48, 48)),
    ("resnext29_8x64d", (2, 3, 8, 8)),
    ("ResNeXt-11 4x4d, base 16", (3, 3, 10, 10)),
], ids=["resnext50_32x4d", "wide_resnet50_2", "resnext29_8x64d", "resnext11_4x4d"])
def test_network_matches_torch(torch, ref, arch, shape):
    """A training step (logits, loss, dx, every parameter gradient, running statistics), then eval mode."""
    ours_fn, theirs_fn = REFERENCES[arch]
    mine, reference = make_pair(torch, ours_fn(10), theirs_fn(ref, 10))
    x = randn(*shape, seed=4)
    compare_pass(torch, arch, mine, reference, x, train=True)
    compare_pass(torch, arch, mine, reference, x, train=False)  # with the statistics the step left behind


@pytest.mark.parametrize("stride", [1, 2])
def test_grouped_block_matches_torch(torch, ref, stride):
    ours = M.Bottleneck(8, 4, stride, projection(8, 16, stride), groups=4, base_width=32)
    down = torch.nn.Sequential(torch.nn.Conv2d(8, 16, 1, stride, bias=False), torch.nn.BatchNorm2d(16))
    mine, reference = make_pair(torch, ours, ref.Bottleneck(8, 4, stride, down, groups=4, base_width=32))
    for train in (True, False):
        compare_pass(torch, f"grouped Bottleneck stride {stride}", mine, reference, randn(2, 8, 5, 5, seed=3),
                     train)


def test_planted_stride_on_conv1_is_caught_by_the_torch_parity(torch, ref):
    """Same parameters, same keys, a correct backward: a different network, which only torch exposes."""
    block = StrideOnConv1(8, 4, 2, projection(8, 16, 2), groups=4, base_width=32)
    check_module(scramble_bn(block), randn(2, 8, 5, 5), max_elements=100)  # a consistent forward and backward
    down = torch.nn.Sequential(torch.nn.Conv2d(8, 16, 1, 2, bias=False), torch.nn.BatchNorm2d(16))
    mine, reference = make_pair(torch, block, ref.Bottleneck(8, 4, 2, down, groups=4, base_width=32))
    with pytest.raises(AssertionError, match="train output"):
        compare_pass(torch, "planted stride on conv1", mine, reference, randn(2, 8, 5, 5, seed=3), train=True)


def test_planted_forgotten_groups_cannot_even_load_torchs_weights(torch, ref):
    ours = M.ResNet(ForgetsGroupsInConv2, [1, 1, 1, 1], num_classes=10, groups=4, width_per_group=16)
    theirs = ref.ResNet([1, 1, 1, 1], 10, groups=4, width_per_group=16)
    with pytest.raises(ValueError, match=r"layer1\.0\.conv2\.weight: expected shape \(64, 64, 3, 3\), "
                                         r"got \(64, 16, 3, 3\)"):
        ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})


def test_torchvision_checkpoint_loads(torch, ref, tmp_path):
    """A state dict saved from the torch ResNeXt-50 (1000 classes, as torchvision's file) loads strictly."""
    torch.manual_seed(5)
    theirs = randomize_bn_(torch, ref.ResNet([3, 4, 6, 3], 1000, groups=32, width_per_group=4), 6)
    path = tmp_path / "resnext50_32x4d.pth"
    torch.save(theirs.state_dict(), path)
    ours = M.load_torch_state_dict(M.resnext50_32x4d(), path)
    for key, value in theirs.state_dict().items():
        np.testing.assert_array_equal(ours.state_dict()[key], value.numpy(), err_msg=key)
    theirs.eval()
    x = randn(1, 3, 40, 40, seed=2).astype(np.float32)
    with torch.no_grad():
        expected = theirs(torch.tensor(x)).numpy()
    assert rel_error(ours.eval()(x), expected) < 1e-4  # float32 both
    # And back: ours written as a .pth loads into the torch network strictly.
    M.save_torch_state_dict(ours, tmp_path / "back.pth")
    again = ref.ResNet([3, 4, 6, 3], 1000, groups=32, width_per_group=4)
    again.load_state_dict(torch.load(tmp_path / "back.pth", weights_only=True), strict=True)
