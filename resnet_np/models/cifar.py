"""The CIFAR-10 ResNets of the paper (Sec. 4.2): 6n + 2 layers.

    conv1 3x3 (16) -> bn1 -> relu
    -> layer1 (n blocks, 16) -> layer2 (n, 32, /2) -> layer3 (n, 64, /2)
    -> avgpool -> flatten -> fc

n = 3, 5, 7, 9, 18, 200 gives ResNet-20, 32, 44, 56, 110, 1202. Where a
stage halves the resolution and doubles the width, the shortcut is option
A (parameter-free: subsample and pad with zero channels, the paper's
choice for CIFAR) or option B (a 1x1 projection and batch norm, named
``downsample`` as in torchvision).

The stem (conv1, bn1, relu), the stages and the head (avgpool, flatten,
fc) run forward and backward in ``Network`` (base.py), which also gives
``reset_classifier(num_classes)`` and ``need_input_grad`` for fine-tuning.
"""

from ..layers import BatchNorm2d, Conv2d, Flatten, GlobalAvgPool2d, Linear, ReLU, Sequential
from . import pretrained
from .base import Network
from .basic_block import BasicBlock
from .shortcut import ShortcutA


class CifarResNet(Network):
    """``CifarResNet(n)``: three stages of ``n`` BasicBlocks each, 6n + 2 layers in all."""

    def __init__(self, n, num_classes=10, in_channels=3, shortcut="A", residual=True):
        super().__init__()
        if shortcut not in ("A", "B"):
            raise ValueError(f"CifarResNet: shortcut must be 'A' or 'B', got {shortcut!r}")
        self.shortcut = shortcut
        self.residual = residual
        self.inplanes = 16
        self.conv1 = Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = BatchNorm2d(16)
        self.relu = ReLU()
        self.layer1 = self._make_layer(16, n)
        self.layer2 = self._make_layer(32, n, stride=2)
        self.layer3 = self._make_layer(64, n, stride=2)
        self.avgpool = GlobalAvgPool2d()
        self.flatten = Flatten()
        self.fc = Linear(64, num_classes)

    def stem(self):
        return [self.conv1, self.bn1, self.relu]

    def stages(self):
        return [self.layer1, self.layer2, self.layer3]

    def head(self):
        return [self.avgpool, self.flatten, self.fc]

    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if self.residual and (stride != 1 or self.inplanes != planes):
            if self.shortcut == "A":
                downsample = ShortcutA(self.inplanes, planes, stride)
            else:
                downsample = Sequential(Conv2d(self.inplanes, planes, 1, stride=stride, bias=False),
                                        BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample, residual=self.residual)]
        self.inplanes = planes
        for _ in range(1, blocks):
            layers.append(BasicBlock(planes, planes, residual=self.residual))
        return Sequential(*layers)


def _build(arch, n, num_classes, in_channels, shortcut, residual, weights=None):
    if weights is not None:  # the trained network that ships with the package (models/pretrained.py)
        config = {"num_classes": num_classes, "in_channels": in_channels, "shortcut": shortcut, "residual": residual}
        return pretrained.load(arch, weights, config)
    model = CifarResNet(n, num_classes=num_classes, in_channels=in_channels, shortcut=shortcut, residual=residual)
    # What save()/load() need to rebuild the same network from a file.
    model.arch = arch
    model.config = {"num_classes": num_classes, "in_channels": in_channels, "shortcut": shortcut,
                    "residual": residual}
    return model


def resnet20(num_classes=10, in_channels=3, shortcut="A", residual=True, weights=None):
    """ResNet-20; ``weights="cifar10"``: trained on CIFAR-10, in eval mode (see ``pretrained.py``)."""
    return _build("resnet20", 3, num_classes, in_channels, shortcut, residual, weights)


def resnet32(num_classes=10, in_channels=3, shortcut="A", residual=True, weights=None):
    return _build("resnet32", 5, num_classes, in_channels, shortcut, residual, weights)


def resnet44(num_classes=10, in_channels=3, shortcut="A", residual=True, weights=None):
    return _build("resnet44", 7, num_classes, in_channels, shortcut, residual, weights)


def resnet56(num_classes=10, in_channels=3, shortcut="A", residual=True, weights=None):
    return _build("resnet56", 9, num_classes, in_channels, shortcut, residual, weights)


def resnet110(num_classes=10, in_channels=3, shortcut="A", residual=True, weights=None):
    return _build("resnet110", 18, num_classes, in_channels, shortcut, residual, weights)


def resnet1202(num_classes=10, in_channels=3, shortcut="A", residual=True, weights=None):
    return _build("resnet1202", 200, num_classes, in_channels, shortcut, residual, weights)


def _plain(arch, n, num_classes, in_channels):
    """A CIFAR ResNet without its shortcuts, saved and loaded under its own name."""
    model = _build(arch, n, num_classes, in_channels, "A", residual=False)
    model.config = {"num_classes": num_classes, "in_channels": in_channels}
    return model


def plain20(num_classes=10, in_channels=3):
    """ResNet-20 without shortcuts: the paper's plain-20."""
    return _plain("plain20", 3, num_classes, in_channels)


def plain32(num_classes=10, in_channels=3):
    return _plain("plain32", 5, num_classes, in_channels)


def plain44(num_classes=10, in_channels=3):
    return _plain("plain44", 7, num_classes, in_channels)


def plain56(num_classes=10, in_channels=3):
    return _plain("plain56", 9, num_classes, in_channels)


def plain110(num_classes=10, in_channels=3):
    return _plain("plain110", 18, num_classes, in_channels)
