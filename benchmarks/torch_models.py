"""The networks of the benchmarks in plain torch.nn: the same architectures as ours, layer for layer.

torchvision is not available everywhere (not for the CPU build of PyTorch
here), so ResNet-18/50 are written out as torchvision defines them.
"""

import torch
from torch import nn


class ShortcutA(nn.Module):
    """The paper's parameter-free CIFAR shortcut: subsample, then pad the new channels with zeros."""

    def __init__(self, cin, cout):
        super().__init__()
        self.pad = (cout - cin) // 2

    def forward(self, x):
        return nn.functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride=1, downsample=None, groups=1, width_per_group=64):
        super().__init__()
        width = int(planes * width_per_group / 64) * groups
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


def cifar_resnet(n, shortcut="B", num_classes=10):
    """ResNet-(6n+2) for 32x32 images, as ours: 16/32/64 channels, shortcut A or B."""
    layers = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
    cin = 16
    for cout, stride in [(16, 1), (32, 2), (64, 2)]:
        for i in range(n):
            s = stride if i == 0 else 1
            down = None
            if s != 1 or cin != cout:
                down = (ShortcutA(cin, cout) if shortcut == "A" else
                        nn.Sequential(nn.Conv2d(cin, cout, 1, s, bias=False), nn.BatchNorm2d(cout)))
            layers.append(BasicBlock(cin, cout, s, down))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes)]
    return nn.Sequential(*layers)


def imagenet_resnet(block, counts, num_classes=1000, groups=1, width_per_group=64):
    """torchvision's ResNet: 7x7 stem, max-pool, four stages, global pool, fc."""
    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for planes, count, stride in zip((64, 128, 256, 512), counts, (1, 2, 2, 2)):
        for i in range(count):
            s = stride if i == 0 else 1
            down = None
            if s != 1 or cin != planes * block.expansion:
                down = nn.Sequential(nn.Conv2d(cin, planes * block.expansion, 1, s, bias=False),
                                     nn.BatchNorm2d(planes * block.expansion))
            if block is Bottleneck:
                layers.append(block(cin, planes, s, down, groups, width_per_group))
            else:
                layers.append(block(cin, planes, s, down))
            cin = planes * block.expansion
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)


def build(name):
    if name == "resnet20":
        return cifar_resnet(3, "B")
    if name == "resnet18":
        return imagenet_resnet(BasicBlock, (2, 2, 2, 2))
    if name == "resnet50":
        return imagenet_resnet(Bottleneck, (3, 4, 6, 3))
    if name == "resnext50_32x4d":
        return imagenet_resnet(Bottleneck, (3, 4, 6, 3), groups=32, width_per_group=4)
    raise ValueError(f"no torch model {name!r}")
