"""Datasets and the DataLoader: the official file formats, their checks, downloads, batches, augmentation.

Every format test writes small files in the official format (gzipped idx
for MNIST and Fashion-MNIST, a real ``cifar-10-python.tar.gz`` of Python 2
pickles for CIFAR-10) and reads them back exactly. Their MD5s differ from
the official ones, so the tests put the MD5s of their own files into
``DATASETS``; the check itself is the real one. Downloads come from an HTTP
server on 127.0.0.1 that the test starts and stops.
"""

import functools
import gzip
import hashlib
import http.server
import io
import os
import pickle
import socket
import struct
import tarfile
import threading

import numpy as np
import pytest

from resnet_np.data import DATASETS, DataLoader, Dataset, cifar, download, load_dataset, random_crop, random_flip
from resnet_np.data.augment import augment

MNIST_LIKE = ("mnist", "fashion-mnist")
IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
TARBALL = "cifar-10-python.tar.gz"


def md5(path):
    return hashlib.md5(open(path, "rb").read()).hexdigest()


def use_md5s_of(monkeypatch, name, folder):
    """Make ``DATASETS[name]`` expect the MD5s of the files in ``folder`` instead of the official ones."""
    table = {file: md5(os.path.join(folder, file)) for file in DATASETS[name]["md5"]
             if os.path.exists(os.path.join(folder, file))}
    monkeypatch.setitem(DATASETS[name], "md5", table)


# -- files in the official formats -----------------------------------------------------------

def idx_bytes(array, magic):
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", n) for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_gz(path, data):
    with gzip.open(path, "wb") as f:
        f.write(data)


def make_idx_files(folder, n_train=7, n_test=5, seed=0):
    """The four gzipped idx files of a tiny MNIST; returns {split: (images (N,1,28,28), labels)}."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    made = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        write_gz(os.path.join(folder, f"{prefix}-images-idx3-ubyte.gz"), idx_bytes(images, 0x803))
        write_gz(os.path.join(folder, f"{prefix}-labels-idx1-ubyte.gz"), idx_bytes(labels, 0x801))
        made[split] = (images[:, None], labels.astype(np.int64))
    return made


def py2_pickle(batch):
    """``batch`` pickled byte for byte the way Python 2's cPickle wrote the official CIFAR-10 batches.

    Protocol 2, bytes as Python 2 strings (SHORT_BINSTRING/BINSTRING) and a
    uint8 array as numpy.core.multiarray._reconstruct + ndarray.__setstate__.
    Python 3's pickle cannot write Python 2 strings, hence the opcodes by hand.
    """
    def string(b):
        return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b

    def integer(i):
        return b"J" + struct.pack("<i", i)

    def value(v):
        if isinstance(v, bytes):
            return string(v)
        if isinstance(v, int):
            return integer(v)
        if isinstance(v, list):
            return b"](" + b"".join(value(x) for x in v) + b"e"  # EMPTY_LIST MARK ... APPENDS
        assert v.dtype == np.uint8
        dtype = (b"cnumpy\ndtype\n" + string(b"u1") + integer(0) + integer(1) + b"\x87R"
                 + b"(" + integer(3) + string(b"|") + b"NNN" + integer(-1) + integer(-1) + integer(0) + b"tb")
        shape = b"(" + b"".join(integer(n) for n in v.shape) + b"t"
        return (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + integer(0) + b"\x85"
                + string(b"b") + b"\x87R" + b"(" + integer(1) + shape + dtype + b"\x89" + string(v.tobytes())
                + b"tb")

    return b"\x80\x02}(" + b"".join(string(k) + value(v) for k, v in batch.items()) + b"u."


def cifar_batch(rng, n, label):
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, n)]
    return {b"batch_label": label, b"labels": labels, b"data": data,
            b"filenames": [b"img_%d.png" % i for i in range(n)]}


def make_tarball(path, members):
    """A .tar.gz holding ``members`` (name -> bytes) under cifar-10-batches-py/."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def make_cifar_tarball(folder, sizes=(3, 2, 4, 1, 2), n_test=3, seed=0, dumps=py2_pickle):
    """A tiny cifar-10-python.tar.gz; returns {split: (images (N,3,32,32), labels)}."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    batches = {f"data_batch_{i + 1}": cifar_batch(rng, n, b"training batch %d of 5" % (i + 1))
               for i, n in enumerate(sizes)}
    batches["test_batch"] = cifar_batch(rng, n_test, b"testing batch 1 of 1")
    members = {name: dumps(batch) for name, batch in batches.items()}
    members["batches.meta"] = dumps({b"num_cases_per_batch": 10000, b"num_vis": 3072,
                                     b"label_names": [c.encode() for c in DATASETS["cifar10"]["classes"]]})
    members["readme.html"] = b"<html></html>"
    make_tarball(os.path.join(folder, TARBALL), members)

    def split(names):
        images = np.concatenate([batches[name][b"data"] for name in names]).reshape(-1, 3, 32, 32)
        labels = np.concatenate([batches[name][b"labels"] for name in names]).astype(np.int64)
        return images, labels

    return {"train": split([f"data_batch_{i}" for i in range(1, 6)]), "test": split(["test_batch"])}


# -- reading them back -------------------------------------------------------------------------

def assert_dataset(dataset, images, labels, name):
    assert isinstance(dataset, Dataset) and dataset.name == name
    assert dataset.images.dtype == np.uint8 and dataset.labels.dtype == np.int64
    np.testing.assert_array_equal(dataset.images, images)
    np.testing.assert_array_equal(dataset.labels, labels)
    assert len(dataset) == len(labels) and dataset.num_classes == 10 == len(dataset.classes)
    assert dataset.mean == DATASETS[name]["mean"] and dataset.std == DATASETS[name]["std"]


@pytest.mark.parametrize("name", MNIST_LIKE)
def test_idx_files_read_back_exactly(tmp_path, monkeypatch, name):
    made = make_idx_files(tmp_path / name)
    use_md5s_of(monkeypatch, name, tmp_path / name)
    for train, split in ((True, "train"), (False, "test")):
        dataset = load_dataset(name, root=tmp_path, train=train, download=False)
        assert_dataset(dataset, *made[split], name)
        assert dataset.images.shape[1:] == (1, 28, 28)


@pytest.mark.parametrize("dumps", [py2_pickle, functools.partial(pickle.dumps, protocol=4)],
                         ids=["python2-pickles", "python3-pickles"])
def test_cifar_tarball_reads_back_exactly(tmp_path, monkeypatch, dumps):
    made = make_cifar_tarball(tmp_path / "cifar10", dumps=dumps)
    use_md5s_of(monkeypatch, "cifar10", tmp_path / "cifar10")
    for train, split in ((True, "train"), (False, "test")):
        dataset = load_dataset("cifar10", root=tmp_path, train=train, download=False)
        assert_dataset(dataset, *made[split], "cifar10")
    assert len(load_dataset("cifar10", root=tmp_path).labels) == 3 + 2 + 4 + 1 + 2  # the five batches in order
    assert dataset.classes[0] == "airplane" and len(dataset.mean) == 3


def test_root_argument_then_environment_then_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_NP_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert download.data_root(tmp_path / "arg") == str(tmp_path / "arg")
    assert download.data_root() == str(tmp_path / "env")
    monkeypatch.delenv("RESNET_NP_DATA")
    assert download.data_root() == str(tmp_path / "xdg" / "resnet_np")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert download.data_root() == str(tmp_path / "home" / ".cache" / "resnet_np")

    made = make_idx_files(tmp_path / "env" / "mnist")
    use_md5s_of(monkeypatch, "mnist", tmp_path / "env" / "mnist")
    monkeypatch.setenv("RESNET_NP_DATA", str(tmp_path / "env"))
    np.testing.assert_array_equal(load_dataset("mnist", download=False).labels, made["train"][1])


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match=r"unknown dataset 'cifar100'.*'cifar10'.*'fashion-mnist'.*'mnist'"):
        load_dataset("cifar100", download=False)


# -- bad files ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10"])
def test_wrong_md5_is_a_clear_error(tmp_path, name):
    if name == "cifar10":
        make_cifar_tarball(tmp_path / name)
        bad = TARBALL
    else:
        make_idx_files(tmp_path / name)
        bad = "train-images-idx3-ubyte.gz"
    path = tmp_path / name / bad
    with pytest.raises(ValueError) as caught:
        load_dataset(name, root=tmp_path, download=False)  # the official MD5s: these tiny files fail
    message = str(caught.value)
    assert str(path) in message and DATASETS[name]["md5"][bad] in message and md5(path) in message
    assert "Delete it" in message


def test_md5_is_computed_once_per_file_and_again_when_it_changes(tmp_path, monkeypatch):
    path = tmp_path / "file"
    path.write_bytes(b"abc")
    calls = []
    real_md5 = hashlib.md5
    monkeypatch.setattr(download.hashlib, "md5", lambda *a: calls.append(1) or real_md5(*a))
    assert download.md5_of(path) == real_md5(b"abc").hexdigest()
    assert download.md5_of(path) == real_md5(b"abc").hexdigest()
    assert len(calls) == 1
    path.write_bytes(b"abcd")
    assert download.md5_of(path) == real_md5(b"abcd").hexdigest()
    assert len(calls) == 2


def corrupt_truncate(data):
    return data[:len(data) // 2]


def corrupt_flip_a_byte(data):
    data = bytearray(data)
    data[len(data) // 2] ^= 0xFF
    return bytes(data)


@pytest.mark.parametrize("corrupt", [corrupt_truncate, corrupt_flip_a_byte])
def test_damaged_gzip_is_a_clear_error(tmp_path, monkeypatch, corrupt):
    make_idx_files(tmp_path / "mnist")
    path = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    path.write_bytes(corrupt(path.read_bytes()))
    use_md5s_of(monkeypatch, "mnist", tmp_path / "mnist")  # get past the MD5 check to the parser
    with pytest.raises(ValueError, match="does not decompress") as caught:
        load_dataset("mnist", root=tmp_path, download=False)
    assert str(path) in str(caught.value) and "Delete it" in str(caught.value)


@pytest.mark.parametrize("content, expected", [
    (idx_bytes(np.zeros((3, 28, 28)), 0x801), "magic number 0x00000801, expected 0x00000803"),
    (idx_bytes(np.zeros((3, 28, 28)), 0x803)[:-1],
     r"announces shape \(3, 28, 28\), which needs 2368 bytes, but it holds 2367"),
    (idx_bytes(np.zeros((3, 28, 28)), 0x803) + b"\0", "but it holds 2369"),
    (idx_bytes(np.zeros((3, 28, 28)), 0x803)[:10], "header is cut short"),
    (b"\0\0", "holds only 2 bytes"),
])
def test_bad_idx_content_is_a_clear_error(tmp_path, monkeypatch, content, expected):
    make_idx_files(tmp_path / "mnist")
    path = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    write_gz(path, content)
    use_md5s_of(monkeypatch, "mnist", tmp_path / "mnist")
    with pytest.raises(ValueError, match=expected) as caught:
        load_dataset("mnist", root=tmp_path, download=False)
    assert str(path) in str(caught.value) and "Delete it" in str(caught.value)


def test_images_and_labels_of_different_lengths(tmp_path, monkeypatch):
    make_idx_files(tmp_path / "mnist", n_train=4)
    write_gz(tmp_path / "mnist" / "train-labels-idx1-ubyte.gz", idx_bytes(np.zeros(3), 0x801))
    use_md5s_of(monkeypatch, "mnist", tmp_path / "mnist")
    with pytest.raises(ValueError, match="holds 4 images but .*train-labels-idx1-ubyte.gz holds 3 labels"):
        load_dataset("mnist", root=tmp_path, download=False)


class RunsAShellCommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_malicious_pickle_in_the_tarball_is_refused(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    evil = pickle.dumps({b"data": RunsAShellCommand(f"touch {marker}"), b"labels": []}, protocol=3)
    assert pickle.loads(evil) == {b"data": 0, b"labels": []} and marker.exists()  # it really is dangerous
    marker.unlink()

    rng = np.random.default_rng(0)
    members = {f"data_batch_{i}": py2_pickle(cifar_batch(rng, 2, b"x")) for i in range(1, 6)}
    members["data_batch_3"] = evil
    members["test_batch"] = py2_pickle(cifar_batch(rng, 2, b"x"))
    (tmp_path / "cifar10").mkdir()
    make_tarball(tmp_path / "cifar10" / TARBALL, members)
    use_md5s_of(monkeypatch, "cifar10", tmp_path / "cifar10")
    with pytest.raises(ValueError, match=r"data_batch_3 cannot be unpickled safely .*system.*refused") as caught:
        load_dataset("cifar10", root=tmp_path, download=False)
    assert TARBALL in str(caught.value)
    assert not marker.exists()
    load_dataset("cifar10", root=tmp_path, train=False, download=False)  # the other batches are fine


def test_unpickler_allows_only_what_an_array_needs():
    refused = [("builtins", "eval"), ("numpy", "load"), ("numpy.core.multiarray", "scalar"), ("os", "system")]
    for module, name in refused:
        data = b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n."
        with pytest.raises(pickle.UnpicklingError, match="refused"):
            cifar.ArraysOnlyUnpickler(io.BytesIO(data)).load()


def test_tarball_without_a_batch_or_cut_short(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar10"
    folder.mkdir()
    make_tarball(folder / TARBALL, {f"data_batch_{i}": py2_pickle(cifar_batch(rng, 2, b"x")) for i in (1, 2, 4, 5)})
    use_md5s_of(monkeypatch, "cifar10", folder)
    with pytest.raises(ValueError, match="lacks cifar-10-batches-py/data_batch_3"):
        load_dataset("cifar10", root=tmp_path, download=False)
    with pytest.raises(ValueError, match="lacks cifar-10-batches-py/test_batch"):
        load_dataset("cifar10", root=tmp_path, train=False, download=False)

    make_cifar_tarball(folder)
    (folder / TARBALL).write_bytes((folder / TARBALL).read_bytes()[:5000])
    use_md5s_of(monkeypatch, "cifar10", folder)
    with pytest.raises(ValueError, match="Delete it") as caught:
        load_dataset("cifar10", root=tmp_path, download=False)
    assert str(folder / TARBALL) in str(caught.value)


def test_batch_with_wrong_contents(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    good = cifar_batch(rng, 2, b"x")
    members = {f"data_batch_{i}": py2_pickle(good) for i in range(1, 6)}
    members["data_batch_2"] = pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, protocol=3)
    members["data_batch_4"] = pickle.dumps({b"data": good[b"data"], b"labels": [0, 10]}, protocol=3)
    members["test_batch"] = pickle.dumps({b"data": good[b"data"], b"labels": [0]}, protocol=3)
    (tmp_path / "cifar10").mkdir()
    make_tarball(tmp_path / "cifar10" / TARBALL, members)
    use_md5s_of(monkeypatch, "cifar10", tmp_path / "cifar10")
    with pytest.raises(ValueError, match=r"data_batch_2 has b'data' of uint8 \(2, 100\), expected a uint8 array"):
        load_dataset("cifar10", root=tmp_path, download=False)
    with pytest.raises(ValueError, match="test_batch has 2 images but 1 labels"):
        load_dataset("cifar10", root=tmp_path, train=False, download=False)
    members["data_batch_2"] = members["data_batch_1"]
    make_tarball(tmp_path / "cifar10" / TARBALL, members)
    use_md5s_of(monkeypatch, "cifar10", tmp_path / "cifar10")
    with pytest.raises(ValueError, match="data_batch_4 has b'labels' that are not a list of ints in 0..9"):
        load_dataset("cifar10", root=tmp_path, download=False)


# -- downloads -------------------------------------------------------------------------------

class MirrorHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; under /broken/ it promises 100000 bytes, sends 1000 and hangs up."""

    timeout = 10  # seconds a connection may stay silent: a stuck test ends

    def do_GET(self):
        if self.path.startswith("/broken/"):
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"x" * 1000)
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """(folder, base URL) of an HTTP server on 127.0.0.1 serving that folder, stopped after the test."""
    served = tmp_path / "served"
    served.mkdir()
    monkeypatch.setenv("no_proxy", "*")  # never send 127.0.0.1 to a proxy from the environment
    monkeypatch.setattr(download, "TIMEOUT", 10)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(MirrorHandler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def closed_port_url():
    """A URL on 127.0.0.1 where nothing listens: connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def leftover_files(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_download_from_a_mirror(tmp_path, monkeypatch, mirror, name):
    served, url = mirror
    made = make_cifar_tarball(served) if name == "cifar10" else make_idx_files(served)
    use_md5s_of(monkeypatch, name, served)
    # The first mirror is down, the second lacks the files (404), the third has them.
    monkeypatch.setitem(DATASETS[name], "mirrors", [closed_port_url(), url + "nothing-here/", url])
    root = tmp_path / "root"
    dataset = load_dataset(name, root=root, train=False)
    assert_dataset(dataset, *made["test"], name)
    expected_files = [TARBALL] if name == "cifar10" else ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    assert leftover_files(root / name) == expected_files  # only what the test split needs, no temporary files
    for file in expected_files:
        assert md5(root / name / file) == md5(served / file)


@pytest.mark.parametrize("content", ["wrong", "interrupted"])
def test_a_failed_download_leaves_no_file(tmp_path, monkeypatch, mirror, content):
    served, url = mirror
    make_idx_files(served)
    use_md5s_of(monkeypatch, "mnist", served)
    if content == "wrong":  # right name, wrong bytes: the MD5 check must refuse it
        for file in IDX_FILES:
            (served / file).write_bytes(b"not the file you want")
        mirrors = [url]
    else:
        mirrors = [url + "broken/"]
    monkeypatch.setitem(DATASETS["mnist"], "mirrors", mirrors)
    folder = tmp_path / "root" / "mnist"
    with pytest.raises(FileNotFoundError) as caught:
        load_dataset("mnist", root=tmp_path / "root")
    message = str(caught.value)
    assert "train-images-idx3-ubyte.gz" in message and "train-labels-idx1-ubyte.gz" in message
    assert str(folder) in message
    why = "downloaded file has MD5" if content == "wrong" else "stopped after 1000 of 100000 bytes"
    assert message.count(why) == 2  # one line per file
    assert leftover_files(folder) == []  # no file under the official name, no temporary file


def test_offline_error_lists_the_files_and_the_folder(tmp_path, monkeypatch):
    monkeypatch.setitem(DATASETS["fashion-mnist"], "mirrors", [closed_port_url(), closed_port_url()])
    folder = tmp_path / "fashion-mnist"
    with pytest.raises(FileNotFoundError) as caught:
        load_dataset("fashion-mnist", root=tmp_path, train=False)
    message = str(caught.value)
    assert f"Fashion-MNIST test set: these files are missing from {folder}" in message
    assert "t10k-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert "Downloading them failed" in message and message.count("Connection refused") >= 4
    assert f"Put the official files in {folder}" in message and "RESNET_NP_DATA" in message

    with pytest.raises(FileNotFoundError) as caught:
        load_dataset("fashion-mnist", root=tmp_path, train=False, download=False)
    message = str(caught.value)
    assert f"missing from {folder}" in message and "t10k-images-idx3-ubyte.gz" in message
    assert "download=False" in message and f"Put the official files in {folder}" in message


def test_a_bad_file_already_there_is_never_overwritten(tmp_path, monkeypatch, mirror):
    served, url = mirror
    make_idx_files(served)
    use_md5s_of(monkeypatch, "mnist", served)
    monkeypatch.setitem(DATASETS["mnist"], "mirrors", [url])
    folder = tmp_path / "root" / "mnist"
    folder.mkdir(parents=True)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="has MD5 .* but the official file has MD5"):
        load_dataset("mnist", root=tmp_path / "root")
    assert (folder / "train-images-idx3-ubyte.gz").read_bytes() == b"junk"


# -- Dataset ---------------------------------------------------------------------------------

def tiny_dataset(n=23, channels=3, size=8, seed=0):
    """Labels are the indices, so a batch's labels say which examples it holds."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, channels, size, size), dtype=np.uint8)
    return Dataset(images, np.arange(n), classes=[str(i) for i in range(n)],
                   mean=(0.5, 0.25, 0.125)[:channels], std=(0.2, 0.4, 0.8)[:channels], name="tiny")


def test_subset_and_bad_datasets():
    dataset = tiny_dataset()
    part = dataset.subset([5, 0, 5])
    np.testing.assert_array_equal(part.labels, [5, 0, 5])
    np.testing.assert_array_equal(part.images, dataset.images[[5, 0, 5]])
    assert (part.classes, part.mean, part.std, part.name) == (dataset.classes, dataset.mean, dataset.std, "tiny")
    assert len(dataset.subset([])) == 0
    with pytest.raises(ValueError, match=r"subset indices must lie in 0..22, found 0..23"):
        dataset.subset([0, 23])
    with pytest.raises(ValueError, match="subset expects a 1-D sequence of ints"):
        dataset.subset([0.5])
    with pytest.raises(ValueError, match=r"images must be uint8 \(N, C, H, W\), got float64"):
        Dataset(np.zeros((2, 1, 4, 4)), [0, 1], ["a", "b"], (0.5,), (0.5,))
    with pytest.raises(ValueError, match="mean and std need one value per channel"):
        Dataset(np.zeros((2, 3, 4, 4), np.uint8), [0, 1], ["a", "b"], (0.5,), (0.5,))
    with pytest.raises(ValueError, match=r"labels must lie in 0..1, found 0..2"):
        Dataset(np.zeros((2, 1, 4, 4), np.uint8), [0, 2], ["a", "b"], (0.5,), (0.5,))


# -- DataLoader ------------------------------------------------------------------------------

def epoch_of(loader):
    return [(x.copy(), y.copy()) for x, y in loader]


def labels_of(batches):
    return np.concatenate([y for _, y in batches])


@pytest.mark.parametrize("shuffle", [True, False])
def test_every_example_exactly_once_per_epoch(shuffle):
    dataset = tiny_dataset()
    loader = DataLoader(dataset, batch_size=5, shuffle=shuffle, normalize=False)
    for _ in range(3):
        batches = epoch_of(loader)
        assert [len(y) for _, y in batches] == [5, 5, 5, 5, 3]
        seen = labels_of(batches)
        np.testing.assert_array_equal(np.sort(seen), np.arange(23))
        assert (seen != np.arange(23)).any() == shuffle
        for x, y in batches:  # each image comes with its own label
            np.testing.assert_array_equal(np.rint(x * 255), dataset.images[y])


def test_number_of_batches():
    dataset = tiny_dataset()
    for batch_size, drop_last, sizes in [(5, False, [5, 5, 5, 5, 3]), (5, True, [5, 5, 5, 5]),
                                         (23, True, [23]), (24, True, []), (24, False, [23]), (1, True, [1] * 23)]:
        loader = DataLoader(dataset, batch_size=batch_size, drop_last=drop_last)
        assert len(loader) == len(sizes)
        assert [len(y) for _, y in loader] == sizes


def test_shuffle_is_reproducible_differs_between_epochs_and_set_epoch_replays_one():
    dataset = tiny_dataset()
    loader = DataLoader(dataset, batch_size=4, seed=3, augment="cifar")
    run = [epoch_of(loader) for _ in range(3)]
    assert loader.epoch == 3
    again = [epoch_of(DataLoader(dataset, batch_size=4, seed=3, augment="cifar")) for _ in range(1)]
    for (x1, y1), (x2, y2) in zip(run[0], again[0]):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    orders = [tuple(labels_of(epoch)) for epoch in run]
    assert len(set(orders)) == 3  # a new order every epoch
    other_seed = labels_of(epoch_of(DataLoader(dataset, batch_size=4, seed=4)))
    assert tuple(other_seed) != orders[0]

    resumed = DataLoader(dataset, batch_size=4, seed=3, augment="cifar")
    resumed.set_epoch(2)
    replay = epoch_of(resumed)
    assert resumed.epoch == 3
    for (x1, y1), (x2, y2) in zip(run[2], replay):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    # The order of an epoch is a permutation from default_rng([seed, epoch]): nothing else feeds it.
    np.testing.assert_array_equal(orders[1], np.random.default_rng([3, 1]).permutation(23))


def test_the_epoch_is_fixed_when_iteration_starts():
    loader = DataLoader(tiny_dataset(), batch_size=4, seed=1)
    first, second = iter(loader), iter(loader)
    assert loader.epoch == 2
    np.testing.assert_array_equal(next(second)[1], np.random.default_rng([1, 1]).permutation(23)[:4])
    np.testing.assert_array_equal(next(first)[1], np.random.default_rng([1, 0]).permutation(23)[:4])


@pytest.mark.parametrize("channels", [1, 3])
def test_batches_are_normalised_per_channel(channels):
    dataset = tiny_dataset(channels=channels)
    mean = np.array(dataset.mean).reshape(1, -1, 1, 1)
    std = np.array(dataset.std).reshape(1, -1, 1, 1)
    for x, y in DataLoader(dataset, batch_size=6):
        assert x.dtype == np.float32 and y.dtype == np.int64 and x.shape == (len(y), channels, 8, 8)
        np.testing.assert_allclose(x, (dataset.images[y] / 255 - mean) / std, rtol=1e-6, atol=1e-6)
    for x, y in DataLoader(dataset, batch_size=6, normalize=False):
        np.testing.assert_allclose(x, dataset.images[y] / 255, rtol=1e-7, atol=1e-7)
        assert x.min() >= 0 and x.max() <= 1


def test_normalisation_constants_of_the_datasets():
    assert (DATASETS["mnist"]["mean"], DATASETS["mnist"]["std"]) == ((0.1307,), (0.3081,))
    assert (DATASETS["fashion-mnist"]["mean"], DATASETS["fashion-mnist"]["std"]) == ((0.2860,), (0.3530,))
    assert DATASETS["cifar10"]["mean"] == (0.4914, 0.4822, 0.4465)
    assert DATASETS["cifar10"]["std"] == (0.2470, 0.2435, 0.2616)


def test_loader_rejects_bad_arguments():
    dataset = tiny_dataset()
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        DataLoader(dataset, batch_size=0)
    with pytest.raises(ValueError, match=r"augment must be None or one of \['cifar', 'digits'\], got 'mnist'"):
        DataLoader(dataset, augment="mnist")
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        DataLoader(dataset, seed=-1)
    with pytest.raises(ValueError, match="epoch must be an int >= 0"):
        DataLoader(dataset).set_epoch(-1)


# -- augmentation ----------------------------------------------------------------------------

def reference_crop(images, padding, rng):
    """One image at a time, with the same random draws as random_crop."""
    n, _, h, w = images.shape
    tops = rng.integers(0, 2 * padding + 1, size=n)
    lefts = rng.integers(0, 2 * padding + 1, size=n)
    out = np.empty_like(images)
    for i in range(n):
        padded = np.pad(images[i], ((0, 0), (padding, padding), (padding, padding)))
        out[i] = padded[:, tops[i]:tops[i] + h, lefts[i]:lefts[i] + w]
    return out


def reference_flip(images, rng):
    flips = rng.random(len(images)) < 0.5
    out = images.copy()
    for i in range(len(images)):
        if flips[i]:
            out[i] = images[i, :, :, ::-1]
    return out


def shifted(image, dy, dx):
    """``image`` (C, H, W) moved down by dy and right by dx, zeros coming in."""
    c, h, w = image.shape
    out = np.zeros_like(image)
    out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        image[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def random_images(n=50, c=3, h=7, w=9, seed=0):
    # Values 1..255: a shifted image shows its zero border, so each shift is told apart.
    return np.random.default_rng(seed).integers(1, 256, (n, c, h, w), dtype=np.uint8)


@pytest.mark.parametrize("padding", [0, 1, 4])
def test_random_crop_matches_the_per_image_reference(padding):
    images = random_images()
    out = random_crop(images, padding, np.random.default_rng(5))
    assert out.shape == images.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, reference_crop(images, padding, np.random.default_rng(5)))


def test_random_crop_shifts_by_at_most_the_padding_and_by_all_of_them():
    images = random_images(n=300, c=1, h=6, w=6)
    out = random_crop(images, 2, np.random.default_rng(0))
    shifts = set()
    for image, cropped in zip(images, out):
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if np.array_equal(cropped, shifted(image, dy, dx))]
        assert len(found) == 1, "each crop is the image shifted by one offset within the padding"
        shifts.add(found[0])
    assert len(shifts) == 25  # every offset in [-2, 2]^2 occurs


def test_random_flip_matches_the_per_image_reference():
    images = random_images(n=400)
    out = random_flip(images, np.random.default_rng(2))
    np.testing.assert_array_equal(out, reference_flip(images, np.random.default_rng(2)))
    flipped = [not np.array_equal(a, b) for a, b in zip(images, out)]
    assert 150 < sum(flipped) < 250  # about half
    np.testing.assert_array_equal(out[np.logical_not(flipped)], images[np.logical_not(flipped)])
    np.testing.assert_array_equal(out[flipped], images[flipped][..., ::-1])


def test_augment_recipes():
    images = random_images(n=40)
    rng = np.random.default_rng(1)  # the crop's draws first, then the flip's
    expected = reference_flip(reference_crop(images, 4, rng), rng)
    np.testing.assert_array_equal(augment(images, "cifar", np.random.default_rng(1)), expected)
    np.testing.assert_array_equal(augment(images, "digits", np.random.default_rng(1)),
                                  reference_crop(images, 2, np.random.default_rng(1)))


def test_random_crop_and_flip_reject_bad_input():
    with pytest.raises(ValueError, match=r"random_crop: expected a batch of images \(N, C, H, W\), got shape"):
        random_crop(np.zeros((3, 4, 4), np.uint8), 1, np.random.default_rng())
    with pytest.raises(ValueError, match="padding must be an int >= 0, got -1"):
        random_crop(np.zeros((1, 3, 4, 4), np.uint8), -1, np.random.default_rng())
    with pytest.raises(ValueError, match="random_flip: expected a batch of images"):
        random_flip(np.zeros((4, 4), np.uint8), np.random.default_rng())


def test_loader_augmentation_is_new_for_every_batch_and_epoch():
    same = tiny_dataset(n=1).images
    dataset = Dataset(np.repeat(same, 64, axis=0), np.zeros(64, np.int64), ["a"], (0.5,) * 3, (0.2,) * 3)
    loader = DataLoader(dataset, batch_size=32, shuffle=False, augment="cifar")
    (x00, _), (x01, _) = epoch_of(loader)
    (x10, _), _ = epoch_of(loader)
    assert not np.array_equal(x00, x01)  # one image, but batch 1 is augmented differently from batch 0
    assert not np.array_equal(x00, x10)  # and epoch 1 differently from epoch 0
    loader.set_epoch(0)
    np.testing.assert_array_equal(epoch_of(loader)[1][0], x01)


@pytest.mark.parametrize("recipe, padding, flips", [("cifar", 4, True), ("digits", 2, False), (None, 0, False)])
def test_loader_augmentation_crops_and_flips_only_for_cifar(recipe, padding, flips):
    dataset = tiny_dataset(n=120, channels=1, size=10)
    dataset.images[dataset.images == 0] = 1  # no zeros in the images: only the padding is black
    loader = DataLoader(dataset, batch_size=32, augment=recipe, normalize=False)
    seen_flip, seen_shift = False, False
    for x, y in loader:
        pixels = np.rint(x * 255).astype(np.uint8)
        for out, image in zip(pixels, dataset.images[y]):
            candidates = [(dy, dx, flip) for dy in range(-padding, padding + 1) for dx in range(-padding, padding + 1)
                          for flip in (False, True)
                          if np.array_equal(out, shifted(image[..., ::-1] if flip else image, dy, dx))]
            assert candidates, "every augmented image is a shift within the padding, mirrored or not"
            seen_flip |= all(c[2] for c in candidates)
            seen_shift |= all(c[:2] != (0, 0) for c in candidates)
    assert seen_flip == flips and seen_shift == (recipe is not None)


# -- real MNIST --------------------------------------------------------------------------------

REAL_MNIST = os.path.join(os.environ.get("RESNET_NP_DATA", ""), "mnist")
HAVE_REAL_MNIST = bool(os.environ.get("RESNET_NP_DATA")) and all(
    os.path.isfile(os.path.join(REAL_MNIST, f)) for f in IDX_FILES)


@pytest.mark.skipif(not HAVE_REAL_MNIST,
                    reason=f"real MNIST not found: $RESNET_NP_DATA/mnist (here {REAL_MNIST!r}) must hold "
                           f"{', '.join(IDX_FILES)}")
def test_real_mnist():
    for file in IDX_FILES:
        assert md5(os.path.join(REAL_MNIST, file)) == DATASETS["mnist"]["md5"][file]
    train = load_dataset("mnist", download=False)
    test = load_dataset("mnist", train=False, download=False)
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(train.labels),
                                  [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
    np.testing.assert_array_equal(np.bincount(test.labels), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
    pixels = train.images / 255.0
    assert abs(pixels.mean() - 0.1307) < 1e-4 and abs(pixels.std() - 0.3081) < 1e-4  # the published constants
    x, y = next(iter(DataLoader(train, batch_size=1000, shuffle=False)))
    np.testing.assert_array_equal(y, train.labels[:1000])
    assert abs(float(x.mean())) < 0.1 and abs(float(x.std()) - 1) < 0.1


def test_a_batch_with_bool_labels_or_too_large_is_refused_by_name(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    good = cifar_batch(rng, 2, b"x")
    members = {f"data_batch_{i}": py2_pickle(good) for i in range(1, 6)}
    members["test_batch"] = pickle.dumps({b"data": good[b"data"], b"labels": [True, False]}, protocol=3)
    (tmp_path / "cifar10").mkdir()
    make_tarball(tmp_path / "cifar10" / TARBALL, members)
    use_md5s_of(monkeypatch, "cifar10", tmp_path / "cifar10")
    with pytest.raises(ValueError, match="test_batch has b'labels' that are not a list of ints in 0..9"):
        load_dataset("cifar10", root=tmp_path, train=False, download=False)
    monkeypatch.setattr(cifar, "MAX_BATCH_BYTES", 100)  # the tiny batches are larger: none is read
    with pytest.raises(ValueError, match=r"data_batch_1 is \d+ bytes, more than a CIFAR-10 batch"):
        load_dataset("cifar10", root=tmp_path, download=False)
