"""Reading CIFAR-10 from lossless PNG archives (an image-folder copy of the official data).

Where the official ``cifar-10-python.tar.gz`` cannot be had, the same 60,000
images may come as three ``.tar.gz`` archives of PNG files::

    cifar10-png-test.tar.gz      labels.txt, test/<class>/<index>_<class>.png
    cifar10-png-train-1.tar.gz   labels.txt, train/ airplane ... deer
    cifar10-png-train-2.tar.gz   labels.txt, train/ dog ... truck

``<index>`` is the image's position in the official order (train: the five
data batches one after the other; test: the test batch), so putting every
image at its index restores the official arrays exactly; ``labels.txt``
lists the class names in the official label order.

The archives are read straight from the ``.tar.gz`` streams — no 60,000
small files on disk — and each PNG is decoded with Pillow. Decoding takes
about 20 s, so the arrays of each split are then cached in one ``.npz``
file (written atomically: a crash leaves no half-written cache) that
records the MD5s of the archives it came from; the next load reads that
file in about a second, and an archive that changed makes the cache stale,
so it is rebuilt.
"""

import io
import json
import os
import tarfile
import zipfile
import zlib

from ..atomic import write_atomically
from ..backend import host

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

# Each split: the archives that hold it, and how many images it has.
ARCHIVES = {
    "train": ("cifar10-png-train-1.tar.gz", "cifar10-png-train-2.tar.gz"),
    "test": ("cifar10-png-test.tar.gz",),
}
SIZES = {"train": 50000, "test": 10000}

MD5 = {
    "cifar10-png-test.tar.gz": "07fc6f7bdcdabbbe374ae1b41bf47eb6",
    "cifar10-png-train-1.tar.gz": "df9492241d5d8b493289d6dd185d64f7",
    "cifar10-png-train-2.tar.gz": "c2a29a18f6f1e451689ff56de0bc8db3",
}

CACHE_VERSION = 1

# The archives keep everything under this folder (cifar10/labels.txt, cifar10/train/...).
TOP = "cifar10"


def cache_folder():
    """Where the decoded arrays are cached: ``$RESNET_NP_CACHE``, else ``~/.cache/resnet_np``.

    Not the data folder itself, which may be read-only (a shared copy).
    """
    if os.environ.get("RESNET_NP_CACHE"):
        return os.environ["RESNET_NP_CACHE"]
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "resnet_np")


class BadArchiveError(ValueError):
    """An archive that is not a good copy of CIFAR-10's PNGs; the message names it and the member."""


def _bad_archive(path, why):
    return BadArchiveError(f"{path}: {why}. This is not a good copy of the CIFAR-10 PNG archive: delete it and put "
                      f"a good copy there (or the official cifar-10-python.tar.gz beside it).")


# A CIFAR-10 PNG is about 3 kB: a member far larger is no such image (and is not read into memory).
MAX_MEMBER_BYTES = 1 << 20

# The modes of an 8-bit colour or grayscale PNG; 16-bit or integer pixels would need another conversion.
EIGHT_BIT_MODES = ("RGB", "RGBA", "L", "LA", "P", "PA", "1")


def _decode_png(path, name, data):
    """(3, 32, 32) uint8 of one PNG member, or an error naming the archive and the member.

    Only Pillow's PNG decoder reads it, and only once the header says it is
    an 8-bit image of 32x32 pixels: a member claiming millions of pixels
    (a decompression bomb) is refused before anything is decoded.
    """
    import warnings

    from PIL import Image  # here, not at the top: only this reader needs Pillow

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=("PNG",)) as image:
                if image.size != (32, 32):
                    raise _bad_archive(path, f"{name} is {image.size[0]}x{image.size[1]}, expected 32x32")
                if image.mode not in EIGHT_BIT_MODES:
                    raise _bad_archive(path, f"{name} has pixels of mode {image.mode}, not 8-bit colour as "
                                             "CIFAR-10's")
                pixels = host.asarray(image.convert("RGB"))
    except BadArchiveError:
        raise
    except Exception as e:  # Pillow raises several kinds for a damaged image
        raise _bad_archive(path, f"{name} is not a readable PNG ({type(e).__name__}: {e})") from None
    return pixels.transpose(2, 0, 1)


def _parse_name(path, split, name):
    """(index, label) of ``<split>/<class>/<index>_<class>.png``; None for other members."""
    parts = name.split("/")
    if parts[0] == TOP:
        parts = parts[1:]
    if len(parts) != 3 or parts[0] != split or not parts[2].lower().endswith(".png"):
        return None
    folder, file = parts[1], parts[2][:-4]
    index, _, label_name = file.partition("_")
    if folder not in CLASSES or label_name != folder or not (index.isascii() and index.isdigit()):
        raise _bad_archive(path, f"{name} is not named <split>/<class>/<index>_<class>.png with a CIFAR-10 class")
    return int(index), CLASSES.index(folder)


def decode_split(paths, split):
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 of ``split``, in the official order."""
    n = SIZES[split]
    images = host.zeros((n, 3, 32, 32), dtype=host.uint8)
    labels = host.full(n, -1, dtype=host.int64)
    for path in paths:
        try:
            with tarfile.open(path, "r:gz") as tar:
                for member in tar:  # one pass: a gzip stream cannot seek backwards cheaply
                    if not member.isfile():
                        continue
                    if member.size > MAX_MEMBER_BYTES:
                        raise _bad_archive(path, f"{member.name} is {member.size} bytes, more than any file of the "
                                                 "CIFAR-10 PNG archive")
                    if member.name in ("labels.txt", f"{TOP}/labels.txt"):
                        names = tuple(tar.extractfile(member).read().decode("utf-8", "replace").split())
                        if names != CLASSES:
                            raise _bad_archive(path, f"labels.txt lists {names}, expected {CLASSES}")
                        continue
                    parsed = _parse_name(path, split, member.name)
                    if parsed is None:
                        continue
                    index, label = parsed
                    if index >= n:
                        raise _bad_archive(path, f"{member.name} has index {index}, but the {split} split has "
                                                 f"{n} images (0..{n - 1})")
                    if labels[index] != -1:
                        raise _bad_archive(path, f"{member.name}: a second image with index {index}")
                    images[index] = _decode_png(path, member.name, tar.extractfile(member).read())
                    labels[index] = label
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise _bad_archive(path, f"not a readable tar.gz file (truncated or corrupted?): {e}") from None
    missing = host.flatnonzero(labels == -1)
    if missing.size:
        raise ValueError(f"CIFAR-10 PNG archives {', '.join(paths)}: {missing.size} of the {n} {split} images are "
                         f"missing (the first is index {missing[0]}); the archives are incomplete")
    return images, labels


def _cache_path(split):
    return os.path.join(cache_folder(), f"cifar10-png-{split}.npz")


def _read_cache(path, sources):
    """The cached (images, labels), or None when the cache is missing, damaged or made from other archives."""
    try:
        with host.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f["meta"]))
            if meta != {"version": CACHE_VERSION, "sources": sources}:
                return None
            return f["images"], f["labels"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, zlib.error, EOFError):
        return None  # a damaged cache is simply rebuilt


def read_split(folder, split, md5s):
    """Images and labels of ``split`` ("train" or "test") from the PNG archives in ``folder``.

    ``md5s`` maps each archive's name to its (already checked) MD5: the
    cache is used only if it was made from archives with the same MD5s.
    """
    names = ARCHIVES[split]
    sources = {name: md5s[name] for name in names}
    cache = _cache_path(split)
    cached = _read_cache(cache, sources) if os.path.isfile(cache) else None
    if cached is not None:
        return cached
    images, labels = decode_split([os.path.join(folder, name) for name in names], split)
    meta = json.dumps({"version": CACHE_VERSION, "sources": sources})
    try:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        write_atomically(cache, lambda f: host.savez(f, images=images, labels=labels, meta=host.array(meta)))
    except OSError:
        pass  # a read-only cache folder only costs the next load its 20 s of decoding
    return images, labels
