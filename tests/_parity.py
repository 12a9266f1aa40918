"""Helpers shared by the PyTorch-parity tests of the variants (test_preact_wrn.py, test_resnext.py)."""

import numpy as np

from resnet_np import layers as L


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def count(model):
    return sum(p.size for p in model.parameters())


def scramble_bn(model, seed=0):
    """Batch norms off their defaults (1, 0, 0, 1 would hide a missing gamma or a swapped statistic)."""
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, L.BatchNorm2d):
            C = m.num_features
            m.weight.data[...] = rng.uniform(0.5, 1.5, C)
            m.bias.data[...] = 0.2 * rng.standard_normal(C)
            m.running_mean[...] = 0.2 * rng.standard_normal(C)
            m.running_var[...] = rng.uniform(0.5, 1.5, C)
    return model
