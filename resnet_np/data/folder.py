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
"""

import os

from ..backend import host
from .datasets import Dataset

# Torchvision's list (IMG_EXTENSIONS) plus .gif; compared in lower case.
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")


def is_image_file(name):
    """True when the file name ends with one of ``EXTENSIONS``, in any case."""
    return name.lower().endswith(EXTENSIONS)


def find_classes(root):
    """The class names (the sorted sub-folder names of ``root``) and the label of each."""
    if not os.path.exists(root):
        raise FileNotFoundError(f"image folder {root} does not exist")
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image folder {root} is not a folder")
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    if not classes:
        raise FileNotFoundError(f"image folder {root} has no class folders: put the images of each class in a "
                                f"sub-folder named after the class ({root}/<class>/<image>.png)")
    return classes, {name: index for index, name in enumerate(classes)}


def make_samples(root, class_to_idx):
    """(path, label) of every image under the class folders, class by class, each in sorted order."""
    samples = []
    for name in sorted(class_to_idx, key=class_to_idx.get):
        folder = os.path.join(root, name)
        found = [os.path.join(dirpath, file)
                 for dirpath, _, files in sorted(os.walk(folder, followlinks=True))  # torchvision's order
                 for file in sorted(files) if is_image_file(file)]
        if not found:
            # An empty class would be a label the network can never learn nor be tested on: a mistake.
            raise FileNotFoundError(f"class folder {folder} holds no images (extensions: {', '.join(EXTENSIONS)})")
        samples += [(path, class_to_idx[name]) for path in found]
    return samples


def open_rgb(path):
    """The image at ``path`` as a Pillow RGB image, fully decoded; a ValueError naming the file if it cannot be.

    ``Image.open`` reads only the header; ``load()`` decodes the pixels, so a
    truncated file is caught here and not later in the middle of training.
    """
    # Imported here, not at the top: "import resnet_np" should not pay for Pillow.
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except Exception as e:  # noqa: BLE001  (Pillow raises OSError, SyntaxError, ValueError... for damaged files)
        raise ValueError(f"{path} cannot be read as an image ({type(e).__name__}: {e}): it is damaged, "
                         f"unreadable or not really an image; delete or replace it") from None


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


class ImageFolder:
    """The images of ``root``, one sub-folder per class (see the module docstring).

    ``classes``: the class names, sorted; ``class_to_idx``: name -> label;
    ``samples``: (path, label) of every image, in order. ``len(folder)`` is
    the number of images, and ``folder[i]`` is image ``i`` as a uint8 array
    (3, H, W) with its label, decoded now (only the paths are kept).
    """

    def __init__(self, root):
        self.root = os.path.expanduser(os.fspath(root))  # "~/photos" works, as in torchvision
        self.classes, self.class_to_idx = find_classes(self.root)
        self.samples = make_samples(self.root, self.class_to_idx)

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
        """
        from PIL import Image

        if size is not None:
            height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
            if height < 1 or width < 1:
                raise ValueError(f"to_dataset: size must be positive, got {size!r}")
        images = None
        for i, (path, _) in enumerate(self.samples):
            image = open_rgb(path)
            if size is None and i == 0:
                width, height = image.size
            elif size is None and image.size != (width, height):
                raise ValueError(f"the images of {self.root} differ in size ({self.samples[0][0]} is "
                                 f"{width}x{height}, {path} is {image.size[0]}x{image.size[1]}): pass "
                                 f"size=(height, width) to resize them all")
            if size is not None:
                image = image.resize((width, height), Image.BILINEAR)  # Pillow takes (width, height)
            if images is None:  # one array filled in place: no list of thousands of small arrays
                images = host.empty((len(self.samples), 3, height, width), dtype=host.uint8)
            images[i] = to_array(image)
        labels = host.array([label for _, label in self.samples], dtype=host.int64)
        mean, std = channel_stats(images)
        name = name if name is not None else os.path.basename(os.path.normpath(self.root))
        return Dataset(images, labels, self.classes, mean, std, name=name)

    def __repr__(self):
        return f"ImageFolder({self.root!r}, {len(self)} images, {len(self.classes)} classes)"


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
