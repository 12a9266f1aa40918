"""DataLoader: batches of (images, labels), shuffled, augmented and normalised.

What the loader does for each batch:

1. pick the batch's indices from this epoch's order of the dataset;
2. gather those uint8 images on the host and augment them (optional);
3. move them to the compute device (still uint8: a quarter of the bytes
   of float32), convert to float32 in [0, 1] and normalise each channel,
   ``x = (pixel / 255 - mean[c]) / std[c]``;
4. yield ``(x, y)``: x float32 (B, C, H, W), y int64 (B,).

**Reproducible epochs.** The order of epoch ``e`` is a permutation drawn
from ``numpy.random.default_rng([seed, e])``, and the augmentation of its
batch ``b`` from ``default_rng([seed, e, 1, b])``. Nothing depends on what
ran before, so a run resumed at epoch 7 sees exactly the batches the
uninterrupted run would have seen. The trainer calls ``set_epoch(e)`` before
each epoch; a loop that does not simply gets epochs 0, 1, 2, ...: every
``iter(loader)`` uses ``loader.epoch`` and then advances it by one.

**Several processes.** With ``sampler=DistributedSampler(num_replicas,
rank)`` each rank of a data-parallel job (``resnet_np.distributed``) takes
its own share of that same order: every rank draws the same permutation
(same seed, same epoch), then keeps positions ``rank, rank + R, rank + 2R,
...``. Batch b of all ranks together is batch b of a single process whose
batch is R times larger. The augmentation of a rank's batch is drawn from
``default_rng([seed, epoch, 1, b, rank])`` so that the ranks crop their
images independently.
"""

import math

from ..backend import get_array_module, host, to_device
from .augment import RECIPES
from .augment import augment as augment_batch


class DistributedSampler:
    """One rank's share of every epoch's order: positions ``rank, rank + R, rank + 2R, ...`` (R = ``num_replicas``).

    Every rank must take the same number of steps, or the ranks that still
    have a batch would wait forever for the others in the gradient
    all-reduce. When the number of examples n is not a multiple of R:

    * ``drop_last=True`` drops the last n mod R examples of the order (a
      different few each epoch, since the order is shuffled);
    * otherwise ``pad=True`` (the default, as PyTorch's) repeats examples
      from the start of the order until every rank has ceil(n / R);
    * ``pad=False`` leaves the shares uneven (by one): for evaluation, where
      every example must count exactly once and no gradient is exchanged.

    With ``drop_last=True`` and a global batch B divisible by R, each rank's
    loader (batch B / R, ``drop_last=True``) takes n // B steps: exactly as
    many as one process with batch B, whatever R is, so a checkpoint's
    schedule stays valid under another number of ranks.
    """

    def __init__(self, num_replicas, rank, drop_last=False, pad=True):
        if not isinstance(num_replicas, int) or isinstance(num_replicas, bool) or num_replicas < 1:
            raise ValueError(f"DistributedSampler: num_replicas must be a positive int, got {num_replicas!r}")
        if not isinstance(rank, int) or isinstance(rank, bool) or not 0 <= rank < num_replicas:
            raise ValueError(f"DistributedSampler: rank must be an int in 0..{num_replicas - 1} "
                             f"(num_replicas={num_replicas}), got {rank!r}")
        self.num_replicas = num_replicas
        self.rank = rank
        self.drop_last = drop_last
        self.pad = pad

    def share_length(self, n):
        """How many of n examples this rank takes per epoch."""
        R = self.num_replicas
        if self.drop_last:
            return n // R
        if self.pad:
            return -(-n // R)  # ceil(n / R)
        return n // R + (1 if self.rank < n % R else 0)

    def share(self, order):
        """This rank's part of ``order`` (a 1-D array of dataset indices)."""
        R, n = self.num_replicas, len(order)
        if self.drop_last:
            order = order[:n - n % R]
        elif self.pad and n % R:
            missing = R - n % R
            # Tiled, in case there are fewer examples than the padding needs (n < R).
            repeats = host.tile(order, -(-missing // max(n, 1)))[:missing] if n else order[:0]
            order = host.concatenate([order, repeats])
        return order[self.rank::R]

    def __repr__(self):
        return (f"DistributedSampler(num_replicas={self.num_replicas}, rank={self.rank}, "
                f"drop_last={self.drop_last}, pad={self.pad})")


class DataLoader:
    """Iterate over ``dataset`` (a ``resnet_np.data.Dataset``) in batches ``(x, y)``.

    ``shuffle``: a new permutation every epoch (every example exactly once);
    otherwise the dataset's order. ``drop_last``: skip a last, smaller batch.
    ``augment``: None, "cifar" (random crop from 4-pixel padding and random
    horizontal flip) or "digits" (random crop from 2-pixel padding, no flip).
    ``normalize``: subtract the dataset's mean and divide by its std, per
    channel (otherwise x is just pixel / 255). ``backend``: "numpy" or
    "cupy" for the batches; by default the current backend. ``sampler``: a
    ``DistributedSampler``, to iterate over one rank's share only
    (``batch_size`` is then the rank's batch).
    """

    def __init__(self, dataset, batch_size=128, shuffle=True, drop_last=False, seed=0, augment=None,
                 normalize=True, backend=None, sampler=None):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"DataLoader: seed must be an int >= 0, got {seed!r}")
        if augment is not None and augment not in RECIPES:
            raise ValueError(f"DataLoader: augment must be None or one of {sorted(RECIPES)}, got {augment!r}")
        if sampler is not None and not isinstance(sampler, DistributedSampler):
            raise ValueError(f"DataLoader: sampler must be None or a DistributedSampler, got {type(sampler).__name__}")
        self.sampler = sampler
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.augment = augment
        self.normalize = normalize
        self.backend = backend
        self.epoch = 0

    def set_epoch(self, epoch):
        """Make the next iteration produce epoch ``epoch`` (its order and augmentation)."""
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise ValueError(f"DataLoader: epoch must be an int >= 0, got {epoch!r}")
        self.epoch = epoch

    def __len__(self):
        """The number of batches in one epoch (of this rank's share, with a sampler)."""
        n = len(self.dataset) if self.sampler is None else self.sampler.share_length(len(self.dataset))
        if self.drop_last:
            return n // self.batch_size
        return math.ceil(n / self.batch_size)

    def order(self, epoch):
        """The indices of the dataset in the order epoch ``epoch`` visits them (this rank's, with a sampler)."""
        if self.shuffle:
            order = host.random.default_rng([self.seed, epoch]).permutation(len(self.dataset))
        else:
            order = host.arange(len(self.dataset))
        return order if self.sampler is None else self.sampler.share(order)

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        return self._batches(epoch)

    def _batches(self, epoch):
        order = self.order(epoch)
        # One rank alone draws what a plain loader draws; several ranks each their own crops.
        rank = [self.sampler.rank] if self.sampler is not None and self.sampler.num_replicas > 1 else []
        for b in range(len(self)):
            indices = order[b * self.batch_size:(b + 1) * self.batch_size]
            images = self.dataset.images[indices]
            if self.augment is not None:
                images = augment_batch(images, self.augment, host.random.default_rng([self.seed, epoch, 1, b, *rank]))
            yield self._to_float(images), to_device(self.dataset.labels[indices], self.backend)

    def _to_float(self, images):
        """uint8 (B, C, H, W) on the host -> normalised float32 on the device."""
        images = to_device(images, self.backend)
        xp = get_array_module(images)
        x = images.astype(xp.float32) / xp.float32(255)
        if self.normalize:
            mean, std = self._normalization(xp, x.shape[1])
            x = (x - mean) / std
        return x

    def _normalization(self, xp, channels):
        """The dataset's mean and std as float32 (1, C, 1, 1) arrays of ``xp``, kept from batch to batch.

        On a GPU each upload is a transfer the queue waits for: the two
        constants go there once, not with every batch.
        """
        source = (xp, self.dataset.mean, self.dataset.std)
        kept = getattr(self, "_kept_normalization", None)
        if kept is None or any(a is not b for a, b in zip(kept[0], source)):
            mean = xp.asarray(self.dataset.mean, dtype=xp.float32).reshape(1, channels, 1, 1)
            std = xp.asarray(self.dataset.std, dtype=xp.float32).reshape(1, channels, 1, 1)
            self._kept_normalization = (source, mean, std)
        return self._kept_normalization[1:]
