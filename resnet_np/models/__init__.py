"""Residual networks built from ``resnet_np.layers``: the blocks and the families of the paper."""

from .base import Network
from .basic_block import BasicBlock
from .bottleneck import Bottleneck
from .cifar import (
    CifarResNet,
    plain20,
    plain32,
    plain44,
    plain56,
    plain110,
    resnet20,
    resnet32,
    resnet44,
    resnet56,
    resnet110,
    resnet1202,
)
from .preact import (
    PreActBasicBlock,
    PreActBottleneck,
    PreActResNet,
    preact_resnet20,
    preact_resnet110,
    preact_resnet164,
    preact_resnet1001,
)
from .resnet import (
    ResNet,
    plain18,
    plain34,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
    resnext50_32x4d,
    resnext101_32x8d,
    resnext101_64x4d,
    wide_resnet50_2,
    wide_resnet101_2,
)
from .resnext import CifarResNeXt, cifar_resnext, resnext29_8x64d, resnext29_16x64d
from .shortcut import ShortcutA
from .summary import flops, summary
from .weights import load, load_torch_state_dict, save, save_torch_state_dict
from .wide import WideResNet, wrn, wrn16_4, wrn16_8, wrn28_10, wrn40_4

# Architecture name -> constructor, so that a saved file's "arch" can be rebuilt.
ARCHITECTURES = {
    "resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50, "resnet101": resnet101,
    "resnet152": resnet152,
    "resnet20": resnet20, "resnet32": resnet32, "resnet44": resnet44, "resnet56": resnet56,
    "resnet110": resnet110, "resnet1202": resnet1202,
    "plain18": plain18, "plain34": plain34,
    "plain20": plain20, "plain32": plain32, "plain44": plain44, "plain56": plain56, "plain110": plain110,
    "preact_resnet20": preact_resnet20, "preact_resnet110": preact_resnet110, "preact_resnet164": preact_resnet164,
    "preact_resnet1001": preact_resnet1001,
    "wrn": wrn, "wrn16_4": wrn16_4, "wrn16_8": wrn16_8, "wrn28_10": wrn28_10, "wrn40_4": wrn40_4,
    "resnext50_32x4d": resnext50_32x4d, "resnext101_32x8d": resnext101_32x8d, "resnext101_64x4d": resnext101_64x4d,
    "wide_resnet50_2": wide_resnet50_2, "wide_resnet101_2": wide_resnet101_2,
    "cifar_resnext": cifar_resnext, "resnext29_8x64d": resnext29_8x64d, "resnext29_16x64d": resnext29_16x64d,
}

__all__ = [
    "ARCHITECTURES", "BasicBlock", "Bottleneck", "CifarResNeXt", "CifarResNet", "Network", "PreActBasicBlock",
    "PreActBottleneck", "PreActResNet", "ResNet", "ShortcutA", "WideResNet", "cifar_resnext", "flops", "load",
    "load_torch_state_dict", "plain18", "plain20", "plain32", "plain34", "plain44", "plain56", "plain110",
    "preact_resnet20", "preact_resnet110", "preact_resnet164", "preact_resnet1001", "resnet18", "resnet20",
    "resnet32", "resnet34", "resnet44", "resnet50", "resnet56", "resnet101", "resnet110", "resnet152", "resnet1202",
    "resnext29_8x64d", "resnext29_16x64d", "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "save",
    "save_torch_state_dict", "summary", "wide_resnet50_2", "wide_resnet101_2", "wrn", "wrn16_4", "wrn16_8",
    "wrn28_10", "wrn40_4",
]
