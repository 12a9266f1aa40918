"""The datasets of the ResNet tutorials: MNIST, Fashion-MNIST and CIFAR-10.

``load_dataset("mnist")`` returns a ``Dataset``: all the images as one uint8
array (N, C, H, W) on the host, the labels as int64, the class names, and
the per-channel mean and standard deviation used to normalise the inputs.
The images stay uint8 (47 MB for MNIST, 150 MB for CIFAR-10 training) until
a ``DataLoader`` turns a batch of them into float32 on the compute device.

The table ``DATASETS`` says, for each dataset, which files make it up, their
official MD5s, where to download them and how to read them. The MD5s are the
published ones; the tests swap in the MD5s of their own tiny files by
patching this table, so the check itself is never weakened.

The normalisation constants are the mean and standard deviation of the
training pixels (scaled to [0, 1]), per channel, as every tutorial uses them.
"""

import os

from ..backend import host
from . import cifar, cifar_png, mnist
from .download import check_md5, data_root, ensure_files

# The names load_dataset knows, with everything needed to fetch and read them.
DATASETS = {
    "mnist": {
        "title": "MNIST",
        "mirrors": ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"],
        "md5": {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        "train_files": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
        "test_files": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
        "classes": ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9"),
        "mean": (0.1307,),
        "std": (0.3081,),
    },
    "fashion-mnist": {
        "title": "Fashion-MNIST",
        "mirrors": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        "md5": {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        "train_files": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
        "test_files": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
        "classes": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                    "Bag", "Ankle boot"),
        "mean": (0.2860,),
        "std": (0.3530,),
    },
    "cifar10": {
        "title": "CIFAR-10",
        "mirrors": ["https://www.cs.toronto.edu/~kriz/"],
        "md5": {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"},
        # The lossless PNG copy, read where the official tarball is absent (see cifar_png.py).
        "png_md5": dict(cifar_png.MD5),
        # One tarball holds both splits.
        "train_files": ("cifar-10-python.tar.gz",),
        "test_files": ("cifar-10-python.tar.gz",),
        "classes": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        "mean": (0.4914, 0.4822, 0.4465),
        "std": (0.2470, 0.2435, 0.2616),
    },
}


class Dataset:
    """Images, labels and what to know about them.

    ``images``: uint8 (N, C, H, W) on the host; ``labels``: int64 (N,);
    ``classes``: the class names (``num_classes`` of them); ``mean`` and
    ``std``: per-channel normalisation constants, tuples of C floats.
    """

    def __init__(self, images, labels, classes, mean, std, name=""):
        images = host.asarray(images)
        labels = host.asarray(labels)
        if images.dtype != host.uint8 or images.ndim != 4:
            raise ValueError(f"Dataset {name!r}: images must be uint8 (N, C, H, W), "
                             f"got {images.dtype} shape {images.shape}")
        if labels.ndim != 1 or len(labels) != len(images) or not host.issubdtype(labels.dtype, host.integer):
            raise ValueError(f"Dataset {name!r}: labels must be integers of shape ({len(images)},), "
                             f"got {labels.dtype} shape {labels.shape}")
        channels = images.shape[1]
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"Dataset {name!r}: mean and std need one value per channel ({channels}), "
                             f"got {len(mean)} and {len(std)}")
        if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
            raise ValueError(f"Dataset {name!r}: labels must lie in 0..{len(classes) - 1}, "
                             f"found {labels.min()}..{labels.max()}")
        self.images = images
        self.labels = labels.astype(host.int64, copy=False)
        self.classes = tuple(classes)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.name = name

    @property
    def num_classes(self):
        return len(self.classes)

    def __len__(self):
        return len(self.labels)

    def subset(self, indices):
        """A new Dataset of the examples at ``indices`` (a sequence of ints), in that order."""
        indices = host.asarray(indices)
        if indices.size == 0:
            indices = indices.astype(host.int64)
        if indices.ndim != 1 or not host.issubdtype(indices.dtype, host.integer):
            raise ValueError(f"Dataset {self.name!r}: subset expects a 1-D sequence of ints, "
                             f"got {indices.dtype} shape {indices.shape}")
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise ValueError(f"Dataset {self.name!r}: subset indices must lie in 0..{len(self) - 1}, "
                             f"found {indices.min()}..{indices.max()}")
        return Dataset(self.images[indices], self.labels[indices], self.classes, self.mean, self.std, self.name)

    def __repr__(self):
        return (f"Dataset({self.name!r}, {len(self)} images of shape {tuple(self.images.shape[1:])}, "
                f"{self.num_classes} classes)")


def _read(name, paths, train):
    """Images and labels of one split, from its checked files."""
    if name == "cifar10":
        return cifar.read_batches(paths[0], cifar.TRAIN_BATCHES if train else cifar.TEST_BATCHES)
    return mnist.read_images_and_labels(*paths)


def _png_copy_instead(folder, info):
    """True where CIFAR-10's official tarball is absent but all the PNG archives are there."""
    if os.path.isfile(os.path.join(folder, next(iter(info["md5"])))):
        return False
    return all(os.path.isfile(os.path.join(folder, file)) for file in info["png_md5"])


def load_dataset(name, root=None, train=True, download=True):
    """The training (``train=True``) or test split of ``name`` as a ``Dataset``.

    ``name`` is one of "mnist", "fashion-mnist", "cifar10". The files are
    looked for in ``root/<name>/`` (``root`` defaults as explained in
    ``resnet_np.data.download``), MD5-checked, and downloaded first if
    missing and ``download`` is true. For CIFAR-10, the official
    ``cifar-10-python.tar.gz`` is preferred; where it is absent but the three
    PNG archives of ``cifar_png.py`` are there, those are read instead (their
    decoded arrays cached, see ``cifar_png.cache_folder``).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
    info = DATASETS[name]
    folder = os.path.join(data_root(root), name)
    if name == "cifar10" and _png_copy_instead(folder, info):
        split = "train" if train else "test"
        md5s = {file: info["png_md5"][file] for file in cifar_png.ARCHIVES[split]}
        for file, md5 in md5s.items():
            check_md5(os.path.join(folder, file), md5, info["mirrors"])
        images, labels = cifar_png.read_split(folder, split, md5s)
        return Dataset(images, labels, info["classes"], info["mean"], info["std"], name=name)
    files = info["train_files"] if train else info["test_files"]
    md5s = {file: info["md5"][file] for file in files}
    split = "training" if train else "test"
    paths = ensure_files(f"{info['title']} {split} set", folder, md5s, info["mirrors"], download)
    images, labels = _read(name, paths, train)
    return Dataset(images, labels, info["classes"], info["mean"], info["std"], name=name)
