"""ReLU on every core, its mask kept as bits: the twins of ``layers/relu.py``'s functions.

``max(x, 0)`` with the scalar 0 makes NumPy's inner loop read an operand of
stride 0, which runs at a third of the speed; a zero array the shape of one
image, broadcast along the batch only, runs at full speed. Each thread
takes a share of the images (``threads.py``), in pieces small enough to stay
in the cache while the mask and the output are written.

The mask x > 0 is what backward needs, kept from forward to backward for
every ReLU of the network: as a bool array it is a quarter of the size of the
activation it masks (23 MB of a ResNet-20 step at batch 128). Inside a
residual block (``blocks.py``) it is packed, 8 values to a byte
(``PackedMask``): a thirty-second. It still reads
as the bool array it stands for (``numpy.asarray(mask)``), so the plain
``relu_backward`` — ``dout * mask`` — and gradcheck's kink patterns take it as
they are (a forward pass on one path, its backward on the other).
"""

import math

from ..backend import get_array_module
from . import threads
from .threads import pieces


class PackedMask:
    """The bool mask of a batch (N, ...), one bit per value: ``bits`` (N, ceil(size of one image / 8)) uint8.

    ``images(n0, n1)`` gives the bool mask of images n0..n1-1;
    ``numpy.asarray(mask)`` the whole of it, which is what makes ``dout * mask``
    work as with a bool array.
    """

    def __init__(self, shape, xp):
        self.shape = tuple(shape)
        self.ndim = len(self.shape)
        self.per_image = math.prod(self.shape[1:])
        self.bits = xp.empty((self.shape[0], -(-self.per_image // 8)), dtype=xp.uint8)

    def pack(self, n0, mask):
        """Store the bool ``mask`` of images n0, n0+1, ... (one piece of the batch)."""
        xp = get_array_module(self.bits)
        self.bits[n0:n0 + len(mask)] = xp.packbits(mask.reshape(len(mask), self.per_image), axis=1)

    def images(self, n0, n1):
        bits = get_array_module(self.bits).unpackbits(self.bits[n0:n1], axis=1, count=self.per_image)
        return bits.view(bool).reshape((n1 - n0,) + self.shape[1:])

    def __array__(self, dtype=None, copy=None):
        mask = self.images(0, self.shape[0])
        return mask if dtype is None else mask.astype(dtype)

    def __len__(self):
        return self.shape[0]


def mask_of(mask, n0, n1):
    """The bool mask of images n0..n1-1, from a ``PackedMask`` or a bool array."""
    return mask.images(n0, n1) if isinstance(mask, PackedMask) else mask[n0:n1]


def new_mask(x):
    """Where ``relu_into`` writes the mask of x: packed bits for a NumPy batch, else a bool array.

    (The blocks' ReLUs keep this one, ``blocks.py``; a ReLU layer on its own keeps a bool array, which code
    of one's own may read as such.)
    """
    xp = get_array_module(x)
    if xp.__name__ == "numpy" and x.ndim >= 2 and len(x):
        return PackedMask(x.shape, xp)
    return xp.empty(x.shape, dtype=bool)


def relu_into(x, out, mask, residual=None):
    """out = max(x (+ residual), 0) and its mask; ``out`` may be ``x`` itself (in place). x: (N, ...)."""
    xp = get_array_module(x)
    zeros = xp.zeros(x.shape[1:], dtype=x.dtype)
    packed = isinstance(mask, PackedMask)

    def images(n0, n1):  # a share of the images per thread, piece by piece (the piece stays in cache)
        for i0, i1 in pieces(n0, n1, threads.image_bytes(x)):
            if residual is not None:
                xp.add(x[i0:i1], residual[i0:i1], out=out[i0:i1])
                source = out[i0:i1]
            else:
                source = x[i0:i1]
            m = xp.greater(source, 0, out=None if packed else mask[i0:i1])
            if packed:
                mask.pack(i0, m)
            xp.maximum(source, zeros, out=out[i0:i1])
    threads.for_each_part(images, len(x), threads.min_images(x), xp)
    return out, mask


def relu(x):
    """(out, mask), as ``layers.relu.relu`` (the mask may be a ``PackedMask``)."""
    xp = get_array_module(x)
    if x.ndim == 0:  # a scalar: one value, no batch to share out
        return xp.asarray(xp.maximum(x, 0)), xp.asarray(x > 0)
    return relu_into(x, xp.empty_like(x), xp.empty(x.shape, dtype=bool))


def relu_backward(dout, mask, out=None):
    """dx, as ``layers.relu.relu_backward``; ``out``, if given, receives dx (it may be ``dout`` itself)."""
    xp = get_array_module(dout)
    if dout.ndim == 0:
        return xp.asarray(dout * mask)
    dx = xp.empty_like(dout) if out is None else out

    def images(n0, n1):
        for i0, i1 in pieces(n0, n1, threads.image_bytes(dout)):
            xp.multiply(dout[i0:i1], mask_of(mask, i0, i1), out=dx[i0:i1])
    threads.for_each_part(images, len(dout), threads.min_images(dout), xp)
    return dx
