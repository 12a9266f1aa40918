"""The trainer: it learns, resumes exactly, stops cleanly, and never loses a good checkpoint."""

import os

import numpy as np
import pytest

from resnet_np import backend
from resnet_np.checkpoint import load_checkpoint, save_checkpoint
from resnet_np.data import DataLoader, Dataset
from resnet_np.models import CifarResNet, load, resnet20
from resnet_np.optim import SGD, Adam, CosineAnnealingLR, LinearWarmup
from resnet_np.train import TrainingDiverged, evaluate, fit


def bars_dataset(n=96, size=8, seed=0):
    """Tiny learnable images: a bright row (class 0), column (1) or diagonal (2) in noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    images = rng.integers(0, 60, (n, 1, size, size))
    pos = rng.integers(1, size - 1, n)
    for k in range(n):
        if labels[k] == 0:
            images[k, 0, pos[k], :] = 255
        elif labels[k] == 1:
            images[k, 0, :, pos[k]] = 255
        else:
            images[k, 0, np.arange(size), np.arange(size)] = 255
    return Dataset(images.astype(np.uint8), labels, ["row", "column", "diagonal"], (0.3,), (0.3,), name="bars")


def setup(seed=0, lr=0.05, optimizer="sgd", total_steps=None):
    """A fresh model, loaders, optimizer and schedule, all from the seed."""
    backend.manual_seed(seed)
    model = CifarResNet(1, num_classes=3, in_channels=1)
    train = DataLoader(bars_dataset(), batch_size=16, shuffle=True, drop_last=True, seed=seed, augment="digits")
    val = DataLoader(bars_dataset(48, seed=1), batch_size=16, shuffle=False)
    if optimizer == "sgd":
        opt = SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    else:
        opt = Adam(model.parameters(), lr=lr)
    cosine = CosineAnnealingLR(opt, T_max=total_steps or 3 * len(train))
    sched = LinearWarmup(opt, warmup_steps=3, start_factor=0.1, after=cosine)
    return model, train, val, opt, sched


def quiet(*args, **kwargs):
    pass


def test_fit_learns_and_writes_checkpoint_and_curves(tmp_path):
    model, train, val, opt, sched = setup(lr=0.05)
    history = fit(model, train, val, 3, opt, sched, out_dir=str(tmp_path), progress=False, log=quiet,
                  config={"note": "test"})
    assert history["epoch"] == [1, 2, 3]
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert history["val_acc"][-1] > 0.6  # chance is 1/3
    assert (tmp_path / "curves.png").stat().st_size > 1000
    state = load_checkpoint(tmp_path / "checkpoint.npz", model=CifarResNet(1, 3, 1))
    assert state.epoch == 3 and state.config == {"note": "test"} and state.history["val_acc"] == history["val_acc"]
    # The checkpoint is also a plain model file, and gives the same accuracy.
    assert evaluate(load(tmp_path / "checkpoint.npz", model=CifarResNet(1, 3, 1)), val)[1] == history["val_acc"][-1]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resuming_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, optimizer):
    lr = 0.05 if optimizer == "sgd" else 3e-3
    model, train, val, opt, sched = setup(lr=lr, optimizer=optimizer)
    fit(model, train, val, 3, opt, sched, progress=False, log=quiet)
    straight = {k: v.copy() for k, v in model.state_dict().items()}

    # The same run, stopped after 2 epochs; then everything is built anew and resumed.
    model, train, val, opt, sched = setup(lr=lr, optimizer=optimizer, total_steps=3 * len(train))
    fit(model, train, val, 2, opt, sched, out_dir=str(tmp_path), progress=False, log=quiet)
    backend.manual_seed(12345)  # resuming must not depend on the state the process happens to be in
    model, train, val, opt, sched = setup(seed=0, lr=lr, optimizer=optimizer)
    history = fit(model, train, val, 3, opt, sched, out_dir=str(tmp_path), resume=str(tmp_path / "checkpoint.npz"),
                  progress=False, log=quiet)
    assert history["epoch"] == [1, 2, 3]
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, straight[key], err_msg=key)


def test_ctrl_c_stops_cleanly_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    model, train, val, opt, sched = setup()
    fit(model, train, val, 1, opt, sched, out_dir=str(tmp_path), progress=False, log=quiet)
    path = tmp_path / "checkpoint.npz"
    before = path.read_bytes()

    calls = {"n": 0}
    real_step = opt.step

    def step_then_interrupt():
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        real_step()

    monkeypatch.setattr(opt, "step", step_then_interrupt)
    messages = []
    history = fit(model, train, val, 3, opt, sched, out_dir=str(tmp_path), resume=str(path), progress=False,
                  log=messages.append)
    assert history["interrupted"] is True
    assert any("interrupted during epoch 2" in m and "epoch 1" in m for m in messages)
    assert path.read_bytes() == before  # the last good checkpoint, untouched
    assert load_checkpoint(path, model=CifarResNet(1, 3, 1)).epoch == 1
    assert [f for f in os.listdir(tmp_path) if f.endswith(".tmp")] == []


def test_nan_loss_stops_with_advice_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    model, train, val, opt, sched = setup(lr=0.05)
    fit(model, train, val, 1, opt, sched, out_dir=str(tmp_path), progress=False, log=quiet)
    path = tmp_path / "checkpoint.npz"
    before = path.read_bytes()

    calls = {"n": 0}
    real_forward = model.fc.forward

    def diverging_forward(x):  # what a too-high learning rate does a few steps in
        calls["n"] += 1
        out = real_forward(x)
        return out * np.inf if calls["n"] == 3 else out

    monkeypatch.setattr(model.fc, "forward", diverging_forward)
    # (inf - inf in the loss warns, as NumPy does; the command line silences it: tests/test_faults_numeric.py)
    with pytest.raises(TrainingDiverged) as info, np.errstate(invalid="ignore"):
        fit(model, train, val, 3, opt, sched, out_dir=str(tmp_path), resume=str(path), progress=False, log=quiet)
    message = str(info.value)
    assert "NaN or infinite" in message and "epoch 2, step 3" in message and "lower learning rate" in message
    assert str(path) in message and "(epoch 1)" in message
    assert path.read_bytes() == before


def test_resume_refuses_a_checkpoint_of_another_architecture(tmp_path):
    other = resnet20(num_classes=3, in_channels=1)
    opt = SGD(other.parameters(), lr=0.1)
    save_checkpoint(tmp_path / "other.npz", other, opt, epoch=1)
    model, train, val, opt, sched = setup()
    with pytest.raises(ValueError) as info:
        fit(model, train, val, 2, opt, sched, resume=str(tmp_path / "other.npz"), progress=False, log=quiet)
    assert "other.npz" in str(info.value) and "unexpected keys: layer1.1.conv1.weight" in str(info.value)


def test_resume_refuses_another_optimizer(tmp_path):
    model, train, val, opt, sched = setup()
    fit(model, train, val, 1, opt, sched, out_dir=str(tmp_path), progress=False, log=quiet)
    model, train, val, opt, sched = setup(optimizer="adam", lr=1e-3)
    with pytest.raises(ValueError, match="trained with '?SGD'?, not Adam"):
        fit(model, train, val, 2, opt, sched, resume=str(tmp_path / "checkpoint.npz"), progress=False, log=quiet)


def test_evaluate_counts_correct_predictions():
    model, _, val, _, _ = setup()
    loss, acc = evaluate(model, val)
    assert model.training  # evaluate runs in eval mode, then puts the model back in train mode
    model.eval()
    xs, ys = zip(*list(val))
    preds = np.concatenate([model(x).argmax(axis=1) for x in xs])
    assert acc == pytest.approx((preds == np.concatenate(ys)).mean())


def test_a_training_loader_with_no_batch_is_a_clear_error_not_a_division_by_zero():
    model, _, val, opt, sched = setup()
    fewer_than_a_batch = DataLoader(bars_dataset(8), batch_size=16, shuffle=True, drop_last=True)
    with pytest.raises(ValueError, match="yields no batch .* lower the batch size"):
        fit(model, fewer_than_a_batch, val, 1, opt, sched, progress=False, log=quiet)


def test_the_log_names_the_evaluated_images_as_told():
    model, train, val, opt, sched = setup()
    lines = []
    fit(model, train, val, 1, opt, sched, progress=False, log=lines.append, val_name="held-out")
    assert "held-out loss" in lines[-1] and "held-out acc" in lines[-1] and "val" not in lines[-1]


def test_fit_refuses_a_world_that_is_not_the_models():
    from resnet_np.distributed import World
    two_ranks = World()
    two_ranks.size = 2  # a plain model, but fit told that two processes share it
    model, train, val, opt, sched = setup()
    with pytest.raises(ValueError, match="pass world=model.world"):
        fit(model, train, val, 1, opt, sched, progress=False, log=quiet, world=two_ranks)
