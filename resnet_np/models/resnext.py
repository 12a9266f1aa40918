"""ResNeXt for CIFAR (Xie et al., "Aggregated Residual Transformations for Deep Neural Networks", 2017).

A ResNeXt block is a bottleneck whose 3x3 convolution is split into C
independent paths ("cardinality") of d channels each, as one grouped
convolution: torchvision's ``Bottleneck`` with ``groups=C`` and
``base_width=d``. The CIFAR networks of the paper (Sec. 5.3), ResNeXt-29
C x 64d:

    conv1 3x3 (64) -> bn1 -> relu
    -> layer1 (3 blocks, planes 64) -> layer2 (3, 128, /2) -> layer3 (3, 256, /2)
    -> avgpool -> flatten -> fc

no max-pool; each block outputs planes * 4 channels (256, 512, 1024) and
its grouped 3x3 is planes * C wide (C = 8: 512, 1024, 2048). 29 = 9n + 2
layers with n = 3 blocks a stage (3 convolutions each, plus conv1 and fc).
ResNeXt-29 8x64d has 34.4M parameters, 16x64d 68.2M: the paper's 3.65 %
and 3.58 % CIFAR-10 error.

The state-dict keys are torchvision's (``layer2.0.conv2.weight``,
``layer1.0.downsample.0.weight``, ...). ``cifar_resnext(depth, groups,
width_per_group, base_planes)`` builds smaller ones: ``base_planes`` is the
stem's width and layer1's planes (64 in the paper), doubled at each stage.
"""

from ..checks import positive_int
from ..layers import (
    BatchNorm2d,
    Conv2d,
    Flatten,
    GlobalAvgPool2d,
    Linear,
    ReLU,
    Sequential,
)
from .base import Network
from .bottleneck import Bottleneck
from .resnet import zero_init_last_bn


class CifarResNeXt(Network):
    """``CifarResNeXt(n, groups, width_per_group)``: three stages of ``n`` grouped bottlenecks, 9n + 2 layers.

    Stem (conv1, bn1, relu), stages and head (avgpool, flatten, fc) run in
    ``Network`` (base.py), with ``reset_classifier`` and ``need_input_grad``.
    ``zero_init_residual`` and ``norm_layer`` are torchvision's, as in ``ResNet``.
    """

    def __init__(self, n, groups, width_per_group, num_classes=10, in_channels=3, base_planes=64,
                 zero_init_residual=False, norm_layer=None):
        super().__init__()
        positive_int(n, "n (blocks per stage)", "CifarResNeXt")
        positive_int(groups, "groups", "CifarResNeXt")
        positive_int(width_per_group, "width_per_group", "CifarResNeXt")
        positive_int(base_planes, "base_planes", "CifarResNeXt")
        self.groups, self.base_width = groups, width_per_group
        self._norm_layer = BatchNorm2d if norm_layer is None else norm_layer
        self.inplanes = base_planes  # channels entering the next stage; _make_layer updates it
        self.conv1 = Conv2d(in_channels, base_planes, 3, stride=1, padding=1, bias=False)
        self.bn1 = self._norm_layer(base_planes)
        self.relu = ReLU()
        self.layer1 = self._make_layer(base_planes, n, stride=1)
        self.layer2 = self._make_layer(2 * base_planes, n, stride=2)
        self.layer3 = self._make_layer(4 * base_planes, n, stride=2)
        self.avgpool = GlobalAvgPool2d()
        self.flatten = Flatten()
        self.fc = Linear(self.inplanes, num_classes)
        if zero_init_residual:
            zero_init_last_bn(self)

    def stem(self):
        return [self.conv1, self.bn1, self.relu]

    def stages(self):
        return [self.layer1, self.layer2, self.layer3]

    def head(self):
        return [self.avgpool, self.flatten, self.fc]

    def _make_layer(self, planes, blocks, stride):
        """One stage, as torchvision's: the first block has the stride and the 1x1 projection shortcut."""
        out_planes = planes * Bottleneck.expansion
        downsample = None
        if stride != 1 or self.inplanes != out_planes:
            downsample = Sequential(Conv2d(self.inplanes, out_planes, 1, stride=stride, bias=False),
                                    self._norm_layer(out_planes))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample, groups=self.groups,
                             base_width=self.base_width, norm_layer=self._norm_layer)]
        self.inplanes = out_planes
        for _ in range(1, blocks):
            layers.append(Bottleneck(out_planes, planes, groups=self.groups, base_width=self.base_width,
                                     norm_layer=self._norm_layer))
        return Sequential(*layers)


def cifar_resnext(depth=None, groups=None, width_per_group=None, base_planes=64, num_classes=10, in_channels=3):
    """ResNeXt-``depth`` ``groups`` x ``width_per_group``d for CIFAR, e.g. ``cifar_resnext(29, 8, 64)``.

    ``depth`` = 9n + 2 (11, 20, 29, ...). The sizes default to None only so
    that ``--model cifar_resnext`` on the command line explains which names
    to use instead.
    """
    if (not isinstance(depth, int) or isinstance(depth, bool) or depth < 11 or (depth - 2) % 9 != 0):
        raise ValueError(f"CifarResNeXt: depth must be 9n + 2 with n >= 1 (11, 20, 29, ...), got {depth!r}; "
                         "the named networks are resnext29_8x64d, resnext29_16x64d")
    model = CifarResNeXt((depth - 2) // 9, groups, width_per_group, num_classes=num_classes, in_channels=in_channels,
                         base_planes=base_planes)
    # What save()/load() need to rebuild the same network from a file.
    model.arch = "cifar_resnext"
    model.config = {"depth": depth, "groups": groups, "width_per_group": width_per_group, "base_planes": base_planes,
                    "num_classes": num_classes, "in_channels": in_channels}
    return model


def _named(arch, groups, num_classes, in_channels):
    model = CifarResNeXt(3, groups, 64, num_classes=num_classes, in_channels=in_channels)
    model.arch = arch
    model.config = {"num_classes": num_classes, "in_channels": in_channels}
    return model


def resnext29_8x64d(num_classes=10, in_channels=3):
    """ResNeXt-29 8x64d: cardinality 8, 64 channels per group in layer1; 34.4M parameters."""
    return _named("resnext29_8x64d", 8, num_classes, in_channels)


def resnext29_16x64d(num_classes=10, in_channels=3):
    """ResNeXt-29 16x64d: cardinality 16, 64 channels per group in layer1; 68.2M parameters."""
    return _named("resnext29_16x64d", 16, num_classes, in_channels)
