"""The ImageNet ResNets of the paper (Table 1), their ResNeXt and wide variants, with torchvision's names.

    conv1 7x7/2 -> bn1 -> relu -> maxpool 3x3/2
    -> layer1 (64) -> layer2 (128, /2) -> layer3 (256, /2) -> layer4 (512, /2)
    -> avgpool -> flatten -> fc

The variants change only the bottleneck's 3x3 convolution (``Bottleneck``'s
``groups`` and ``base_width``; ``ResNet(..., groups, width_per_group)``):

* ResNeXt (Xie et al., 2017), "cardinality" C and d channels per group:
  ``resnext50_32x4d`` (C = 32, d = 4), ``resnext101_32x8d``,
  ``resnext101_64x4d``. About the parameters and FLOPs of ResNet-50/101,
  with the 3x3s split into C paths of d channels each;
* Wide ResNet-50-2 and -101-2 (torchvision's ImageNet wide ResNets, not
  the CIFAR WRNs of ``wide.py``): the bottleneck's inner width doubled.

A torchvision checkpoint loads one to one: the state-dict keys and shapes
are the same (``layer2.0.downsample.0.weight``, ``fc.bias``, ...).

The stem (conv1, bn1, relu, maxpool), the four stages and the head
(avgpool, flatten, fc) run forward and backward in ``Network`` (base.py),
which also gives ``reset_classifier(num_classes)`` (a new head instead of
ImageNet's 1000 classes) and ``need_input_grad`` for fine-tuning.
"""

from ..checks import positive_int
from ..layers import (
    BatchNorm2d,
    Conv2d,
    Flatten,
    GlobalAvgPool2d,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
)
from .base import Network
from .basic_block import BasicBlock
from .bottleneck import Bottleneck


class ResNet(Network):
    """``ResNet(block, layers)``: ``layers[i]`` blocks in stage i, as torchvision's ``ResNet``.

    ``residual=False`` builds the plain twin: the same layers without shortcuts.
    ``groups`` and ``width_per_group`` go to every ``Bottleneck`` (its
    ``groups`` and ``base_width``); a ``BasicBlock`` has no such knobs, as in
    torchvision. torchvision's other options, with its names:

    * ``zero_init_residual=True``: the last batch norm of each residual
      branch (``bn2`` of a BasicBlock, ``bn3`` of a Bottleneck) starts with
      weight = 0, so each block starts as the identity (Goyal et al., 2017);
    * ``replace_stride_with_dilation=[False, True, True]`` (three booleans,
      for layer2..4): such a stage keeps its input's resolution; its 3x3s
      are dilated instead (by 2, then 4, ...), so they see as far as they
      would have at the lower resolution (DeepLab's output stride 8). Only
      the Bottleneck supports it, as in torchvision;
    * ``norm_layer``: a callable ``norm_layer(num_features)`` that makes every
      batch norm (``BatchNorm2d`` by default), e.g.
      ``functools.partial(BatchNorm2d, momentum=0.01)``.
    """

    def __init__(self, block, layers, num_classes=1000, in_channels=3, residual=True, groups=1,
                 width_per_group=64, zero_init_residual=False, replace_stride_with_dilation=None, norm_layer=None):
        super().__init__()
        positive_int(groups, "groups", "ResNet")
        positive_int(width_per_group, "width_per_group", "ResNet")
        if not issubclass(block, Bottleneck) and (groups != 1 or width_per_group != 64):
            raise ValueError(f"ResNet: {block.__name__} only supports groups=1 and width_per_group=64 (got "
                             f"groups={groups}, width_per_group={width_per_group}); use Bottleneck")
        if replace_stride_with_dilation is None:
            replace_stride_with_dilation = [False, False, False]
        if len(replace_stride_with_dilation) != 3:
            raise ValueError("replace_stride_with_dilation should be None "
                             f"or a 3-element tuple, got {replace_stride_with_dilation}")
        self._norm_layer = BatchNorm2d if norm_layer is None else norm_layer
        self.residual = residual
        self.groups, self.base_width = groups, width_per_group
        self.inplanes = 64  # channels entering the next stage; _make_layer updates it
        self.dilation = 1   # the dilation the next stage starts with; _make_layer multiplies it
        self.conv1 = Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = self._norm_layer(64)
        self.relu = ReLU()
        self.maxpool = MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2, dilate=replace_stride_with_dilation[0])
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2, dilate=replace_stride_with_dilation[1])
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2, dilate=replace_stride_with_dilation[2])
        self.avgpool = GlobalAvgPool2d()
        self.flatten = Flatten()
        self.fc = Linear(512 * block.expansion, num_classes)
        if zero_init_residual:
            zero_init_last_bn(self)

    def stem(self):
        return [self.conv1, self.bn1, self.relu, self.maxpool]

    def stages(self):
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def head(self):
        return [self.avgpool, self.flatten, self.fc]

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        """One stage: the first block may change resolution and width; the rest keep them.

        ``dilate``: the stage's stride becomes dilation (torchvision's
        ``replace_stride_with_dilation``): the first block still uses the
        previous dilation, the others the new one.
        """
        norm_layer = self._norm_layer
        downsample = None
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        if self.residual and (stride != 1 or self.inplanes != planes * block.expansion):
            downsample = Sequential(
                Conv2d(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                norm_layer(planes * block.expansion),
            )
        layers = [self._block(block, self.inplanes, planes, stride, downsample, previous_dilation)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(self._block(block, self.inplanes, planes, dilation=self.dilation))
        return Sequential(*layers)

    def _block(self, block, inplanes, planes, stride=1, downsample=None, dilation=1):
        return block(inplanes, planes, stride, downsample, groups=self.groups, base_width=self.base_width,
                     dilation=dilation, norm_layer=self._norm_layer, residual=self.residual)


def zero_init_last_bn(model):
    """The weight (gamma) of the last batch norm of every residual branch set to 0: each block starts as identity.

    ``bn3`` of a Bottleneck, ``bn2`` of a BasicBlock, as torchvision's
    ``zero_init_residual``; a norm layer without a weight (``affine=False``)
    is left as it is.
    """
    for m in model.modules():
        last = m.bn3 if isinstance(m, Bottleneck) else m.bn2 if isinstance(m, BasicBlock) else None
        if getattr(last, "weight", None) is not None:
            last.weight.data[...] = 0


def _build(arch, block, layers, num_classes, in_channels, residual=True, zero_init_residual=False,
           replace_stride_with_dilation=None, norm_layer=None, groups=1, width_per_group=64):
    model = ResNet(block, layers, num_classes=num_classes, in_channels=in_channels, residual=residual,
                   groups=groups, width_per_group=width_per_group, zero_init_residual=zero_init_residual,
                   replace_stride_with_dilation=replace_stride_with_dilation, norm_layer=norm_layer)
    # What save()/load() need to rebuild the same network from a file. zero_init_residual only changes the
    # starting weights, which the file holds, and a norm_layer is a function, which it cannot hold; a dilated
    # network is another network, with the same keys.
    model.arch = arch
    model.config = {"num_classes": num_classes, "in_channels": in_channels, "residual": residual}
    if replace_stride_with_dilation is not None and any(replace_stride_with_dilation):
        model.config["replace_stride_with_dilation"] = [bool(d) for d in replace_stride_with_dilation]
    return model


def resnet18(num_classes=1000, in_channels=3, residual=True, zero_init_residual=False,
             replace_stride_with_dilation=None, norm_layer=None):
    """ResNet-18; the last three arguments are torchvision's (``ResNet``'s docstring)."""
    return _build("resnet18", BasicBlock, [2, 2, 2, 2], num_classes, in_channels, residual, zero_init_residual,
                  replace_stride_with_dilation, norm_layer)


def resnet34(num_classes=1000, in_channels=3, residual=True, zero_init_residual=False,
             replace_stride_with_dilation=None, norm_layer=None):
    """ResNet-34; the last three arguments are torchvision's (``ResNet``'s docstring)."""
    return _build("resnet34", BasicBlock, [3, 4, 6, 3], num_classes, in_channels, residual, zero_init_residual,
                  replace_stride_with_dilation, norm_layer)


def resnet50(num_classes=1000, in_channels=3, residual=True, zero_init_residual=False,
             replace_stride_with_dilation=None, norm_layer=None):
    """ResNet-50; the last three arguments are torchvision's (``ResNet``'s docstring)."""
    return _build("resnet50", Bottleneck, [3, 4, 6, 3], num_classes, in_channels, residual, zero_init_residual,
                  replace_stride_with_dilation, norm_layer)


def resnet101(num_classes=1000, in_channels=3, residual=True, zero_init_residual=False,
              replace_stride_with_dilation=None, norm_layer=None):
    """ResNet-101; the last three arguments are torchvision's (``ResNet``'s docstring)."""
    return _build("resnet101", Bottleneck, [3, 4, 23, 3], num_classes, in_channels, residual, zero_init_residual,
                  replace_stride_with_dilation, norm_layer)


def resnet152(num_classes=1000, in_channels=3, residual=True, zero_init_residual=False,
              replace_stride_with_dilation=None, norm_layer=None):
    """ResNet-152; the last three arguments are torchvision's (``ResNet``'s docstring)."""
    return _build("resnet152", Bottleneck, [3, 8, 36, 3], num_classes, in_channels, residual, zero_init_residual,
                  replace_stride_with_dilation, norm_layer)


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


def _variant(arch, layers, groups, width_per_group, num_classes, in_channels, zero_init_residual,
             replace_stride_with_dilation, norm_layer):
    """A ResNeXt or wide ResNet: the name says the groups and width, so the config needs neither."""
    model = _build(arch, Bottleneck, layers, num_classes, in_channels, True, zero_init_residual,
                   replace_stride_with_dilation, norm_layer, groups, width_per_group)
    model.config.pop("residual")
    return model


def resnext50_32x4d(num_classes=1000, in_channels=3, zero_init_residual=False, replace_stride_with_dilation=None,
                    norm_layer=None):
    """ResNeXt-50 32x4d: ResNet-50 with 32 groups of 4 channels (per 64 planes) in every 3x3; 25.0M parameters."""
    return _variant("resnext50_32x4d", [3, 4, 6, 3], 32, 4, num_classes, in_channels, zero_init_residual,
                    replace_stride_with_dilation, norm_layer)


def resnext101_32x8d(num_classes=1000, in_channels=3, zero_init_residual=False, replace_stride_with_dilation=None,
                     norm_layer=None):
    """ResNeXt-101 32x8d: 32 groups of 8 channels; 88.8M parameters."""
    return _variant("resnext101_32x8d", [3, 4, 23, 3], 32, 8, num_classes, in_channels, zero_init_residual,
                    replace_stride_with_dilation, norm_layer)


def resnext101_64x4d(num_classes=1000, in_channels=3, zero_init_residual=False, replace_stride_with_dilation=None,
                     norm_layer=None):
    """ResNeXt-101 64x4d: 64 groups of 4 channels; 83.5M parameters."""
    return _variant("resnext101_64x4d", [3, 4, 23, 3], 64, 4, num_classes, in_channels, zero_init_residual,
                    replace_stride_with_dilation, norm_layer)


def wide_resnet50_2(num_classes=1000, in_channels=3, zero_init_residual=False, replace_stride_with_dilation=None,
                    norm_layer=None):
    """Wide ResNet-50-2: ResNet-50 with every bottleneck's inner width doubled; 68.9M parameters."""
    return _variant("wide_resnet50_2", [3, 4, 6, 3], 1, 128, num_classes, in_channels, zero_init_residual,
                    replace_stride_with_dilation, norm_layer)


def wide_resnet101_2(num_classes=1000, in_channels=3, zero_init_residual=False, replace_stride_with_dilation=None,
                     norm_layer=None):
    """Wide ResNet-101-2: ResNet-101 with every bottleneck's inner width doubled; 126.9M parameters."""
    return _variant("wide_resnet101_2", [3, 4, 23, 3], 1, 128, num_classes, in_channels, zero_init_residual,
                    replace_stride_with_dilation, norm_layer)
