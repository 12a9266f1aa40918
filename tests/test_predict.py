"""python -m resnet_np predict: new image files, classified as the network's training images were seen."""

import os
import pathlib
import re
import tarfile

import numpy as np
import pytest
from PIL import Image

from resnet_np.__main__ import main
from resnet_np.data import DataLoader, load_dataset
from resnet_np.models import resnet20
from resnet_np.predict import softmax

DATA = os.environ.get("RESNET_NP_DATA")
TEST_ARCHIVE = pathlib.Path(DATA or "/nonexistent") / "cifar10" / "cifar10-png-test.tar.gz"
needs_cifar_png = pytest.mark.skipif(not TEST_ARCHIVE.is_file(),
                                     reason="the CIFAR-10 PNG archives were not found: set RESNET_NP_DATA")
LINE = re.compile(r"^(.*): (\S+) ([\d.]+)%, (\S+) ([\d.]+)%, (\S+) ([\d.]+)%$")


def cifar_pngs(folder, per_class=2):
    """The first ``per_class`` test PNGs of each class, copied out of the archive: [(path, class, index)]."""
    found = {}
    with tarfile.open(TEST_ARCHIVE) as archive:
        for member in archive:
            parts = member.name.split("/")
            if not (member.isfile() and member.name.endswith(".png") and "test" in parts):
                continue
            name = parts[-2]
            if len(found.setdefault(name, [])) < per_class:
                path = folder / parts[-1]
                path.write_bytes(archive.extractfile(member).read())
                found[name].append((str(path), name, int(parts[-1].split("_")[0])))
            if len(found) == 10 and all(len(v) == per_class for v in found.values()):
                break
    return [item for name in sorted(found) for item in found[name]]


def predictions(out):
    """{path: [(class, percent), ...]} from predict's output."""
    result = {}
    for line in out.splitlines():
        match = LINE.match(line)
        assert match, line
        groups = match.groups()
        result[groups[0]] = [(groups[i], float(groups[i + 1])) for i in (1, 3, 5)]
    return result


@needs_cifar_png
def test_the_shipped_weights_classify_cifar10_test_images(tmp_path, capsys):
    images = cifar_pngs(tmp_path)
    assert main(["predict", "--weights", "cifar10", *[path for path, _, _ in images]]) == 0
    ranked = predictions(capsys.readouterr().out)
    right = sum(ranked[path][0][0] == name for path, name, _ in images)
    assert right >= 18, ranked  # 20 images; the weights score 91.75 % on all 10,000
    for top in ranked.values():
        assert top[0][1] >= top[1][1] >= top[2][1] and sum(p for _, p in top) <= 100.05


@needs_cifar_png
def test_predict_normalises_as_training_did(tmp_path, capsys):
    """The probabilities printed are the network's on the very test-set tensors its DataLoader makes."""
    images = cifar_pngs(tmp_path, per_class=1)
    assert main(["predict", "--weights", "cifar10", "--top", "1", *[path for path, _, _ in images]]) == 0
    printed = {line.split(": ")[0]: float(line.rsplit(" ", 1)[1][:-1]) for line in capsys.readouterr().out.split("\n")
               if line}
    test_set = load_dataset("cifar10", train=False).subset([index for _, _, index in images])
    x, _ = next(iter(DataLoader(test_set, batch_size=len(images), shuffle=False)))
    expected = softmax(np.asarray(resnet20(weights="cifar10")(x), dtype=np.float64)).max(axis=1)
    for (path, _, _), p in zip(images, expected):
        assert printed[path] == pytest.approx(100 * p, abs=0.051), path


def test_predict_with_a_checkpoint_of_a_folder_run(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for label, name in enumerate(("left", "right")):
        (tmp_path / "photos" / name).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 80, (12, 12, 3), dtype=np.uint8)
            pixels[:, label * 6:(label + 1) * 6] += 150
            Image.fromarray(pixels).save(tmp_path / "photos" / name / f"{i}.png")
    assert main(["train", "--dataset", f"folder:{tmp_path / 'photos'}", "--image-size", "8", "--batch-size", "4",
                 "--no-progress", "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    new = tmp_path / "new.png"
    Image.fromarray(rng.integers(0, 255, (30, 20, 3), dtype=np.uint8)).save(new)  # another size: resized
    assert main(["predict", "--checkpoint", str(tmp_path / "run" / "checkpoint.npz"), "--top", "2", str(new)]) == 0
    line = capsys.readouterr().out.strip()
    assert re.fullmatch(rf"{re.escape(str(new))}: (left|right) [\d.]+%, (left|right) [\d.]+%", line), line


def test_bad_image_paths_are_one_line(tmp_path, capsys):
    (tmp_path / "words.png").write_text("not an image")
    (tmp_path / "folder.png").mkdir()
    for path, what in ((tmp_path / "missing.png", "cannot be opened"), (tmp_path / "folder.png", "not a regular file"),
                       (tmp_path / "words.png", "words.png")):
        assert main(["predict", "--weights", "cifar10", str(path)]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err and str(path) in err and what in err, err
    with pytest.raises(SystemExit) as exit_:
        main(["predict", "--weights", "cifar10"])  # no image at all
    assert exit_.value.code == 2
    assert main(["predict", "--checkpoint", str(tmp_path), str(tmp_path / "words.png")]) == 2
    assert "is a folder" in capsys.readouterr().err
