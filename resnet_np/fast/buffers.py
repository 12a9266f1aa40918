"""Chunks of images and the buffers they reuse: how the fast convolution keeps ``cols`` in cache.

The plain convolution unrolls the whole batch at once: ``cols`` is KH*KW
times the size of the input (for a 3x3 kernel, nine copies), far larger
than the processor's cache. ``fast/conv.py`` instead runs a few images at a
time, and each thread fills the same few buffers (``column_buffer``, the
product's) chunk after chunk: ``cols`` is written by im2col and read by the
matrix product while it is still in cache, and no new array is allocated
per chunk.
"""

from .flat_im2col import padded_row_length

# How many bytes of ``cols`` one chunk of images may fill. Small enough to
# stay in the CPU's cache between im2col writing it and the matrix product
# reading it (measured best at 1-4 MB here); on a GPU, one chunk is the batch.
CPU_CHUNK_BYTES = 2 ** 21
# ... but at least this many columns: a matrix product only a few dozen
# columns wide (deep layers with tiny maps) runs at a fraction of BLAS's speed.
MIN_CHUNK_COLUMNS = 512


def images_per_chunk(xp, N, rows, positions, itemsize, image_bytes=0):
    """How many images' cols (``rows`` x ``positions`` each) fit in the chunk budget (the whole batch on a GPU).

    ``image_bytes``: the size of one image in the chunk's other buffers (its padded input), which must fit too:
    for a 1x1 convolution with stride 2, four times its cols.
    """
    if xp.__name__ != "numpy":
        return N
    by_bytes = CPU_CHUNK_BYTES // max(rows * positions * itemsize, image_bytes)
    by_columns = -(-MIN_CHUNK_COLUMNS // positions)  # ceil
    return max(1, min(N, max(by_bytes, by_columns)))


def column_buffer(xp, rows, columns, dtype):
    """An empty (rows, columns) matrix for im2col, its rows spaced as ``padded_row_length`` says (a view)."""
    return xp.empty((rows, padded_row_length(columns, dtype.itemsize)), dtype=dtype)[:, :columns]
