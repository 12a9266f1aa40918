"""The command line: help, clear errors, and a real (tiny) training run that resumes exactly."""

import numpy as np
import pytest

from resnet_np import train as train_module
from resnet_np.__main__ import build_parser, main
from resnet_np.checkpoint import load_checkpoint

from _mnist import needs_mnist


def test_train_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for option in ("--dataset", "--model", "--epochs", "--batch-size", "--optimizer", "--lr", "--backend", "--out",
                   "--resume", "--schedule", "--train-size", "--seed"):
        assert option in text, option
    action_helps = [a.help for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions]
    assert all(action_helps), "every option of train has a help text"


def test_unknown_model_is_a_bad_argument(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--model", "resnet19", "--data", "/nonexistent"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown --model 'resnet19'" in err and "resnet20" in err and "resnet18" in err
    assert err.count("\n") == 1, err  # one line, no usage block


def test_evaluate_a_corrupted_checkpoint_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "checkpoint.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip file")
    assert main(["evaluate", "--checkpoint", str(bad), "--dataset", "mnist"]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "truncated or corrupted" in err


def test_missing_dataset_offline_says_which_files_go_where(tmp_path, capsys, monkeypatch):
    from resnet_np.data import datasets
    monkeypatch.setitem(datasets.DATASETS["mnist"], "mirrors", ["http://127.0.0.1:9/"])  # nothing listens there
    assert main(["train", "--data", str(tmp_path), "--epochs", "1"]) == 1
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte.gz" in err and str(tmp_path / "mnist") in err


TINY = ["--dataset", "mnist", "--model", "resnet20", "--train-size", "256", "--test-size", "200",
        "--batch-size", "64", "--warmup-steps", "2", "--no-progress"]


@needs_mnist
def test_train_interrupt_resume_and_evaluate_on_real_mnist(tmp_path, monkeypatch, capsys):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(["train", *TINY, "--epochs", "2", "--out", str(straight)]) == 0

    real_epoch = train_module._train_one_epoch

    def interrupted_in_epoch_2(*args):
        if args[5] == 1:  # the epoch index
            raise KeyboardInterrupt
        return real_epoch(*args)

    monkeypatch.setattr(train_module, "_train_one_epoch", interrupted_in_epoch_2)
    assert main(["train", *TINY, "--epochs", "2", "--out", str(resumed)]) == 130
    assert load_checkpoint(resumed / "checkpoint.npz").epoch == 1
    monkeypatch.setattr(train_module, "_train_one_epoch", real_epoch)
    assert main(["train", "--resume", str(resumed / "checkpoint.npz")]) == 0

    a = load_checkpoint(straight / "checkpoint.npz")
    b = load_checkpoint(resumed / "checkpoint.npz")
    assert a.epoch == b.epoch == 2 and a.history["val_acc"] == b.history["val_acc"]
    for key, value in a.model.state_dict().items():
        np.testing.assert_array_equal(value, b.model.state_dict()[key], err_msg=key)
    assert (resumed / "curves.png").is_file()

    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(resumed / "checkpoint.npz")]) == 0
    out = capsys.readouterr().out
    assert "test accuracy:" in out and "%" in out and "10,000 mnist test images" in out


@needs_mnist
def test_short_run_on_real_mnist_reaches_98_percent():
    """A few minutes of the real thing: ResNet-20, 40,000 training images, one epoch, all 10,000 test images.

    (The full run, 99.5 %, is benchmarks/mnist_accuracy.py: it takes an hour on two cores.)"""
    from resnet_np import backend
    from resnet_np.data import DataLoader, load_dataset
    from resnet_np.models import resnet20
    from resnet_np.optim import SGD, CosineAnnealingLR, LinearWarmup
    from resnet_np.train import evaluate, fit

    backend.manual_seed(0)
    train = load_dataset("mnist", train=True).subset(range(40000))
    test = load_dataset("mnist", train=False)
    model = resnet20(num_classes=10, in_channels=1)
    loader = DataLoader(train, batch_size=128, shuffle=True, drop_last=True, seed=0)
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    sched = LinearWarmup(opt, warmup_steps=30, start_factor=0.1,
                         after=CosineAnnealingLR(opt, T_max=len(loader) - 30))
    fit(model, loader, None, 1, opt, sched, progress=False, log=lambda *a: None)
    _, accuracy = evaluate(model, DataLoader(test, batch_size=500, shuffle=False))
    print(f"test accuracy after one short epoch: {accuracy:.2%}")
    assert accuracy >= 0.98
