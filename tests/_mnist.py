"""Real MNIST for the tests that need it: where it is, and the skip mark when it is not there."""

import os
import pathlib

import pytest

DATA = os.environ.get("RESNET_NP_DATA")
HAVE_MNIST = bool(DATA) and all(
    (pathlib.Path(DATA) / "mnist" / f).is_file()
    for f in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
              "t10k-labels-idx1-ubyte.gz"))
needs_mnist = pytest.mark.skipif(not HAVE_MNIST, reason="real MNIST not found: set RESNET_NP_DATA to a folder "
                                                         "holding mnist/*-ubyte.gz (CI uses ../shared/data)")
