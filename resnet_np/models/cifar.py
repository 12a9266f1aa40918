"""The CIFAR-10 ResNets of the paper (Sec. 4.2): 6n + 2 layers.

    conv1 3x3 (16) -> bn1 -> relu
    -> layer1 (n blocks, 16) -> layer2 (n, 32, /2) -> layer3 (n, 64, /2)
    -> avgpool -> flatten -> fc

n = 3, 5, 7, 9, 18, 200 gives ResNet-20, 32, 44, 56, 110, 1202. Where a
stage halves the resolution and doubles the width, the shortcut is option
A (parameter-free: subsample and pad with zero channels, the paper's
choice for CIFAR) or option B (a 1x1 projection and batch norm, named
``downsample`` as in torchvision).

For fine-tuning, ``reset_classifier(num_classes)`` puts a fresh ``fc`` on
the network, and ``need_input_grad = False`` lets backward stop below the
last trainable layer (see ``backward``).
"""

from ..backend import backend_of
from ..layers import BatchNorm2d, Conv2d, Flatten, GlobalAvgPool2d, Linear, ReLU, Sequential
from ..module import Module
from . import pretrained
from .basic_block import BasicBlock
from .shortcut import ShortcutA


class CifarResNet(Module):
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
        # Training never uses the gradient of the images; False lets backward skip a frozen prefix.
        self.need_input_grad = True

    def reset_classifier(self, num_classes):
        """Replace ``fc`` by a new, freshly initialised ``Linear(64, num_classes)``; returns it.

        The first step of transfer learning: keep the features, learn a
        new head for the new classes. The new layer takes the dtype and
        device of the old one, and ``config`` follows, so ``save``/``load``
        rebuild the network with its new number of classes.
        """
        old = self.fc
        self.fc = Linear(old.in_features, num_classes).astype(old.weight.dtype).to(backend_of(old.weight.data))
        if getattr(self, "config", None) is not None:
            self.config = dict(self.config, num_classes=num_classes)
        return self.fc

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

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.fc(self.flatten(self.avgpool(x)))

    def backward(self, dout):
        """dL/dx from dL/dlogits; parameter gradients accumulate into ``.grad``.

        With ``need_input_grad = False`` it returns None: the first convolution
        skips the gradient of the images, and backward stops as soon as nothing
        below has a parameter to train (a frozen backbone): the rest of the
        chain rule would only compute gradients nobody uses.
        """
        d = self.avgpool.backward(self.flatten.backward(self.fc.backward(dout)))
        if self._frozen_below(self.layer3, self.layer2, self.layer1, self.bn1, self.conv1):
            return None
        d = self.layer3.backward(d)
        if self._frozen_below(self.layer2, self.layer1, self.bn1, self.conv1):
            return None
        d = self.layer2.backward(d)
        if self._frozen_below(self.layer1, self.bn1, self.conv1):
            return None
        d = self.layer1.backward(d)
        if self._frozen_below(self.bn1, self.conv1):
            return None
        return self.conv1.backward(self.bn1.backward(self.relu.backward(d)), need_input_grad=self.need_input_grad)

    def _frozen_below(self, *modules):
        """True when backward may stop here: no input gradient wanted, nothing in ``modules`` trainable."""
        if self.need_input_grad:
            return False
        return not any(p.requires_grad for m in modules for p in m.parameters())


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
