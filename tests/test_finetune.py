"""Fine-tuning: freezing, frozen batch norms, parameter groups, loading with the head replaced, the CLI.

Each test is built so that a plausible bug fails it: an optimizer that
still applies weight decay or momentum to a frozen parameter, a layer that
computes a frozen parameter's gradient, a frozen batch norm whose running
statistics move when ``fit`` calls ``model.train()``, one learning rate for
every group, a head that is loaded instead of replaced, a backbone that
loads although it does not match, a backward pass that stops too early.
"""

import gzip
import hashlib
import os
import struct
import sys

import numpy as np
import pytest

from resnet_np import backend, finetune
from resnet_np.__main__ import main
from resnet_np.checkpoint import save_checkpoint
from resnet_np.data import DATASETS, DataLoader, Dataset
from resnet_np.layers import BatchNorm2d, SoftmaxCrossEntropy
from resnet_np.models import CifarResNet, load, resnet18, resnet20, resnet32, save
from resnet_np.optim import SGD, Adam, AdamW
from resnet_np.train import evaluate, fit

from _mnist import needs_mnist


def small_net(num_classes=4):
    """A CIFAR-style ResNet with one block per stage (ResNet-8): fast, yet every kind of layer."""
    return CifarResNet(1, num_classes=num_classes, in_channels=1)


def batch(n=8, size=12, num_classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, 1, size, size)).astype(np.float32),
            rng.integers(0, num_classes, n).astype(np.int64))


def train_steps(model, optimizer, steps=4, seed=0):
    """``steps`` training steps as ``fit`` takes them, ``model.train()`` included."""
    loss_fn = SoftmaxCrossEntropy()
    for step in range(steps):
        model.train()
        x, y = batch(seed=seed + step)
        loss_fn(model(x), y)
        optimizer.zero_grad()
        model.backward(loss_fn.backward())
        optimizer.step()


def snapshot(model):
    return {key: np.array(value, copy=True) for key, value in model.state_dict().items()}


# -- choosing what to freeze --------------------------------------------------------------


def test_select_by_keyword_module_pattern_and_list():
    model = small_net()
    names = [name for name, _ in model.named_parameters()]
    assert finetune.select_parameters(model, "all") == names
    assert finetune.select_parameters(model, "none") == []
    assert finetune.select_parameters(model, "backbone") == [n for n in names if not n.startswith("fc.")]
    layer1 = [n for n in names if n.startswith("layer1.")]
    assert finetune.select_parameters(model, model.layer1) == layer1
    assert finetune.select_parameters(model, "layer1") == layer1  # a module name
    assert finetune.select_parameters(model, "layer1.*") == layer1  # a glob over parameter names
    assert finetune.select_parameters(model, "conv1, bn1") == ["conv1.weight", "bn1.weight", "bn1.bias"]
    bns = finetune.select_parameters(model, "*bn*")
    assert len(bns) == 2 * 7 and all(n.split(".")[-2].startswith("bn") for n in bns)  # 7 batch norms
    assert finetune.select_parameters(model, [model.fc, "conv1"]) == ["conv1.weight", "fc.weight", "fc.bias"]


def test_a_pattern_that_matches_nothing_is_an_error_not_a_silent_no_op():
    model = small_net()
    with pytest.raises(ValueError, match=r"pattern 'layer9' matches no parameter.*layer1, layer2, layer3.*fc"):
        finetune.freeze(model, "layer1,layer9")
    assert all(p.requires_grad for p in model.parameters())  # nothing half-done
    with pytest.raises(ValueError, match="not a part of this CifarResNet"):
        finetune.freeze(model, small_net().layer1)


def test_requires_grad_and_keep_eval_on_module():
    model = small_net()
    assert model.layer2.requires_grad_(False) is model.layer2
    assert not any(p.requires_grad for p in model.layer2.parameters())
    assert all(p.requires_grad for p in model.layer3.parameters())
    model.layer1[0].bn1.keep_eval = True
    model.train()
    assert model.training and model.layer1[0].conv1.training and not model.layer1[0].bn1.training
    model.eval()
    model.train()
    assert not model.layer1[0].bn1.training and model.layer1[0].bn2.training


# -- frozen parameters stay frozen ----------------------------------------------------------


@pytest.mark.parametrize("make_optimizer", [
    lambda params: SGD(params, lr=0.1, momentum=0.9, weight_decay=0.05, nesterov=True),
    lambda params: Adam(params, lr=0.01, weight_decay=0.05),
    lambda params: AdamW(params, lr=0.01, weight_decay=0.05),
], ids=["sgd-momentum-wd", "adam-wd", "adamw"])
def test_frozen_weights_bit_identical_and_without_gradient(make_optimizer):
    model = small_net()
    frozen = finetune.freeze(model, "conv1,bn1,layer1,layer2.0.conv1")
    before = snapshot(model)
    # All parameters go to the optimizer, as a careless user would pass them: step() must skip the frozen ones.
    optimizer = make_optimizer(model.parameters())
    train_steps(model, optimizer, steps=4)

    params = dict(model.named_parameters())
    for name in frozen:
        np.testing.assert_array_equal(params[name].data, before[name], err_msg=f"{name} moved although frozen")
        assert params[name].grad is None, f"{name} got a gradient although frozen"
        assert params[name] not in optimizer.state, f"{name} got optimizer state although frozen"
    trained = [name for name in params if name not in frozen]
    assert trained and all(not np.array_equal(params[n].data, before[n]) for n in trained)
    assert all(params[n].grad is not None for n in trained)


def test_frozen_batchnorm_statistics_stay_fixed_in_train_mode():
    model = small_net()
    finetune.freeze(model, "conv1,bn1,layer1")
    before = snapshot(model)
    train_steps(model, SGD(model.parameters(), lr=0.1, momentum=0.9), steps=3)
    after = model.state_dict()
    for key in ("bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked",
                "layer1.0.bn2.running_mean", "layer1.0.bn2.running_var"):
        np.testing.assert_array_equal(after[key], before[key], err_msg=f"{key} moved although frozen")
    for key in ("layer2.0.bn1.running_mean", "layer3.0.bn2.running_var"):  # trained layers: statistics move
        assert not np.array_equal(after[key], before[key]), key
    assert int(after["layer2.0.bn1.num_batches_tracked"]) == 3


def test_a_batchnorm_without_parameters_follows_the_mode_it_has_nothing_to_freeze():
    from resnet_np.layers import BatchNorm2d

    model = small_net()
    model.layer2[0].bn1 = BatchNorm2d(model.layer2[0].bn1.num_features, affine=False)
    finetune.freeze(model, "backbone")
    finetune.keep_frozen_batchnorm_in_eval(model)
    model.train()
    assert model.bn1.keep_eval and not model.bn1.training               # frozen weight and bias: eval
    assert not model.layer2[0].bn1.keep_eval and model.layer2[0].bn1.training


def test_frozen_batchnorm_can_follow_the_data_when_asked():
    model = small_net()
    finetune.freeze(model, "conv1,bn1,layer1", keep_bn_stats=False)
    before = snapshot(model)
    train_steps(model, SGD(model.parameters(), lr=0.1), steps=2)
    assert not np.array_equal(model.bn1.running_mean, before["bn1.running_mean"])
    np.testing.assert_array_equal(model.bn1.weight.data, before["bn1.weight"])  # still frozen


def test_unfreeze_trains_again_and_batchnorm_follows_the_mode_again():
    model = small_net()
    finetune.freeze(model, "backbone")
    assert finetune.trainable_parameters(model) == ["fc.weight", "fc.bias"]
    assert not model.bn1.training
    finetune.unfreeze(model, "layer3")
    assert all(p.requires_grad for p in model.layer3.parameters()) and not model.layer2[0].conv1.weight.requires_grad
    assert model.layer3[0].bn1.training and not model.layer2[0].bn1.training
    finetune.unfreeze(model)
    assert all(m.training for m in model.modules())


def test_frozen_batchnorm_survives_fit_and_evaluate():
    """``fit`` calls ``model.train()`` every epoch and ``evaluate`` switches modes back and forth."""
    rng = np.random.default_rng(0)
    data = Dataset(rng.integers(0, 256, (32, 1, 12, 12), dtype=np.uint8), rng.integers(0, 4, 32),
                   classes=("a", "b", "c", "d"), mean=(0.5,), std=(0.25,))
    model = small_net()
    finetune.freeze(model, "backbone")
    model.need_input_grad = False
    before = snapshot(model)
    loader = DataLoader(data, batch_size=8, seed=0)
    optimizer = SGD(finetune.param_groups(model, head_lr=0.1), lr=0.1, momentum=0.9, weight_decay=5e-4)
    fit(model, loader, DataLoader(data, batch_size=16, shuffle=False), 2, optimizer, progress=False,
        log=lambda *a: None)
    for key, value in model.state_dict().items():
        if not key.startswith("fc."):
            np.testing.assert_array_equal(value, before[key], err_msg=key)
    assert not np.array_equal(model.fc.weight.data, before["fc.weight"])
    evaluate(model, loader)
    model.train()
    assert not any(m.training for m in model.modules() if isinstance(m, BatchNorm2d))


# -- parameter groups -------------------------------------------------------------------------


def test_param_groups_get_their_own_learning_rates():
    model = small_net().astype("float64")  # float64: the update is compared with lr * grad to 1e-9
    finetune.freeze(model, "conv1,bn1")
    groups = finetune.param_groups(model, head_lr=0.5, backbone_lr=0.002)
    assert [g["name"] for g in groups] == ["head", "backbone"]
    assert groups[0]["params"] == [model.fc.weight, model.fc.bias]
    assert model.conv1.weight not in groups[1]["params"]  # frozen: left out
    assert len(groups[1]["params"]) == len(finetune.trainable_parameters(model)) - 2

    optimizer = SGD(groups, lr=123.0)  # plain SGD: the update is exactly -lr * grad
    loss_fn = SoftmaxCrossEntropy()
    x, y = batch()
    loss_fn(model(x.astype(np.float64)), y)
    model.backward(loss_fn.backward())
    before = {name: p.data.copy() for name, p in model.named_parameters()}
    grads = {name: p.grad.copy() for name, p in model.named_parameters() if p.grad is not None}
    optimizer.step()
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lr = 0.5 if name.startswith("fc.") else 0.002
        np.testing.assert_allclose(before[name] - p.data, lr * grads[name], rtol=1e-9, atol=1e-15,
                                   err_msg=f"{name} did not take a step of lr {lr}")
    assert optimizer.param_groups[0]["lr"] == 0.5 and optimizer.param_groups[1]["lr"] == 0.002

    finetune.freeze(model, "all")
    with pytest.raises(ValueError, match="nothing to train"):
        finetune.param_groups(model, head_lr=0.1)


# -- backward stops below the last trainable layer ---------------------------------------------


def _refuse_backward(module):
    def refuse(dout):
        raise AssertionError(f"backward of a frozen prefix ran ({type(module).__name__})")
    module.backward = refuse  # an instance attribute: only this module refuses


def test_backward_skips_a_frozen_prefix_and_gives_the_same_gradients():
    x, y = batch()
    loss_fn = SoftmaxCrossEntropy()
    reference = small_net()
    finetune.freeze(reference, "conv1,bn1,layer1", keep_bn_stats=False)
    loss_fn(reference(x), y)
    dx = reference.backward(loss_fn.backward())
    assert dx.shape == x.shape  # by default the input gradient is computed, frozen or not

    model = small_net()
    model.load_state_dict(snapshot(reference))
    finetune.freeze(model, "conv1,bn1,layer1", keep_bn_stats=False)
    model.need_input_grad = False
    for module in (model.layer1, model.bn1, model.conv1):
        _refuse_backward(module)
    loss_fn(model(x), y)
    assert model.backward(loss_fn.backward()) is None
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        if p.requires_grad:
            np.testing.assert_allclose(p.grad, q.grad, rtol=1e-6, atol=1e-9, err_msg=name)

    finetune.freeze(model, "backbone")  # a linear probe: backward ends at fc
    for module in (model.layer3, model.layer2):
        _refuse_backward(module)
    model.zero_grad()
    loss_fn(model(x), y)
    assert model.backward(loss_fn.backward()) is None and model.fc.weight.grad is not None


def test_imagenet_resnet_backward_skips_a_frozen_backbone():
    model = resnet18(num_classes=3)
    finetune.freeze(model, "backbone")
    model.need_input_grad = False
    for module in (model.layer4, model.layer1, model.conv1):
        _refuse_backward(module)
    loss_fn = SoftmaxCrossEntropy()
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    loss_fn(model(x), np.array([0, 2]))
    assert model.backward(loss_fn.backward()) is None and model.fc.weight.grad.shape == (3, 512)


# -- a new head --------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [lambda: resnet20(num_classes=10, in_channels=1).astype("float64"),
                                  lambda: resnet18(num_classes=1000)], ids=["resnet20-float64", "resnet18"])
def test_reset_classifier(make, tmp_path):
    model = make()
    keys = list(model.state_dict())
    old_fc = model.fc
    new_fc = model.reset_classifier(7)
    assert model.fc is new_fc and new_fc is not old_fc
    assert model.fc.weight.shape == (7, old_fc.in_features) and model.fc.bias.shape == (7,)
    assert model.fc.weight.dtype == old_fc.weight.dtype
    assert model.config["num_classes"] == 7
    assert list(model.state_dict()) == keys  # the head keeps its place in the state dict
    x = np.zeros((2,) + ((1, 28, 28) if model.arch == "resnet20" else (3, 32, 32)), dtype=model.fc.weight.dtype)
    assert model.eval()(x).shape == (2, 7)
    if model.arch == "resnet20":
        save(model, tmp_path / "m.npz")
        assert load(tmp_path / "m.npz").fc.out_features == 7  # rebuilt from the file with its new head


# -- loading a checkpoint with the head replaced -------------------------------------------------


def pretrained_resnet20(tmp_path, training_checkpoint=False):
    """A resnet20 for 5 classes with non-trivial batch-norm statistics, saved as .npz."""
    backend.manual_seed(1)
    source = resnet20(num_classes=5, in_channels=1)
    rng = np.random.default_rng(1)
    for m in source.modules():
        if isinstance(m, BatchNorm2d):
            m.running_mean[...] = rng.standard_normal(m.num_features)
            m.running_var[...] = rng.uniform(0.5, 1.5, m.num_features)
    path = tmp_path / "pretrained.npz"
    if training_checkpoint:
        optimizer = SGD(source.parameters(), lr=0.1, momentum=0.9)
        train_steps(source, optimizer, steps=1)
        save_checkpoint(path, source, optimizer, epoch=1)
    else:
        save(source, path)
    return source, path


@pytest.mark.parametrize("training_checkpoint", [False, True], ids=["model-file", "training-checkpoint"])
def test_load_backbone_from_npz_replaces_the_head(tmp_path, training_checkpoint):
    source, path = pretrained_resnet20(tmp_path, training_checkpoint)
    model = resnet20(num_classes=3, in_channels=1)
    fc_before = model.fc.weight.data.copy()
    assert finetune.load_backbone(model, path) is model
    own = model.state_dict()
    for key, value in source.state_dict().items():
        if not key.startswith("fc."):
            np.testing.assert_array_equal(own[key], value, err_msg=key)
    np.testing.assert_array_equal(model.fc.weight.data, fc_before)  # the new head is untouched
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(features(model.eval(), x), features(source.eval(), x))

    same_classes = resnet20(num_classes=5, in_channels=1)  # a head of the same shape is replaced all the same
    fc_before = same_classes.fc.weight.data.copy()
    finetune.load_backbone(same_classes, path)
    np.testing.assert_array_equal(same_classes.fc.weight.data, fc_before)
    assert not np.array_equal(fc_before, source.fc.weight.data)


def features(model, x):
    """The pooled features that feed ``fc`` (CIFAR-style or ImageNet ResNet)."""
    x = model.relu(model.bn1(model.conv1(x)))
    if hasattr(model, "maxpool"):
        x = model.maxpool(x)
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        if hasattr(model, stage):
            x = getattr(model, stage)(x)
    return model.flatten(model.avgpool(x))


def test_a_mismatching_backbone_is_refused_with_every_mismatch_listed(tmp_path):
    _, path = pretrained_resnet20(tmp_path)

    model = resnet20(num_classes=3, in_channels=3)
    before = snapshot(model)
    with pytest.raises(ValueError) as e:
        finetune.load_backbone(model, path)
    message = str(e.value)
    assert str(path) in message and "resnet20" in message and "does not match" in message
    assert "conv1.weight: checkpoint (16, 1, 3, 3), model (16, 3, 3, 3)" in message
    assert "fc." not in message  # the head may differ: it is never a mismatch
    for key, value in model.state_dict().items():  # nothing was loaded
        np.testing.assert_array_equal(value, before[key], err_msg=key)

    with pytest.raises(ValueError) as e:
        finetune.load_backbone(resnet32(num_classes=3, in_channels=1), path)
    message = str(e.value)
    assert "60 missing key(s)" in message and "layer1.3.conv1.weight" in message and "layer3.4.bn2.bias" in message

    state = dict(load(path).state_dict())
    state["layer9.weight"] = np.zeros(3, dtype=np.float32)
    del state["layer2.1.conv2.weight"]
    with pytest.raises(ValueError) as e:
        finetune.load_backbone(resnet20(num_classes=3, in_channels=1), state)
    message = str(e.value)
    assert "1 missing key(s)" in message and "layer2.1.conv2.weight" in message
    assert "1 unexpected key(s)" in message and "layer9.weight" in message


def test_unknown_file_kinds_are_clear_errors(tmp_path):
    model = resnet20(in_channels=1)
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        finetune.load_backbone(model, tmp_path / "absent.npz")
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ValueError, match=r"expected a resnet_np checkpoint \(\.npz\) or a PyTorch state dict"):
        finetune.load_backbone(model, tmp_path / "weights.bin")


# -- a torchvision-format ResNet-18 checkpoint -------------------------------------------------


def torchvision_resnet18(torch):
    """torchvision's ResNet-18 written out in torch.nn (torchvision itself is not needed), 1000 classes."""
    nn = torch.nn

    class BasicBlock(nn.Module):
        def __init__(self, inplanes, planes, stride=1, downsample=None):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.downsample = downsample

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(out)) + identity)

    class ResNet18(nn.Module):
        def __init__(self):
            super().__init__()
            self.inplanes = 64
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            self.layer1 = self._make_layer(64)
            self.layer2 = self._make_layer(128, stride=2)
            self.layer3 = self._make_layer(256, stride=2)
            self.layer4 = self._make_layer(512, stride=2)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(512, 1000)

        def _make_layer(self, planes, stride=1):
            downsample = None
            if stride != 1 or self.inplanes != planes:
                downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride, bias=False),
                                           nn.BatchNorm2d(planes))
            layers = [BasicBlock(self.inplanes, planes, stride, downsample), BasicBlock(planes, planes)]
            self.inplanes = planes
            return nn.Sequential(*layers)

        def features(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return torch.flatten(self.avgpool(x), 1)

    model = ResNet18().double()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # batch norms off their defaults (1, 0, 0, 1 would hide a wrong key)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=gen, dtype=torch.float64) + 0.5)
                m.bias.copy_(0.2 * torch.randn(m.num_features, generator=gen, dtype=torch.float64))
                m.running_mean.copy_(0.2 * torch.randn(m.num_features, generator=gen, dtype=torch.float64))
                m.running_var.copy_(torch.rand(m.num_features, generator=gen, dtype=torch.float64) + 0.5)
    return model.eval()


def test_torchvision_resnet18_checkpoint_loads_with_its_head_replaced(tmp_path):
    torch = pytest.importorskip("torch", reason="torch not installed: the .pth test needs the 'torch' extra")
    from resnet_np.gradcheck import rel_error

    torch.manual_seed(0)
    theirs = torchvision_resnet18(torch)
    state = theirs.state_dict()
    assert state["fc.weight"].shape == (1000, 512)
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(state, path)

    model = resnet18(num_classes=10).astype("float64")
    fc_before = model.fc.weight.data.copy()
    finetune.load_backbone(model, path)
    assert model.fc.weight.shape == (10, 512)
    np.testing.assert_array_equal(model.fc.weight.data, fc_before)

    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32))
    with torch.no_grad():
        expected = theirs.features(torch.from_numpy(x)).numpy()
    ours = features(model.eval(), x)
    assert ours.shape == (2, 512) and ours.dtype == np.float64
    assert rel_error(ours, expected) <= 1e-10, rel_error(ours, expected)

    # An old torchvision checkpoint has no num_batches_tracked; a training script may wrap the dict.
    old_style = {"state_dict": {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}}
    again = resnet18(num_classes=10).astype("float64")
    finetune.load_backbone(again, old_style)
    assert rel_error(features(again.eval(), x), expected) <= 1e-10

    with pytest.raises(ValueError, match=r"resnet18-imagenet\.pth.*does not match the resnet20") as e:
        finetune.load_backbone(resnet20(num_classes=10), path)
    assert "conv1.weight: checkpoint (64, 3, 7, 7), model (16, 3, 3, 3)" in str(e.value)
    assert "layer4.1.conv2.weight" in str(e.value)  # listed as unexpected


# -- few-label tasks -----------------------------------------------------------------------------


def test_select_classes_relabels_and_draws_nested_subsets():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 300)
    images = np.arange(300, dtype=np.uint8).reshape(300, 1, 1, 1)  # each image remembers its index (mod 256)
    data = Dataset(images, labels, [str(d) for d in range(10)], (0.5,), (0.5,), name="toy")
    task = finetune.select_classes(data, [7, 2])
    assert task.classes == ("7", "2") and task.num_classes == 2
    assert len(task) == np.sum((labels == 7) | (labels == 2))
    originals = labels[(labels == 7) | (labels == 2)]
    np.testing.assert_array_equal(task.labels, np.where(originals == 7, 0, 1))  # in the dataset's order

    few = finetune.select_classes(data, [7, 2], per_class=3, seed=5)
    more = finetune.select_classes(data, [7, 2], per_class=10, seed=5)
    assert np.bincount(few.labels).tolist() == [3, 3] and np.bincount(more.labels).tolist() == [10, 10]
    assert set(few.images.ravel()) <= set(more.images.ravel())  # the 3 are among the 10
    other = finetune.select_classes(data, [7, 2], per_class=10, seed=6)
    assert set(other.images.ravel()) != set(more.images.ravel())
    with pytest.raises(ValueError, match="1000 examples of class 7"):
        finetune.select_classes(data, [7], per_class=1000)
    with pytest.raises(ValueError, match="class 10 does not exist"):
        finetune.select_classes(data, [10])
    assert finetune.parse_classes("5-9") == [5, 6, 7, 8, 9] and finetune.parse_classes("0-1,7") == [0, 1, 7]
    with pytest.raises(ValueError, match="cannot read the classes"):
        finetune.parse_classes("five")


# -- the command line ------------------------------------------------------------------------------


def tiny_mnist(folder, monkeypatch, per_class_train=6, per_class_test=4):
    """Official-format MNIST files with a few synthetic digits of each class; the MD5 table follows them."""
    rng = np.random.default_rng(0)
    os.makedirs(folder, exist_ok=True)
    md5s = {}
    for prefix, per_class in (("train", per_class_train), ("t10k", per_class_test)):
        labels = np.repeat(np.arange(10), per_class).astype(np.uint8)
        images = rng.integers(0, 60, (len(labels), 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):  # a bright bar whose place says the class
            images[i, 4 + 2 * label:6 + 2 * label, 4:24] = 255
        for kind, array, magic in (("images-idx3", images, 0x803), ("labels-idx1", labels, 0x801)):
            name = f"{prefix}-{kind}-ubyte.gz"
            header = struct.pack(">I", magic) + b"".join(struct.pack(">I", n) for n in array.shape)
            with gzip.open(os.path.join(folder, name), "wb") as f:
                f.write(header + array.tobytes())
            md5s[name] = hashlib.md5(open(os.path.join(folder, name), "rb").read()).hexdigest()
    monkeypatch.setitem(DATASETS["mnist"], "md5", md5s)


def test_cli_finetune_end_to_end(tmp_path, monkeypatch, capsys):
    tiny_mnist(tmp_path / "data" / "mnist", monkeypatch)
    source, path = pretrained_resnet20(tmp_path)
    common = ["--from", str(path), "--dataset", "mnist", "--data", str(tmp_path / "data"), "--classes", "5-9",
              "--train-per-class", "4", "--epochs", "2", "--batch-size", "10", "--no-progress"]

    probe = tmp_path / "probe"
    assert main(["finetune", *common, "--out", str(probe)]) == 0
    out = capsys.readouterr().out
    assert "new head fc (64 -> 5 classes)" in out and "frozen: 57 of 59" in out and "head lr 0.1" in out
    tuned = load(probe / "checkpoint.npz")
    assert tuned.fc.out_features == 5
    for key, value in source.state_dict().items():  # a linear probe: the backbone, statistics included, as loaded
        if not key.startswith("fc."):
            np.testing.assert_array_equal(tuned.state_dict()[key], value, err_msg=key)

    assert main(["evaluate", "--checkpoint", str(probe / "checkpoint.npz"), "--data", str(tmp_path / "data")]) == 0
    assert "on the 20 mnist test images" in capsys.readouterr().out  # 5 classes x 4 test images

    full = tmp_path / "full"
    assert main(["finetune", *common, "--freeze", "none", "--head-lr", "0.2", "--backbone-lr", "0.01",
                 "--out", str(full)]) == 0
    out = capsys.readouterr().out
    assert "frozen: 0 of 59" in out and "head lr 0.2, backbone lr 0.01" in out
    tuned = load(full / "checkpoint.npz")
    assert not np.array_equal(tuned.layer1[0].conv1.weight.data, source.layer1[0].conv1.weight.data)

    assert main(["finetune", *common, "--model", "resnet32", "--out", str(tmp_path / "bad")]) == 1
    err = capsys.readouterr().err
    assert "does not match the resnet32" in err and "layer1.3.conv1.weight" in err
    assert main(["finetune", *common, "--freeze", "layer7", "--out", str(tmp_path / "bad")]) == 1
    assert "pattern 'layer7' matches no parameter" in capsys.readouterr().err
    (tmp_path / "w.pth").write_bytes(b"")
    assert main(["finetune", *common[2:], "--from", str(tmp_path / "w.pth"), "--out", str(tmp_path / "bad")]) == 1
    assert "pass --model" in capsys.readouterr().err
    assert main(["train", "--resume", str(probe / "checkpoint.npz")]) == 1
    assert "written by finetune" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "torch", None)  # makes "import torch" fail
    assert main(["finetune", *common[2:], "--from", str(tmp_path / "w.pth"), "--model", "resnet18",
                 "--out", str(tmp_path / "bad")]) == 1
    assert "needs PyTorch: pip install" in capsys.readouterr().err


def test_cli_finetune_across_architectures_says_both_names(tmp_path, monkeypatch, capsys):
    # A plain-20 has the very keys of a ResNet-20: loading one into the other works, and must be said aloud.
    tiny_mnist(tmp_path / "data" / "mnist", monkeypatch)
    _, path = pretrained_resnet20(tmp_path)
    assert main(["finetune", "--from", str(path), "--model", "plain20", "--dataset", "mnist", "--data",
                 str(tmp_path / "data"), "--classes", "5-9", "--train-per-class", "4", "--epochs", "1",
                 "--batch-size", "10", "--no-progress", "--out", str(tmp_path / "plain")]) == 0
    out = capsys.readouterr().out
    assert "holds a resnet20; its backbone goes into the plain20" in out
    assert load(tmp_path / "plain" / "checkpoint.npz").arch == "plain20"


def test_finetune_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["finetune", "--help"])
    text = capsys.readouterr().out
    for option in ("--from", "--dataset", "--classes", "--train-per-class", "--freeze", "--frozen-bn",
                   "--head-lr", "--backbone-lr", "--epochs", "--out"):
        assert option in text, option
    assert "backbone" in text and "none" in text


@needs_mnist
def test_cli_finetune_on_real_mnist_digits(tmp_path, capsys):
    """A few training steps on real MNIST, then a linear probe on 10 images of each digit 5-9, end to end."""
    pre = tmp_path / "pre"
    assert main(["train", "--model", "resnet20", "--train-size", "256", "--test-size", "100", "--batch-size", "64",
                 "--warmup-steps", "2", "--no-progress", "--out", str(pre)]) == 0
    assert main(["finetune", "--from", str(pre / "checkpoint.npz"), "--classes", "5-9", "--train-per-class", "10",
                 "--epochs", "3", "--test-size", "200", "--no-progress", "--out", str(tmp_path / "ft")]) == 0
    out = capsys.readouterr().out
    assert "50 training images, 200 test images" in out and "test accuracy:" in out
