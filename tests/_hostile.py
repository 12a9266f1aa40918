"""A generator of hostile image folders: every way a folder of "images" can lie, in one place.

``hostile_folder(root)`` builds, under ``root``, a two-class folder (``cat``,
``dog``) of good 8x8 images plus every trap a real folder (or a careless
script) can hold, and returns a ``Hostile`` record saying what each trap is
and what a correct reader must make of it: the samples it must list with
their labels, the files it must skip (and why), the files it must refuse.

The traps, each built by one small function below so a test can also build
it alone:

* special files: a FIFO named ``pipe.png`` (opening it blocks forever), a
  socket named ``sock.png``;
* links: a loop (``cat/loop -> ..``), a link out of the tree, a link to a
  file of the other class, a dangling link, a linked class folder, a hard
  link of one class's file inside the same class;
* bit depths and modes: 16-bit grayscale and 16-bit RGB PNGs, palette, LA,
  CMYK, I;16 TIFF, and floating-point (F) and 32-bit integer (I) TIFFs;
* a decompression bomb: a tiny PNG whose header claims 14000x14000 pixels;
* a name that is not UTF-8 (``caf\\xe9.png``), a truncated PNG, an empty
  file, and files that are not what their extension says (a JPEG named
  ``.png``, a text file named ``.jpg``).
"""

import io
import os
import socket
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np
from PIL import Image


def pixels(seed, height=8, width=8, channels=3):
    shape = (height, width) if channels == 1 else (height, width, channels)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def raw_png(array, bit_depth, color_type, width=None, height=None, idat=None):
    """PNG bytes written by hand: for what Pillow cannot write (16-bit RGB) or should not (a lying header)."""
    height = array.shape[0] if height is None else height
    width = array.shape[1] if width is None else width
    if idat is None:
        rows = b"".join(b"\0" + array[i].tobytes() for i in range(array.shape[0]))
        idat = zlib.compress(rows)
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def encoded(image, fmt, **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


# -- traps, one function each ----------------------------------------------------------------------------


def fifo(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.mkfifo(path)
    return path


def unix_socket(path):
    """A socket file (bound, then closed: the file stays)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(path)
    finally:
        s.close()
    return path


def symlink(path, target):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.symlink(target, path)
    return path


def png16_gray(value=1000, height=8, width=8):
    """A 16-bit grayscale PNG (Pillow mode I;16) of one value: its 8-bit pixel is ``value >> 8``."""
    return encoded(Image.fromarray(np.full((height, width), value, dtype=np.uint16)), "PNG")


def png16_rgb(height=8, width=8, seed=0):
    """A 16-bit RGB PNG (written by hand: Pillow cannot) and its expected 8-bit RGB pixels (the high bytes)."""
    values = np.random.default_rng(seed).integers(0, 65536, (height, width, 3)).astype(">u2")
    return raw_png(values, 16, 2), (values >> 8).astype(np.uint8)


def bomb_png(side=14000):
    """A 1-bit PNG of side x side zero pixels: some kilobytes on disk, 196 million pixels for the default side."""
    row = b"\0" + bytes((side + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    return raw_png(np.zeros((0, 0), dtype=np.uint8), 1, 0, width=side, height=side, idat=idat)


def mode_image(mode, seed=0):
    """An 8x8 image of ``mode`` (Pillow's), encoded in a format that keeps that mode, and the format's suffix."""
    base = Image.fromarray(pixels(seed))
    if mode == "P":
        return encoded(base.convert("P"), "PNG"), ".png"
    if mode == "LA":
        return encoded(base.convert("LA"), "PNG"), ".png"
    if mode == "CMYK":
        return encoded(base.convert("CMYK"), "JPEG", quality=95), ".jpg"
    if mode == "I;16":
        return encoded(Image.fromarray(pixels(seed, channels=1).astype(np.uint16) * 257), "TIFF"), ".tif"
    if mode == "F":
        return encoded(Image.fromarray(np.random.default_rng(seed).random((8, 8)).astype(np.float32)), "TIFF"), ".tif"
    if mode == "I":
        return encoded(Image.fromarray(pixels(seed, channels=1).astype(np.int32) * 1000), "TIFF"), ".tif"
    if mode == "1":
        return encoded(base.convert("1"), "PNG"), ".png"
    raise ValueError(mode)


@dataclass
class Hostile:
    root: str
    samples: list = field(default_factory=list)   # (path, label) a correct reader lists, in its order
    skipped: dict = field(default_factory=dict)   # path -> a fragment of the reason a reader must give
    refused: dict = field(default_factory=dict)   # path -> a fragment of the error a reader must give
    expected: dict = field(default_factory=dict)  # path -> the RGB pixels (H, W, 3) a reader must give


def hostile_folder(root, refused=True):
    """A folder with every trap above; with ``refused=False`` only those a reader skips (so it can train)."""
    root = os.fspath(root)
    h = Hostile(root)
    for label, name in enumerate(("cat", "dog")):
        for i in range(4):
            path = write(os.path.join(root, name, f"{i}.png"), encoded(Image.fromarray(pixels(10 * label + i)), "PNG"))
            h.expected[path] = pixels(10 * label + i)
    cat, dog = os.path.join(root, "cat"), os.path.join(root, "dog")

    # Images of every mode that converts, under cat (sorted names: they come after 0..3.png).
    path = write(os.path.join(cat, "gray16.png"), png16_gray(1000))
    h.expected[path] = np.full((8, 8, 3), 1000 >> 8, dtype=np.uint8)
    data, want = png16_rgb()
    path = write(os.path.join(cat, "rgb16.png"), data)
    h.expected[path] = want
    for mode in ("P", "LA", "CMYK", "I;16", "1"):
        data, suffix = mode_image(mode, seed=len(mode))
        path = write(os.path.join(cat, f"mode_{mode.replace(';', '')}{suffix}"), data)
        if mode == "I;16":
            h.expected[path] = np.repeat((pixels(len(mode), channels=1))[..., None], 3, axis=2)
    non_utf8 = os.fsdecode(os.path.join(os.fsencode(cat), b"caf\xe9.png"))
    write(non_utf8, encoded(Image.fromarray(pixels(99)), "PNG"))
    h.expected[non_utf8] = pixels(99)

    # What a reader must skip.
    h.skipped[fifo(os.path.join(cat, "pipe.png"))] = "FIFO"
    h.skipped[unix_socket(os.path.join(cat, "sock.png"))] = "socket"
    h.skipped[symlink(os.path.join(cat, "loop"), "..")] = "symbolic link"
    h.skipped[symlink(os.path.join(cat, "dogs.png"), os.path.join(dog, "0.png"))] = "symbolic link"
    h.skipped[symlink(os.path.join(cat, "dangling.png"), os.path.join(root, "nowhere.png"))] = "symbolic link"
    outside = write(os.path.join(os.path.dirname(root), "outside", "x.png"),
                    encoded(Image.fromarray(pixels(7)), "PNG"))
    h.skipped[symlink(os.path.join(dog, "outside.png"), outside)] = "symbolic link"
    h.skipped[symlink(os.path.join(root, "linked_class"), os.path.dirname(outside))] = "symbolic link"
    h.skipped[symlink(os.path.join(dog, "up"), root)] = "symbolic link"
    hard = os.path.join(dog, "z_hardlink.png")
    os.link(os.path.join(dog, "1.png"), hard)
    h.skipped[hard] = "hard link"
    copy = write(os.path.join(dog, "z_copy.png"), open(os.path.join(dog, "2.png"), "rb").read())
    h.skipped[copy] = "same bytes"

    if refused:
        h.refused[write(os.path.join(dog, "bomb.png"), bomb_png())] = "decompression bomb"
        h.refused[write(os.path.join(dog, "jpeg.png"), encoded(Image.fromarray(pixels(5)), "JPEG"))] = \
            "is a JPEG file, not PNG"
        h.refused[write(os.path.join(dog, "text.jpg"), b"hello, I am not a photo\n" * 10)] = "cannot be read"
        png = encoded(Image.fromarray(pixels(6, 32, 32)), "PNG")
        h.refused[write(os.path.join(dog, "truncated.png"), png[:len(png) // 2])] = "cannot be read"
        h.refused[write(os.path.join(dog, "empty.png"), b"")] = "cannot be read"
        for mode, why in (("F", "floating-point"), ("I", "32-bit integer")):
            data, suffix = mode_image(mode)
            h.refused[write(os.path.join(dog, f"mode_{mode}{suffix}"), data)] = why

    listed = set()
    for label, folder in enumerate((cat, dog)):
        names = sorted(os.listdir(folder))
        for name in names:
            path = os.path.join(folder, name)
            if path in h.skipped and h.skipped[path] != "same bytes":
                continue
            if os.path.isfile(path) and name.lower().endswith((".png", ".jpg", ".tif")) and path not in listed:
                listed.add(path)
                h.samples.append((path, label))
    return h
