"""torchvision's resnet.py, followed line by line with this library's names (issue 31).

torchvision is not a dependency (there is no CPU build of it beside torch here), so its definition is
transcribed below ONCE, as functions of a namespace ``nn``: ``resnet_init`` is ``ResNet.__init__``,
``make_layer`` is ``ResNet._make_layer``, ``conv3x3``/``conv1x1`` are its helpers. Given ``torch.nn`` they
build torchvision's ResNet; given ``OURS`` (resnet_np.layers, and resnet_np's ``BasicBlock`` and
``Bottleneck``, which take torchvision's arguments) the very same lines build ours. The torch blocks are
torchvision's, transcribed too.

Each test builds ResNet-18 and ResNet-50 (``zero_init_residual``, ``replace_stride_with_dilation`` and
``norm_layer`` included) three ways: torchvision's definition in torch, the same lines with our names, and
the library's own constructors (``resnet18``, ``resnet50``). The torch model's state dict loads strictly
into both of ours, whose outputs (train and eval mode, float64) and the library's input gradient agree
with torch's. torchvision's errors (BasicBlock's groups, base_width and dilation, a wrong
``replace_stride_with_dilation``) are raised with torchvision's words.
"""

import functools
import inspect
from types import SimpleNamespace

import numpy as np
import pytest

from resnet_np import layers as L
from resnet_np import models as M
from resnet_np.gradcheck import rel_error

torch = pytest.importorskip("torch", reason="torch not installed: the torchvision comparison needs the 'torch' extra")

# resnet_np's names for what torchvision's resnet.py uses from torch.nn.
OURS = SimpleNamespace(
    Conv2d=L.Conv2d, BatchNorm2d=L.BatchNorm2d, ReLU=L.ReLU, MaxPool2d=L.MaxPool2d,
    AdaptiveAvgPool2d=L.AdaptiveAvgPool2d, Linear=L.Linear,
    Sequential=L.Sequential, BasicBlock=M.BasicBlock, Bottleneck=M.Bottleneck,
    init=SimpleNamespace(constant_=lambda parameter, value: parameter.data.fill(value)),
)


# -- torchvision's resnet.py, as functions of nn -------------------------------------------------------------

def conv3x3(nn, in_planes, out_planes, stride=1, groups=1, dilation=1):
    """3x3 convolution with padding"""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=dilation, groups=groups,
                     bias=False, dilation=dilation)


def conv1x1(nn, in_planes, out_planes, stride=1):
    """1x1 convolution"""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


def resnet_init(self, nn, block, layers, num_classes=1000, zero_init_residual=False, groups=1, width_per_group=64,
                replace_stride_with_dilation=None, norm_layer=None):
    """``ResNet.__init__`` after ``super().__init__()``; its loop that re-initialises every Conv2d and
    BatchNorm2d is left out (both libraries already start there), its ``zero_init_residual`` is kept."""
    if norm_layer is None:
        norm_layer = nn.BatchNorm2d
    self._norm_layer = norm_layer

    self.inplanes = 64
    self.dilation = 1
    if replace_stride_with_dilation is None:
        # each element in the tuple indicates if we should replace
        # the 2x2 stride with a dilated convolution instead
        replace_stride_with_dilation = [False, False, False]
    if len(replace_stride_with_dilation) != 3:
        raise ValueError(
            "replace_stride_with_dilation should be None "
            f"or a 3-element tuple, got {replace_stride_with_dilation}"
        )
    self.groups = groups
    self.base_width = width_per_group
    self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
    self.bn1 = norm_layer(self.inplanes)
    self.relu = nn.ReLU(inplace=True)
    self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    self.layer1 = make_layer(self, nn, block, 64, layers[0])
    self.layer2 = make_layer(self, nn, block, 128, layers[1], stride=2, dilate=replace_stride_with_dilation[0])
    self.layer3 = make_layer(self, nn, block, 256, layers[2], stride=2, dilate=replace_stride_with_dilation[1])
    self.layer4 = make_layer(self, nn, block, 512, layers[3], stride=2, dilate=replace_stride_with_dilation[2])
    self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    self.fc = nn.Linear(512 * block.expansion, num_classes)

    # Zero-initialize the last BN in each residual branch,
    # so that the residual branch starts with zeros, and each residual block behaves like an identity.
    # This improves the model by 0.2~0.3% according to https://arxiv.org/abs/1706.02677
    if zero_init_residual:
        for m in self.modules():
            if isinstance(m, nn.Bottleneck) and m.bn3.weight is not None:
                nn.init.constant_(m.bn3.weight, 0)  # type: ignore[arg-type]
            elif isinstance(m, nn.BasicBlock) and m.bn2.weight is not None:
                nn.init.constant_(m.bn2.weight, 0)  # type: ignore[arg-type]


def make_layer(self, nn, block, planes, blocks, stride=1, dilate=False):
    """``ResNet._make_layer``."""
    norm_layer = self._norm_layer
    downsample = None
    previous_dilation = self.dilation
    if dilate:
        self.dilation *= stride
        stride = 1
    if stride != 1 or self.inplanes != planes * block.expansion:
        downsample = nn.Sequential(
            conv1x1(nn, self.inplanes, planes * block.expansion, stride),
            norm_layer(planes * block.expansion),
        )

    layers = []
    layers.append(
        block(
            self.inplanes, planes, stride, downsample, self.groups, self.base_width, previous_dilation, norm_layer
        )
    )
    self.inplanes = planes * block.expansion
    for _ in range(1, blocks):
        layers.append(
            block(
                self.inplanes,
                planes,
                groups=self.groups,
                base_width=self.base_width,
                dilation=self.dilation,
                norm_layer=norm_layer,
            )
        )

    return nn.Sequential(*layers)


# -- torch's side: torchvision's blocks and forward ------------------------------------------------------------

class BasicBlock(torch.nn.Module):
    expansion: int = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, dilation=1,
                 norm_layer=None):
        super().__init__()
        if norm_layer is None:
            norm_layer = torch.nn.BatchNorm2d
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and base_width=64")
        if dilation > 1:
            raise NotImplementedError("Dilation > 1 not supported in BasicBlock")
        # Both self.conv1 and self.downsample layers downsample the input when stride != 1
        self.conv1 = conv3x3(torch.nn, inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = torch.nn.ReLU(inplace=True)
        self.conv2 = conv3x3(torch.nn, planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class Bottleneck(torch.nn.Module):
    expansion: int = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, dilation=1,
                 norm_layer=None):
        super().__init__()
        if norm_layer is None:
            norm_layer = torch.nn.BatchNorm2d
        width = int(planes * (base_width / 64.0)) * groups
        # Both self.conv2 and self.downsample layers downsample the input when stride != 1
        self.conv1 = conv1x1(torch.nn, inplanes, width)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(torch.nn, width, width, stride, groups, dilation)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(torch.nn, width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = torch.nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


TORCH = SimpleNamespace(**{name: getattr(torch.nn, name) for name in (
    "Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "AdaptiveAvgPool2d", "Linear", "Sequential")},
    BasicBlock=BasicBlock, Bottleneck=Bottleneck, init=torch.nn.init)


class TorchvisionResNet(torch.nn.Module):
    def __init__(self, block, layers, **options):
        super().__init__()
        resnet_init(self, TORCH, block, layers, **options)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


# -- our side: the same lines with resnet_np's names ------------------------------------------------------------

class OurTorchvisionResNet(M.Network):
    def __init__(self, block, layers, **options):
        super().__init__()
        resnet_init(self, OURS, block, layers, **options)
        self.flatten = L.Flatten()  # torchvision's forward calls torch.flatten; our Network runs a layer

    def stem(self):
        return [self.conv1, self.bn1, self.relu, self.maxpool]

    def stages(self):
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def head(self):
        return [self.avgpool, self.flatten, self.fc]


# -- the tests ---------------------------------------------------------------------------------------------------

ARCHS = {"resnet18": ("BasicBlock", [2, 2, 2, 2], M.resnet18), "resnet50": ("Bottleneck", [3, 4, 6, 3], M.resnet50)}

CONFIGS = {
    "resnet18": ("resnet18", {}),
    "resnet18-zero-init-batch-statistics-norm": ("resnet18", {"zero_init_residual": True,
                                                              "norm_layer": {"track_running_stats": False}}),
    "resnet50-zero-init-dilated": ("resnet50", {"zero_init_residual": True,
                                                "replace_stride_with_dilation": [False, True, True]}),
}


def options_for(nn, options):
    """The options, with the norm layer (given as BatchNorm2d's keyword arguments) made from ``nn``'s."""
    options = dict(options)
    if "norm_layer" in options:
        options["norm_layer"] = functools.partial(nn.BatchNorm2d, **options["norm_layer"])
    return options


def zero_weights(state):
    return sorted(k for k, v in state.items() if k.endswith("weight") and not np.asarray(v).any())


def scramble(model, seed=0):
    """Every batch norm off its defaults (and off zero_init's zeros), so that a swapped tensor shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                C = m.num_features
                m.weight.copy_(0.5 + torch.rand(C, generator=gen, dtype=torch.float64))
                m.bias.copy_(0.2 * torch.randn(C, generator=gen, dtype=torch.float64))
                if m.running_mean is not None:
                    m.running_mean.copy_(0.2 * torch.randn(C, generator=gen, dtype=torch.float64))
                    m.running_var.copy_(0.5 + torch.rand(C, generator=gen, dtype=torch.float64))
    return model


@pytest.fixture(scope="module", autouse=True)
def _single_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.mark.parametrize("config", CONFIGS)
def test_torchvision_resnet_line_by_line(config):
    arch, options = CONFIGS[config]
    block, layers, constructor = ARCHS[arch]
    torch.manual_seed(0)
    theirs = TorchvisionResNet(getattr(TORCH, block), layers, num_classes=10, **options_for(TORCH, options))
    by_lines = OurTorchvisionResNet(getattr(OURS, block), layers, num_classes=10, **options_for(OURS, options))
    library = constructor(num_classes=10, **options_for(OURS, options))
    if options.get("replace_stride_with_dilation"):  # save()/load() rebuild the same network
        assert library.config["replace_stride_with_dilation"] == options["replace_stride_with_dilation"]

    # The same keys in the same order; zero_init_residual zeroes the same batch norms.
    keys = list(theirs.state_dict())
    assert list(by_lines.state_dict()) == keys and list(library.state_dict()) == keys
    zeroed = zero_weights({k: v.numpy() for k, v in theirs.state_dict().items()})
    assert zero_weights(by_lines.state_dict()) == zeroed and zero_weights(library.state_dict()) == zeroed
    assert len(zeroed) == (8 if arch == "resnet18" else 16) * bool(options.get("zero_init_residual"))

    # torchvision's weights load strictly, and the three networks compute the same.
    state = {k: v.numpy() for k, v in scramble(theirs.double()).state_dict().items()}
    for ours in (by_lines, library):
        ours.astype("float64").load_state_dict(state, strict=True)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32))
    for train in (False, True):
        theirs.train(train)
        xt = torch.tensor(x, requires_grad=True)
        out = theirs(xt)
        for name, ours in (("same lines", by_lines), ("library", library)):
            err = rel_error(ours.train(train)(x), out.detach().numpy())
            assert err < 1e-10, f"{config} {name}, train={train}: output differs from torchvision's ({err:.1e})"
    g = np.random.default_rng(1).standard_normal(out.shape)
    out.backward(torch.tensor(g))
    # Through 20-odd train-mode batch norms, some over 2 values a channel (layer4 at 1x1), the rounding grows.
    library.requires_grad_(False)  # dx only: the parameters' gradients would cost more than the rest together
    err = rel_error(library.backward(g), xt.grad.numpy())
    assert err < 1e-8, f"{config}: the input gradient differs from torch's ({err:.1e})"


def test_torchvisions_errors_in_torchvisions_words():
    def raised(make):
        with pytest.raises(Exception) as info:
            make()
        return type(info.value), str(info.value)

    for theirs, ours in [(lambda: BasicBlock(64, 64, groups=2), lambda: M.BasicBlock(64, 64, groups=2)),
                         (lambda: BasicBlock(64, 64, base_width=32), lambda: M.BasicBlock(64, 64, base_width=32)),
                         (lambda: BasicBlock(64, 64, dilation=2), lambda: M.BasicBlock(64, 64, dilation=2))]:
        assert raised(ours) == raised(theirs)
    # A dilated ResNet-18 fails where torchvision's does: its second block in a dilated stage.
    dilated = {"replace_stride_with_dilation": [False, False, True]}
    expected = (NotImplementedError, "Dilation > 1 not supported in BasicBlock")
    assert raised(lambda: TorchvisionResNet(BasicBlock, [2, 2, 2, 2], **dilated)) == expected
    assert raised(lambda: M.resnet18(**dilated)) == expected
    wrong = {"replace_stride_with_dilation": [False, True]}
    expected = raised(lambda: TorchvisionResNet(Bottleneck, [1, 1, 1, 1], **wrong))
    assert expected[0] is ValueError and "3-element tuple, got [False, True]" in expected[1]
    assert raised(lambda: M.ResNet(M.Bottleneck, [1, 1, 1, 1], **wrong)) == expected
    assert raised(lambda: M.resnet50(**wrong)) == expected


def test_grouped_dilated_resnet_with_a_norm_layer_is_torchvisions():
    """ResNeXt's groups, a dilated stage of two blocks and a norm layer with momentum=None, all at once, small."""
    options = {"groups": 4, "width_per_group": 16, "zero_init_residual": True,
               "replace_stride_with_dilation": [True, False, True]}
    theirs = TorchvisionResNet(Bottleneck, [1, 2, 1, 1], num_classes=5, **options,
                               norm_layer=functools.partial(torch.nn.BatchNorm2d, momentum=None))
    ours = M.ResNet(M.Bottleneck, [1, 2, 1, 1], num_classes=5, **options,
                    norm_layer=functools.partial(L.BatchNorm2d, momentum=None))
    assert zero_weights(ours.state_dict()) == zero_weights({k: v.numpy() for k, v in theirs.state_dict().items()})
    ours.astype("float64").load_state_dict({k: v.numpy() for k, v in scramble(theirs.double()).state_dict().items()})
    for step in range(3):  # two training steps move the running statistics (cumulative average), then eval
        train = step < 2
        x = np.random.default_rng(step).standard_normal((2, 3, 24, 24)) + step
        out = theirs.train(train)(torch.tensor(x)).detach().numpy()
        assert rel_error(ours.train(train)(x), out) < 1e-10, f"step {step}"
    for key, value in theirs.state_dict().items():
        assert rel_error(ours.state_dict()[key], value.numpy()) < 1e-12, key


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
                                  "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2"])
def test_every_imagenet_constructor_takes_torchvisions_options(name):
    parameters = inspect.signature(M.ARCHITECTURES[name]).parameters
    assert {"zero_init_residual", "replace_stride_with_dilation", "norm_layer"} <= set(parameters)


def test_cifar_resnext_takes_zero_init_residual_and_a_norm_layer():
    model = M.CifarResNeXt(1, 2, 16, base_planes=8, num_classes=3, zero_init_residual=True,
                           norm_layer=functools.partial(L.BatchNorm2d, track_running_stats=False))
    state = model.state_dict()
    assert not any("running" in key or "num_batches" in key for key in state)
    assert zero_weights(state) == ["layer1.0.bn3.weight", "layer2.0.bn3.weight", "layer3.0.bn3.weight"]
    assert model.eval()(np.ones((2, 3, 8, 8), np.float32)).shape == (2, 3)


def test_relu_inplace_writes_over_its_input_as_torch_does():
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4))
    dout = np.random.default_rng(1).standard_normal(x.shape)
    theirs = torch.tensor(x, requires_grad=True)
    expected = torch.nn.ReLU(inplace=True)(theirs.clone())
    expected.backward(torch.tensor(dout))

    mine, relu = x.copy(), L.ReLU(inplace=True)
    out = relu(mine)
    assert out is mine and repr(relu) == "ReLU(inplace=True)"
    np.testing.assert_array_equal(mine, expected.detach().numpy())      # the input now holds the result
    np.testing.assert_array_equal(relu.backward(dout), theirs.grad.numpy())
    kept = x.copy()
    L.ReLU()(kept)
    np.testing.assert_array_equal(kept, x)                               # without inplace, x is untouched


def test_a_dilated_network_file_loads_only_into_a_dilated_network(tmp_path):
    """Dilation changes no key and no shape: the file's config says it, and loading checks it both ways."""
    from resnet_np.models.weights import ModelFileError, load, save

    dilated, plain = tmp_path / "dilated.npz", tmp_path / "plain.npz"
    save(M.resnet50(num_classes=4, replace_stride_with_dilation=[False, True, True]), dilated)
    save(M.resnet50(num_classes=4), plain)
    assert load(dilated).config["replace_stride_with_dilation"] == [False, True, True]
    with pytest.raises(ModelFileError, match=r"replace_stride_with_dilation=\[False, True, True\], but the model"):
        load(dilated, M.resnet50(num_classes=4))
    with pytest.raises(ModelFileError, match=r"replace_stride_with_dilation=\[False, False, False\], but the model"):
        load(plain, M.resnet50(num_classes=4, replace_stride_with_dilation=[False, True, True]))
    load(plain, M.resnet50(num_classes=4))  # a file from before the option existed says nothing: no dilation
