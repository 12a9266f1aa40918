"""CIFAR-10 from its lossless PNG archives (resnet_np/data/cifar_png.py).

Two kinds of tests. With the real archives (``$RESNET_NP_DATA/cifar10/``),
the decoded arrays must be the official ones: the first labels, the first
pixels, the published per-channel statistics, 5,000 images of each class,
and the cache must serve the second load. Without them, tiny archives with
the same member layout are made here, and every way an archive can be
wrong must give an error naming it, and every stale or damaged cache must
be rebuilt rather than trusted.
"""

import hashlib
import io
import os
import pathlib
import tarfile

import _hostile
import numpy as np
import pytest
from PIL import Image
from test_data import make_cifar_tarball, use_md5s_of

from resnet_np.data import DATASETS, cifar_png, load_dataset

CLASSES = cifar_png.CLASSES
TRAIN_1, TRAIN_2 = cifar_png.ARCHIVES["train"]
(TEST,) = cifar_png.ARCHIVES["test"]

# -- the real archives ---------------------------------------------------------------------------

DATA = os.environ.get("RESNET_NP_DATA")
HAVE_PNG = bool(DATA) and all((pathlib.Path(DATA) / "cifar10" / name).is_file() for name in cifar_png.MD5)
needs_png = pytest.mark.skipif(not HAVE_PNG, reason="the CIFAR-10 PNG archives were not found: set RESNET_NP_DATA "
                                                    "to a folder holding cifar10/cifar10-png-*.tar.gz")


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """Both real splits, decoded once for the whole module, with the cache in a fresh folder.

    The root holds links to the three archives only, so the PNG path is read
    even where the official tarball lies beside them.
    """
    root = tmp_path_factory.mktemp("data")
    (root / "cifar10").mkdir()
    for name in cifar_png.MD5:
        os.symlink(pathlib.Path(DATA) / "cifar10" / name, root / "cifar10" / name)
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RESNET_NP_CACHE", str(cache))
        train = load_dataset("cifar10", root=root, train=True, download=False)
        test = load_dataset("cifar10", root=root, train=False, download=False)
    return root, cache, train, test


@needs_png
def test_real_archives_give_the_official_arrays(real):
    _, _, train, test = real
    assert train.images.shape == (50000, 3, 32, 32) and test.images.shape == (10000, 3, 32, 32)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int64
    assert list(train.labels[:10]) == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert list(test.labels[:10]) == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    first_row = train.images[0, :, 0, :4].T  # (R, G, B) of the first four pixels of image 0
    assert first_row.tolist() == [[59, 62, 63], [43, 46, 45], [50, 48, 43], [68, 54, 42]]
    # Mean and std of pixel / 255 per channel, in float64 from the counts of the 256 values (no 1.2 GB copy).
    values = np.arange(256) / 255
    counts = [np.bincount(train.images[:, c].ravel(), minlength=256) / train.images[:, c].size for c in range(3)]
    means = np.array([p @ values for p in counts])
    stds = np.array([np.sqrt(p @ (values - m) ** 2) for p, m in zip(counts, means)])
    np.testing.assert_allclose(means, [0.49139968, 0.48215841, 0.44653091], rtol=0, atol=1e-8)
    np.testing.assert_allclose(stds, [0.24703223, 0.24348513, 0.26158784], rtol=0, atol=1e-8)
    assert list(np.bincount(train.labels, minlength=10)) == [5000] * 10
    assert list(np.bincount(test.labels, minlength=10)) == [1000] * 10
    assert train.classes == CLASSES and train.mean == DATASETS["cifar10"]["mean"]


@needs_png
def test_real_second_load_comes_from_the_cache(real, monkeypatch):
    root, cache, train, test = real
    assert sorted(os.listdir(cache)) == ["cifar10-png-test.npz", "cifar10-png-train.npz"]
    monkeypatch.setenv("RESNET_NP_CACHE", str(cache))

    def no_decoding(*args):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(cifar_png, "decode_split", no_decoding)
    for split, dataset in ((True, train), (False, test)):
        again = load_dataset("cifar10", root=root, train=split, download=False)
        np.testing.assert_array_equal(again.images, dataset.images)
        np.testing.assert_array_equal(again.labels, dataset.labels)


# -- tiny archives made here -----------------------------------------------------------------------

SIZES = {"train": 8, "test": 3}


def png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def write_archive(path, members):
    """A .tar.gz of ``members`` (name -> bytes), in the order given, folders included as a real archive has."""
    with tarfile.open(path, "w:gz") as tar:
        folders = sorted({os.path.dirname(name) for name in members} - {""})
        for name in folders:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def make_png_archives(folder, seed=0, order="shuffled", change=None):
    """Tiny CIFAR-10 PNG archives in ``folder``; returns {split: (images, labels)} in index order.

    Train images of classes 0-4 go into the first train archive, 5-9 into
    the second, as in the real copy. ``order``: the order of the members in
    each archive ("shuffled" or "reversed" index order). ``change(archive,
    members)`` may alter an archive's members (a dict) before it is written.
    """
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    made, archives = {}, {TRAIN_1: {}, TRAIN_2: {}, TEST: {}}
    for split, n in SIZES.items():
        labels = rng.permutation(np.arange(n) % 10 if split == "test" else np.array([0, 1, 4, 5, 6, 9, 2, 7]))
        images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        made[split] = images, labels.astype(np.int64)
        indices = rng.permutation(n) if order == "shuffled" else np.arange(n)[::-1]
        for index in indices:
            name = CLASSES[labels[index]]
            archive = TEST if split == "test" else (TRAIN_1 if labels[index] < 5 else TRAIN_2)
            archives[archive][f"cifar10/{split}/{name}/{index}_{name}.png"] = png(images[index].transpose(1, 2, 0))
    for archive, members in archives.items():
        members = {"cifar10/labels.txt": "\n".join(CLASSES).encode() + b"\n", **members}
        if change is not None:
            change(archive, members)
        write_archive(os.path.join(folder, archive), members)
    return made


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """Tiny archives' world: their sizes and MD5s in the tables, the cache in tmp_path/cache.

    Returns ``make(**kwargs)``, which writes archives into tmp_path/data/cifar10, makes the table expect
    their MD5s, and returns what they hold.
    """
    monkeypatch.setattr(cifar_png, "SIZES", dict(SIZES))
    monkeypatch.setenv("RESNET_NP_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "data" / "cifar10"

    def make(**kwargs):
        made = make_png_archives(folder, **kwargs)
        md5s = {name: hashlib.md5((folder / name).read_bytes()).hexdigest() for name in cifar_png.MD5}
        monkeypatch.setitem(DATASETS["cifar10"], "png_md5", md5s)
        return made

    return make


def load(tmp_path, train=True):
    return load_dataset("cifar10", root=tmp_path / "data", train=train, download=False)


def count_decoding(monkeypatch):
    """A list that grows by one split name each time the archives are decoded."""
    calls, real_decode = [], cifar_png.decode_split

    def counting(paths, split):
        calls.append(split)
        return real_decode(paths, split)

    monkeypatch.setattr(cifar_png, "decode_split", counting)
    return calls


def assert_split(dataset, images, labels):
    np.testing.assert_array_equal(dataset.images, images)
    np.testing.assert_array_equal(dataset.labels, labels)
    assert dataset.images.dtype == np.uint8 and dataset.classes == CLASSES


@pytest.mark.parametrize("order", ["shuffled", "reversed"])
def test_images_come_back_in_index_order_whatever_the_member_order(tmp_path, tiny, order):
    made = tiny(order=order)
    for train, split in ((True, "train"), (False, "test")):
        assert_split(load(tmp_path, train), *made[split])


def test_second_load_reads_the_cache(tmp_path, tiny, monkeypatch):
    made = tiny()
    calls = count_decoding(monkeypatch)
    load(tmp_path)
    assert_split(load(tmp_path), *made["train"])
    assert calls == ["train"] and (tmp_path / "cache" / "cifar10-png-train.npz").is_file()


def test_an_archive_with_the_wrong_md5_is_refused_by_name(tmp_path, tiny, monkeypatch):
    tiny()
    monkeypatch.setitem(DATASETS["cifar10"]["png_md5"], TRAIN_2, "0" * 32)
    path = tmp_path / "data" / "cifar10" / TRAIN_2
    with pytest.raises(ValueError, match=f"{path} has MD5 .* the official file has MD5 0{{32}}"):
        load(tmp_path)
    assert load(tmp_path, train=False)  # the test split does not need that archive


# Ways to damage the tiny archives: each returns a ``change`` for make_png_archives.

def is_train_image(name, index):
    return name.startswith("cifar10/train/") and name.split("/")[-1].startswith(f"{index}_")


def drop(index):
    """Leave train image ``index`` out, whichever archive holds it."""
    def change(archive, members):
        for name in [name for name in members if is_train_image(name, index)]:
            del members[name]
    return change


def add(archive_wanted, name, data):
    def change(archive, members):
        if archive == archive_wanted:
            members[name] = data
    return change


def replace_png(index, data):
    """Swap the PNG of train image ``index`` for ``data``, whichever archive holds it."""
    def change(archive, members):
        for name in members:
            if is_train_image(name, index):
                members[name] = data
    return change


def relabel(archive_wanted, classes):
    def change(archive, members):
        if archive == archive_wanted:
            members["cifar10/labels.txt"] = "\n".join(classes).encode()
    return change


def damaged_cases():
    """(id, change, the archive the error must name, what it must say) for each kind of damage.

    An archive of None: the one that holds the damaged image (which one
    depends on its label), or both train archives for a missing image.
    """
    black = png(np.zeros((32, 32, 3), np.uint8))
    return [
        ("missing-index", drop(5), None, r"1 of the 8 train images are missing \(the first is index 5\)"),
        ("duplicate-index", add(TRAIN_2, "cifar10/train/truck/0_truck.png", black), TRAIN_2,
         "a second image with index 0"),
        ("index-too-large", add(TRAIN_1, "cifar10/train/cat/8_cat.png", black), TRAIN_1,
         "has index 8, but the train split has 8 images"),
        ("wrong-size", replace_png(2, png(np.zeros((32, 31, 3), np.uint8))), None, "is 31x32, expected 32x32"),
        ("corrupt-png", replace_png(4, b"\x89PNG\r\n\x1a\n" + bytes(range(200))), None, "is not a readable PNG"),
        ("truncated-png", replace_png(6, png(np.full((32, 32, 3), 7, np.uint8))[:60]), None, "is not a readable PNG"),
        ("wrong-labels", relabel(TRAIN_1, CLASSES[1:] + CLASSES[:1]), TRAIN_1, "labels.txt lists"),
        ("misnamed", add(TRAIN_2, "cifar10/train/dog/7_cat.png", black), TRAIN_2,
         "is not named <split>/<class>/<index>_<class>.png"),
        # What a hostile archive holds (tests/_hostile.py): each was accepted, or a bare error, before.
        ("jpeg-named-png", replace_png(1, _hostile.encoded(Image.fromarray(np.zeros((32, 32, 3), np.uint8)), "JPEG")),
         None, "is not a readable PNG"),
        ("16-bit-png", replace_png(3, _hostile.png16_gray(1000, 32, 32)), None,
         "has pixels of mode I;16, not 8-bit colour"),
        ("bomb-png", replace_png(5, _hostile.bomb_png(10000)), None, "is not a readable PNG .DecompressionBomb"),
        ("labels-not-utf8", add(TRAIN_1, "cifar10/labels.txt", b"\xff\xfe" * 10), TRAIN_1, "labels.txt lists"),
        ("unicode-digit-index", add(TRAIN_1, "cifar10/train/cat/\u00b2_cat.png", black), TRAIN_1,
         "is not named <split>/<class>/<index>_<class>.png"),
    ]


@pytest.mark.parametrize("case", damaged_cases(), ids=lambda case: case[0])
def test_a_damaged_archive_is_a_value_error_naming_it(tmp_path, tiny, case):
    _, change, archive, message = case
    made = tiny(change=change)
    with pytest.raises(ValueError, match=message) as error:
        load(tmp_path)
    text = str(error.value)
    if archive is None:  # the damage was done wherever that image lives: name that archive
        index = {"wrong-size": 2, "corrupt-png": 4, "truncated-png": 6, "jpeg-named-png": 1, "16-bit-png": 3,
                 "bomb-png": 5}.get(case[0])
        if index is not None:
            archive = TRAIN_1 if made["train"][1][index] < 5 else TRAIN_2
    archives = [archive] if archive is not None else [TRAIN_1, TRAIN_2]
    for name in archives:
        assert str(tmp_path / "data" / "cifar10" / name) in text, text
    assert error.value.__cause__ is None
    assert not (tmp_path / "cache" / "cifar10-png-train.npz").exists()  # nothing bad was cached


def test_a_truncated_archive_is_a_value_error_naming_it(tmp_path, tiny, monkeypatch):
    tiny()
    path = tmp_path / "data" / "cifar10" / TEST
    path.write_bytes(path.read_bytes()[:-100])
    monkeypatch.setitem(DATASETS["cifar10"]["png_md5"], TEST, hashlib.md5(path.read_bytes()).hexdigest())
    with pytest.raises(ValueError, match=f"{path}: not a readable tar.gz file"):
        load(tmp_path, train=False)


def test_a_cache_made_from_other_archives_is_not_used(tmp_path, tiny, monkeypatch):
    first = tiny(seed=0)
    assert_split(load(tmp_path), *first["train"])
    second = tiny(seed=1)  # other images, other MD5s, same file names
    assert not np.array_equal(first["train"][0], second["train"][0])
    calls = count_decoding(monkeypatch)
    assert_split(load(tmp_path), *second["train"])
    assert calls == ["train"]
    assert_split(load(tmp_path), *second["train"])  # and the rebuilt cache serves the next load
    assert calls == ["train"]


@pytest.mark.parametrize("damage", ["truncated", "empty", "not-a-zip"])
def test_a_damaged_cache_is_rebuilt_not_an_error(tmp_path, tiny, monkeypatch, damage):
    made = tiny()
    load(tmp_path)
    cache = tmp_path / "cache" / "cifar10-png-train.npz"
    data = cache.read_bytes()
    cache.write_bytes({"truncated": data[:len(data) // 2], "empty": b"", "not-a-zip": b"PK\x03\x04junk"}[damage])
    calls = count_decoding(monkeypatch)
    assert_split(load(tmp_path), *made["train"])
    assert calls == ["train"] and cache.read_bytes() == data  # decoded again, cached again
    assert_split(load(tmp_path), *made["train"])
    assert calls == ["train"]


def test_the_official_tarball_is_preferred_when_present(tmp_path, tiny, monkeypatch):
    made_png = tiny()
    folder = tmp_path / "data" / "cifar10"
    made_official = make_cifar_tarball(folder, sizes=(2, 1, 1, 1, 1), n_test=2)
    use_md5s_of(monkeypatch, "cifar10", folder)
    calls = count_decoding(monkeypatch)
    for train, split in ((True, "train"), (False, "test")):
        dataset = load(tmp_path, train)
        assert_split(dataset, *made_official[split])
        assert len(dataset) != len(made_png[split][1])
    assert calls == []
    os.remove(folder / "cifar-10-python.tar.gz")
    assert_split(load(tmp_path), *made_png["train"])


def test_a_member_too_large_to_be_a_cifar_png_is_refused_unread(tmp_path, tiny, monkeypatch):
    tiny()
    monkeypatch.setattr(cifar_png, "MAX_MEMBER_BYTES", 64)  # every PNG of the tiny archives is larger
    with pytest.raises(ValueError, match=r"bytes, more than any file of the CIFAR-10 PNG archive"):
        load(tmp_path, train=False)
