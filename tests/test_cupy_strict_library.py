"""The library's CuPy path, run through the strict CuPy stand-in on a machine without a GPU.

``resnet_np.cupy_strict`` emulates CuPy's rules (no implicit conversion to
NumPy, no NumPy operands, only CuPy's functions), not a GPU. Every model
family, the optimizers and schedules, ``fit`` with checkpoints and resume,
``evaluate``, fine-tuning and the data loader's hand-off run on it here and
must give what they give on NumPy: a change that calls ``numpy.asarray`` on a
device array, writes a host array into a device buffer, or uses a NumPy-only
function fails this file instead of the first GPU run.

tests/test_cupy.py covers every layer (forward, backward, gradient check), with the
few it does not list run here;
tests/test_cupy_strict_mpi.py the data-parallel path under mpiexec;
tests/test_cupy_strict_traffic.py the host<->device budget of a step.
"""

import copy
import os

import numpy as np
import pytest

from resnet_np import backend, cupy_strict
from resnet_np import layers as L
from resnet_np import models as M
from resnet_np.checkpoint import load_checkpoint
from resnet_np.data import Dataset
from resnet_np.data.loader import DataLoader
from resnet_np.fast import row_taps
from resnet_np.gradcheck import check_module, rel_error
from resnet_np.layers import SoftmaxCrossEntropy
from resnet_np.optim import SGD, Adam, AdamW, CosineAnnealingLR, LinearWarmup, MultiStepLR, StepLR
from resnet_np.train import evaluate, fit

cp = cupy_strict


@pytest.fixture(autouse=True)
def _stand_in_behind_cupy():
    """"cupy" names the stand-in in this file (the conftest puts back whatever was there after each test)."""
    backend.use("cupy-strict")
    backend.use("numpy")
    yield


def on_device(x):
    return backend.to_device(x, "cupy")


def host(x):
    return backend.to_numpy(x)


def assert_on_device(module):
    for key, value in module.state_dict().items():
        assert isinstance(value, cp.ndarray), f"{key} is a {type(value).__name__}, not on the device"


def assert_close(what, device_value, host_value, tol):
    assert isinstance(device_value, cp.ndarray), f"{what}: not a device array"
    err = rel_error(host(device_value), host_value)
    assert err <= tol, f"{what}: relative error {err:.2e} between the stand-in and NumPy"


# -- every model family: forward and backward equal NumPy's ------------------------------

FAMILIES = {
    "resnet20": (lambda: M.resnet20(num_classes=4), (2, 3, 16, 16)),
    "plain20": (lambda: M.plain20(num_classes=4), (2, 3, 8, 8)),
    "resnet20-B": (lambda: M.CifarResNet(1, num_classes=3, shortcut="B"), (2, 3, 8, 8)),
    "preact_resnet20": (lambda: M.preact_resnet20(num_classes=4), (2, 3, 8, 8)),
    "preact-bottleneck": (lambda: M.PreActResNet(M.PreActBottleneck, 2, num_classes=3), (2, 3, 8, 8)),
    "wrn-10-2-dropout": (lambda: M.wrn(10, 2, dropout=0.3, num_classes=4), (2, 3, 8, 8)),
    "cifar_resnext": (lambda: M.cifar_resnext(11, 4, 4, base_planes=16, num_classes=4), (2, 3, 8, 8)),
    "resnet18": (lambda: M.ResNet(M.BasicBlock, [1, 1, 1, 1], num_classes=4), (2, 3, 32, 32)),
    "resnet50-bottleneck": (lambda: M.ResNet(M.Bottleneck, [1, 1, 1, 1], num_classes=3), (2, 3, 32, 32)),
    "resnext-grouped-dilated": (lambda: M.ResNet(M.Bottleneck, [1, 1, 1, 1], num_classes=3, groups=4, width_per_group=4,
                                                 replace_stride_with_dilation=[False, False, True]), (2, 3, 16, 16)),
}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_model_family_forward_backward_on_the_stand_in(name):
    factory, shape = FAMILIES[name]
    backend.manual_seed(1)
    cpu = factory().astype("float64")
    gpu = copy.deepcopy(cpu).to("cupy")
    assert_on_device(gpu)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    for model in (cpu, gpu):
        model.train()
        model.zero_grad()
    out_cpu = cpu(x)
    for m_cpu, m_gpu in zip(cpu.modules(), gpu.modules()):  # dropout draws on each device: the CPU's masks
        if isinstance(m_cpu, L.Dropout):
            m_gpu.mask, m_gpu.reuse_mask = on_device(m_cpu.mask), True
    out_gpu = gpu(on_device(x))
    assert_close(f"{name} output", out_gpu, out_cpu, 1e-10)
    dout = rng.standard_normal(out_cpu.shape)
    assert_close(f"{name} input gradient", gpu.backward(on_device(dout)), cpu.backward(dout), 1e-10)
    grads = dict(gpu.named_parameters())
    for key, p in cpu.named_parameters():
        assert_close(f"{name} gradient of {key}", grads[key].grad, p.grad, 1e-10)
    gpu.eval()
    cpu.eval()
    assert_close(f"{name} eval output", gpu(on_device(x)), cpu(x), 1e-10)


def test_a_whole_network_passes_its_gradient_check_on_the_stand_in():
    model = M.CifarResNet(1, num_classes=3, in_channels=1, shortcut="A").astype("float64").to("cupy")
    x = on_device(np.random.default_rng(2).standard_normal((2, 1, 6, 6)))
    report = check_module(model, x, max_elements=0, num_directions=1)
    assert report.ok, str(report)


def test_created_on_the_stand_in_with_use():
    backend.use("cupy-strict")
    backend.manual_seed(3)
    model = M.resnet20(num_classes=10)
    assert_on_device(model)
    assert isinstance(model(backend.randn((2, 3, 8, 8))), cp.ndarray)


# -- the layers tests/test_cupy.py does not list ------------------------------------------------

EXTRA_LAYERS = {  # id -> (module factory, input shapes)
    "AvgPool2d-k3-s2-p1-ceil-exclude-pad": (lambda: L.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False),
                                            [(2, 3, 7, 6)]),
    "AdaptiveAvgPool2d-3x2": (lambda: L.AdaptiveAvgPool2d((3, 2)), [(2, 3, 7, 5)]),
    "Conv2d-dilation2": (lambda: L.Conv2d(2, 3, 3, padding=2, dilation=2), [(2, 2, 6, 5)]),
    "MaxPool2d-dilation2-ceil": (lambda: L.MaxPool2d(3, 2, 1, dilation=2, ceil_mode=True), [(2, 2, 7, 6)]),
}


def _forward_backward_equal_and_gradcheck(name, cpu, inputs, device_inputs=None):
    gpu = copy.deepcopy(cpu).to("cupy") if hasattr(cpu, "to") else copy.deepcopy(cpu)
    device_inputs = device_inputs or [on_device(x) for x in inputs]
    out_cpu, out_gpu = cpu(*inputs), gpu(*device_inputs)
    assert_close(f"{name} output", out_gpu, out_cpu, 1e-12)
    dout = np.random.default_rng(1).standard_normal(np.shape(out_cpu))
    dx_cpu, dx_gpu = cpu.backward(dout), gpu.backward(on_device(dout))
    assert_close(f"{name} input gradient", dx_gpu, dx_cpu, 1e-12)
    for (key, p), (_, q) in zip(cpu.named_parameters() if hasattr(cpu, "named_parameters") else [],
                                gpu.named_parameters() if hasattr(gpu, "named_parameters") else []):
        assert_close(f"{name} gradient of {key}", q.grad, p.grad, 1e-12)
    report = check_module(gpu, *device_inputs)
    assert report.ok, str(report)


@pytest.mark.parametrize("name", list(EXTRA_LAYERS))
def test_more_layers_on_the_stand_in(name):
    factory, shapes = EXTRA_LAYERS[name]
    backend.manual_seed(0)
    rng = np.random.default_rng(0)
    _forward_backward_equal_and_gradcheck(name, factory().astype("float64"), [rng.standard_normal(s) for s in shapes])


def test_max_unpool_with_device_indices():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 6))
    pooled, indices = L.MaxPool2d(2, 2, return_indices=True)(x)
    pooled_gpu, indices_gpu = L.MaxPool2d(2, 2, return_indices=True)(on_device(x))
    assert isinstance(indices_gpu, cp.ndarray)
    np.testing.assert_array_equal(host(indices_gpu), indices)
    _forward_backward_equal_and_gradcheck("MaxUnpool2d", L.MaxUnpool2d(2, 2), [pooled, indices],
                                          [pooled_gpu, indices_gpu])


@pytest.mark.parametrize("options", [{}, {"label_smoothing": 0.1, "reduction": "sum"}, {"ignore_index": 2},
                                     {"weight": np.array([0.5, 1.0, 2.0, 1.5, 0.7]), "reduction": "none"}],
                         ids=["mean", "smoothing-sum", "ignore-index", "weights-none"])
def test_cross_entropy_loss_on_the_stand_in(options):
    rng = np.random.default_rng(0)
    logits, labels = rng.standard_normal((6, 5)), rng.integers(0, 5, 6)
    cpu, gpu = L.CrossEntropyLoss(**options), L.CrossEntropyLoss(**options)
    loss_cpu, loss_gpu = cpu(logits, labels), gpu(on_device(logits), on_device(labels))
    assert_close("loss", loss_gpu, loss_cpu, 1e-12)
    dout = rng.standard_normal(np.shape(loss_cpu)) if np.ndim(loss_cpu) else 0.7
    assert_close("dlogits", gpu.backward(on_device(dout) if np.ndim(dout) else dout), cpu.backward(dout), 1e-12)
    if np.ndim(loss_cpu) == 0:
        report = check_module(gpu, on_device(logits), on_device(labels))
        assert report.ok, str(report)


def test_every_layer_runs_on_the_stand_in_somewhere():
    """A new layer in resnet_np.layers fails this until a test runs it on the stand-in (here or test_cupy.py)."""
    import inspect

    import test_cupy
    covered = {L.MaxUnpool2d, L.CrossEntropyLoss, L.SoftmaxCrossEntropy}
    for factory, _ in EXTRA_LAYERS.values():
        covered.add(type(factory()))
    rng = np.random.default_rng(0)
    for builder, _ in test_cupy.CASES.values():
        covered.update(type(m) for m in builder(rng).modules())
    exported = {c for c in vars(L).values() if inspect.isclass(c) and hasattr(c, "backward")}
    assert exported <= covered, sorted(c.__name__ for c in exported - covered)


# -- optimizers and schedules ----------------------------------------------------------------


def _optimizer_run(make_optimizer, make_scheduler, device, steps=4):
    backend.manual_seed(4)
    model = M.CifarResNet(1, num_classes=3, in_channels=1).astype("float64")
    if device:
        model.to("cupy")
    optimizer = make_optimizer(model.parameters())
    scheduler = make_scheduler(optimizer) if make_scheduler else None
    rng = np.random.default_rng(6)
    loss_fn = SoftmaxCrossEntropy()
    lrs = []
    for _ in range(steps):
        x, y = rng.standard_normal((4, 1, 6, 6)), rng.integers(0, 3, 4)
        if device:
            x, y = on_device(x), on_device(y)
        loss_fn(model(x), y)
        optimizer.zero_grad()
        model.backward(loss_fn.backward())
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    return model, optimizer, lrs


OPTIMIZERS = {
    "sgd-nesterov-wd": (lambda p: SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4), None),
    "sgd-steplr": (lambda p: SGD(p, lr=0.1, momentum=0.9), lambda o: StepLR(o, 2, 0.1)),
    "sgd-multistep": (lambda p: SGD(p, lr=0.1), lambda o: MultiStepLR(o, [1, 3], 0.5)),
    "adam-cosine": (lambda p: Adam(p, lr=1e-2), lambda o: CosineAnnealingLR(o, 4)),
    "adamw-warmup": (lambda p: AdamW(p, lr=1e-2, weight_decay=0.1),
                     lambda o: LinearWarmup(o, 2, after=CosineAnnealingLR(o, 2))),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_and_schedule_on_the_stand_in(name):
    make_optimizer, make_scheduler = OPTIMIZERS[name]
    cpu, cpu_opt, cpu_lrs = _optimizer_run(make_optimizer, make_scheduler, device=False)
    gpu, gpu_opt, gpu_lrs = _optimizer_run(make_optimizer, make_scheduler, device=True)
    assert gpu_lrs == cpu_lrs
    weights = dict(gpu.named_parameters())
    for key, p in cpu.named_parameters():
        assert_close(f"{name}: {key} after 4 steps", weights[key].data, p.data, 1e-10)
    # The optimizer's state goes onto the device through a state dict: the device's own, and NumPy's.
    for state in (gpu_opt.state_dict(), cpu_opt.state_dict()):
        fresh = make_optimizer(gpu.parameters())
        fresh.load_state_dict(state)
        arrays = [v for entries in fresh.state.values() for v in entries.values() if getattr(v, "ndim", 0) > 0]
        assert all(isinstance(v, cp.ndarray) for v in arrays) and (arrays or name == "sgd-multistep")


# -- fit, checkpoints, evaluate, the loader, fine-tuning --------------------------------------


def tiny_dataset(n=24, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return Dataset(rng.integers(0, 256, (n, 3, 8, 8), dtype=np.uint8), rng.integers(0, classes, n),
                   [f"c{i}" for i in range(classes)], (0.4, 0.5, 0.6), (0.2, 0.25, 0.3), name="tiny")


def test_the_loaders_hand_off_is_on_the_device_and_equal_to_numpys():
    data = tiny_dataset()
    on_host = DataLoader(data, batch_size=8, seed=3, augment="cifar", backend="numpy")
    on_gpu = DataLoader(data, batch_size=8, seed=3, augment="cifar", backend="cupy")
    batches = 0
    for (x_cpu, y_cpu), (x_gpu, y_gpu) in zip(on_host, on_gpu):
        assert isinstance(x_gpu, cp.ndarray) and isinstance(y_gpu, cp.ndarray)
        assert x_gpu.dtype == np.float32 and y_gpu.dtype == np.int64
        np.testing.assert_array_equal(host(x_gpu), x_cpu)
        np.testing.assert_array_equal(host(y_gpu), y_cpu)
        batches += 1
    assert batches == 3


def _fit(backend_name, out_dir, epochs=2, resume=None):
    backend.use(backend_name)
    backend.manual_seed(0)
    model = M.resnet20(num_classes=4).astype("float32")
    optimizer = SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    scheduler = MultiStepLR(optimizer, [3], 0.1)
    train = DataLoader(tiny_dataset(), batch_size=8, seed=1, augment="cifar")
    val = DataLoader(tiny_dataset(12, seed=1), batch_size=8, shuffle=False)
    history = fit(model, train, val, epochs, optimizer, scheduler, out_dir=out_dir, resume=resume, progress=False,
                  log=lambda *a: None)
    return model, history


def test_fit_checkpoint_resume_and_evaluate_on_the_stand_in(tmp_path, monkeypatch):
    # The CPU reference takes the device's convolution route (im2col, one product per kernel), not the engine's
    # rows route: over two epochs the two routes' float32 roundings part by up to 3e-4, which would hide what
    # this test is about (the device's arrays, checkpoint and resume) behind a looser tolerance.
    monkeypatch.setattr(row_taps, "MAX_CHANNELS", 0)
    cpu_model, cpu_history = _fit("numpy", str(tmp_path / "cpu"))
    gpu_model, gpu_history = _fit("cupy-strict", str(tmp_path / "gpu"), epochs=1)
    assert_on_device(gpu_model)
    # The checkpoint was written from device arrays; resuming reads it back onto the device.
    gpu_model, gpu_history = _fit("cupy-strict", str(tmp_path / "gpu"), epochs=2,
                                  resume=str(tmp_path / "gpu" / "checkpoint.npz"))
    assert_on_device(gpu_model)
    for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
        np.testing.assert_allclose(gpu_history[key], cpu_history[key], rtol=1e-4, err_msg=key)
    for key, value in cpu_model.state_dict().items():
        np.testing.assert_allclose(host(gpu_model.state_dict()[key]), value, rtol=1e-3, atol=1e-5, err_msg=key)

    state = load_checkpoint(str(tmp_path / "gpu" / "checkpoint.npz"), backend_name="cupy")
    assert_on_device(state.model)
    assert state.epoch == 2
    loss, acc = evaluate(state.model, DataLoader(tiny_dataset(12, seed=1), batch_size=8, shuffle=False,
                                                 backend="cupy"))
    assert isinstance(loss, float) and isinstance(acc, float)
    assert abs(loss - cpu_history["val_loss"][-1]) <= 1e-4 * abs(loss) and acc == cpu_history["val_acc"][-1]


def test_saved_weights_load_onto_the_stand_in(tmp_path):
    backend.use("cupy-strict")
    model = M.resnet20(num_classes=4)
    path = str(tmp_path / "w.npz")
    M.save(model, path)
    loaded = M.load(path, backend="cupy")
    assert_on_device(loaded)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(host(loaded.state_dict()[key]), host(value))


def test_finetune_on_the_stand_in(tmp_path):
    from resnet_np import finetune
    backend.use("cupy-strict")
    source = M.resnet20(num_classes=10)
    path = str(tmp_path / "backbone.npz")
    M.save(source, path)
    model = M.resnet20(num_classes=2)
    finetune.load_backbone(model, path)
    assert_on_device(model)
    np.testing.assert_array_equal(host(model.conv1.weight.data), host(source.conv1.weight.data))
    finetune.freeze(model, "backbone")
    optimizer = SGD(finetune.param_groups(model, head_lr=0.1, backbone_lr=0.0), lr=0.1, momentum=0.9)
    data = finetune.select_classes(tiny_dataset(40), [1, 3])
    before = host(model.conv1.weight.data).copy()
    fit(model, DataLoader(data, batch_size=8), None, 1, optimizer, progress=False, log=lambda *a: None)
    np.testing.assert_array_equal(host(model.conv1.weight.data), before)  # frozen
    assert_on_device(model)


def test_the_command_line_trains_on_the_stand_in(tmp_path):
    """``python -m resnet_np train --backend cupy-strict`` on a folder of images, one epoch."""
    from PIL import Image

    from resnet_np.__main__ import main
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        os.makedirs(tmp_path / "images" / c)
        for i in range(10):
            pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "images" / c / f"{i}.png")
    code = main(["train", "--dataset", f"folder:{tmp_path / 'images'}", "--image-size", "8", "--epochs", "1",
                 "--batch-size", "4", "--backend", "cupy-strict", "--out", str(tmp_path / "run"), "--no-progress"])
    assert code in (0, None)
    assert (tmp_path / "run" / "checkpoint.npz").exists()
