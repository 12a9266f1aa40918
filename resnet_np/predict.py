"""Classifying image files with a trained network: ``python -m resnet_np predict``.

A new image must reach the network as its training images did: the same
size, the same number of channels, pixels scaled to [0, 1] and normalised
by the training set's per-channel mean and standard deviation. The
command line builds a ``Dataset`` of the new images with the checkpoint's
recorded mean and std, so the very ``DataLoader`` that fed training
normalises them.
"""

from .backend import host, to_numpy
from .data.folder import open_rgb, to_array


def read_images(paths, side, channels):
    """The images at ``paths`` as uint8 (N, channels, side, side), resized with Pillow's bilinear filter.

    ``channels`` is 3 (RGB) or 1 (grey levels, as MNIST's digits); a file
    that is not a readable image is named in a ``ValueError``.
    """
    from PIL import Image

    images = host.empty((len(paths), channels, side, side), dtype=host.uint8)
    for i, path in enumerate(paths):
        image = open_rgb(path)  # a regular file, fully decoded, or an error naming it
        if channels == 1:
            image = image.convert("L")
        if image.size != (side, side):
            image = image.resize((side, side), Image.BILINEAR)
        pixels = host.asarray(image, dtype=host.uint8)
        images[i] = pixels[None] if channels == 1 else to_array(image)
    return images


def softmax(logits):
    """Probabilities from logits, row by row (the largest logit subtracted first: no overflow)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = host.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def top_classes(model, loader, classes, k=3):
    """For each image of ``loader``: its ``k`` most probable classes, as [(name, probability), ...]."""
    was_training = model.training
    model.eval()
    ranked = []
    try:
        for x, _ in loader:
            probabilities = softmax(to_numpy(model(x)).astype(host.float64))
            for row in probabilities:
                best = host.argsort(-row, kind="stable")[:k]
                ranked.append([(str(classes[j]), float(row[j])) for j in best])
    finally:
        model.train(was_training)
    return ranked
