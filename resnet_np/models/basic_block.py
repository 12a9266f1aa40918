"""The BasicBlock of ResNet-18/34 and of the CIFAR ResNets (He et al., 2016)."""

from ..fast import blocks as fast_blocks
from ..layers import Add, BatchNorm2d, Conv2d, ReLU
from ..module import Module


class BasicBlock(Module):
    """Two 3x3 convolutions and a shortcut:

        out = relu( bn2(conv2( relu(bn1(conv1(x))) ))  +  shortcut(x) )

    ``shortcut(x)`` is ``x`` itself, or ``downsample(x)`` when the block
    changes the resolution or the number of channels (a 1x1 convolution with
    stride 2 and a batch norm in torchvision; the parameter-free ``ShortcutA``
    in the paper's CIFAR networks). Names and state-dict keys are
    torchvision's: ``conv1``, ``bn1``, ``conv2``, ``bn2``, ``downsample``;
    so are the arguments, ``BasicBlock(inplanes, planes, stride, downsample,
    groups, base_width, dilation, norm_layer)``: ``norm_layer(planes)`` makes
    ``bn1`` and ``bn2`` (``BatchNorm2d`` by default), and as in torchvision
    only groups=1, base_width=64 and dilation=1 are supported.

    ``residual=False`` removes the shortcut: the "plain" network of the
    paper's degradation experiment, otherwise identical.

    Backward is the chain rule, layer by layer from the end: the gradient
    splits at the addition and is summed where x fed both paths. Each layer
    is called through ``run_backward``: its ``backward`` plus the hooks a
    tool may have registered on it (module.py).
    """

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, dilation=1,
                 norm_layer=None, residual=True):
        super().__init__()
        # torchvision's signature, and its refusals: the arguments exist so that ResNet can hand every block
        # the same ones, but only the Bottleneck uses them.
        if norm_layer is None:
            norm_layer = BatchNorm2d
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and base_width=64")
        if dilation > 1:
            raise NotImplementedError("Dilation > 1 not supported in BasicBlock")
        self.residual = residual
        self.stride = stride
        self.conv1 = Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = norm_layer(planes)
        self.relu1 = ReLU()  # two ReLU objects: each keeps its own mask for backward
        self.conv2 = Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample if residual else None
        self.add = Add() if residual else None
        self.relu2 = ReLU()

    def forward(self, x):
        # The fast path writes ReLU (and the addition) over batch norm's fresh output: fast/blocks.py.
        in_place = fast_blocks.applies(self)
        out = self.bn1(self.conv1(x))
        out = fast_blocks.relu_(self.relu1, out) if in_place else self.relu1(out)
        out = self.bn2(self.conv2(out))
        if self.residual:
            identity = x if self.downsample is None else self.downsample(x)
            if in_place:
                return fast_blocks.add_relu_(self.add, self.relu2, out, identity)
            out = self.add(out, identity)
        return fast_blocks.relu_(self.relu2, out) if in_place else self.relu2(out)

    def backward(self, dout):
        dout = self.relu2.run_backward(dout)
        if self.residual:
            # The gradient splits at the addition: both paths receive all of it.
            d_branch, d_identity = self.add.run_backward(dout)
        else:
            d_branch = dout
        # Residual branch, last layer first.
        d_branch = self.bn2.run_backward(d_branch)
        d_branch = self.conv2.run_backward(d_branch)
        in_place = fast_blocks.applies(self)  # ReLU's and batch norm's backward written over conv2's fresh gradient
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
