"""Folders of your own images: torchvision's ImageFolder rules, every image as RGB, clear errors, the CLI.

The folders are made here with Pillow, with the awkward cases real folders
have: upper-case extensions, grayscale, palette and RGBA images, a text
file among the images, images in a deeper folder, damaged files, an empty
class. The expected pixels are always Pillow's own ``convert("RGB")``.
"""

import io
import os
import signal

import _hostile
import numpy as np
import pytest
from _hostile import hostile_folder
from PIL import Image

from resnet_np import cli
from resnet_np import train as train_module
from resnet_np.__main__ import main
from resnet_np.checkpoint import load_checkpoint, read_training_config
from resnet_np.data import Dataset, ImageFolder, split_per_class
from resnet_np.data.folder import ImageFileError, channel_stats

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


def tiny_folder(root, per_class=12, size=8, seed=0):
    """Two learnable classes of small photos: bright on the left (class "left") or on the right."""
    rng = np.random.default_rng(seed)
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
    assert "on folder:" in out and "20 training images" in out  # 12 per class, 2 of them (20 %) held out

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
    tiny_folder(tmp_path / "extra", per_class=6, seed=1)  # not copies of three/left: one image has one label
    os.rename(tmp_path / "extra" / "left", three / "middle")
    capsys.readouterr()
    assert main(["finetune", "--from", str(pre / "checkpoint.npz"), "--dataset", f"folder:{three}",
                 "--image-size", "8", "--val-fraction", "0.5", "--epochs", "1", "--batch-size", "6", "--no-progress",
                 "--out", str(tmp_path / "ft")]) == 0
    out = capsys.readouterr().out
    assert "new head fc (64 -> 3 classes)" in out and "9 training images, 9 held-out images" in out
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
    assert main(["train", "--dataset", "mnist", "--image-size", "8", "--data", str(tmp_path)]) == 2  # bad arguments
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


# -- hostile folders (tests/_hostile.py): special files, links, loops, bit depths, modes, bombs, odd names --------


class Blocked(BaseException):
    """Not an OSError (os.walk swallows those) nor an Exception (readers catch those): nothing hides it."""


@pytest.fixture
def no_hang():
    """A read that blocks (a FIFO opened for reading waits for a writer) fails the test after 20 s, not never."""
    def alarm(signum, frame):
        raise Blocked("the image folder reader blocked for 20 s")
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_a_hostile_folder_lists_each_regular_file_once_and_says_what_it_skipped(tmp_path, no_hang):
    h = hostile_folder(tmp_path / "pets")
    said = []
    folder = ImageFolder(h.root, log=said.append)
    assert folder.classes == ["cat", "dog"]  # the linked class folder is no class
    assert folder.samples == h.samples  # no loop, no link, no FIFO, no second hard link: one entry a file
    assert not any(label == 0 and "/dog/" in path for path, label in folder.samples)
    reasons = dict(folder.skipped)
    for path, why in h.skipped.items():
        if why != "same bytes":  # found by to_dataset, which reads the bytes
            assert why in reasons[path], (path, reasons.get(path))
    assert len(said) == 1 and said[0].count("\n") == len(folder.skipped)  # one line a skipped file
    assert "pipe.png: a FIFO (named pipe), not a regular file" in said[0]
    said[0].encode("utf-8")  # printable, though a name in the folder is not UTF-8


def test_a_hostile_folder_refuses_every_unusable_file_by_name_at_once(tmp_path, no_hang):
    h = hostile_folder(tmp_path / "pets")
    folder = ImageFolder(h.root, log=None)
    with pytest.raises(ImageFileError) as error:
        folder.to_dataset(size=8)
    message = str(error.value)
    assert message.startswith(f"{len(h.refused)} files of image folder {h.root} cannot be used:")
    lines = {line.strip().split(" ")[0]: line for line in message.splitlines()[1:]}
    assert len(lines) == len(h.refused)
    for path, why in h.refused.items():
        assert why in lines[path], (path, lines.get(path))
    assert error.value.__cause__ is None and error.value.__context__ is None  # no Pillow traceback chained


def test_what_a_hostile_folder_gives_is_right_pixel_for_pixel_and_label_for_label(tmp_path, no_hang):
    h = hostile_folder(tmp_path / "pets", refused=False)
    said = []
    folder = ImageFolder(h.root, log=said.append)
    data = folder.to_dataset()
    paths = [path for path, _ in folder.samples]
    assert len(data) == len(h.samples) - 1 and all("z_copy" not in path for path in paths)  # the copy dropped
    assert "z_copy.png: the same bytes as" in said[-1]
    np.testing.assert_array_equal(data.labels, [label for _, label in folder.samples])
    for path, want in h.expected.items():
        if path in paths:
            np.testing.assert_array_equal(data.images[paths.index(path)], want.transpose(2, 0, 1), err_msg=path)
    assert len({image.tobytes() for image in data.images}) == len(data)  # no image twice: none in both splits
    for path in paths:  # the other modes: what Pillow's own conversion gives
        if "mode_" in path and "I16" not in path:
            np.testing.assert_array_equal(data.images[paths.index(path)], pillow_rgb(path), err_msg=path)


def test_a_symlink_loop_neither_multiplies_samples_nor_mislabels_nor_leaks_into_the_held_out_part(tmp_path, no_hang):
    for label, name in enumerate(("cat", "dog")):
        for i in range(4):
            save(str(tmp_path / name / f"{i}.png"), Image.fromarray(noise(4, 4, seed=10 * label + i)))
    os.symlink("..", tmp_path / "cat" / "loop")
    data = ImageFolder(tmp_path, log=None).to_dataset()
    assert len(data) == 8 and list(np.bincount(data.labels)) == [4, 4]
    kept, held = split_per_class(data, 0.25)
    assert not {i.tobytes() for i in kept.images} & {i.tobytes() for i in held.images}


def test_a_fifo_that_appears_after_the_listing_is_refused_without_blocking(tmp_path, no_hang):
    save(str(tmp_path / "a" / "0.png"), Image.fromarray(noise(4, 4)))
    save(str(tmp_path / "a" / "1.png"), Image.fromarray(noise(4, 4, seed=1)))
    folder = ImageFolder(tmp_path)
    os.remove(tmp_path / "a" / "1.png")
    _hostile.fifo(str(tmp_path / "a" / "1.png"))
    with pytest.raises(ImageFileError, match="1.png is a FIFO"):
        folder[1]
    os.remove(tmp_path / "a" / "1.png")
    os.symlink(tmp_path / "a" / "0.png", tmp_path / "a" / "1.png")
    with pytest.raises(ImageFileError, match="1.png: a symbolic link: not followed"):
        folder[1]


def test_the_same_file_under_two_classes_is_refused(tmp_path):
    save(str(tmp_path / "cat" / "0.png"), Image.fromarray(noise(4, 4)))
    os.makedirs(tmp_path / "dog")
    os.link(tmp_path / "cat" / "0.png", tmp_path / "dog" / "0.png")
    with pytest.raises(ImageFileError, match="are the same file .hard links. in two classes"):
        ImageFolder(tmp_path)
    os.remove(tmp_path / "dog" / "0.png")
    save(str(tmp_path / "dog" / "0.png"), Image.fromarray(noise(4, 4)))  # the same bytes, another file
    with pytest.raises(ImageFileError, match="has the very bytes of .*cat/0.png, in another class"):
        ImageFolder(tmp_path).to_dataset()


@pytest.mark.parametrize("limit", [40, 20])  # 64 pixels: Pillow warns above the limit, fails above twice it
def test_a_decompression_bomb_is_refused_by_name_whether_pillow_warns_or_fails(tmp_path, monkeypatch, limit):
    save(str(tmp_path / "a" / "big.png"), Image.fromarray(noise(8, 8)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.raises(ImageFileError, match=r"big.png is 8x8 pixels .* decompression bomb"):
        ImageFolder(tmp_path)[0]


@pytest.mark.parametrize("name, data, fragment", [
    ("jpeg.png", _hostile.encoded(Image.fromarray(noise(4, 4)), "JPEG"), "is a JPEG file, not PNG as its name says: "
                                                                          "rename it to jpeg.jpg"),
    ("png.jpg", _hostile.encoded(Image.fromarray(noise(4, 4)), "PNG"), "is a PNG file, not JPEG"),
    ("eps.png", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n", "cannot be read as an image"),
    ("float.tif", _hostile.mode_image("F")[0], "32-bit floating-point pixels (mode F)"),
    ("int32.tif", _hostile.mode_image("I")[0], "32-bit integer pixels (mode I)"),
])
def test_a_file_that_is_not_what_it_says_or_has_no_8_bit_meaning_is_refused_by_name(tmp_path, name, data, fragment):
    _hostile.write(str(tmp_path / "a" / name), data)
    with pytest.raises(ImageFileError) as error:
        ImageFolder(tmp_path)[0]
    assert str(error.value).startswith(str(tmp_path / "a" / name)) and fragment in str(error.value)


def test_16_bit_images_keep_their_high_byte_and_other_modes_convert_as_pillow_does(tmp_path):
    _hostile.write(str(tmp_path / "a" / "gray16.png"), _hostile.png16_gray(0xABCD))
    data, want = _hostile.png16_rgb()
    _hostile.write(str(tmp_path / "a" / "rgb16.png"), data)
    folder = ImageFolder(tmp_path)
    assert (folder[0][0] == 0xAB).all()  # Pillow's own convert("RGB") gives 255 everywhere
    np.testing.assert_array_equal(folder[1][0], want.transpose(2, 0, 1))


def test_names_that_are_not_utf8_are_read_and_shown(tmp_path, capsys):
    cafe = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"caf\xe9"))
    save(os.path.join(cafe, os.fsdecode(b"\xff.png")), Image.fromarray(noise(4, 4)))
    _hostile.fifo(os.path.join(cafe, os.fsdecode(b"\xfe.png")))
    folder = ImageFolder(tmp_path)
    assert folder.classes == ["caf\\xe9"] and folder.class_to_idx == {"caf\\xe9": 0}
    np.testing.assert_array_equal(folder[0][0], noise(4, 4).transpose(2, 0, 1))
    assert "caf\\xe9/\\xfe.png: a FIFO" in capsys.readouterr().err
    assert folder.to_dataset().classes == ("caf\\xe9",)


def test_train_on_a_hostile_folder_neither_hangs_nor_mislabels(tmp_path, capsys, no_hang):
    h = hostile_folder(tmp_path / "pets", refused=False)
    assert main(["train", "--dataset", f"folder:{h.root}", *TRAIN, "--epochs", "1", "--val-fraction", "0.3",
                 "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert "pipe.png: a FIFO (named pipe), not a regular file" in err and "loop: a symbolic link" in err
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoint.npz")
    assert checkpoint.model.config["num_classes"] == 2
    h2 = hostile_folder(tmp_path / "bad")
    capsys.readouterr()
    assert main(["train", "--dataset", f"folder:{h2.root}", *TRAIN, "--epochs", "1",
                 "--out", str(tmp_path / "run2")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "bomb.png is 14000x14000 pixels" in err
