"""The ImageNet ResNets of the paper (Table 1), with torchvision's names.

    conv1 7x7/2 -> bn1 -> relu -> maxpool 3x3/2
    -> layer1 (64) -> layer2 (128, /2) -> layer3 (256, /2) -> layer4 (512, /2)
    -> avgpool -> flatten -> fc

A torchvision checkpoint loads one to one: the state-dict keys and shapes
are the same (``layer2.0.downsample.0.weight``, ``fc.bias``, ...).

For fine-tuning, ``reset_classifier(num_classes)`` replaces the 1000-class
head by a fresh one, and ``need_input_grad = False`` lets backward stop
below the last trainable layer (see ``backward``).
"""

from ..backend import backend_of
from ..layers import BatchNorm2d, Conv2d, Flatten, GlobalAvgPool2d, Linear, MaxPool2d, ReLU, Sequential
from ..module import Module
from .basic_block import BasicBlock
from .bottleneck import Bottleneck


class ResNet(Module):
    """``ResNet(block, layers)``: ``layers[i]`` blocks in stage i, as torchvision's ``ResNet``.

    ``residual=False`` builds the plain twin: the same layers without shortcuts.
    """

    def __init__(self, block, layers, num_classes=1000, in_channels=3, residual=True):
        super().__init__()
        self.residual = residual
        self.inplanes = 64  # channels entering the next stage; _make_layer updates it
        self.conv1 = Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = BatchNorm2d(64)
        self.relu = ReLU()
        self.maxpool = MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = GlobalAvgPool2d()
        self.flatten = Flatten()
        self.fc = Linear(512 * block.expansion, num_classes)
        # Training never uses the gradient of the images; False lets backward skip a frozen prefix.
        self.need_input_grad = True

    def reset_classifier(self, num_classes):
        """Replace ``fc`` by a new, freshly initialised ``Linear(features, num_classes)``; returns it.

        Swaps ImageNet's 1000-class head for one sized to the new task.
        The new layer takes the dtype and device of the old one, and
        ``config`` follows, so ``save``/``load`` rebuild the network with
        its new number of classes.
        """
        old = self.fc
        self.fc = Linear(old.in_features, num_classes).astype(old.weight.dtype).to(backend_of(old.weight.data))
        if getattr(self, "config", None) is not None:
            self.config = dict(self.config, num_classes=num_classes)
        return self.fc

    def _make_layer(self, block, planes, blocks, stride=1):
        """One stage: the first block may change resolution and width; the rest keep them."""
        downsample = None
        if self.residual and (stride != 1 or self.inplanes != planes * block.expansion):
            downsample = Sequential(
                Conv2d(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample, residual=self.residual)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, residual=self.residual))
        return Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        return self.fc(self.flatten(self.avgpool(x)))

    def backward(self, dout):
        """dL/dx from dL/dlogits; parameter gradients accumulate into ``.grad``.

        With ``need_input_grad = False`` it stops as soon as nothing below
        has a parameter to train (a frozen backbone) and returns None: the
        rest of the chain rule would only compute gradients nobody uses.
        """
        d = self.avgpool.backward(self.flatten.backward(self.fc.backward(dout)))
        if self._frozen_below(self.layer4, self.layer3, self.layer2, self.layer1, self.bn1, self.conv1):
            return None
        d = self.layer4.backward(d)
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
        return self.conv1.backward(self.bn1.backward(self.relu.backward(self.maxpool.backward(d))))

    def _frozen_below(self, *modules):
        """True when backward may stop here: no input gradient wanted, nothing in ``modules`` trainable."""
        if self.need_input_grad:
            return False
        return not any(p.requires_grad for m in modules for p in m.parameters())


def _build(arch, block, layers, num_classes, in_channels, residual):
    model = ResNet(block, layers, num_classes=num_classes, in_channels=in_channels, residual=residual)
    # What save()/load() need to rebuild the same network from a file.
    model.arch = arch
    model.config = {"num_classes": num_classes, "in_channels": in_channels, "residual": residual}
    return model


def resnet18(num_classes=1000, in_channels=3, residual=True):
    return _build("resnet18", BasicBlock, [2, 2, 2, 2], num_classes, in_channels, residual)


def resnet34(num_classes=1000, in_channels=3, residual=True):
    return _build("resnet34", BasicBlock, [3, 4, 6, 3], num_classes, in_channels, residual)


def resnet50(num_classes=1000, in_channels=3, residual=True):
    return _build("resnet50", Bottleneck, [3, 4, 6, 3], num_classes, in_channels, residual)


def resnet101(num_classes=1000, in_channels=3, residual=True):
    return _build("resnet101", Bottleneck, [3, 4, 23, 3], num_classes, in_channels, residual)


def resnet152(num_classes=1000, in_channels=3, residual=True):
    return _build("resnet152", Bottleneck, [3, 8, 36, 3], num_classes, in_channels, residual)


def _plain(arch, block, layers, num_classes, in_channels):
    """An ImageNet ResNet without its shortcuts, saved and loaded under its own name."""
    model = _build(arch, block, layers, num_classes, in_channels, residual=False)
    model.config = {"num_classes": num_classes, "in_channels": in_channels}
    return model


def plain18(num_classes=1000, in_channels=3):
    """ResNet-18 without its shortcuts (the paper's plain-18)."""
    return _plain("plain18", BasicBlock, [2, 2, 2, 2], num_classes, in_channels)


def plain34(num_classes=1000, in_channels=3):
    """ResNet-34 without its shortcuts (the paper's plain-34)."""
    return _plain("plain34", BasicBlock, [3, 4, 6, 3], num_classes, in_channels)
