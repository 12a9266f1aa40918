"""What the lessons on real data share: the digits of lessons 8, 9, 10 and 12, and how a lesson stops without data.

``load_digits(quick)`` returns the MNIST training and test sets as
``resnet_np.data.Dataset`` objects. The files are looked for where
``load_dataset`` looks (``$RESNET_NP_DATA/mnist``, else ``~/.cache/resnet_np``)
and downloaded if missing — except with ``--quick``, which never downloads:
without the files it falls back, saying why, to ``synthetic_digits``, the ten
digits rendered from a font, shifted and noisy: same shapes and classes as
MNIST, learnable in a few dozen steps. ``shrink`` halves the images to
14 x 14, which makes every convolution four times cheaper.

``stop_without_data(error)`` ends a lesson whose dataset cannot be had
(offline, no files, a bad MD5) with the loader's own message — which files
are missing, where to put them — instead of a traceback.
"""

import numpy as np
from matplotlib.font_manager import FontProperties
from matplotlib.path import Path
from matplotlib.textpath import TextPath

from resnet_np.data import DATASETS, Dataset, load_dataset


def glyph(digit, size=28, box=20, supersample=3):
    """The digit as a (size, size) image in [0, 1], drawn from a font's outline, centred in a box x box square."""
    path = TextPath((0, 0), str(digit), size=1, prop=FontProperties(family="DejaVu Sans", weight="bold"))
    (x0, y0), (x1, y1) = path.vertices.min(axis=0), path.vertices.max(axis=0)
    scale = box / max(x1 - x0, y1 - y0)
    centres = (np.arange(size * supersample) + 0.5) / supersample
    X, Y = np.meshgrid(centres, centres)
    points = np.c_[((X - size / 2) / scale + (x0 + x1) / 2).ravel(), ((size / 2 - Y) / scale + (y0 + y1) / 2).ravel()]
    # Even-odd rule over the outline's polygons, so that the holes of 0, 4, 6, 8, 9 stay empty.
    crossings = sum(Path(poly).contains_points(points).astype(int) for poly in path.to_polygons())
    inside = (crossings % 2 == 1).reshape(size * supersample, size * supersample)
    return inside.reshape(size, supersample, size, supersample).mean(axis=(1, 3))


def synthetic_digits(n, seed=0):
    """``n`` noisy 28x28 digits, shifted by up to 3 pixels, as a Dataset with MNIST's classes and statistics."""
    rng = np.random.default_rng(seed)
    glyphs = np.stack([glyph(d) for d in range(10)])
    labels = rng.integers(0, 10, n)
    images = np.empty((n, 28, 28))
    padded = np.pad(glyphs, ((0, 0), (3, 3), (3, 3)))
    shifts = rng.integers(0, 7, (n, 2))
    for k in range(n):
        dy, dx = shifts[k]
        images[k] = padded[labels[k], dy:dy + 28, dx:dx + 28]
    images = images * rng.uniform(0.6, 1.0, (n, 1, 1)) + 0.25 * rng.standard_normal(images.shape)
    images = (np.clip(images, 0, 1) * 255).round().astype(np.uint8)[:, None]
    info = DATASETS["mnist"]
    return Dataset(images, labels, info["classes"], info["mean"], info["std"], name="synthetic digits")


def load_digits(quick, synthetic_sizes=(4000, 1000)):
    """(train, test, description): real MNIST if it can be had, else (only when ``quick``) synthetic digits."""
    try:
        train = load_dataset("mnist", train=True, download=not quick)
        test = load_dataset("mnist", train=False, download=not quick)
        return train, test, "MNIST"
    except (OSError, ValueError) as e:  # missing files (FileNotFoundError), a failed download, a bad MD5
        if not quick:
            stop_without_data(e)
        first_line = str(e).splitlines()[0]
        print(f"real MNIST is not available ({first_line}); --quick never downloads, so this run uses "
              f"synthetic digits instead. Set RESNET_NP_DATA to a folder with mnist/ in it for the real thing.")
        return synthetic_digits(synthetic_sizes[0], seed=0), synthetic_digits(synthetic_sizes[1], seed=1), \
            "synthetic digits"


def stop_without_data(error, quick=False):
    """End the lesson with ``error``'s message (the data loader says which files and where), exit status 1."""
    hint = " (--quick never downloads: run the lesson without it to download the files)" if quick else ""
    raise SystemExit(f"this lesson needs its dataset{hint}: {error}")


def shrink(ds):
    """``ds`` with each image averaged over 2x2 pixels (28x28 -> 14x14), normalised with its own statistics."""
    N, C, H, W = ds.images.shape
    small = ds.images.reshape(N, C, H // 2, 2, W // 2, 2).astype(np.float32).mean(axis=(3, 5))
    pixels = small / 255
    return Dataset(small.round().astype(np.uint8), ds.labels, ds.classes, (float(pixels.mean()),),
                   (float(pixels.std()),), name=f"{ds.name} {H // 2}x{W // 2}")
