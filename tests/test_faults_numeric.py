"""Numerical faults: a NaN or an Inf is caught once per step, traced to the layer where it first appeared,
and training stops without touching the last good checkpoint."""

import re

import numpy as np
import pytest

from resnet_np import backend
from resnet_np import train as train_module
from resnet_np.checkpoint import load_checkpoint
from resnet_np.data import DataLoader, Dataset
from resnet_np.layers import SoftmaxCrossEntropy
from resnet_np.models import CifarResNet
from resnet_np.module import Parameter
from resnet_np.nancheck import gradients_are_finite, locate_non_finite, non_finite_kind
from resnet_np.optim import SGD
from resnet_np.train import TrainingDiverged, fit


def tiny_run(lr=0.05):
    """A ResNet-8 on 32 random 8x8 images, 4 steps an epoch."""
    backend.manual_seed(0)
    rng = np.random.default_rng(0)
    data = Dataset(rng.integers(0, 256, (32, 1, 8, 8), dtype=np.uint8), rng.integers(0, 3, 32),
                   ["a", "b", "c"], (0.5,), (0.25,))
    model = CifarResNet(1, num_classes=3, in_channels=1)
    train = DataLoader(data, batch_size=8, seed=0)
    val = DataLoader(data.subset(range(8)), batch_size=8, shuffle=False)
    return model, train, val, SGD(model.parameters(), lr=lr, momentum=0.9)


def batch():
    rng = np.random.default_rng(1)
    return rng.standard_normal((4, 1, 8, 8)).astype(np.float32), np.array([0, 1, 2, 0])


def quiet(*args, **kwargs):
    pass


def parameters_of(model):
    return {name: p.data.copy() for name, p in model.named_parameters()}


# -- the cheap check -------------------------------------------------------------------------

def test_gradients_are_finite():
    params = [Parameter(np.ones((3, 4), np.float32)) for _ in range(3)]
    assert gradients_are_finite(params)  # no gradients at all
    for p in params[:2]:
        p.grad = np.full(p.shape, 0.5, np.float32)
    assert gradients_are_finite(params)  # params[2] has none
    for bad in (np.nan, np.inf, -np.inf):
        params[1].grad[2, 3] = bad
        assert not gradients_are_finite(params), bad
    params[1].grad[2, 3] = 0.0
    params[0].grad[:] = 1.5e38  # finite, but their sum overflows: a false alarm the exact check withdraws
    with np.errstate(over="ignore"):
        assert gradients_are_finite(params)
    params[0].grad[0, 0] = np.inf
    params[1].grad[0, 0] = -np.inf  # the two cancel into NaN in the sum: still caught
    with np.errstate(all="ignore"):
        assert not gradients_are_finite(params)


def test_non_finite_kind():
    assert non_finite_kind(np.zeros(3)) is None
    assert non_finite_kind(np.array([1.0, np.inf])) == "Inf"
    assert non_finite_kind(np.array([-np.inf, np.nan])) == "NaN"


# -- locating the layer ----------------------------------------------------------------------

def replaced_methods(model):
    """The forward/backward methods set on module objects (rather than their classes), by module name."""
    return {name: {k: v for k, v in vars(module).items() if k in ("forward", "backward")}
            for name, module in model.named_modules()}


def hooks_of(model):
    """How many hooks each module (forward, backward) and each parameter holds."""
    return ([(len(m._forward_hooks), len(m._backward_hooks)) for m in model.modules()],
            [len(p._post_accumulate_grad_hooks) for p in model.parameters()])


def locate(model, x=None, y=None):
    """locate_non_finite on a fixed batch, checking that it leaves the model as it found it."""
    x0, y0 = batch()
    params, buffers = parameters_of(model), {name: b.copy() for name, b in model.named_buffers()}
    methods, hooks = replaced_methods(model), hooks_of(model)
    with np.errstate(all="ignore"):
        found = locate_non_finite(model, SoftmaxCrossEntropy(), x0 if x is None else x, y0 if y is None else y)
    for name, value in parameters_of(model).items():
        np.testing.assert_array_equal(value, params[name], err_msg=name)
    for name, value in model.named_buffers():  # the re-run's batch statistics were not kept
        np.testing.assert_array_equal(value, buffers[name], err_msg=name)
    assert replaced_methods(model) == methods  # no method replaced, and the test's own replacements kept
    assert hooks_of(model) == hooks  # the watcher's hooks removed
    return found


def test_a_healthy_batch_locates_nothing():
    model = CifarResNet(1, num_classes=3, in_channels=1)
    assert locate(model) is None
    assert all(p.grad is not None for p in model.parameters())  # the re-run's gradients are there


def test_nan_in_a_batch_norm_weight_is_traced_to_that_layer():
    model = CifarResNet(1, num_classes=3, in_channels=1)
    model.layer2[0].bn2.weight.data[3] = np.nan
    assert locate(model) == "layer2.0.bn2 (BatchNorm2d) produced NaN in its forward output (its weight holds NaN)"


def test_overflow_to_inf_is_traced_to_that_layer():
    model = CifarResNet(1, num_classes=3, in_channels=1)
    model.fc.weight.data[:] = 3e38  # its inputs are averages of ReLU outputs, >= 0: the sums overflow to +Inf
    assert locate(model) == "fc (Linear) produced Inf in its forward output"


def test_nan_in_the_input_batch():
    model = CifarResNet(1, num_classes=3, in_channels=1)
    x, y = batch()
    x[2, 0, 3, 3] = np.nan
    assert locate(model, x, y) == "the input batch contains NaN: check the data and its normalisation"


def test_nan_in_a_backward_pass_is_traced_to_that_layer():
    model = CifarResNet(1, num_classes=3, in_channels=1)
    bn = model.layer3[0].bn1
    real_backward = bn.backward

    def broken_backward(dout):  # a forward that is fine and a backward that is not
        dx = real_backward(dout)
        dx[0, 0, 0, 0] = np.nan
        return dx

    bn.backward = broken_backward
    assert locate(model) == "layer3.0.bn1 (BatchNorm2d) produced NaN in its input gradient (backward)"
    assert vars(bn)["backward"] is broken_backward  # someone else's replacement is put back, not removed
    del bn.backward


def test_inf_in_a_parameter_gradient_only():
    model = CifarResNet(1, num_classes=3, in_channels=1)
    conv = model.layer1[0].conv2
    real_backward = conv.backward

    def broken_backward(dout):
        dx = real_backward(dout)
        conv.weight.grad[0, 0, 1, 1] = np.inf
        return dx

    conv.backward = broken_backward
    assert locate(model) == "layer1.0.conv2 (Conv2d) produced Inf in the gradient of its parameter 'weight' (backward)"
    del conv.backward


def test_the_first_layer_in_backward_order_is_named():
    """Two broken backward passes: the one nearer the loss runs first, and is the one named."""
    model = CifarResNet(1, num_classes=3, in_channels=1)
    for conv in (model.layer1[0].conv1, model.layer2[0].conv2):
        real_backward = conv.backward
        conv.backward = lambda dout, real_backward=real_backward: real_backward(dout) * np.nan
    assert locate(model) == "layer2.0.conv2 (Conv2d) produced NaN in its input gradient (backward)"


def test_a_network_that_calls_its_layers_backward_directly_still_gets_the_parameter_named():
    """Its layers' backward hooks never run (it calls child.backward, not child.run_backward): the search
    still names the parameter whose gradient is not finite."""
    from resnet_np.layers import Flatten, GlobalAvgPool2d, Linear, Sequential

    class Direct(Sequential):
        def backward(self, dout):
            for module in reversed(list(self)):
                dout = module.backward(dout)
            return dout

    model = Direct(GlobalAvgPool2d(), Flatten(), Linear(1, 3))
    linear = model[2]
    real_backward = linear.backward

    def broken_backward(dout):
        dx = real_backward(dout)
        linear.bias.grad[1] = np.nan
        return dx

    linear.backward = broken_backward
    assert locate(model) == "2 (Linear) produced NaN in the gradient of its parameter 'bias' (backward)"
    del linear.backward


# -- in training -----------------------------------------------------------------------------

def test_a_healthy_run_never_needs_the_diagnosis(monkeypatch):
    def fail(*args):
        raise AssertionError("locate_non_finite ran although every step was finite")

    monkeypatch.setattr(train_module, "locate_non_finite", fail)
    model, train, val, opt = tiny_run()
    assert fit(model, train, val, 2, opt, progress=False, log=quiet)["epoch"] == [1, 2]


def run_and_break(tmp_path, break_model):
    """One good epoch with a checkpoint, then ``break_model(model)`` and epochs 2-3: returns the error."""
    model, train, val, opt = tiny_run()
    fit(model, train, val, 1, opt, out_dir=str(tmp_path), progress=False, log=quiet)
    path = tmp_path / "checkpoint.npz"
    before = path.read_bytes()
    break_model(model)
    with pytest.raises(TrainingDiverged) as info, np.errstate(all="ignore"):
        fit(model, train, val, 3, opt, out_dir=str(tmp_path), resume=str(path), progress=False, log=quiet)
    assert path.read_bytes() == before  # the last good checkpoint, untouched
    assert f"The last good checkpoint is {path} (epoch 1)." in str(info.value)
    assert load_checkpoint(path, model=CifarResNet(1, num_classes=3, in_channels=1)).epoch == 1
    return str(info.value)


def test_nan_weight_in_training_names_the_layer(tmp_path):
    def break_model(model):
        # From the third step of epoch 2 on, a batch-norm weight is NaN (as a bad update would leave it).
        real_step, calls = model.layer2[0].bn2.forward, []

        def forward(x):
            calls.append(1)
            if len(calls) == 3:
                model.layer2[0].bn2.weight.data[1] = np.nan
            return real_step(x)

        model.layer2[0].bn2.forward = forward

    message = run_and_break(tmp_path, break_model)
    assert message.startswith("the loss became NaN or infinite at epoch 2, step 3 (learning rate 0.05): "
                              "layer2.0.bn2 (BatchNorm2d) produced NaN in its forward output (its weight holds NaN); "
                              "training has diverged; try a lower learning rate")


def test_nan_gradient_in_training_names_the_layer_and_is_never_applied(tmp_path):
    seen = {}

    def break_model(model):
        conv = model.layer1[0].conv2
        real_backward, calls = conv.backward, []

        def backward(dout):
            calls.append(1)
            dx = real_backward(dout)
            if len(calls) >= 2:  # from the second step of epoch 2 on
                seen.setdefault("weights", parameters_of(model))
                dx[:, 0] = np.inf
            return dx

        conv.backward = backward
        seen["model"] = model

    message = run_and_break(tmp_path, break_model)
    assert message.startswith("the gradients became NaN or infinite at epoch 2, step 2 (learning rate 0.05): "
                              "layer1.0.conv2 (Conv2d) produced Inf in its input gradient (backward); "
                              "training has diverged")
    # The step with the bad gradients was not taken: the weights are those it started from, all finite.
    for name, value in parameters_of(seen["model"]).items():
        np.testing.assert_array_equal(value, seen["weights"][name], err_msg=name)


def test_nan_in_validation_names_the_layer(tmp_path, monkeypatch):
    def break_model(model):
        real_evaluate = train_module.evaluate

        def evaluate(model, loader, loss_fn=None):  # after epoch 2's training, before its validation
            model.layer3[0].bn2.running_var[0] = np.nan
            return real_evaluate(model, loader, loss_fn)

        monkeypatch.setattr(train_module, "evaluate", evaluate)

    message = run_and_break(tmp_path, break_model)
    assert message.startswith("validation after epoch 2: SoftmaxCrossEntropy(): the logits contain NaN or Inf")
    assert "(layer3.0.bn2 (BatchNorm2d) produced NaN in its forward output (its running_var holds NaN))" in message


def test_a_far_too_high_learning_rate_is_stopped_with_a_layer_named(tmp_path):
    model, train, val, opt = tiny_run(lr=1e12)
    with pytest.raises(TrainingDiverged) as info, np.errstate(all="ignore"):
        fit(model, train, val, 3, opt, out_dir=str(tmp_path), progress=False, log=quiet)
    message = str(info.value)
    assert "became NaN or infinite at epoch 1" in message and "try a lower learning rate" in message
    assert re.search(r"\): [\w.]+ \(\w+\) produced (NaN|Inf) in its", message), message
    assert all(non_finite_kind(p.data) is None for p in model.parameters())  # no NaN step was taken
    assert not (tmp_path / "checkpoint.npz").exists()
