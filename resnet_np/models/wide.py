"""Wide Residual Networks (Zagoruyko and Komodakis, 2016): shallower, k times wider.

WRN-d-k is a pre-activation ResNet for CIFAR (``PreActResNet`` with basic
blocks) of depth d = 6n + 4 and widening factor k:

    conv1 3x3 (16)
    -> layer1 (n blocks, 16k) -> layer2 (n, 32k, /2) -> layer3 (n, 64k, /2)
    -> bn -> relu -> avgpool -> flatten -> fc

Each block is bn1 -> relu -> conv1 -> bn2 -> relu -> dropout -> conv2, plus the
shortcut; the paper puts the dropout between the two convolutions
(Sec. 2.4; 0.3 on CIFAR). Of the d layers, 6n are the blocks' convolutions;
the other 4 are usually counted as conv1, fc and the 1x1 downsamples of
layer2 and layer3 (layer1 needs one too, 16 -> 16k channels, which the
depth leaves out). WRN-28-10 (36.5M parameters) beats the pre-activation
ResNet-1001 (10.3M) on CIFAR-10 with 36 times fewer layers: on a GPU, width
is cheaper to train than depth.
"""

from ..checks import positive_int
from .preact import PreActBasicBlock, PreActResNet

# The named networks of the paper: (depth, widen_factor).
NAMED = {"wrn16_4": (16, 4), "wrn16_8": (16, 8), "wrn28_10": (28, 10), "wrn40_4": (40, 4)}


class WideResNet(PreActResNet):
    """WRN-``depth``-``widen_factor``: ``PreActResNet`` with n = (depth - 4) / 6 basic blocks a stage."""

    def __init__(self, depth, widen_factor, dropout=0.0, num_classes=10, in_channels=3):
        if (not isinstance(depth, int) or isinstance(depth, bool) or depth < 10 or (depth - 4) % 6 != 0):
            raise ValueError(f"WideResNet: depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 40, ...), "
                             f"got {depth!r}; the named networks are {', '.join(NAMED)}")
        positive_int(widen_factor, "widen_factor", "WideResNet")
        super().__init__(PreActBasicBlock, (depth - 4) // 6, num_classes=num_classes, in_channels=in_channels,
                         widen_factor=widen_factor, dropout=dropout)
        self.depth, self.widen_factor = depth, widen_factor


def wrn(depth=None, widen_factor=None, dropout=0.0, num_classes=10, in_channels=3):
    """WRN-``depth``-``widen_factor``, for example ``wrn(28, 10, dropout=0.3)``.

    Both numbers are required; they default to None only so that
    ``--model wrn`` on the command line explains which names to use instead.
    """
    model = WideResNet(depth, widen_factor, dropout=dropout, num_classes=num_classes, in_channels=in_channels)
    # What save()/load() need to rebuild the same network from a file.
    model.arch = "wrn"
    model.config = {"depth": depth, "widen_factor": widen_factor, "dropout": model.dropout,
                    "num_classes": num_classes, "in_channels": in_channels}
    return model


def _named(arch, num_classes, in_channels, dropout):
    depth, widen_factor = NAMED[arch]
    model = WideResNet(depth, widen_factor, dropout=dropout, num_classes=num_classes, in_channels=in_channels)
    model.arch = arch
    model.config = {"num_classes": num_classes, "in_channels": in_channels, "dropout": model.dropout}
    return model


def wrn16_4(num_classes=10, in_channels=3, dropout=0.0):
    """WRN-16-4: 2.7M parameters."""
    return _named("wrn16_4", num_classes, in_channels, dropout)


def wrn16_8(num_classes=10, in_channels=3, dropout=0.0):
    """WRN-16-8: 11.0M parameters."""
    return _named("wrn16_8", num_classes, in_channels, dropout)


def wrn28_10(num_classes=10, in_channels=3, dropout=0.0):
    """WRN-28-10: 36.5M parameters (the paper's best CIFAR network, with dropout 0.3)."""
    return _named("wrn28_10", num_classes, in_channels, dropout)


def wrn40_4(num_classes=10, in_channels=3, dropout=0.0):
    """WRN-40-4: 8.9M parameters."""
    return _named("wrn40_4", num_classes, in_channels, dropout)
