"""The networks of the paper: sizes, shapes, plain twins, summaries and gradient checks."""

import numpy as np
import pytest

from resnet_np import layers as L
from resnet_np import models as M
from resnet_np.gradcheck import GradcheckError, check_module


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def count(model):
    return sum(p.size for p in model.parameters())


@pytest.mark.parametrize("factory,expected", [
    (M.resnet18, 11_689_512), (M.resnet34, 21_797_672), (M.resnet50, 25_557_032),
    (M.resnet101, 44_549_160), (M.resnet152, 60_192_808),
], ids=lambda v: getattr(v, "__name__", str(v)))
def test_imagenet_parameter_counts_equal_torchvisions(factory, expected):
    assert count(factory()) == expected


@pytest.mark.parametrize("factory,millions", [
    (M.resnet20, 0.27), (M.resnet32, 0.46), (M.resnet44, 0.66), (M.resnet56, 0.85), (M.resnet110, 1.7),
    (M.resnet1202, 19.4),
], ids=lambda v: getattr(v, "__name__", str(v)))
def test_cifar_parameter_counts_match_the_papers_table_6(factory, millions):
    n = count(factory())
    digits = 1 if millions > 1 else 2
    assert round(n / 1e6, digits) == millions, n


def test_option_b_adds_the_projections():
    # two projections: 16->32 and 32->64, each a 1x1 conv and a batch norm
    assert count(M.resnet20(shortcut="B")) - count(M.resnet20()) == 16 * 32 + 2 * 32 + 32 * 64 + 2 * 64
    assert "layer2.0.downsample.0.weight" in M.resnet20(shortcut="B").state_dict()
    assert not any("downsample" in k for k in M.resnet20(shortcut="A").state_dict())


@pytest.mark.parametrize("plain,resnet", [(M.plain20, M.resnet20), (M.plain56, M.resnet56), (M.plain18, M.resnet18),
                                          (M.plain34, M.resnet34)], ids=["20", "56", "18", "34"])
def test_plain_twins_are_the_same_network_without_shortcuts(plain, resnet):
    p, r = plain(), resnet()
    assert not any(isinstance(m, (L.Add, M.ShortcutA)) for m in p.modules())
    assert any(isinstance(m, L.Add) for m in r.modules())
    convs = lambda model: [m.weight.shape for m in model.modules() if isinstance(m, L.Conv2d)]  # noqa: E731
    downsample_convs = [m.weight.shape for name, m in r.named_modules()
                        if "downsample" in name and isinstance(m, L.Conv2d)]
    assert convs(p) == [s for s in convs(r) if s not in downsample_convs or convs(p).count(s)]
    assert len(convs(p)) == len(convs(r)) - len(downsample_convs)


def test_plain_resnet_forward_differs_only_by_the_shortcuts():
    p = M.plain20(num_classes=3, in_channels=1)
    r = M.resnet20(num_classes=3, in_channels=1)
    r.load_state_dict(p.state_dict())  # option A: same keys, no shortcut parameters
    x = randn(2, 1, 8, 8).astype(np.float32)
    assert not np.allclose(p(x), r(x))


@pytest.mark.parametrize("factory,shape,out", [
    (lambda: M.resnet20(in_channels=1), (2, 1, 28, 28), (2, 10)),
    (lambda: M.resnet20(shortcut="B"), (2, 3, 32, 32), (2, 10)),
    (lambda: M.resnet18(num_classes=7), (2, 3, 64, 64), (2, 7)),
    (lambda: M.resnet50(num_classes=5, in_channels=1), (2, 1, 32, 32), (2, 5)),
], ids=["resnet20-mnist", "resnet20-B", "resnet18", "resnet50-1ch"])
def test_forward_and_backward_shapes(factory, shape, out):
    model = factory()
    x = randn(*shape).astype(np.float32)
    y = model(x)
    assert y.shape == out and y.dtype == np.float32
    assert model.backward(np.ones_like(y)).shape == shape
    assert all(p.grad is not None and p.grad.shape == p.shape for p in model.parameters())


def test_resnet18_at_224_forward_backward_batch_1():
    model = M.resnet18()
    y = model(randn(1, 3, 224, 224).astype(np.float32))
    assert y.shape == (1, 1000)
    model.eval()
    dx = model.backward(np.ones_like(y))
    assert dx.shape == (1, 3, 224, 224) and np.isfinite(dx).all()


# -- gradient checks ------------------------------------------------------------------------

def projection(cin, cout, stride):
    return L.Sequential(L.Conv2d(cin, cout, 1, stride=stride, bias=False), L.BatchNorm2d(cout))


def test_bottleneck_identity_gradients():
    check_module(M.Bottleneck(8, 2), randn(2, 8, 4, 4), max_elements=300)


def test_bottleneck_downsample_gradients():
    check_module(M.Bottleneck(4, 2, stride=2, downsample=projection(4, 8, 2)), randn(2, 4, 5, 5))


def test_plain_bottleneck_gradients():
    check_module(M.Bottleneck(8, 2, residual=False), randn(2, 8, 4, 4), max_elements=300)


def test_shortcut_a_gradients():
    check_module(M.ShortcutA(3, 6, 2), randn(2, 3, 5, 5))


def test_basic_block_with_option_a_gradients():
    check_module(M.BasicBlock(2, 4, stride=2, downsample=M.ShortcutA(2, 4, 2)), randn(2, 2, 6, 6))


class ShortcutAPaddedOnOneSide(M.ShortcutA):
    """Backward reads the gradient of the wrong channels (all padding put first)."""

    def backward(self, dout):
        super().backward(dout)
        x_shape, _ = self._cache
        dx = np.zeros(x_shape)
        dx[:, :, ::self.stride, ::self.stride] = dout[:, -self.in_channels:]
        return dx


def test_wrong_option_a_backward_is_caught():
    with pytest.raises(GradcheckError):
        check_module(ShortcutAPaddedOnOneSide(2, 6, 2), randn(2, 2, 4, 4))


def test_tiny_cifar_resnet_per_element():
    model = M.CifarResNet(1, num_classes=3, in_channels=1, shortcut="A")
    check_module(model, randn(2, 1, 8, 8), max_elements=400)


def test_tiny_cifar_resnet_option_b_per_element():
    model = M.CifarResNet(1, num_classes=3, in_channels=1, shortcut="B")
    check_module(model, randn(2, 1, 6, 6), max_elements=400)


def test_tiny_imagenet_resnet_directional_over_all_parameters():
    model = M.ResNet(M.BasicBlock, [1, 1, 1, 1], num_classes=4)
    report = check_module(model, randn(2, 3, 64, 64), max_elements=0, num_directions=1)
    assert len(report.results) == 1 + len(list(model.parameters()))
    assert all(r.method == "directional" for r in report.results)


def test_tiny_bottleneck_resnet_directional_and_per_element():
    model = M.ResNet(M.Bottleneck, [1, 1, 1, 1], num_classes=3)
    # Per element only for the classifier's 3 biases: each of the other 50 tensors costs two forward
    # passes (one direction) instead of two per entry (the 64-channel batch norms made this 40 s).
    report = check_module(model, randn(4, 3, 32, 32), max_elements=3, num_directions=1)
    methods = {r.method for r in report.results}
    assert methods == {"directional", "element"}


def test_plain_tiny_network_gradients():
    check_module(M.CifarResNet(1, num_classes=3, in_channels=1, residual=False), randn(2, 1, 6, 6),
                 max_elements=300)


# -- summary and state dicts ----------------------------------------------------------------

def test_summary_lists_layers_shapes_and_totals():
    model = M.resnet20(in_channels=1)
    model.train()
    table = M.summary(model, (2, 1, 28, 28), print_fn=None)
    assert "layer2.0 (BasicBlock)" in table and "downsample (ShortcutA)" in table
    assert "(2, 32, 14, 14)" in table and "(2, 10)" in table
    assert f"Total params: {count(model):,}" in table
    assert model.training  # put back in the mode it was in
    assert int(model.bn1.num_batches_tracked) == 0  # ran in eval mode: statistics untouched
    fc_line = next(line for line in table.splitlines() if line.startswith("fc (Linear)"))
    assert fc_line.split()[-1] == "650"


def test_strict_loading_lists_every_problem_at_once():
    model = M.resnet20()
    state = dict(M.resnet20().state_dict())
    del state["layer1.0.conv1.weight"]
    state["layer9.weight"] = np.zeros(3, np.float32)
    state["fc.weight"] = np.zeros((1000, 64), np.float32)
    with pytest.raises(ValueError) as info:
        model.load_state_dict(state)
    message = str(info.value)
    assert "layer1.0.conv1.weight" in message and "layer9.weight" in message
    assert "fc.weight: expected shape (10, 64), got (1000, 64)" in message


@pytest.mark.parametrize("factory,shape", [
    (lambda: M.resnet20(shortcut="B"), (2, 3, 16, 16)),
    (lambda: M.resnet18(num_classes=4), (2, 3, 32, 32)),
    (lambda: M.preact_resnet20(num_classes=4), (2, 3, 16, 16)),
    (lambda: M.cifar_resnext(11, 4, 4, base_planes=16, num_classes=4), (2, 3, 16, 16)),
], ids=["resnet20-B", "resnet18", "preact20", "resnext"])
def test_need_input_grad_false_returns_none_with_the_same_parameter_grads(factory, shape):
    """Training never uses the images' gradient: without it every parameter gradient is unchanged."""
    model = factory().astype("float64")
    x = randn(*shape)
    dout = randn(*model(x).shape, seed=1)
    assert model.backward(dout).shape == shape
    grads = [p.grad.copy() for p in model.parameters()]
    model.zero_grad()
    model.need_input_grad = False
    model(x)
    assert model.backward(dout) is None
    for p, g in zip(model.parameters(), grads):
        np.testing.assert_allclose(p.grad, g, rtol=1e-10, atol=1e-12)


# -- the backward that stops below the lowest trainable part (models/base.py) ------------------

EVERY_FAMILY = [
    (lambda: M.resnet20(num_classes=3), (2, 3, 8, 8)),
    (lambda: M.resnet20(num_classes=3, shortcut="B"), (2, 3, 8, 8)),
    (lambda: M.plain20(num_classes=3), (2, 3, 8, 8)),
    (lambda: M.ResNet(M.BasicBlock, [1, 1, 1, 1], num_classes=3), (2, 3, 32, 32)),
    (lambda: M.ResNet(M.Bottleneck, [1, 1, 1, 1], num_classes=3, groups=2, width_per_group=4), (2, 3, 32, 32)),
    (lambda: M.preact_resnet20(num_classes=3), (2, 3, 8, 8)),
    (lambda: M.wrn(10, 2, num_classes=3), (2, 3, 8, 8)),
    (lambda: M.cifar_resnext(11, 4, 4, base_planes=16, num_classes=3), (2, 3, 8, 8)),
]
FAMILY_IDS = [
    "resnet20-A", "resnet20-B", "plain20", "resnet-imagenet", "resnext-imagenet", "preact20", "wrn", "resnext",
]


@pytest.mark.parametrize("factory,shape", EVERY_FAMILY, ids=FAMILY_IDS)
def test_backward_of_a_frozen_prefix_gives_the_full_backwards_gradients_and_stops_early(factory, shape):
    """Freeze parts[:k] for every k: the trainable parameters get the gradients of the full backward,
    the frozen ones none, and no part below the lowest trainable one runs its backward."""
    model = factory().astype("float64")
    x = randn(*shape)
    dout = randn(*model(x).shape, seed=1)
    model.backward(dout)
    full = {name: p.grad.copy() for name, p in model.named_parameters()}
    parts = model.parts()
    assert [type(m).__name__ for m in parts[-3:]] == ["GlobalAvgPool2d", "Flatten", "Linear"]
    ran = []
    for i, part in enumerate(parts):
        part.register_full_backward_hook(lambda m, dx, d, i=i: ran.append(i))
    model.need_input_grad = False

    def check(lowest_trainable):
        ran.clear()
        model.zero_grad()
        model(x)
        assert model.backward(dout) is None
        assert sorted(ran) == list(range(lowest_trainable, len(parts)))
        for name, p in model.named_parameters():
            if p.requires_grad:
                np.testing.assert_allclose(p.grad, full[name], rtol=1e-10, atol=1e-12, err_msg=name)
            else:
                assert p.grad is None, name

    for k in range(len(parts) + 1):
        for i, part in enumerate(parts):
            part.requires_grad_(i >= k)
        check(next((i for i in range(k, len(parts)) if list(parts[i].parameters())), len(parts)))
    # One batch norm deep in the first stage is enough to take backward down to it.
    model.requires_grad_(False)
    model.layer1[0].bn1.requires_grad_(True)
    check(parts.index(model.layer1))


def test_every_family_is_one_network_base():
    for factory, _ in EVERY_FAMILY:
        model = factory()
        assert isinstance(model, M.Network) and model.stem()[0] is model.conv1 and model.head()[-1] is model.fc
        assert model.stages() == [getattr(model, f"layer{i + 1}") for i in range(len(model.stages()))]
        assert "forward" not in vars(type(model)) and "backward" not in vars(type(model))
