"""Every file this library writes, read back by every reader it has: a result, or one line saying why not.

The writers: ``train`` (a training checkpoint), ``finetune`` (its own
checkpoint), ``models.save`` (a model file) and ``save_torch_state_dict``
(a PyTorch state dict). The readers: the commands ``evaluate``,
``finetune --from``, ``train --resume`` and ``predict``, and the library's
``models.load``, ``load_checkpoint`` and ``load_torch_state_dict``. Each
pair either works (where it is meant to: ``MUST_WORK``) or ends with exit
status 1 or 2 and one ``error:`` line naming the file — never a traceback.
"""

import os

import numpy as np
import pytest
from PIL import Image
from test_image_folder import tiny_folder

from resnet_np.__main__ import main
from resnet_np.checkpoint import load_checkpoint
from resnet_np.models import load, load_torch_state_dict, resnet20, save, save_torch_state_dict

COMMON = ["--batch-size", "8", "--image-size", "8", "--no-progress"]

# (format, reader) pairs that must give a result; every other pair must be refused in one line.
MUST_WORK = {
    ("checkpoint", "evaluate"), ("checkpoint", "finetune"), ("checkpoint", "predict"), ("checkpoint", "resume"),
    ("checkpoint", "models.load"), ("checkpoint", "load_checkpoint"),
    ("finetuned", "evaluate"), ("finetuned", "finetune"), ("finetuned", "predict"), ("finetuned", "models.load"),
    ("finetuned", "load_checkpoint"),
    ("model", "evaluate"), ("model", "finetune"), ("model", "models.load"),
    ("pth", "finetune"), ("pth", "load_torch_state_dict"),
}
FORMATS = ("checkpoint", "finetuned", "model", "pth")
READERS = ("evaluate", "finetune", "resume", "predict", "models.load", "load_checkpoint", "load_torch_state_dict")


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One file of each format, and the folder of images they were trained on."""
    root = tmp_path_factory.mktemp("formats")
    images = tiny_folder(root / "photos", per_class=6)
    dataset = ["--dataset", f"folder:{images}"]
    assert main(["train", *dataset, *COMMON, "--warmup-steps", "1", "--epochs", "1", "--out", str(root / "run")]) == 0
    checkpoint = str(root / "run" / "checkpoint.npz")
    assert main(["finetune", "--from", checkpoint, *dataset, *COMMON, "--val-fraction", "0.5", "--epochs", "1",
                 "--out", str(root / "ft")]) == 0
    model = load(checkpoint)
    save(model, root / "model.npz")
    torch = pytest.importorskip("torch")
    del torch
    save_torch_state_dict(model, root / "model.pth")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "one.png")
    files = {"checkpoint": checkpoint, "finetuned": str(root / "ft" / "checkpoint.npz"),
             "model": str(root / "model.npz"), "pth": str(root / "model.pth")}
    return root, images, files


def command(reader, path, images, root, out):
    dataset = ["--dataset", f"folder:{images}"]
    if reader == "evaluate":
        return ["evaluate", "--checkpoint", path, *dataset, "--figure", str(out / "confusion.png")]
    if reader == "finetune":
        model = ["--model", "resnet20"] if path.endswith(".pth") else []
        return ["finetune", "--from", path, *model, *dataset, *COMMON, "--epochs", "1", "--out", str(out / "again")]
    if reader == "resume":
        return ["train", "--resume", path]
    return ["predict", "--checkpoint", path, str(root / "one.png")]


def library(reader, path):
    if reader == "models.load":
        return load(path)
    if reader == "load_checkpoint":
        return load_checkpoint(path)
    return load_torch_state_dict(resnet20(num_classes=2), path)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("reader", READERS)
def test_every_format_through_every_reader(written, capsys, tmp_path, fmt, reader):
    root, images, files = written
    path = files[fmt]
    works = (fmt, reader) in MUST_WORK
    if reader in ("models.load", "load_checkpoint", "load_torch_state_dict"):
        if works:
            library(reader, path)
        else:
            with pytest.raises(ValueError) as error:
                library(reader, path)
            assert str(error.value).startswith(path), str(error.value)
            if fmt == "pth":  # not "an .npz archive without __meta__": the file says what it is
                assert "is a PyTorch file (torch.save), not a resnet_np model file" in str(error.value)
        return
    status = main(command(reader, path, images, root, tmp_path))
    out, err = capsys.readouterr()
    if works:
        assert status == 0, err
    else:
        assert status in (1, 2), (status, out, err)
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and os.path.basename(path) in lines[0], err
        if fmt == "pth" and reader != "finetune":
            assert "is a PyTorch file" in err, err
    assert "Traceback" not in err
