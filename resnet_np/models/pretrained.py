"""Trained weights that ship with resnet_np: ``resnet20(weights="cifar10")``.

A learner who wants to try a trained network (classify a photo, look at a
confusion matrix, fine-tune on their own images) should not have to spend
an afternoon training one first. The package carries small weight files in
``resnet_np/pretrained/`` (``resnet20(weights="cifar10")``, and lesson 14's
``resnet20(num_classes=8, weights="cifar10-8classes")``), each an ordinary resnet_np ``.npz`` (see
``weights.py``) whose metadata also records, under ``"pretrained"``, how it
was trained and what it scores:

    {"dataset": "cifar10", "classes": [...], "mean": [...], "std": [...],
     "recipe": "...", "epochs": 70, "test_accuracy": 0.9...}

The network expects images scaled to [0, 1] and then normalised per
channel by ``mean`` and ``std`` (CIFAR-10's training statistics), exactly
what ``DataLoader`` does with ``load_dataset("cifar10")``.

``SHIPPED`` lists every file with its MD5: a file that does not match (a
damaged copy, a half-finished checkout) is refused before it is read,
naming the file and both MD5s.
"""

import os

from ..data.download import md5_of
from . import weights

FOLDER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pretrained")

# (architecture, weights name) -> the file in FOLDER and its MD5.
SHIPPED = {
    ("resnet20", "cifar10"): {"file": "resnet20_cifar10.npz", "md5": "c138f133cf10a9c625d93d98df8d48be"},
    # Lesson 14's starting point: trained on the eight classes other than cat and dog, which the lesson
    # then learns from a folder of photos (benchmarks/pretrain_cifar8.py made it).
    ("resnet20", "cifar10-8classes"): {"file": "resnet20_cifar10_8classes.npz",
                                       "md5": "599e1699fccc70b559b6f125d29df0ad"},
}


def names(arch=None):
    """The weights names shipped for ``arch`` (every (arch, name) pair when ``arch`` is None)."""
    if arch is None:
        return sorted(SHIPPED)
    return sorted(name for a, name in SHIPPED if a == arch)


def path_of(arch, name):
    """The checked path of the shipped weights ``name`` of ``arch``: it exists and its MD5 matches."""
    if (arch, name) not in SHIPPED:
        known = ", ".join(f"{a}(weights={n!r})" for a, n in sorted(SHIPPED))
        raise ValueError(f"no weights named {name!r} ship for {arch}; what ships: {known}")
    entry = SHIPPED[(arch, name)]
    path = os.path.join(FOLDER, entry["file"])
    if not os.path.isfile(path):
        raise FileNotFoundError(f"the weights file {path} is missing from this installation of resnet_np: "
                                "reinstall it (pip install -e .) or restore the file from the repository")
    actual = md5_of(path)  # the datasets' MD5, remembered while the file is unchanged
    if actual != entry["md5"]:
        raise ValueError(f"{path} has MD5 {actual}, expected {entry['md5']}: the file is damaged or not the one "
                         "this version of resnet_np shipped; restore it from the repository")
    return path


def info(arch, name):
    """What the file records about the shipped weights: dataset, classes, mean, std, recipe, test accuracy."""
    _, meta = weights.read_state_dict(path_of(arch, name))
    return dict(meta.get("pretrained") or {})


def load(arch, name, config):
    """The network ``arch`` with the shipped weights ``name``, in eval mode.

    ``config`` holds the constructor arguments the caller asked for; they
    must be those of the file (a 10-class network cannot be built with 100
    outputs): for another number of classes, load these weights and put a
    new head on them (``reset_classifier``, or ``finetune --weights``).
    """
    path = path_of(arch, name)
    _, meta = weights.read_state_dict(path)
    saved = meta.get("config") or {}
    different = {key: (value, saved[key]) for key, value in config.items() if key in saved and saved[key] != value}
    if different:
        asked = ", ".join(f"{key}={a!r} (the file's: {s!r})" for key, (a, s) in different.items())
        raise ValueError(f"{arch}(weights={name!r}) is the network of {path} as it was trained; it cannot be "
                         f"built with {asked}. Load it as it is, then model.reset_classifier(num_classes) for a "
                         "new task, or fine-tune it: python -m resnet_np finetune --weights " + name)
    model = weights.load(path)
    model.weights_info = dict(meta.get("pretrained") or {})
    model.eval()  # ready to predict: batch norm uses its running statistics
    return model
