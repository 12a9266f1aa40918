"""The layers of a ResNet, each with its forward and backward pass written by hand.

These are the plain computations the lessons derive; ``resnet_np.fast`` holds
the faster twins the layers use by default (``resnet_np.use_fast``).
"""

from .adaptive_pool import AdaptiveAvgPool2d
from .add import Add
from .avgpool import AvgPool2d
from .batchnorm import BatchNorm2d
from .conv import Conv2d, conv2d_im2col, conv2d_naive
from .cross_entropy import CrossEntropyLoss
from .dropout import Dropout
from .flatten import Flatten
from .im2col import col2im, conv_output_size, im2col
from .linear import Linear
from .loss import NonFiniteLossError, SoftmaxCrossEntropy
from .pooling import GlobalAvgPool2d, MaxPool2d, maxpool2d_naive
from .relu import ReLU
from .sequential import Sequential
from .unpool import MaxUnpool2d

__all__ = [
    "Add", "BatchNorm2d", "Conv2d", "CrossEntropyLoss", "conv2d_im2col", "conv2d_naive", "Dropout", "Flatten", "col2im",
    "conv_output_size", "im2col", "Linear", "NonFiniteLossError", "SoftmaxCrossEntropy", "GlobalAvgPool2d",
    "MaxPool2d", "maxpool2d_naive", "ReLU", "Sequential",
    "AdaptiveAvgPool2d", "AvgPool2d", "MaxUnpool2d",
]
