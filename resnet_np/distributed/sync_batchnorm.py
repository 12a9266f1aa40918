"""Synchronised batch normalisation: batch statistics over every rank's images together.

Batch norm is the one layer data parallelism cannot leave alone: its output
depends on the whole batch through the batch's mean and variance, and with
R ranks each holds only its share. ``SyncBatchNorm`` computes the
statistics of the union of the shares, as one process would compute them
on the whole batch, and its backward uses the sums of every rank.

It is ``BatchNorm2d`` with two of its steps replaced (layers/batchnorm.py
names them for this purpose): ``_batch_statistics``, which combines the
ranks' moments, and ``_gradient_sums``, which adds up the ranks' sums. The
normalisation, the running-statistics update and the formula of dx are
BatchNorm2d's own, on the fast path and the plain one alike.
"""

from ..backend import get_array_module
from ..checks import layer_name
from ..layers import BatchNorm2d
from .world import init


def combine_moments(counts, means, m2s):
    """(M, mean, var) of the union of groups given by their counts, means and sums of squared deviations.

    Chan et al.'s pairwise formula, for any number of groups::

        M    = sum_r M_r
        mean = sum_r M_r mean_r / M
        M2   = sum_r [ M2_r + M_r (mean_r - mean)^2 ]     var = M2 / M

    Unlike sum(x^2)/M - mean^2 it subtracts no two large numbers, so float32
    activations with a large mean keep their variance. The arrays are
    (ranks,) and (ranks, C); the sums run in rank order, the same on every
    rank, so every rank gets the same bits.
    """
    M = counts.sum()
    mean = (counts[:, None] * means).sum(axis=0) / M
    m2 = (m2s + counts[:, None] * (means - mean) ** 2).sum(axis=0)
    return M, mean, m2 / M


class SyncBatchNorm(BatchNorm2d):
    """BatchNorm2d whose batch is the union of every rank's batch.

    Train mode, forward — each rank has M_r = N_r*H*W values per channel:

        local (BatchNorm2d's own statistics):  mean_r, var_r;   M2_r = var_r * M_r
        one all-gather of (M_r, mean_r, M2_r), combined in rank order (``combine_moments``):
                M, mean, var over all M = sum_r M_r values

    then BatchNorm2d's forward with those: x_hat = (x - mean) / sqrt(var + eps),
    out = weight * x_hat + bias, and the running statistics move exactly as
    one process's would over the global batch (unbiased variance with the
    global M).

    Backward. With g = dL/dout, where L is the sum of the ranks' losses,
    and sums over every value of the channel on every rank:

        dx = weight / sqrt(var + eps) * (g - sum(g)/M - x_hat * sum(g * x_hat)/M)

    The mean and variance depend on every rank's x, so x's gradient needs
    the two per-channel sums of *all* ranks: one all-reduce of 2C numbers.
    The parameter gradients stay local, dweight = sum_local(g * x_hat) and
    dbias = sum_local(g) (BatchNorm2d's ``_gradient_sums`` adds them before
    the all-reduce); DistributedDataParallel averages them with the others
    (the average of the ranks' sums is the gradient of the mean of the
    ranks' losses, like every other gradient).

    Eval mode (running statistics) and a world of one are plain BatchNorm2d.
    Each rank needs more than one value per channel (BatchNorm2d's check).
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, world=None):
        super().__init__(num_features, eps=eps, momentum=momentum, affine=affine,
                         track_running_stats=track_running_stats)
        self.world = world

    def _get_world(self):
        if self.world is None:
            self.world = init()
        return self.world

    def _batch_statistics(self, x):
        """(mean, var, M) over every rank's batch: the ranks' own statistics, gathered and combined."""
        local_mean, local_var, m = super()._batch_statistics(x)
        world = self._get_world()
        if world.size == 1:
            return local_mean, local_var, m
        xp = get_array_module(x)
        C = x.shape[1]
        f64 = xp.float64
        stats = world.allgather(xp.concatenate([xp.full(1, m, dtype=f64), local_mean.astype(f64),
                                                local_var.astype(f64) * m]))
        M, mean, var = combine_moments(stats[:, 0], stats[:, 1:1 + C], stats[:, 1 + C:])
        M = int(M)
        if M < 2:
            raise ValueError(f"{layer_name(self)}: train mode needs more than 1 value per channel over all "
                             f"{world.size} ranks, got {M}")
        mean, var = mean.astype(x.dtype), var.astype(x.dtype)
        if self._centered is not None and self._centered[0] is x:
            # BatchNorm2d's statistics left x - local_mean for forward to reuse: centre it on the global mean
            # (in place: one pass instead of a second subtraction from x).
            x_centered = self._centered[2]
            x_centered -= (mean - local_mean).reshape(1, C, 1, 1)
            self._centered = (x, mean, x_centered)
        return mean, var, M

    def _gradient_sums(self, dout, x_centered):
        """(sum(dout), sum(dout * x_centered)) over every rank, in train mode; the parameter gradients local."""
        local_sums = super()._gradient_sums(dout, x_centered)  # adds this rank's dweight and dbias
        world = self._get_world()
        trained = self._cache[0]
        if not trained or world.size == 1:
            return local_sums
        xp = get_array_module(dout)
        C = dout.shape[1]
        sums = world.allreduce(xp.concatenate(local_sums))
        return sums[:C], sums[C:]


def _synced_copy(bn, world):
    sync = SyncBatchNorm(bn.num_features, eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                         track_running_stats=bn.track_running_stats, world=world)
    # The same Parameter objects and arrays: an optimizer made before still updates them.
    sync.weight, sync.bias = bn.weight, bn.bias
    for name in bn._buffer_names:
        sync.register_buffer(name, getattr(bn, name))
    sync.training, sync.keep_eval = bn.training, bn.keep_eval
    return sync


def convert_sync_batchnorm(model, world=None):
    """Replace every BatchNorm2d in ``model`` by a SyncBatchNorm holding the same parameters and buffers.

    The state-dict keys, the order and the arrays stay the same. Returns the
    model (a new module when ``model`` itself is a BatchNorm2d).
    """
    world = world if world is not None else init()
    if isinstance(model, BatchNorm2d) and not isinstance(model, SyncBatchNorm):
        return _synced_copy(model, world)
    for module in list(model.modules()):
        for name, child in list(vars(module).items()):
            if isinstance(child, BatchNorm2d) and not isinstance(child, SyncBatchNorm):
                setattr(module, name, _synced_copy(child, world))
    return model
