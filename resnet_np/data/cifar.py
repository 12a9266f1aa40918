"""Reading CIFAR-10: pickled batches inside the official tarball.

``cifar-10-python.tar.gz`` holds the folder ``cifar-10-batches-py/`` with
five training batches ``data_batch_1`` ... ``data_batch_5`` and one
``test_batch``, 10000 images each. Every batch is a Python 2 pickle of a dict::

    b"data"    uint8 array (10000, 3072): each row one 32x32 image, the red
               plane, then green, then blue (so it reshapes to (3, 32, 32))
    b"labels"  a list of 10000 ints in 0..9

The batches are read straight out of the tarball with ``tarfile``, in one
pass, so nothing is extracted to disk.

**Unpickling runs code.** A pickle names functions for the loader to call
(that is how it rebuilds a NumPy array), and a tampered file could name
``os.system`` just as well. So the batches are loaded with an unpickler that
refuses every function except the three a NumPy array needs. The tarball's
MD5 is checked before this, but the restriction does not rely on it.
"""

import io
import pickle
import tarfile
import zlib

from ..backend import host

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5")
TEST_BATCHES = ("test_batch",)

# A batch is 10000 images of 3072 bytes and their labels, about 31 MB: a member far larger is no batch
# (and is not read into memory).
MAX_BATCH_BYTES = 64 << 20


class ArraysOnlyUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds plain Python values (dicts, lists, bytes, ints) and NumPy arrays, nothing else.

    Plain values need no lookup; everything else goes through ``find_class``,
    which hands out only the three callables that rebuild an array.
    """

    # (module, name) of everything a pickled NumPy array may ask for. NumPy 2
    # renamed numpy.core to numpy._core; the official files use the old name.
    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it asks for {module}.{name}, but a CIFAR-10 batch needs "
                                         "nothing but NumPy arrays: refused")
        return super().find_class(module, name)


def _bad_batch(path, member, why):
    return ValueError(f"{path}: {member} {why}. This is not the official CIFAR-10 file. Delete it and run "
                      f"again to download it afresh, or put a good copy of the official file there.")


def _unpickle(path, member, data):
    try:
        # Python 2 strings become bytes, as in the loading recipe on the CIFAR-10 page.
        return ArraysOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as e:  # a refused function, a truncated or garbled pickle
        raise _bad_batch(path, member, f"cannot be unpickled safely ({type(e).__name__}: {e})") from None


def _check_batch(path, member, batch):
    """The images (n, 3, 32, 32) uint8 and labels (n,) int64 of one unpickled batch."""
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise _bad_batch(path, member, "is not a dict with the keys b'data' and b'labels'")
    data, labels = batch[b"data"], batch[b"labels"]
    if not isinstance(data, host.ndarray) or data.dtype != host.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} {data.shape}" if isinstance(data, host.ndarray) else type(data).__name__
        raise _bad_batch(path, member, f"has b'data' of {got}, expected a uint8 array (n, 3072)")
    if not isinstance(labels, list) or not all(type(v) is int and 0 <= v < 10 for v in labels):  # not True
        raise _bad_batch(path, member, "has b'labels' that are not a list of ints in 0..9")
    if len(labels) != len(data):
        raise _bad_batch(path, member, f"has {len(data)} images but {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), host.array(labels, dtype=host.int64)


def read_batches(path, names):
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 of the batches ``names``, in that order."""
    wanted = {f"{FOLDER}/{name}": name for name in names}
    found = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:  # one pass: a gzip stream cannot seek backwards cheaply
                if member.name in wanted and member.isfile():
                    if member.size > MAX_BATCH_BYTES:
                        raise _bad_batch(path, member.name, f"is {member.size} bytes, more than a CIFAR-10 batch "
                                                            f"({MAX_BATCH_BYTES >> 20} MiB at most)")
                    data = tar.extractfile(member).read()  # here a damaged archive shows up as such
                    batch = _unpickle(path, member.name, data)
                    found[wanted[member.name]] = _check_batch(path, member.name, batch)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{path} is not a readable tar.gz file (truncated or corrupted?): {e}. Delete it and "
                         f"run again to download it afresh, or put a good copy of the official file there.") from None
    missing = [f"{FOLDER}/{name}" for name in names if name not in found]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}: it is not the official CIFAR-10 tarball. Delete it "
                         f"and run again to download it afresh, or put a good copy of the official file there.")
    images = host.concatenate([found[name][0] for name in names])
    labels = host.concatenate([found[name][1] for name in names])
    return images, labels
