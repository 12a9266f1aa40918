"""Datasets and batches: MNIST, Fashion-MNIST and CIFAR-10 from their official files, and your own images.

``load_dataset(name)`` finds (or downloads) the official files, checks their
MD5s and decodes them into a ``Dataset`` of uint8 images on the host;
``DataLoader`` turns it into shuffled, augmented, normalised float32
batches on the compute device::

    from resnet_np.data import load_dataset, DataLoader

    train = load_dataset("cifar10", train=True)
    for x, y in DataLoader(train, batch_size=128, augment="cifar"):
        ...   # x: float32 (128, 3, 32, 32), y: int64 (128,)

Your own images, one sub-folder per class, are read by ``ImageFolder``
(torchvision's rules) and become a ``Dataset`` with ``to_dataset``::

    from resnet_np.data import ImageFolder, split_per_class

    flowers = ImageFolder("flowers").to_dataset(size=(32, 32))
    train, held_out = split_per_class(flowers, 0.2, seed=0)

File by file: ``download.py`` where files live, MD5 checks and downloads;
``mnist.py`` and ``cifar.py`` the two file formats (``cifar_png.py`` CIFAR-10's
PNG copy); ``folder.py`` folders of images; ``datasets.py`` the
``Dataset`` class and the table of datasets; ``augment.py`` the paper's
crop and flip; ``loader.py`` the ``DataLoader``.
"""

from .augment import random_crop, random_flip
from .datasets import DATASETS, Dataset, load_dataset
from .folder import ImageFolder, split_per_class
from .loader import DataLoader

__all__ = ["DATASETS", "DataLoader", "Dataset", "ImageFolder", "load_dataset", "random_crop", "random_flip",
           "split_per_class"]
