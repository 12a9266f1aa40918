"""The command line: help, clear errors, and a real (tiny) training run that resumes exactly."""

import os
import pathlib
import re

import numpy as np
import pytest

from resnet_np import cli
from resnet_np import train as train_module
from resnet_np.__main__ import build_parser, main
from resnet_np.checkpoint import load_checkpoint

from _mnist import needs_mnist

DATA = os.environ.get("RESNET_NP_DATA")
CIFAR_PNG = ("cifar10-png-test.tar.gz", "cifar10-png-train-1.tar.gz", "cifar10-png-train-2.tar.gz")
HAVE_CIFAR = bool(DATA) and ((pathlib.Path(DATA) / "cifar10" / "cifar-10-python.tar.gz").is_file()
                             or all((pathlib.Path(DATA) / "cifar10" / name).is_file() for name in CIFAR_PNG))
needs_cifar = pytest.mark.skipif(not HAVE_CIFAR, reason="CIFAR-10 not found: set RESNET_NP_DATA")


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


# -- values checked where they are parsed ------------------------------------------------------------

def one_line_error(capsys, argv, status):
    """Run ``argv``; assert the exit status, a single line on stderr and no traceback; return that line."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == status, (argv, code, err)
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("bad", [
    ["train", "--epochs", "0"], ["train", "--epochs", "-3"], ["train", "--epochs", "1.5"],
    ["train", "--train-size", "0"], ["train", "--test-size", "0"], ["train", "--batch-size", "0"],
    ["train", "--lr", "0"], ["train", "--lr", "-0.1"], ["train", "--lr", "nan"], ["train", "--lr", "inf"],
    ["train", "--momentum", "1"], ["train", "--weight-decay", "-1e-4"], ["train", "--warmup-steps", "-1"],
    ["train", "--seed", "-1"], ["train", "--image-size", "0"], ["train", "--image-size", "100000"],
    ["train", "--val-fraction", "0"], ["finetune", "--weights", "cifar10", "--head-lr", "0"],
    ["finetune", "--weights", "cifar10", "--backbone-lr", "-1"], ["finetune", "--weights", "cifar10",
                                                                  "--train-per-class", "0"],
    ["finetune", "--weights", "cifar10", "--classes", "9-5"], ["finetune", "--weights", "nope"],
    ["evaluate", "--weights", "cifar10", "--batch-size", "0"], ["predict", "--weights", "cifar10", "--top", "0", "x"],
    ["demo", "--steps", "0"], ["train", "--model", "resnet21"],
])
def test_bad_values_are_refused_where_parsed_in_one_line(bad, capsys):
    err = one_line_error(capsys, bad, 2)
    assert "error: argument" in err and "--help" in err


def test_help_shows_no_markup_and_lists_every_shipped_weight(capsys):
    from resnet_np.models import pretrained
    for command in ([], ["evaluate"], ["finetune"], ["predict"]):
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        text = capsys.readouterr().out
        assert "``" not in text and ":func:" not in text, command
        if command:
            for _, name in pretrained.names():
                assert name in text, (command, name)


def test_recorded_settings_come_from_the_parser():
    args = build_parser().parse_args(["train", "--epochs", "3"])
    assert set(args.recorded) == {"dataset", "image_size", "val_fraction", "model", "shortcut", "epochs",
                                  "batch_size", "optimizer", "lr", "momentum", "weight_decay", "label_smoothing",
                                  "schedule", "warmup_steps", "augment", "train_size", "test_size", "seed"}
    settings = cli.settings_from_args(args)
    assert settings["epochs"] == 3 and settings["batch_size"] == 128 and settings["lr"] == 0.1
    assert cli._given(args) == {"epochs": 3}
    tuned = build_parser().parse_args(["finetune", "--weights", "cifar10"])
    assert {"freeze", "head_lr", "classes", "epochs"} <= set(tuned.recorded) and tuned.recorded["epochs"] == 5
    # The shared options are one definition: the same help text in both commands.
    helps = [{a.dest: a.help for a in build_parser()._subparsers._group_actions[0].choices[c]._actions}
             for c in ("train", "finetune")]
    for dest in ("batch_size", "schedule", "augment", "train_size", "seed", "data", "out"):
        assert helps[0][dest].split(" (default")[0] == helps[1][dest].split(" (default")[0], dest


# -- what a small folder, a careless --out, a bug give ----------------------------------------------

def tiny_folder(root, classes=("left", "right"), per_class=6, size=8):
    from PIL import Image
    rng = np.random.default_rng(0)
    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
            pixels[:, label * size // 2:(label + 1) * size // 2] += 150
            Image.fromarray(pixels).save(root / name / f"{i:02d}.png")
    return root


FOLDER_RUN = ["--model", "resnet20", "--image-size", "8", "--batch-size", "4", "--no-progress"]


def test_a_folder_smaller_than_one_batch_is_a_message(tmp_path, capsys):
    folder = tiny_folder(tmp_path / "photos")
    err = one_line_error(capsys, ["train", "--dataset", f"folder:{folder}", *FOLDER_RUN, "--batch-size", "64",
                                  "--out", str(tmp_path / "out")], 1)
    assert "--batch-size 64 is more than the 10 training images" in err and "lower --batch-size" in err


def test_a_one_class_folder_is_refused(tmp_path, capsys):
    folder = tiny_folder(tmp_path / "photos", classes=("cat",))
    err = one_line_error(capsys, ["train", "--dataset", f"folder:{folder}", *FOLDER_RUN], 1)
    assert "a classifier needs two or more" in err and "cat" in err


def test_out_naming_a_file_is_a_message(tmp_path, capsys):
    (tmp_path / "taken").write_text("not a folder")
    err = one_line_error(capsys, ["train", "--out", str(tmp_path / "taken"), "--data", str(tmp_path)], 2)
    assert "is a file, not a folder" in err


def test_a_bug_shows_its_traceback_and_asks_for_a_report(monkeypatch, capsys):
    def broken(args):
        return {}["missing"]  # a KeyError: no user can cause it

    monkeypatch.setattr(cli, "train_command", broken)
    assert main(["train"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "KeyError" in err and "this is a bug in resnet_np" in err and "report" in err


def test_a_value_error_of_numpy_is_a_bug_but_one_of_resnet_np_is_a_message(monkeypatch, capsys):
    monkeypatch.setattr(cli, "train_command", lambda args: np.zeros(3).reshape(2, 2))
    assert main(["train"]) == 1
    assert "this is a bug in resnet_np" in capsys.readouterr().err

    from resnet_np.finetune import parse_classes
    monkeypatch.setattr(cli, "train_command", lambda args: parse_classes("five"))  # raised on purpose, in resnet_np
    assert one_line_error(capsys, ["train"], 1).startswith("error: cannot read the classes 'five'")


# -- short runs as a learner expects -----------------------------------------------------------------

def test_warmup_is_at_most_a_quarter_of_the_run():
    from resnet_np.module import Parameter
    from resnet_np.optim import SGD
    settings = {"warmup_steps": 100, "schedule": "cosine"}
    assert cli.warmup_steps(settings, 15) == 3 and cli.warmup_steps(settings, 10_000) == 100
    optimizer = SGD([Parameter(np.zeros(1))], lr=0.1)
    scheduler = cli.build_scheduler(settings, optimizer, 15)
    rates = []
    for _ in range(15):
        rates.append(optimizer.param_groups[0]["lr"])
        scheduler.step()
    assert max(rates) == pytest.approx(0.1, rel=0.05)  # the run reaches its learning rate (100 steps: 0.023)
    assert sum(r > 0.05 for r in rates) >= 7


def test_a_short_folder_run_says_its_warmup_names_the_held_out_split_and_resumes_honestly(tmp_path, monkeypatch,
                                                                                         capsys):
    from resnet_np import train as train_module
    folder = tiny_folder(tmp_path / "photos")
    named = []
    real_save_curves = train_module.save_curves
    monkeypatch.setattr(train_module, "save_curves", lambda h, p, val_name="val": (named.append(val_name),
                                                                                   real_save_curves(h, p, val_name)))
    out = tmp_path / "run"
    assert main(["train", "--dataset", f"folder:{folder}", *FOLDER_RUN, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "2 steps of 4 images, 0 warm-up step(s) (not --warmup-steps 100: at most a quarter of the run)" in text
    assert "held-out loss" in text and "held-out accuracy:" in text and " val " not in text
    assert named == ["held-out"]
    checkpoint = str(out / "checkpoint.npz")
    # A finished run asked for more epochs: refused, with what to do instead.
    err = one_line_error(capsys, ["train", "--resume", checkpoint, "--epochs", "2"], 2)
    assert "--epochs 2 (the run's: 1)" in err and "finetune --from" in err
    # Resumed as it is: nothing to do, said so, and no claim of a new checkpoint.
    assert main(["train", "--resume", checkpoint]) == 0
    assert "finished its 1 epoch(s) already: nothing left to resume" in capsys.readouterr().out


# -- evaluate and the confusion table ----------------------------------------------------------------

def test_the_confusion_table_keeps_whole_class_names():
    from resnet_np.confusion import format_matrix
    table = format_matrix(np.array([[5, 1], [0, 7]]), ["airplane", "automobile"])
    assert "automobile" in table.splitlines()[0] and table.splitlines()[2].startswith("automobile ")


@needs_cifar
def test_evaluate_the_eight_class_weights_on_their_eight_classes(monkeypatch, tmp_path, capsys):
    real = cli.load_splits

    def first_images(settings, root, train=True):  # the first 1,000 test images: enough, and quick
        train_set, test_set = real(settings, root, train)
        return train_set, test_set.subset(range(1000))

    monkeypatch.setattr(cli, "load_splits", first_images)
    assert main(["evaluate", "--weights", "cifar10-8classes", "--figure", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    accuracy = float(re.search(r"test accuracy: ([\d.]+)% on the (\d+) cifar10 test images", out).group(1))
    assert accuracy > 80  # its file says 86.14 % on the 8,000 test images of its classes
    rows = [line.split()[0] for line in out.splitlines() if line.endswith("%") and "accuracy" not in line]
    assert rows == ["airplane", "automobile", "bird", "deer", "frog", "horse", "ship", "truck"]


# -- the "What can go wrong" page quotes real messages ------------------------------------------------

def page_examples():
    """(command line, first line of the message, exit status) of each console example of the page."""
    page = (pathlib.Path(__file__).resolve().parent.parent / "docs" / "troubleshooting.md").read_text()
    examples = []
    for block in re.findall(r"```console\n(.*?)```", page, re.S):
        lines = block.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("$ python -m resnet_np "):
                assert lines[i + 2] == "$ echo $?", lines[i:i + 4]
                examples.append((line[len("$ python -m resnet_np "):], lines[i + 1], int(lines[i + 3])))
    return examples


def test_the_troubleshooting_page_quotes_what_the_commands_print(tmp_path, monkeypatch, capsys):
    import shlex
    examples = page_examples()
    assert len(examples) >= 10
    monkeypatch.chdir(tmp_path)
    tiny_folder(tmp_path / "photos", classes=("cat", "dog"))
    tiny_folder(tmp_path / "one-class", classes=("cat",))
    (tmp_path / "notes.txt").write_text("a text file")
    (tmp_path / "w.pth").write_bytes(b"")
    assert main(["train", "--dataset", "folder:photos", *FOLDER_RUN, "--out", "runs/photos"]) == 0
    for command, message, status in examples:
        capsys.readouterr()
        try:
            code = main(shlex.split(command))
        except SystemExit as e:
            code = e.code
        printed = capsys.readouterr().err.replace(f"{tmp_path}{os.sep}", "").splitlines()[0]
        assert code == status, (command, code, printed)
        if message.endswith("…"):
            assert printed.startswith(message[:-1]), (command, printed)
        else:
            assert printed == message, (command, printed)


def test_ctrl_c_in_the_first_checkpoint_write_claims_no_checkpoint(tmp_path, monkeypatch, capsys):
    folder = tiny_folder(tmp_path / "photos")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "save_checkpoint", interrupted)
    assert main(["train", "--dataset", f"folder:{folder}", *FOLDER_RUN, "--out", str(tmp_path / "run")]) == 130
    out = capsys.readouterr().out
    assert "interrupted during epoch 1" in out
    assert "checkpoint:" not in out and "last good checkpoint" not in out, out


def test_a_network_is_never_scored_or_resumed_against_other_classes(tmp_path, capsys):
    """A folder's classes renamed since training: evaluate refuses (output 0 would be scored as another class)
    and --resume refuses (the outputs would change meaning); the same folder still evaluates."""
    import shutil
    folder = tiny_folder(tmp_path / "photos")
    out = tmp_path / "run"
    assert main(["train", "--dataset", f"folder:{folder}", *FOLDER_RUN, "--out", str(out)]) == 0
    capsys.readouterr()
    checkpoint = out / "checkpoint.npz"
    shifted = tmp_path / "shifted"
    shutil.copytree(folder, shifted)
    (shifted / "left").rename(shifted / "middle")           # classes: middle, right (was left, right)
    err = one_line_error(capsys, ["evaluate", "--checkpoint", str(checkpoint), "--dataset", f"folder:{shifted}",
                                  "--figure", str(tmp_path / "c.png")], 1)
    assert "the network's classes are left, right, but" in err and "middle, right" in err, err
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--figure", str(tmp_path / "c.png")]) == 0
    capsys.readouterr()
    (folder / "left").rename(folder / "middle")
    err = one_line_error(capsys, ["train", "--resume", str(checkpoint)], 1)
    assert "the run was trained on the classes left, right" in err and "middle, right" in err, err
    err = one_line_error(capsys, ["train", "--resume", str(out)], 2)
    assert f"--resume {out} is a folder: name the checkpoint.npz in it" in err, err


def test_an_evaluation_on_images_of_other_channels_says_so(tmp_path, capsys):
    """An MNIST network (1 channel) evaluated on a folder of colour images: named, not a layer's message."""
    folder = tiny_folder(tmp_path / "photos")
    from resnet_np.models import resnet20, save
    save(resnet20(num_classes=2, in_channels=1), tmp_path / "gray.npz")
    err = one_line_error(capsys, ["evaluate", "--checkpoint", str(tmp_path / "gray.npz"), "--dataset",
                                  f"folder:{folder}", "--figure", str(tmp_path / "c.png")], 1)
    assert "takes images of 1 channel(s), but" in err and "have 3" in err and "--dataset" in err, err


def test_an_out_or_figure_that_cannot_be_made_is_refused_before_the_work(tmp_path, capsys):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    err = one_line_error(capsys, ["train", "--train-size", "8", "--out", str(blocker / "run")], 2)
    assert f"--out {blocker / 'run'}: cannot create the folder" in err and "training" not in err, err
    folder = tiny_folder(tmp_path / "photos")
    out = tmp_path / "run"
    assert main(["train", "--dataset", f"folder:{folder}", *FOLDER_RUN, "--out", str(out)]) == 0
    capsys.readouterr()
    err = one_line_error(capsys, ["evaluate", "--checkpoint", str(out / "checkpoint.npz"), "--figure",
                                  str(blocker / "c.png")], 2)
    assert "--figure" in err and "cannot create its folder" in err and "accuracy" not in err, err
