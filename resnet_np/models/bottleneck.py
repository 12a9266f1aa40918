"""The Bottleneck block of ResNet-50/101/152, as torchvision's v1.5, with ResNeXt's groups and wide widths."""

from ..checks import positive_int
from ..fast import blocks as fast_blocks
from ..layers import Add, BatchNorm2d, Conv2d, ReLU
from ..module import Module


class Bottleneck(Module):
    """1x1 reduce, 3x3, 1x1 expand, and a shortcut:

        out = relu( bn3(conv3( relu(bn2(conv2( relu(bn1(conv1(x))) ))) ))  +  shortcut(x) )

    The arguments are torchvision's, ``Bottleneck(inplanes, planes, stride,
    downsample, groups, base_width, dilation, norm_layer)``: the block outputs
    ``planes * expansion`` channels, with ``expansion = 4``. As in
    torchvision v1.5 the stride sits on the 3x3 convolution (the paper's v1
    put it on the first 1x1, which skips three quarters of the input).

    The 3x3 convolution works at a width of

        width = int(planes * base_width / 64) * groups

    channels, split into ``groups`` independent groups (torchvision's
    formula). ``groups=1, base_width=64`` is ResNet-50's bottleneck (width =
    planes). ResNeXt's "32x4d" is ``groups=32, base_width=4``: 32 paths of
    4 channels per 64 planes, so layer1's 3x3 is 128 wide but costs, in
    weights and FLOPs, 1/32 of a dense 128 -> 128 convolution. The wide
    ResNets keep ``groups=1`` and double ``base_width`` (128): the 1x1s
    and the 3x3 are twice as wide, the block's output is not.

    ``dilation`` spreads the 3x3's taps apart (padding = dilation keeps the
    size): ``ResNet(replace_stride_with_dilation=...)`` uses it where a
    stage keeps its resolution instead of halving it. ``norm_layer(C)``
    makes the three batch norms (``BatchNorm2d`` by default).

    Backward is the chain rule as in ``BasicBlock``, each layer called
    through ``run_backward`` (its ``backward`` plus its hooks, module.py).
    """

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, dilation=1,
                 norm_layer=None, residual=True):
        super().__init__()
        positive_int(groups, "groups", "Bottleneck")
        positive_int(base_width, "base_width", "Bottleneck")
        positive_int(dilation, "dilation", "Bottleneck")
        if norm_layer is None:
            norm_layer = BatchNorm2d
        width = int(planes * base_width / 64) * groups
        if width == 0:
            raise ValueError(f"Bottleneck: planes * base_width / 64 = {planes} * {base_width} / 64 rounds "
                             "down to 0 channels per group")
        self.groups, self.base_width, self.width = groups, base_width, width
        self.residual = residual
        self.stride = stride
        self.conv1 = Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = norm_layer(width)
        self.relu1 = ReLU()
        self.conv2 = Conv2d(width, width, 3, stride=stride, padding=dilation, dilation=dilation, groups=groups,
                            bias=False)
        self.bn2 = norm_layer(width)
        self.relu2 = ReLU()
        self.conv3 = Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = norm_layer(planes * self.expansion)
        self.downsample = downsample if residual else None
        self.add = Add() if residual else None
        self.relu3 = ReLU()

    def forward(self, x):
        # The fast path writes ReLU (and the addition) over batch norm's fresh output: fast/blocks.py.
        in_place = fast_blocks.applies(self)
        out = self.bn1(self.conv1(x))
        out = fast_blocks.relu_(self.relu1, out) if in_place else self.relu1(out)
        out = self.bn2(self.conv2(out))
        out = fast_blocks.relu_(self.relu2, out) if in_place else self.relu2(out)
        out = self.bn3(self.conv3(out))
        if self.residual:
            identity = x if self.downsample is None else self.downsample(x)
            if in_place:
                return fast_blocks.add_relu_(self.add, self.relu3, out, identity)
            out = self.add(out, identity)
        return fast_blocks.relu_(self.relu3, out) if in_place else self.relu3(out)

    def backward(self, dout):
        dout = self.relu3.run_backward(dout)
        if self.residual:
            # The gradient splits at the addition: both paths receive all of it.
            d_branch, d_identity = self.add.run_backward(dout)
        else:
            d_branch = dout
        # Residual branch, last layer first. The grouped conv2 keeps its groups apart in backward too.
        d_branch = self.bn3.run_backward(d_branch)
        d_branch = self.conv3.run_backward(d_branch)
        in_place = fast_blocks.applies(self)  # ReLU's and batch norm's backward written over a conv's fresh gradient
        if in_place:
            d_branch = fast_blocks.relu_bn_backward_(self.relu2, self.bn2, d_branch)
        else:
            d_branch = self.relu2.run_backward(d_branch)
            d_branch = self.bn2.run_backward(d_branch)
        d_branch = self.conv2.run_backward(d_branch)
        if in_place:
            d_branch = fast_blocks.relu_bn_backward_(self.relu1, self.bn1, d_branch)
        else:
            d_branch = self.relu1.run_backward(d_branch)
            d_branch = self.bn1.run_backward(d_branch)
        dx_branch = self.conv1.run_backward(d_branch)
        if not self.residual:
            return dx_branch
        # Shortcut.
        dx_shortcut = d_identity if self.downsample is None else self.downsample.run_backward(d_identity)
        # x fed both paths, so its gradient is the sum of the two (on the fast path, summed into dx_branch).
        return fast_blocks.add_(dx_branch, dx_shortcut) if in_place else dx_branch + dx_shortcut
