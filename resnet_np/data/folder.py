"""Your own images: a folder with one sub-folder per class, read as torchvision's ``ImageFolder`` reads it.

The layout is the one every image-classification tutorial uses::

    flowers/                  <- root
        daisy/                <- a class: its name is the folder's name
            001.jpg
            IMG_0042.JPG
            field/7.png       <- images in deeper folders belong to the class too
        rose/
            a.png
            notes.txt         <- not an image: skipped

The classes are the sub-folders of the root, sorted by name, and the label of
a class is its position in that order (daisy 0, rose 1). The images of a class
are the files under its folder whose extension (in any case: ``.PNG`` and
``.png`` alike) is one of ``EXTENSIONS``, in sorted order. These are exactly
torchvision's rules, so the same folder gives the same labels there and here,
and a model trained on one can be evaluated on the other.

``ImageFolder(root)`` only lists the files; ``folder[i]`` decodes image ``i``
with Pillow and returns it as a uint8 array (3, H, W) and its label. Every
image becomes RGB: a grayscale image gets its one channel three times, a
palette image its colours looked up, an RGBA image loses its alpha channel,
so that every image has the same three channels a network expects.

Training needs all the images as one array of a single size:
``folder.to_dataset(size=(32, 32))`` decodes every image, resizes it
(bilinear, with Pillow) and returns the library's ``Dataset``, with the
per-channel mean and standard deviation computed from those very pixels.
``split_per_class`` then holds out a fraction of every class for evaluation.

**What is not an image of the class.** A label is only right if every file
counted under ``cat/`` is a cat photo that lies there, counted once. So,
where torchvision follows links, this reader does not:

* only regular files are opened: a FIFO named ``pipe.png`` would block the
  reader forever, a device file would never end; they are skipped;
* no symbolic link is followed, to a file or to a folder: a link leads out of
  the folder (``cat/more -> ~/Downloads``) or back into it (``cat/loop ->
  ..`` lists every dog image again, as a cat, and again, until the path is
  too long); it is skipped;
* a file met twice (a hard link, or the very same bytes under two names) is
  counted once: a second copy would weigh twice in training and could land
  in both the training and the held-out part; the same bytes under two
  classes is refused, since one image cannot have two labels.

What is skipped is said, one line a file (``folder.skipped`` keeps the list).
What is there but cannot be used is refused, naming every such file and why,
rather than skipped: a damaged or truncated file, a file that is not what its
extension says (a JPEG named ``.png``), a decompression bomb (more pixels than
Pillow's limit, ``PIL.Image.MAX_IMAGE_PIXELS``), pixels of a kind with no
meaning as 8-bit colour (floating point, 32-bit integers). 16-bit images are
brought to 8 bits by keeping the high byte (Pillow alone would clip a 16-bit
grayscale image to white). Only the decoders of the formats in ``FORMATS``
are tried, so a file's name decides which code reads it.

Names that are not UTF-8 (``caf\\xe9.png`` written by an old camera) are
read under their real names; messages and class names show the bytes that
are not UTF-8 as ``\\xe9``.
"""

import hashlib
import io
import os
import stat
import sys
import warnings

from ..backend import host
from .datasets import Dataset

# Torchvision's list (IMG_EXTENSIONS) plus .gif; compared in lower case.
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")

# The Pillow decoders a file of each extension may be read with: no other code reads it.
FORMATS = {".png": ("PNG",), ".jpg": ("JPEG",), ".jpeg": ("JPEG",), ".bmp": ("BMP",), ".ppm": ("PPM",),
           ".pgm": ("PPM",), ".tif": ("TIFF",), ".tiff": ("TIFF",), ".webp": ("WEBP",), ".gif": ("GIF",)}
ALL_FORMATS = ("PNG", "JPEG", "BMP", "PPM", "TIFF", "WEBP", "GIF")
SUFFIX_OF = {"PNG": ".png", "JPEG": ".jpg", "MPO": ".jpg", "BMP": ".bmp", "PPM": ".ppm", "TIFF": ".tif",
             "WEBP": ".webp", "GIF": ".gif"}

# Modes Pillow converts to RGB as they are meant (alpha dropped, palette looked up, CMYK and YCbCr turned to RGB).
EIGHT_BIT_MODES = ("1", "L", "P", "RGB", "RGBA", "RGBX", "RGBa", "LA", "La", "PA", "CMYK", "YCbCr")
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")

# How many skipped or refused files a message lists one by one.
LISTED = 20


class ImageFileError(ValueError):
    """A file of an image folder that cannot be used; the message names it and says why."""


def shown(text):
    """``text`` (a name or path) printable: bytes that are not UTF-8 appear as ``\\xe9``."""
    return os.fsencode(text).decode("utf-8", "backslashreplace")


def is_image_file(name):
    """True when the file name ends with one of ``EXTENSIONS``, in any case."""
    return name.lower().endswith(EXTENSIONS)


def _kind(mode):
    """What a file that is not regular is, in words."""
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "not a regular file"


LINK_REASON = "a symbolic link: not followed (a link leads out of the folder or back into it); copy the file in"


def find_classes(root, skipped=None):
    """The class names (the sorted sub-folder names of ``root``) and the label of each.

    A symbolic link among them is not a class (it is noted in ``skipped``,
    a list of (path, reason), when one is given).
    """
    if not os.path.exists(root):
        raise FileNotFoundError(f"image folder {shown(root)} does not exist")
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image folder {shown(root)} is not a folder")
    classes = []
    for entry in os.scandir(root):
        if entry.is_symlink():
            if skipped is not None and entry.is_dir():
                skipped.append((entry.path, LINK_REASON.replace("the file", "the folder")))
        elif entry.is_dir():
            classes.append(entry.name)
    classes.sort()
    if not classes:
        raise FileNotFoundError(f"image folder {shown(root)} has no class folders: put the images of each class "
                                f"in a sub-folder named after the class ({shown(root)}/<class>/<image>.png)")
    return classes, {name: index for index, name in enumerate(classes)}


def make_samples(root, class_to_idx, skipped=None):
    """(path, label) of every image under the class folders, class by class, each in sorted order.

    Only regular files count, each once, and no link is followed (see the
    module docstring); what is passed over goes to ``skipped``, a list of
    (path, reason), when one is given. The same file (a hard link) under
    two classes is an ``ImageFileError``.
    """
    skipped = [] if skipped is None else skipped
    samples, seen = [], {}
    for name in sorted(class_to_idx, key=class_to_idx.get):
        folder = os.path.join(root, name)
        found = []
        # torchvision's order: folders sorted by path, each one's files sorted by name.
        for dirpath, dirnames, files in sorted(os.walk(folder)):  # os.walk does not enter linked folders
            for sub in sorted(dirnames):
                if os.path.islink(os.path.join(dirpath, sub)):
                    skipped.append((os.path.join(dirpath, sub), LINK_REASON.replace("the file", "the folder")))
            for file in sorted(files):
                if not is_image_file(file):
                    continue
                path = os.path.join(dirpath, file)
                try:
                    info = os.lstat(path)
                except OSError as e:
                    skipped.append((path, f"cannot be examined ({e.strerror})"))
                    continue
                if stat.S_ISLNK(info.st_mode):
                    skipped.append((path, LINK_REASON))
                    continue
                if not stat.S_ISREG(info.st_mode):
                    skipped.append((path, f"{_kind(info.st_mode)}, not a regular file: never opened"))
                    continue
                first = seen.setdefault((info.st_dev, info.st_ino), (path, class_to_idx[name]))
                if first[0] != path:
                    if first[1] != class_to_idx[name]:
                        raise ImageFileError(f"{shown(path)} and {shown(first[0])} are the same file (hard links) "
                                             "in two classes: an image has one label; keep it in one class")
                    skipped.append((path, f"the same file as {shown(first[0])} (a hard link): counted once"))
                    continue
                found.append(path)
        if not found:
            # An empty class would be a label the network can never learn nor be tested on: a mistake.
            raise FileNotFoundError(f"class folder {shown(folder)} holds no images (extensions: "
                                    f"{', '.join(EXTENSIONS)})")
        samples += [(path, class_to_idx[name]) for path in found]
    return samples


def read_file(path):
    """The bytes of the regular file ``path``; an ``ImageFileError`` for anything else.

    Opened without following a link and without blocking (a FIFO put there
    after the listing opens at once, and is then refused by ``fstat``).
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        why = LINK_REASON if os.path.islink(path) else f"cannot be opened ({e.strerror})"
        raise ImageFileError(f"{shown(path)}: {why}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ImageFileError(f"{shown(path)} is {_kind(mode)}, not a regular file: it is not read")
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read()
    finally:
        os.close(fd)


def _bomb(path, size):
    from PIL import Image

    width, height = size
    return ImageFileError(
        f"{shown(path)} is {width}x{height} pixels ({width * height / 1e6:.0f} million), more than Pillow's safety "
        f"limit of {Image.MAX_IMAGE_PIXELS / 1e6:.0f} million (PIL.Image.MAX_IMAGE_PIXELS): a decompression bomb "
        "or a huge scan; resize it, or raise that limit if you trust the file")


def _open(path, data):
    """``data`` decoded by the decoder its extension names, fully loaded; an ``ImageFileError`` if it cannot be."""
    from PIL import Image, UnidentifiedImageError

    suffix = os.path.splitext(path)[1].lower()
    formats = FORMATS.get(suffix, ALL_FORMATS)
    with warnings.catch_warnings():
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that: here it is an error either way.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=formats)
        except (Image.DecompressionBombWarning, Image.DecompressionBombError):
            raise _bomb(path, _header_size(data, formats)) from None
        except UnidentifiedImageError:
            raise _not_what_it_says(path, suffix, data) from None
        except Exception as e:  # noqa: BLE001  (Pillow raises OSError, SyntaxError, ValueError... for damaged files)
            raise _damaged(path, e) from None
        try:
            image.load()
        except (Image.DecompressionBombWarning, Image.DecompressionBombError):
            raise _bomb(path, image.size) from None
        except Exception as e:  # noqa: BLE001
            raise _damaged(path, e) from None
    return image


def _header_size(data, formats):
    """The size a bomb's header claims, read with the check off (nothing is decoded)."""
    from PIL import Image

    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(io.BytesIO(data), formats=formats) as image:
            return image.size
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _damaged(path, error):
    return ImageFileError(f"{shown(path)} cannot be read as an image ({type(error).__name__}: {error}): it is "
                          "damaged, unreadable or not really an image; delete or replace it")


def _not_what_it_says(path, suffix, data):
    """The error for a file its own extension's decoder does not recognise: what it really is, if known."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=ALL_FORMATS) as image:
                actual = image.format
    except Exception:  # noqa: BLE001  (not an image of any format read here)
        return _damaged(path, ValueError(f"not a {FORMATS.get(suffix, ALL_FORMATS)[0]} file"))
    return ImageFileError(f"{shown(path)} is a {actual} file, not {FORMATS[suffix][0]} as its name says: rename it "
                          f"to {shown(os.path.splitext(os.path.basename(path))[0])}{SUFFIX_OF.get(actual, '')}")


def to_rgb(path, image):
    """A decoded Pillow image as RGB, by the bit depth and mode it really has; an ``ImageFileError`` if none fits.

    8-bit modes convert as Pillow converts them. 16-bit grayscale (``I;16``,
    and ``I`` from a PNG, which Pillow uses for 16-bit PNGs) keeps its high
    byte: Pillow's own conversion would clip every value above 255 to white.
    (16-bit RGB and RGBA PNGs Pillow itself opens as 8-bit, keeping the
    high byte.) Floating-point or 32-bit integer pixels have no known scale.
    """
    from PIL import Image

    mode = image.mode
    if mode in EIGHT_BIT_MODES:
        return image.convert("RGB")
    if mode in SIXTEEN_BIT_MODES or (mode == "I" and image.format == "PNG"):
        high = (host.asarray(image).astype(host.uint32) >> 8).astype(host.uint8)
        return Image.fromarray(high, mode="L").convert("RGB")
    what = {"F": "32-bit floating-point pixels (mode F)", "I": "32-bit integer pixels (mode I)"}.get(
        mode, f"pixels of mode {mode}")
    raise ImageFileError(f"{shown(path)} holds {what}, which have no known scale to 8-bit colour: save it as an "
                         "8-bit (or 16-bit) RGB or grayscale image")


def open_rgb(path):
    """The image at ``path`` as a Pillow RGB image, fully decoded; an ``ImageFileError`` naming the file if not.

    ``Image.open`` reads only the header; ``load()`` decodes the pixels, so a
    truncated file is caught here and not later in the middle of training.
    """
    return _decode(path, read_file(path))


def _decode(path, data):
    image = _open(path, data)
    try:
        return to_rgb(path, image)
    finally:
        image.close()


def to_array(image):
    """A Pillow RGB image as a uint8 array (3, H, W): channels first, as the networks take them."""
    return host.ascontiguousarray(host.asarray(image, dtype=host.uint8).transpose(2, 0, 1))


def channel_stats(images):
    """Per-channel mean and standard deviation of uint8 images (N, C, H, W), as pixel / 255.

    A uint8 channel has only 256 possible values, so it is enough to count
    how often each occurs (``bincount``): the mean and the variance are
    then weighted sums over 256 numbers, exact in float64, with no float
    copy of all the images.
    """
    values = host.arange(256, dtype=host.float64) / 255
    means, stds = [], []
    for channel in range(images.shape[1]):
        counts = host.bincount(images[:, channel].ravel(), minlength=256).astype(host.float64)
        weights = counts / counts.sum()
        mean = float(weights @ values)
        means.append(mean)
        stds.append(float(weights @ (values - mean) ** 2) ** 0.5)
    return tuple(means), tuple(stds)


def _to_stderr(text):
    print(text, file=sys.stderr)


def listing(lines, total=None):
    """Lines indented one a file, at most ``LISTED`` of them, then how many more."""
    total = len(lines) if total is None else total
    text = "\n".join(f"  {line}" for line in lines[:LISTED])
    if total > LISTED:
        text += f"\n  ... and {total - LISTED} more"
    return text


class ImageFolder:
    """The images of ``root``, one sub-folder per class (see the module docstring).

    ``classes``: the class names, sorted; ``class_to_idx``: name -> label;
    ``samples``: (path, label) of every image, in order. ``len(folder)`` is
    the number of images, and ``folder[i]`` is image ``i`` as a uint8 array
    (3, H, W) with its label, decoded now (only the paths are kept).
    ``skipped``: (path, reason) of every file passed over, which ``log``
    (default: standard error) is told, one line a file.
    """

    def __init__(self, root, log=_to_stderr):
        self.root = os.path.expanduser(os.fspath(root))  # "~/photos" works, as in torchvision
        self.log = log or (lambda text: None)
        self.skipped = []
        folders, to_idx = find_classes(self.root, self.skipped)
        self.samples = make_samples(self.root, to_idx, self.skipped)
        self.classes = [shown(name) for name in folders]  # printable: they go into logs and checkpoints
        self.class_to_idx = {shown(name): index for name, index in to_idx.items()}
        self._report(self.skipped)

    def _report(self, skipped):
        if skipped:
            self.log(f"image folder {shown(self.root)}: {len(skipped)} file(s) skipped:\n"
                     + listing([f"{shown(path)}: {why}" for path, why in skipped]))

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        path, label = self.samples[index]
        return to_array(open_rgb(path)), label

    def to_dataset(self, size=None, name=None):
        """All the images, resized to ``size``, as a ``Dataset``.

        ``size`` is (H, W), or one int for a square. Without it, all images
        must already have the same size, which is kept. Each image is resized
        with Pillow's bilinear filter (which averages over the pixels it
        shrinks, so a large photo does not turn into noise). ``mean`` and
        ``std`` are measured on the resized images. ``name`` defaults to the
        root folder's name.

        A file with the very bytes of an earlier one is dropped from the
        samples (and said); every file that cannot be used is named in one
        ``ImageFileError`` after all were tried.
        """
        from PIL import Image

        if size is not None:
            height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
            if height < 1 or width < 1:
                raise ValueError(f"to_dataset: size must be positive, got {size!r}")
        images, kept, problems, duplicates, first_of = None, [], [], [], {}
        for path, label in self.samples:
            try:
                data = read_file(path)
                digest = hashlib.sha256(data).digest()
                if digest in first_of:
                    other, other_label = first_of[digest]
                    if other_label != label:
                        raise ImageFileError(f"{shown(path)} has the very bytes of {shown(other)}, in another "
                                             "class: an image has one label; keep it in one class")
                    duplicates.append((path, f"the same bytes as {shown(other)}: counted once"))
                    continue
                first_of[digest] = (path, label)
                image = _decode(path, data)
            except ImageFileError as e:
                problems.append(str(e))
                continue
            if size is None and images is None:
                width, height = image.size
            elif size is None and image.size != (width, height):
                raise ValueError(f"the images of {shown(self.root)} differ in size ({shown(kept[0][0])} is "
                                 f"{width}x{height}, {shown(path)} is {image.size[0]}x{image.size[1]}): pass "
                                 f"size=(height, width) to resize them all")
            if size is not None:
                image = image.resize((width, height), Image.BILINEAR)  # Pillow takes (width, height)
            if images is None:  # one array filled in place: no list of thousands of small arrays
                images = host.empty((len(self.samples), 3, height, width), dtype=host.uint8)
            images[len(kept)] = to_array(image)
            kept.append((path, label))
        if problems:
            head = problems[0] if len(problems) == 1 else (
                f"{len(problems)} files of image folder {shown(self.root)} cannot be used:\n" + listing(problems))
            raise ImageFileError(head)
        if duplicates:
            self.samples = kept
            self.skipped += duplicates
            self._report(duplicates)
        labels = host.array([label for _, label in kept], dtype=host.int64)
        images = images[:len(kept)]
        mean, std = channel_stats(images)
        name = name if name is not None else os.path.basename(os.path.normpath(self.root))
        return Dataset(images, labels, self.classes, mean, std, name=name)

    def __repr__(self):
        return f"ImageFolder({shown(self.root)!r}, {len(self)} images, {len(self.classes)} classes)"


def split_per_class(dataset, fraction, seed=0):
    """(kept, held_out): ``fraction`` of every class held out, drawn at random with ``seed``.

    Each class gives ``fraction * n`` of its ``n`` images, rounded, but at
    least one and never all of them (a class of one image stays whole in
    ``kept``), so both parts have every class in the same proportions as
    the whole: a stratified split. Both parts keep the dataset's order and
    are normalised with the mean and std of ``kept`` alone, as the test set
    of CIFAR-10 is normalised with the statistics of its training set: the
    held-out images influence nothing the network learns from.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"split_per_class: the fraction held out must lie strictly between 0 and 1, "
                         f"got {fraction}")
    labels = host.asarray(dataset.labels)
    rng = host.random.default_rng(seed)
    held_out = []
    for label in range(dataset.num_classes):
        indices = host.flatnonzero(labels == label)
        n = len(indices)
        count = min(max(int(fraction * n + 0.5), 1), n - 1) if n > 1 else 0
        held_out.append(rng.permutation(indices)[:count])
    is_held_out = host.zeros(len(labels), dtype=bool)
    is_held_out[host.concatenate(held_out)] = True
    kept_indices, held_indices = host.flatnonzero(~is_held_out), host.flatnonzero(is_held_out)
    mean, std = channel_stats(dataset.images[kept_indices])
    return tuple(Dataset(dataset.images[i], dataset.labels[i], dataset.classes, mean, std, name=dataset.name)
                 for i in (kept_indices, held_indices))
