"""Folders of your own images: torchvision's ImageFolder rules, every image as RGB, clear errors, the CLI.

The folders are made here with Pillow, with the awkward cases real folders
have: upper-case extensions, grayscale, palette and RGBA images, a text
file among the images, images in a deeper folder, damaged files, an empty
class. The expected pixels are always Pillow's own ``convert("RGB")``.
"""

import io
import os

import numpy as np
import pytest
from PIL import Image

from resnet_np import cli
from resnet_np import train as train_module
from resnet_np.__main__ import main
from resnet_np.checkpoint import load_checkpoint, read_training_config
from resnet_np.data import Dataset, ImageFolder, split_per_class
from resnet_np.data.folder import channel_stats

RNG = np.random.default_rng(0)


def noise(height, width, channels=3, seed=0):
    shape = (height, width) if channels == 1 else (height, width, channels)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def save(path, image, **kwargs):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image.save(path, **kwargs)


def odd_folder(root):
    """A folder of awkward but valid cases; returns the image paths in the order ImageFolder must list them."""
    palette = Image.fromarray(noise(6, 5, 1, seed=3) % 16).convert("P")
    palette.putpalette(list(noise(16, 3, 1, seed=4).ravel()) + [0] * (768 - 48))
    files = {
        # "Zebra" sorts before "ant": sorted() is by code point, as in torchvision.
        "Zebra/b.PNG": Image.fromarray(noise(4, 6, seed=1)),
        "Zebra/a.JPG": Image.fromarray(noise(8, 8, seed=2)),
        "ant/gray.png": Image.fromarray(noise(5, 7, 1, seed=5)),  # mode L
        "ant/palette.gif": palette,                               # mode P
        "ant/rgba.png": Image.fromarray(noise(3, 4, 4, seed=6)),  # mode RGBA
        "ant/z.tif": Image.fromarray(noise(2, 3, seed=7)),
        # Deeper folders come after the files of their parent (os.walk order), though "sub/0" < "z", and
        # sorted by path among themselves whatever order the file system lists them in.
        "ant/sub/0.jpeg": Image.fromarray(noise(9, 2, seed=8)),
        "ant/sub0/1.png": Image.fromarray(noise(2, 2, seed=9)),
        "ant/sub/inner/2.png": Image.fromarray(noise(2, 2, seed=10)),  # "sub/inner" < "sub0": "/" < "0"
        "ant/sub2/3.png": Image.fromarray(noise(2, 2, seed=11)),
    }
    for name, image in files.items():
        save(os.path.join(root, name), image)
    (root / "ant" / "notes.txt").write_text("not an image")
    (root / "ant" / "data.npy").write_bytes(b"\x93NUMPY")
    (root / "README.md").write_text("a file beside the class folders is not a class")
    order = ["Zebra/a.JPG", "Zebra/b.PNG", "ant/gray.png", "ant/palette.gif", "ant/rgba.png", "ant/z.tif",
             "ant/sub/0.jpeg", "ant/sub/inner/2.png", "ant/sub0/1.png", "ant/sub2/3.png"]
    return [str(root / name) for name in order]


def pillow_rgb(path, size=None):
    """What Pillow itself makes of the file: RGB, optionally resized (bilinear), as (3, H, W)."""
    with Image.open(path) as image:
        image = image.convert("RGB")
    if size is not None:
        image = image.resize((size[1], size[0]), Image.BILINEAR)
    return np.asarray(image).transpose(2, 0, 1)


def test_classes_samples_and_order_follow_torchvision(tmp_path):
    paths = odd_folder(tmp_path)
    folder = ImageFolder(tmp_path)
    assert folder.classes == ["Zebra", "ant"]
    assert folder.class_to_idx == {"Zebra": 0, "ant": 1}
    assert folder.samples == [(path, 0 if "/Zebra/" in path else 1) for path in paths]
    assert len(folder) == 10


def test_every_image_comes_back_as_rgb_uint8_with_pillows_pixels(tmp_path):
    paths = odd_folder(tmp_path)
    folder = ImageFolder(tmp_path)
    modes = set()
    for i, path in enumerate(paths):
        image, label = folder[i]
        with Image.open(path) as original:
            modes.add(original.mode)
            width, height = original.size
        assert image.dtype == np.uint8 and image.shape == (3, height, width), path
        np.testing.assert_array_equal(image, pillow_rgb(path), err_msg=path)
        assert label == folder.samples[i][1]
    assert {"L", "P", "RGBA", "RGB"} <= modes  # the conversions were really exercised
    gray, _ = folder[2]
    np.testing.assert_array_equal(gray[0], gray[2])  # gray: the one channel three times
    with Image.open(paths[4]) as rgba:
        np.testing.assert_array_equal(folder[4][0], np.asarray(rgba)[..., :3].transpose(2, 0, 1))
    assert folder[6][0].shape == (3, 9, 2)
    with pytest.raises(IndexError):
        folder[10]


def test_to_dataset_resizes_and_measures_mean_and_std(tmp_path):
    paths = odd_folder(tmp_path)
    data = ImageFolder(tmp_path).to_dataset(size=(6, 5))
    assert isinstance(data, Dataset) and data.name == tmp_path.name
    assert data.images.shape == (10, 3, 6, 5) and data.images.dtype == np.uint8
    expected = np.stack([pillow_rgb(path, (6, 5)) for path in paths])
    np.testing.assert_array_equal(data.images, expected)
    np.testing.assert_array_equal(data.labels, [0, 0] + [1] * 8)
    assert data.classes == ("Zebra", "ant")
    pixels = expected.astype(np.float64) / 255
    np.testing.assert_allclose(data.mean, pixels.mean(axis=(0, 2, 3)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(data.std, pixels.std(axis=(0, 2, 3)), rtol=0, atol=1e-12)
    assert ImageFolder(tmp_path).to_dataset(size=4).images.shape == (10, 3, 4, 4)


def test_to_dataset_keeps_a_common_size_and_needs_one_otherwise(tmp_path):
    for i in range(3):
        save(str(tmp_path / f"c{i % 2}" / f"{i}.png"), Image.fromarray(noise(4, 6, seed=i)))
    data = ImageFolder(tmp_path).to_dataset()
    assert data.images.shape == (3, 3, 4, 6)
    np.testing.assert_array_equal(data.images[1], noise(4, 6, seed=2).transpose(2, 0, 1))  # c0/2.png
    save(str(tmp_path / "c1" / "big.png"), Image.fromarray(noise(5, 6)))
    with pytest.raises(ValueError, match="differ in size.*big.png is 6x5.*pass size="):
        ImageFolder(tmp_path).to_dataset()
    assert ImageFolder(tmp_path).to_dataset(size=(4, 6)).images.shape == (4, 3, 4, 6)


def test_channel_stats_are_those_of_the_pixels_over_255():
    images = noise(6, 5, 4, seed=9).reshape(2, 3, 5, 4) // np.uint8(3)
    mean, std = channel_stats(images)
    pixels = images / 255.0
    np.testing.assert_allclose(mean, pixels.mean(axis=(0, 2, 3)), rtol=0, atol=1e-14)
    np.testing.assert_allclose(std, pixels.std(axis=(0, 2, 3)), rtol=0, atol=1e-14)


def png_bytes(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("damage", ["random-bytes", "truncated", "empty"])
def test_a_damaged_image_is_a_value_error_naming_its_file(tmp_path, damage):
    save(str(tmp_path / "good" / "fine.png"), Image.fromarray(noise(4, 4)))
    data = png_bytes(noise(32, 32, seed=1))
    content = {"random-bytes": RNG.integers(0, 256, 200, dtype=np.uint8).tobytes(),
               "truncated": data[:len(data) // 2], "empty": b""}[damage]
    bad = tmp_path / "good" / "broken.png"
    bad.write_bytes(content)
    folder = ImageFolder(tmp_path)  # listing reads no image
    assert folder.samples[0][0] == str(bad)
    with pytest.raises(ValueError, match=f"{bad} cannot be read as an image") as error:
        folder[0]
    assert error.value.__cause__ is None and error.value.__suppress_context__  # no Pillow traceback chained
    with pytest.raises(ValueError, match=str(bad)):
        folder.to_dataset(size=4)
    np.testing.assert_array_equal(folder[1][0], noise(4, 4).transpose(2, 0, 1))


def test_an_empty_class_folder_is_refused_by_name(tmp_path):
    save(str(tmp_path / "cat" / "1.png"), Image.fromarray(noise(4, 4)))
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "readme.txt").write_text("only text here")
    with pytest.raises(FileNotFoundError, match=f"class folder {tmp_path / 'dog'} holds no images"):
        ImageFolder(tmp_path)


def test_a_missing_root_or_one_without_class_folders_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"image folder {tmp_path / 'nope'} does not exist"):
        ImageFolder(tmp_path / "nope")
    save(str(tmp_path / "loose.png"), Image.fromarray(noise(4, 4)))  # images, but no class folders
    with pytest.raises(FileNotFoundError, match=f"image folder {tmp_path} has no class folders"):
        ImageFolder(tmp_path)
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        ImageFolder(tmp_path / "loose.png")


def labelled(counts, size=2):
    labels = np.repeat(np.arange(len(counts)), counts)
    images = np.random.default_rng(1).integers(0, 256, (len(labels), 3, size, size), dtype=np.uint8)
    return Dataset(images, labels, [f"c{i}" for i in range(len(counts))], (0.5,) * 3, (0.25,) * 3, name="toy")


def test_split_per_class_is_stratified_disjoint_and_follows_the_seed():
    data = labelled([10, 20, 5, 1])
    kept, held = split_per_class(data, 0.2, seed=0)
    assert list(np.bincount(held.labels, minlength=4)) == [2, 4, 1, 0]  # a class of one image stays whole
    assert list(np.bincount(kept.labels, minlength=4)) == [8, 16, 4, 1]
    assert len(kept) + len(held) == len(data)
    rows = {images.tobytes() for images in data.images}
    assert len(rows) == len(data)  # all images distinct, so they identify the examples
    seen = [image.tobytes() for image in np.concatenate([kept.images, held.images])]
    assert sorted(seen) == sorted(rows)
    assert list(np.bincount(split_per_class(data, 0.5)[1].labels, minlength=4)) == [5, 10, 3, 0]  # 2.5 rounds up
    again = split_per_class(data, 0.2, seed=0)[1]
    np.testing.assert_array_equal(again.images, held.images)
    assert not np.array_equal(split_per_class(data, 0.2, seed=1)[1].images, held.images)
    assert kept.mean == held.mean == channel_stats(kept.images)[0] and kept.std == held.std  # the kept part's
    assert kept.classes == held.classes == data.classes
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        split_per_class(data, 1.0)


# -- the command line ------------------------------------------------------------------------------


def tiny_folder(root, per_class=12, size=8):
    """Two learnable classes of small photos: bright on the left (class "left") or on the right."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(["left", "right"]):
        for i in range(per_class):
            pixels = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
            pixels[:, label * size // 2:(label + 1) * size // 2] += 150
            save(str(root / name / f"{i:02d}.png"), Image.fromarray(pixels))
    return root


def test_load_splits_of_a_folder_resizes_and_holds_out_with_the_seed(tmp_path):
    images = tiny_folder(tmp_path / "photos", per_class=8, size=6)
    settings = {"dataset": f"folder:{images}", "image_size": 4, "val_fraction": 0.25, "seed": 1}
    train_set, test_set = cli.load_splits(settings, root=None)
    whole = ImageFolder(images).to_dataset(size=4)
    expected = split_per_class(whole, 0.25, seed=1)
    for got, want in zip((train_set, test_set), expected):
        np.testing.assert_array_equal(got.images, want.images)
        np.testing.assert_array_equal(got.labels, want.labels)
        assert got.name == settings["dataset"] and got.mean == want.mean
    assert test_set.images.shape == (4, 3, 4, 4)
    other_seed = cli.load_splits(dict(settings, seed=2), root=None, train=False)
    assert other_seed[0] is None and not np.array_equal(other_seed[1].images, test_set.images)


TRAIN = ["--model", "resnet20", "--batch-size", "8", "--image-size", "8", "--warmup-steps", "1", "--no-progress"]


def test_cli_trains_resumes_and_evaluates_on_a_folder(tmp_path, monkeypatch, capsys):
    images = tiny_folder(tmp_path / "photos")
    common = ["train", "--dataset", f"folder:{images}", *TRAIN, "--epochs", "2", "--seed", "3"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main([*common, "--out", str(straight)]) == 0
    out = capsys.readouterr().out
    assert "on folder:" in out and "20 images" in out  # 12 per class, 2 of them (20 %) held out

    config = read_training_config(straight / "checkpoint.npz")
    assert config["dataset"] == f"folder:{images}" and config["image_size"] == 8 and config["val_fraction"] == 0.2
    checkpoint = load_checkpoint(straight / "checkpoint.npz")
    assert checkpoint.model.config["in_channels"] == 3 and checkpoint.model.config["num_classes"] == 2

    # Interrupted in epoch 2 and resumed from the checkpoint alone: the same images at the same size, the same
    # held-out split, hence exactly the same network as the straight run.
    real_epoch = train_module._train_one_epoch

    def interrupted_in_epoch_2(*args):
        if args[5] == 1:
            raise KeyboardInterrupt
        return real_epoch(*args)

    monkeypatch.setattr(train_module, "_train_one_epoch", interrupted_in_epoch_2)
    assert main([*common, "--out", str(resumed)]) == 130
    monkeypatch.setattr(train_module, "_train_one_epoch", real_epoch)
    monkeypatch.chdir(tmp_path / "photos")  # the saved path is absolute: resume from anywhere
    assert main(["train", "--resume", str(resumed / "checkpoint.npz")]) == 0
    b = load_checkpoint(resumed / "checkpoint.npz")
    assert b.epoch == 2 and b.history["val_loss"] == checkpoint.history["val_loss"]
    for key, value in checkpoint.model.state_dict().items():
        np.testing.assert_array_equal(value, b.model.state_dict()[key], err_msg=key)

    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(straight / "checkpoint.npz")]) == 0
    out = capsys.readouterr().out
    assert f"on the 4 held-out images of folder:{images}" in out
    assert f"(loss {checkpoint.history['val_loss'][-1]:.4f})" in out  # the very images validated on in training


def test_cli_finetunes_on_a_folder(tmp_path, capsys):
    images = tiny_folder(tmp_path / "photos", per_class=6)
    pre = tmp_path / "pre"
    assert main(["train", "--dataset", f"folder:{images}", *TRAIN, "--epochs", "1", "--out", str(pre)]) == 0
    three = tiny_folder(tmp_path / "three", per_class=6)
    tiny_folder(tmp_path / "extra", per_class=6)
    os.rename(tmp_path / "extra" / "left", three / "middle")
    capsys.readouterr()
    assert main(["finetune", "--from", str(pre / "checkpoint.npz"), "--dataset", f"folder:{three}",
                 "--image-size", "8", "--val-fraction", "0.5", "--epochs", "1", "--batch-size", "6", "--no-progress",
                 "--out", str(tmp_path / "ft")]) == 0
    out = capsys.readouterr().out
    assert "new head fc (64 -> 3 classes)" in out and "9 training images, 9 test images" in out
    assert main(["evaluate", "--checkpoint", str(tmp_path / "ft" / "checkpoint.npz")]) == 0
    assert f"on the 9 held-out images of folder:{three}" in capsys.readouterr().out


def test_cli_folder_errors_are_clear(tmp_path, capsys):
    assert main(["train", "--dataset", f"folder:{tmp_path / 'nonexistent'}", "--no-progress"]) == 1
    assert f"image folder {tmp_path / 'nonexistent'} does not exist" in capsys.readouterr().err

    with pytest.raises(SystemExit) as exit_:
        main(["train", "--dataset", "imagenet"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'imagenet'" in err and "folder:PATH" in err and "cifar10" in err
    for bad in (["--image-size", "0"], ["--image-size", "8.5"], ["--val-fraction", "1"], ["--val-fraction", "nan"],
                ["--val-fraction", "x"], ["--dataset", "folder:"]):
        with pytest.raises(SystemExit):
            main(["train", *bad])
        assert "error: argument" in capsys.readouterr().err, bad

    # The folder options would do nothing for a named dataset: said before anything is loaded.
    assert main(["train", "--dataset", "mnist", "--image-size", "8", "--data", str(tmp_path)]) == 1
    assert "--image-size applies to --dataset folder:PATH only" in capsys.readouterr().err


def test_cli_folder_helpers():
    assert cli.folder_of("folder:/data/photos") == "/data/photos" and cli.folder_of("cifar10") is None
    assert cli._default_out("folder:/data/photos/", "resnet20") == os.path.join("runs", "folder-photos-resnet20")
    assert cli._default_out("mnist", "resnet20") == os.path.join("runs", "mnist-resnet20")
    assert cli._augmentation({"augment": "auto", "dataset": "folder:/data"}) == "cifar"
    assert cli._augmentation({"augment": "auto", "dataset": "mnist"}) == "digits"
    assert cli._augmentation({"augment": "none", "dataset": "folder:/data"}) is None
    from resnet_np.__main__ import dataset_argument
    assert dataset_argument("folder:rel/dir") == "folder:" + os.path.abspath("rel/dir")
    assert dataset_argument("fashion-mnist") == "fashion-mnist"
