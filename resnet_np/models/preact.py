"""Pre-activation ResNets (He et al., "Identity Mappings in Deep Residual Networks", 2016).

The original block ends in ``relu(branch + shortcut)``: the ReLU sits on the
path from one block to the next. The pre-activation block moves batch norm
and ReLU *into* the branch, before each convolution, and adds nothing after
the addition:

    original:        out = relu( bn2(conv2(relu(bn1(conv1(x))))) + x )
    pre-activation:  out = conv2(relu(bn2(conv1(relu(bn1(x)))))) + x

so x_L = x_l + sum of the branches in between, for any two blocks l < L, and
dL/dx_l = dL/dx_L + (terms through the branches): the gradient of the loss
reaches every block unchanged through the shortcuts alone. That is what let
the paper train a 1001-layer network to 4.62 % error on CIFAR-10.

The CIFAR networks (Sec. 4 and Table 2 of the paper):

    conv1 3x3 (16)
    -> layer1 (n blocks, 16 x e) -> layer2 (n, 32 x e, /2) -> layer3 (n, 64 x e, /2)
    -> bn -> relu -> avgpool -> flatten -> fc

with e = 1 for ``PreActBasicBlock`` (two 3x3 convolutions, 6n + 2 layers) and
e = 4 for ``PreActBottleneck`` (1x1, 3x3, 1x1; 9n + 2 layers): n = 18 gives
ResNet-110 and ResNet-164, n = 111 ResNet-1001. conv1 has no batch norm of
its own: the first block's bn1 normalises it. The last block's output has
never been through a batch norm or a ReLU, hence the final ``bn`` and ReLU.

Where a block changes the resolution or the width, the shortcut is a bare
1x1 convolution (``downsample``, with the stride; no batch norm, no bias)
reading the *pre-activated* input relu(bn1(x)), as in the paper's code;
elsewhere the shortcut is x itself.

The blocks' backward passes call each layer through ``run_backward``: its
``backward`` plus the hooks a tool may have registered on it (module.py).
"""

from ..checks import positive_int
from ..layers import (
    Add,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    GlobalAvgPool2d,
    Linear,
    ReLU,
    Sequential,
)
from ..layers.dropout import dropout_probability
from ..module import Module
from .base import Network


class PreActBasicBlock(Module):
    """Two 3x3 convolutions, each after a batch norm and a ReLU; nothing after the addition:

        pre = relu(bn1(x))
        out = conv2(dropout(relu(bn2(conv1(pre)))))  +  shortcut

    with ``shortcut = downsample(pre)`` when the block changes the stride or
    the width, else ``x``. ``in_planes`` channels in, ``planes`` out; the
    stride sits on conv1. ``dropout`` > 0 puts a ``Dropout`` between the two
    convolutions, as the Wide ResNets do; at 0 there is none.
    """

    expansion = 1

    def __init__(self, in_planes, planes, stride=1, dropout=0.0):
        super().__init__()
        self.bn1 = BatchNorm2d(in_planes)
        self.relu1 = ReLU()  # one ReLU object per use: each keeps its own mask for backward
        self.conv1 = Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = BatchNorm2d(planes)
        self.relu2 = ReLU()
        self.dropout = Dropout(dropout) if dropout != 0 else None
        self.conv2 = Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = Conv2d(in_planes, planes, 1, stride, 0, bias=False)
        self.add = Add()

    def forward(self, x):
        pre = self.relu1(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(pre)
        out = self.relu2(self.bn2(self.conv1(pre)))
        if self.dropout is not None:
            out = self.dropout(out)
        out = self.conv2(out)
        return self.add(out, shortcut)

    def backward(self, dout):
        # The gradient splits at the addition: both the branch and the shortcut receive all of it.
        d_branch, d_shortcut = self.add.run_backward(dout)
        # Residual branch, last layer first.
        d_branch = self.conv2.run_backward(d_branch)
        if self.dropout is not None:
            d_branch = self.dropout.run_backward(d_branch)
        d_branch = self.bn2.run_backward(self.relu2.run_backward(d_branch))
        d_pre = self.conv1.run_backward(d_branch)
        if self.downsample is None:
            # x fed bn1 and the identity shortcut: its gradient is the sum of the two.
            return self.bn1.run_backward(self.relu1.run_backward(d_pre)) + d_shortcut
        # pre fed conv1 and the downsample: their gradients are summed before going back through bn1.
        d_pre = d_pre + self.downsample.run_backward(d_shortcut)
        return self.bn1.run_backward(self.relu1.run_backward(d_pre))


class PreActBottleneck(Module):
    """1x1 reduce, 3x3, 1x1 expand, each after a batch norm and a ReLU; nothing after the addition:

        pre = relu(bn1(x))
        out = conv3(relu(bn3(conv2(relu(bn2(conv1(pre)))))))  +  shortcut

    ``planes`` is the width of the 3x3 convolution, which carries the
    stride; the block outputs ``planes * 4`` channels. ``shortcut`` is
    ``downsample(pre)`` when the stride or the width changes, else ``x``.
    """

    expansion = 4

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        out_planes = planes * self.expansion
        self.bn1 = BatchNorm2d(in_planes)
        self.relu1 = ReLU()
        self.conv1 = Conv2d(in_planes, planes, 1, 1, 0, bias=False)
        self.bn2 = BatchNorm2d(planes)
        self.relu2 = ReLU()
        self.conv2 = Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = BatchNorm2d(planes)
        self.relu3 = ReLU()
        self.conv3 = Conv2d(planes, out_planes, 1, 1, 0, bias=False)
        self.downsample = None
        if stride != 1 or in_planes != out_planes:
            self.downsample = Conv2d(in_planes, out_planes, 1, stride, 0, bias=False)
        self.add = Add()

    def forward(self, x):
        pre = self.relu1(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(pre)
        out = self.conv1(pre)
        out = self.conv2(self.relu2(self.bn2(out)))
        out = self.conv3(self.relu3(self.bn3(out)))
        return self.add(out, shortcut)

    def backward(self, dout):
        # The gradient splits at the addition: both the branch and the shortcut receive all of it.
        d_branch, d_shortcut = self.add.run_backward(dout)
        # Residual branch, last layer first.
        d_branch = self.conv3.run_backward(d_branch)
        d_branch = self.bn3.run_backward(self.relu3.run_backward(d_branch))
        d_branch = self.conv2.run_backward(d_branch)
        d_branch = self.bn2.run_backward(self.relu2.run_backward(d_branch))
        d_pre = self.conv1.run_backward(d_branch)
        if self.downsample is None:
            # x fed bn1 and the identity shortcut: its gradient is the sum of the two.
            return self.bn1.run_backward(self.relu1.run_backward(d_pre)) + d_shortcut
        # pre fed conv1 and the downsample: their gradients are summed before going back through bn1.
        d_pre = d_pre + self.downsample.run_backward(d_shortcut)
        return self.bn1.run_backward(self.relu1.run_backward(d_pre))


class PreActResNet(Network):
    """``PreActResNet(block, n)``: three stages of ``n`` pre-activation blocks each.

    ``widen_factor`` k multiplies the stage widths (16k, 32k, 64k; the stem
    stays at 16) and ``dropout`` goes between the convolutions of every
    ``PreActBasicBlock``: the two knobs of the Wide ResNets (see ``wide.py``).

    The stem is conv1 alone; the head starts with the last ``bn`` and ReLU
    (avgpool, flatten and fc follow). ``Network`` (base.py) runs them, with
    ``reset_classifier`` and ``need_input_grad`` for fine-tuning.
    """

    def __init__(self, block, n, num_classes=10, in_channels=3, widen_factor=1, dropout=0.0):
        super().__init__()
        positive_int(n, "n (blocks per stage)", type(self).__name__)
        positive_int(widen_factor, "widen_factor", type(self).__name__)
        dropout = dropout_probability(dropout, type(self).__name__, "dropout")
        if dropout > 0 and not issubclass(block, PreActBasicBlock):
            raise ValueError(f"{type(self).__name__}: dropout goes between the two convolutions of a "
                             f"PreActBasicBlock, but the block is {block.__name__}")
        self.block, self.dropout = block, dropout
        self.in_planes = 16  # channels entering the next stage; _make_layer updates it
        self.conv1 = Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.layer1 = self._make_layer(16 * widen_factor, n, stride=1)
        self.layer2 = self._make_layer(32 * widen_factor, n, stride=2)
        self.layer3 = self._make_layer(64 * widen_factor, n, stride=2)
        self.bn = BatchNorm2d(self.in_planes)
        self.relu = ReLU()
        self.avgpool = GlobalAvgPool2d()
        self.flatten = Flatten()
        self.fc = Linear(self.in_planes, num_classes)

    def stem(self):
        return [self.conv1]

    def stages(self):
        return [self.layer1, self.layer2, self.layer3]

    def head(self):
        # The last block's sum has been through no batch norm or ReLU yet.
        return [self.bn, self.relu, self.avgpool, self.flatten, self.fc]

    def _make_layer(self, planes, blocks, stride):
        """One stage: the first block may change resolution and width (and has the downsample)."""
        layers = []
        for i in range(blocks):
            if self.dropout > 0:
                layers.append(self.block(self.in_planes, planes, stride if i == 0 else 1, dropout=self.dropout))
            else:
                layers.append(self.block(self.in_planes, planes, stride if i == 0 else 1))
            self.in_planes = planes * self.block.expansion
        return Sequential(*layers)


def _build(arch, block, n, num_classes, in_channels):
    model = PreActResNet(block, n, num_classes=num_classes, in_channels=in_channels)
    # What save()/load() need to rebuild the same network from a file.
    model.arch = arch
    model.config = {"num_classes": num_classes, "in_channels": in_channels}
    return model


def preact_resnet20(num_classes=10, in_channels=3):
    """Pre-activation ResNet-20 (basic blocks, 3 a stage): a quick one for experiments."""
    return _build("preact_resnet20", PreActBasicBlock, 3, num_classes, in_channels)


def preact_resnet110(num_classes=10, in_channels=3):
    """Pre-activation ResNet-110 (basic blocks, 18 a stage; 1.7M parameters): 6.37 % CIFAR-10 error in the paper."""
    return _build("preact_resnet110", PreActBasicBlock, 18, num_classes, in_channels)


def preact_resnet164(num_classes=10, in_channels=3):
    """Pre-activation ResNet-164 (bottlenecks, 18 a stage; 1.7M parameters): 5.46 % CIFAR-10 error in the paper."""
    return _build("preact_resnet164", PreActBottleneck, 18, num_classes, in_channels)


def preact_resnet1001(num_classes=10, in_channels=3):
    """Pre-activation ResNet-1001 (bottlenecks, 111 a stage; 10.3M parameters): 4.92 % CIFAR-10 error in the paper."""
    return _build("preact_resnet1001", PreActBottleneck, 111, num_classes, in_channels)
