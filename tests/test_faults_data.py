"""Data faults: downloads that break off in every way a connection can, archives cut short, a process
killed in the middle of a download. A partly written file must never be taken for a good one, and the
error must say what to do.

The mirror is an HTTP server on 127.0.0.1, started by the test, serving files the test made. The first
part of a URL's path says how it misbehaves (``/short/<file>``, ``/reset/<file>``, ...).
"""

import hashlib
import http.server
import io
import os
import signal
import socket
import struct
import subprocess
import sys
import tarfile
import threading
import time

import pytest

from resnet_np.data import DATASETS, download, load_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "cifar-10-python.tar.gz"


def make_archive():
    """The bytes of a small .tar.gz (about 64 KB, incompressible) and their MD5."""
    buffer = io.BytesIO()
    payload = os.urandom(64 << 10)
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/data")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    data = buffer.getvalue()
    return data, hashlib.md5(data).hexdigest()


class Mirror(http.server.BaseHTTPRequestHandler):
    """GET /<how>/<name>: the file ``files[name]``, sent the way <how> says."""

    protocol_version = "HTTP/1.1"  # chunked transfer encoding needs it
    files = {}
    release = None  # a threading.Event that ends a stalled answer

    def do_GET(self):
        how, _, name = self.path.strip("/").partition("/")
        data = self.files.get(name)
        if data is None or how not in self.ANSWERS:
            self.send_error(404)
            return
        try:
            self.ANSWERS[how](self, data)
        except (BrokenPipeError, ConnectionResetError):  # the client went away (a killed downloader)
            pass
        self.close_connection = True

    def headers_for(self, length, extra=()):
        self.send_response(200)
        if length is not None:
            self.send_header("Content-Length", str(length))
        for key, value in extra:
            self.send_header(key, value)
        self.send_header("Connection", "close")
        self.end_headers()

    def good(self, data):
        self.headers_for(len(data))
        self.wfile.write(data)

    def truncated(self, data):  # the mirror itself holds an archive cut short: an honest, shorter answer
        self.good(data[:len(data) // 2])

    def short(self, data):  # announces every byte, sends half, hangs up
        self.headers_for(len(data))
        self.wfile.write(data[:len(data) // 2])

    def no_length(self, data):  # no Content-Length: only the MD5 can tell the answer is short
        self.headers_for(None)
        self.wfile.write(data[:len(data) // 2])

    def chunked(self, data):  # chunked transfer encoding, cut off before the last chunk
        self.headers_for(None, [("Transfer-Encoding", "chunked")])
        half = data[:len(data) // 2]
        self.wfile.write(b"%x\r\n" % len(half) + half + b"\r\n")

    def reset(self, data):  # half the bytes, then a TCP reset instead of a clean close
        self.headers_for(len(data))
        self.wfile.write(data[:len(data) // 2])
        self.wfile.flush()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()  # the socket's last other user: closing it now sends the reset
        self.connection.close()

    def stall(self, data):  # half the bytes, then silence until the test ends
        self.headers_for(len(data))
        self.wfile.write(data[:len(data) // 2])
        self.wfile.flush()
        self.release.wait(10)

    def slow(self, data):  # every byte, 1 KB every 20 ms: a download that takes over a second
        self.headers_for(len(data))
        for start in range(0, len(data), 1024):
            self.wfile.write(data[start:start + 1024])
            self.wfile.flush()
            time.sleep(0.02)

    ANSWERS = {"good": good, "truncated": truncated, "short": short, "no-length": no_length, "chunked": chunked,
               "reset": reset, "stall": stall, "slow": slow}

    def log_message(self, *args):
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # a client that hung up is what these tests are about


@pytest.fixture
def mirror(monkeypatch):
    """(base URL, archive bytes, archive MD5) of a misbehaving mirror on 127.0.0.1."""
    data, md5 = make_archive()
    monkeypatch.setenv("no_proxy", "*")  # never send 127.0.0.1 to a proxy from the environment
    monkeypatch.setattr(download, "TIMEOUT", 0.5)  # a stalled mirror fails fast
    release = threading.Event()
    handler = type("TestMirror", (Mirror,), {"files": {NAME: data}, "release": release})
    server = QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/", data, md5
    finally:
        release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def files_in(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


REASONS = {
    "truncated": "downloaded file has MD5",
    "short": "the download stopped after 32",
    "no-length": "downloaded file has MD5",
    "chunked": "IncompleteRead",
    "reset": "Connection reset",
    "stall": "timed out",
}


@pytest.mark.parametrize("how", list(REASONS))
def test_a_broken_download_leaves_nothing_and_says_what_to_do(tmp_path, mirror, how):
    url, data, md5 = mirror
    folder = tmp_path / "cifar10"
    with pytest.raises(FileNotFoundError) as caught:
        download.ensure_files("CIFAR-10 training set", str(folder), {NAME: md5}, [url + how + "/"], True)
    message = str(caught.value)
    assert f"these files are missing from {folder}" in message and NAME in message
    assert f"{url}{how}/{NAME}: " in message and REASONS[how] in message, message
    assert f"Put the official files in {folder}" in message
    assert files_in(folder) == []  # nothing under the official name, no temporary file

    # The next mirror answers properly: the file arrives whole, and only it.
    paths = download.ensure_files("CIFAR-10 training set", str(folder), {NAME: md5},
                                  [url + how + "/", url + "good/"], True)
    assert paths == [str(folder / NAME)] and (folder / NAME).read_bytes() == data
    assert files_in(folder) == [NAME]


def test_a_truncated_archive_already_there_is_refused_with_advice(tmp_path, monkeypatch, mirror):
    url, data, md5 = mirror
    folder = tmp_path / "cifar10"
    folder.mkdir()
    (folder / NAME).write_bytes(data[:len(data) // 3])
    monkeypatch.setitem(DATASETS["cifar10"], "md5", {NAME: md5})
    monkeypatch.setitem(DATASETS["cifar10"], "mirrors", [url + "good/"])
    with pytest.raises(ValueError) as caught:
        load_dataset("cifar10", root=tmp_path)
    message = str(caught.value)
    assert str(folder / NAME) in message and f"official file has MD5 {md5}" in message
    assert "Delete it and run again to download it afresh" in message
    assert len((folder / NAME).read_bytes()) == len(data) // 3  # never overwritten behind the user's back


DOWNLOADER = """
import sys
from resnet_np.data import download
download.CHUNK = 4096  # written as it arrives, as the 1 MB pieces of a real 170 MB file are
download.download(sys.argv[1], sys.argv[2], sys.argv[3], [sys.argv[4]])
"""


def test_a_download_killed_half_way_is_never_taken_for_the_file(tmp_path, mirror):
    url, data, md5 = mirror
    folder = tmp_path / "cifar10"
    env = dict(os.environ, PYTHONPATH=ROOT, no_proxy="*")
    child = subprocess.Popen([sys.executable, "-c", DOWNLOADER, NAME, str(folder), md5, url + "slow/"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not any(name.endswith(".tmp") and os.path.getsize(folder / name) > 0 for name in files_in(folder)):
            assert child.poll() is None and time.monotonic() < deadline, "the download never started"
            time.sleep(0.005)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    left = files_in(folder)
    assert NAME not in left and len(left) == 1 and left[0].startswith("." + NAME)  # only the temporary file

    # The next run does not trust anything that is there: it downloads the file afresh.
    paths = download.ensure_files("CIFAR-10 training set", str(folder), {NAME: md5}, [url + "good/"], True)
    assert (folder / NAME).read_bytes() == data and paths == [str(folder / NAME)]


# -- hostile image folders, drawn at random (tests/_hostile.py) ----------------------------------------------------


def test_random_hostile_folders_give_right_labels_or_a_named_error_and_never_hang(tmp_path_factory):
    """Any mix of the traps of ``_hostile``: the dataset holds each regular image file once, under the class
    folder it really lies in, or the error is an ``ImageFileError``/``FileNotFoundError`` naming a file."""
    import _hostile
    import numpy as np
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from PIL import Image

    from resnet_np.data import ImageFolder
    from resnet_np.data.folder import ImageFileError

    bomb = _hostile.bomb_png()
    traps = ["good", "good", "fifo", "socket", "loop", "link-other-class", "link-out", "dangling", "hard-same",
             "hard-other", "copy-same", "copy-other", "truncated", "jpeg-as-png", "gray16", "float", "empty",
             "non-utf8", "bomb", "linked-folder"]

    def build(root, drawn):
        classes = [os.path.join(root, "cat"), os.path.join(root, "dog")]
        firsts = []
        for label, folder in enumerate(classes):
            firsts.append(_hostile.write(os.path.join(folder, "0.png"),
                                         _hostile.encoded(Image.fromarray(_hostile.pixels(label)), "PNG")))
        outside = _hostile.write(os.path.join(os.path.dirname(root), f"out-{os.path.basename(root)}", "x.png"),
                                 _hostile.encoded(Image.fromarray(_hostile.pixels(77)), "PNG"))
        for i, (label, trap) in enumerate(drawn):
            folder, other = classes[label], classes[1 - label]
            name = os.path.join(folder, f"t{i}.png")
            if trap == "good":
                _hostile.write(name, _hostile.encoded(Image.fromarray(_hostile.pixels(100 + i)), "PNG"))
            elif trap == "fifo":
                _hostile.fifo(name)
            elif trap == "socket":
                _hostile.unix_socket(name)
            elif trap == "loop":
                _hostile.symlink(os.path.join(folder, f"loop{i}"), "..")
            elif trap == "link-other-class":
                _hostile.symlink(name, firsts[1 - label])
            elif trap == "link-out":
                _hostile.symlink(name, outside)
            elif trap == "dangling":
                _hostile.symlink(name, os.path.join(root, "nowhere.png"))
            elif trap in ("hard-same", "hard-other"):
                os.link(firsts[label] if trap == "hard-same" else firsts[1 - label], name)
            elif trap in ("copy-same", "copy-other"):
                with open(firsts[label] if trap == "copy-same" else firsts[1 - label], "rb") as f:
                    _hostile.write(name, f.read())
            elif trap == "truncated":
                _hostile.write(name, _hostile.encoded(Image.fromarray(_hostile.pixels(i, 16, 16)), "PNG")[:80])
            elif trap == "jpeg-as-png":
                _hostile.write(name, _hostile.encoded(Image.fromarray(_hostile.pixels(i)), "JPEG"))
            elif trap == "gray16":
                _hostile.write(name, _hostile.png16_gray(256 * (i + 1)))
            elif trap == "float":
                _hostile.write(os.path.join(folder, f"t{i}.tif"), _hostile.mode_image("F", i)[0])
            elif trap == "empty":
                _hostile.write(name, b"")
            elif trap == "non-utf8":
                _hostile.write(os.fsdecode(os.path.join(os.fsencode(folder), b"t%d\xe9.png" % i)),
                               _hostile.encoded(Image.fromarray(_hostile.pixels(200 + i)), "PNG"))
            elif trap == "bomb":
                _hostile.write(name, bomb)
            elif trap == "linked-folder":
                _hostile.symlink(os.path.join(root, f"linked{i}"), other)

    class Blocked(BaseException):
        """Not an OSError (os.walk swallows those) nor an Exception (readers catch those)."""

    def alarm(signum, frame):
        raise Blocked("the image folder reader blocked for 20 s")

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.tuples(st.integers(0, 1), st.sampled_from(traps)), max_size=6))
    def check(drawn):
        root = str(tmp_path_factory.mktemp("hostile"))
        build(root, drawn)
        previous = signal.signal(signal.SIGALRM, alarm)
        signal.alarm(20)
        try:
            data = ImageFolder(root, log=None)
            samples = list(data.samples)
            dataset = data.to_dataset(size=4)
        except (ImageFileError, FileNotFoundError) as e:
            assert root in str(e), str(e)
            return
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
        assert dataset.classes == ("cat", "dog")
        for path, label in data.samples:  # each a regular file, under the folder of its own class
            assert not os.path.islink(path) and os.path.isfile(path), path
            own_class = os.path.realpath(os.path.join(root, ("cat", "dog")[label]))
            assert os.path.realpath(path).startswith(own_class + os.sep), path
        contents = [open(path, "rb").read() for path, _ in samples]
        assert len(dataset) == len(set(contents))  # each image once: never in both parts of a split
        np.testing.assert_array_equal(dataset.labels, [label for _, label in data.samples])

    check()
