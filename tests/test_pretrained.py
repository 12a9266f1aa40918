"""The weights that ship with the package (resnet_np/models/pretrained.py), the confusion matrix
(resnet_np/confusion.py), and ``evaluate --weights`` / ``finetune --weights`` on the command line.

With the real CIFAR-10 (``$RESNET_NP_DATA/cifar10/``), the shipped ResNet-20 must reach the paper's
91.25 % through the command a learner types, and score what its file records.
"""

import os
import pathlib
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from resnet_np.__main__ import main
from resnet_np.backend import to_numpy
from resnet_np.confusion import confusion_matrix, format_matrix, predict
from resnet_np.data import DATASETS, DataLoader, Dataset
from resnet_np.models import pretrained, resnet20, resnet56, weights
from resnet_np.train import evaluate

CIFAR = DATASETS["cifar10"]
PAPER = 0.9125  # He et al. 2016, Table 6: ResNet-20 on CIFAR-10, 8.75 % error

DATA = os.environ.get("RESNET_NP_DATA")
HAVE_CIFAR = bool(DATA) and (
    (pathlib.Path(DATA) / "cifar10" / "cifar-10-python.tar.gz").is_file()
    or all((pathlib.Path(DATA) / "cifar10" / name).is_file() for name in CIFAR["png_md5"]))
needs_cifar = pytest.mark.skipif(not HAVE_CIFAR, reason="CIFAR-10 was not found: set RESNET_NP_DATA to a folder "
                                                        "holding cifar10/ (the official tarball or the PNG archives)")


# -- the shipped file ------------------------------------------------------------------------------

def test_shipped_resnet20_is_the_trained_network_in_eval_mode():
    model = resnet20(weights="cifar10")
    assert model.arch == "resnet20" and model.config["shortcut"] == "A"
    assert not model.training and all(not m.training for m in model.modules())
    assert {str(p.data.dtype) for p in model.parameters()} == {"float32"}
    info = model.weights_info
    assert info["dataset"] == "cifar10" and list(info["classes"]) == list(CIFAR["classes"])
    assert info["mean"] == list(CIFAR["mean"]) and info["std"] == list(CIFAR["std"])
    assert "recipe" in info and "cosine" in info["recipe"] and 0 < info["epochs"] <= info["schedule_epochs"]
    # Eval mode: an image's logits do not depend on the rest of the batch (batch norm uses running stats).
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    alone = to_numpy(model(x[:1]))
    together = to_numpy(model(x))[:1]
    np.testing.assert_allclose(alone, together, rtol=1e-4, atol=1e-5)
    # Trained, not freshly initialised: the running statistics moved away from (0, 1).
    assert float(np.abs(to_numpy(model.bn1.running_mean)).max()) > 0.01
    assert pretrained.info("resnet20", "cifar10") == info


def test_every_shipped_file_matches_its_md5():
    for arch, name in pretrained.names():
        path = pretrained.path_of(arch, name)  # raises on a mismatch
        assert os.path.getsize(path) < 2_000_000, "shipped weights should stay small"
        _, meta = weights.read_state_dict(path)
        assert meta["arch"] == arch and meta["dtype"] == "float32"


@pytest.fixture
def copied_weights(tmp_path, monkeypatch):
    """The shipped folder copied to tmp_path and pointed at, so that a test may damage it."""
    folder = tmp_path / "pretrained"
    shutil.copytree(pretrained.FOLDER, folder)
    monkeypatch.setattr(pretrained, "FOLDER", str(folder))
    return folder / pretrained.SHIPPED[("resnet20", "cifar10")]["file"]


def test_a_damaged_weights_file_is_refused_naming_it_and_both_md5s(copied_weights):
    data = bytearray(copied_weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte deep inside a weight array
    copied_weights.write_bytes(bytes(data))
    with pytest.raises(ValueError) as error:
        resnet20(weights="cifar10")
    message = str(error.value)
    assert str(copied_weights) in message and pretrained.SHIPPED[("resnet20", "cifar10")]["md5"] in message
    assert re.search(r"has MD5 [0-9a-f]{32}", message)


def test_a_missing_weights_file_is_named(copied_weights):
    copied_weights.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(copied_weights))):
        resnet20(weights="cifar10")


def test_unknown_weights_and_a_different_network_are_refused_clearly():
    with pytest.raises(ValueError, match=r"no weights named 'imagenet' ship for resnet20.*\(weights='cifar10'\)"):
        resnet20(weights="imagenet")
    with pytest.raises(ValueError, match="no weights named 'cifar10' ship for resnet56"):
        resnet56(weights="cifar10")
    with pytest.raises(ValueError, match=r"num_classes=5 \(the file's: 10\).*reset_classifier"):
        resnet20(num_classes=5, weights="cifar10")
    with pytest.raises(ValueError, match=r"shortcut='B' \(the file's: 'A'\)"):
        resnet20(shortcut="B", weights="cifar10")


# -- the confusion matrix --------------------------------------------------------------------------

def test_confusion_matrix_counts_true_rows_against_predicted_columns():
    labels = np.array([0, 0, 1, 2, 2, 2])
    guesses = np.array([0, 1, 1, 2, 0, 2])
    matrix = confusion_matrix(labels, guesses, 3)
    np.testing.assert_array_equal(matrix, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])  # a transposed matrix fails
    assert matrix.dtype == np.int64
    text = format_matrix(matrix, ["cat", "dog", "frog"])
    assert text.splitlines()[1].split() == ["cat", "1", "1", "0", "50.0%"]
    assert text.splitlines()[3].split() == ["frog", "1", "0", "2", "66.7%"]
    with pytest.raises(ValueError, match="labels must lie in 0..2"):
        confusion_matrix(np.array([3]), np.array([0]), 3)
    with pytest.raises(ValueError, match=r"shapes \(2,\) and \(3,\)"):
        confusion_matrix(np.zeros(2, int), np.zeros(3, int), 3)


def test_predict_gives_each_images_argmax_in_order_and_restores_train_mode():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (7, 3, 32, 32), dtype=np.uint8)
    data = Dataset(images, rng.integers(0, 10, 7), CIFAR["classes"], CIFAR["mean"], CIFAR["std"])
    model = resnet20()
    model.train()
    labels, guesses, loss = predict(model, DataLoader(data, batch_size=3, shuffle=False))
    assert model.training
    np.testing.assert_array_equal(labels, data.labels)
    # The same loss as evaluate's, batches of 3, 3 and 1 weighted by their sizes.
    assert loss == pytest.approx(evaluate(model, DataLoader(data, batch_size=3, shuffle=False))[0], rel=1e-6)
    model.eval()
    x, _ = next(iter(DataLoader(data, batch_size=7, shuffle=False)))
    np.testing.assert_array_equal(guesses, to_numpy(model(x)).argmax(axis=1))


# -- the command line ------------------------------------------------------------------------------

SHIPPED = pretrained.info("resnet20", "cifar10")


def test_the_shipped_weights_record_the_papers_accuracy():
    # The file is the finished run's (a run still under way records complete: False and must not ship).
    assert SHIPPED["complete"] and SHIPPED["epochs"] == SHIPPED["schedule_epochs"], SHIPPED
    assert SHIPPED["test_accuracy"] >= PAPER, f"{SHIPPED['test_accuracy']:.2%}"


@needs_cifar
def test_evaluate_the_shipped_weights_scores_what_their_file_records(tmp_path, capsys):
    figure = tmp_path / "confusion.png"
    assert main(["evaluate", "--model", "resnet20", "--weights", "cifar10", "--dataset", "cifar10",
                 "--figure", str(figure)]) == 0
    out = capsys.readouterr().out
    printed = re.search(r"test accuracy: ([\d.]+)% on the 10,000 cifar10 test images \(loss", out)
    accuracy = float(printed.group(1)) / 100
    assert accuracy == pytest.approx(SHIPPED["test_accuracy"], abs=1e-4)
    assert accuracy >= PAPER  # the paper's ResNet-20, measured here, not only read from the file
    rows = [line.split() for line in out.splitlines() if line.split()[:1] and line.split()[0] in ("airplane", "cat")]
    assert len(rows) == 2 and sum(int(v) for v in rows[0][1:11]) == 1000  # a row: the 1,000 airplanes
    assert Image.open(figure).size[0] > 300


def _write_folder(root, per_class=6):
    """Two classes of small random photos, one of them brighter: a folder the CLI can read."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(("dark", "light")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 128, (20, 24, 3)) + 100 * c
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i}.png")
    return root


def test_finetune_from_the_shipped_weights_uses_their_normalisation(tmp_path, capsys):
    folder = _write_folder(tmp_path / "photos")
    out = tmp_path / "ft"
    assert main(["finetune", "--weights", "cifar10", "--dataset", f"folder:{folder}", "--epochs", "1",
                 "--batch-size", "4", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "inputs normalised as the weights were trained: mean (0.4914, 0.4822, 0.4465)" in printed
    state, meta = weights.read_state_dict(out / "checkpoint.npz")
    config = meta["training"]["config"]
    assert config["weights"] == "cifar10" and config["model"] == "resnet20"
    assert config["mean"] == list(CIFAR["mean"]) and config["std"] == list(CIFAR["std"])
    # The backbone came from the shipped file: its first convolution is frozen, so unchanged.
    np.testing.assert_array_equal(state["conv1.weight"], to_numpy(resnet20(weights="cifar10").conv1.weight.data))
    # evaluate reads the same held-out images, normalised the same way, and draws the matrix beside the checkpoint.
    assert main(["evaluate", "--checkpoint", str(out / "checkpoint.npz")]) == 0
    assert "held-out images of folder:" in capsys.readouterr().out
    assert (out / "confusion.png").is_file()


def test_weights_and_from_exclude_each_other_and_unknown_names_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["finetune", "--weights", "cifar10", "--from", "x.npz"])
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # a bad argument: refused where it is parsed, exit status 2
        main(["evaluate", "--weights", "imagenet"])
    assert exit_.value.code == 2
    assert "no weights named 'imagenet' ship with resnet_np; what ships: --model resnet20 --weights cifar10" in \
        capsys.readouterr().err
    assert main(["evaluate", "--weights", "cifar10", "--model", "resnet56"]) == 2
    assert "no weights named 'cifar10' ship for resnet56" in capsys.readouterr().err
