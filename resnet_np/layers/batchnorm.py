"""Batch normalisation over the channels of an (N, C, H, W) tensor."""

from .. import parallel
from ..backend import get_array_module
from ..checks import check_dim, check_dout, check_float_input, check_forward_done, layer_name, positive_int
from ..module import Module, Parameter


def channel_sum(a, b=None):
    """Per-channel sum over N, H and W of ``a`` (or of ``a * b``, without building the product).

    One pass of einsum over an (N, C, H*W) view: several times faster than
    ``(a * b).sum(axis=(0, 2, 3))``, which first writes the whole product.
    """
    xp = get_array_module(a)
    N, C, H, W = a.shape
    # H*W spelled out, not -1: NumPy cannot infer -1 for an empty batch (N = 0)
    if b is None:
        return xp.einsum("ncp->c", a.reshape(N, C, H * W))
    return xp.einsum("ncp,ncp->c", a.reshape(N, C, H * W), b.reshape(N, C, H * W))


def per_channel(v, shape):
    """The per-channel values ``v`` (C,) spread over a feature map, as a (1, C, H, W) array.

    ``x * v.reshape(1, C, 1, 1)`` broadcasts v with stride 0 along H and W,
    and NumPy's inner loops run at half speed on that; spread once into a
    small (C, H, W) array, v is broadcast along N only, and every pass over
    x runs at full speed.
    """
    xp = get_array_module(v)
    N, C, H, W = shape
    return xp.broadcast_to(v.reshape(C, 1, 1), (C, H, W)).reshape(1, C, H, W).copy()


def batch_channel_sum(a, b=None):
    """``channel_sum`` over a whole batch, its images shared out among the threads (parallel.py).

    Each thread sums its own images; the partial sums are added in a fixed
    order, so the result does not depend on which thread finished first.
    """
    parts = parallel.for_each_part(lambda n0, n1: channel_sum(a[n0:n1], None if b is None else b[n0:n1]),
                                   len(a), parallel.min_images(a), get_array_module(a))
    return add_in_order(parts)


def add_in_order(parts):
    """The sum of the threads' partial results, always in the same order (the same bits on every run)."""
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


class BatchNorm2d(Module):
    """Per-channel normalisation, then a learned scale ``weight`` and shift ``bias``.

    Each channel c is normalised over the M = N*H*W values it has in a batch:

        x_hat = (x - mean) / sqrt(var + eps)          out = weight * x_hat + bias

    Train mode uses the batch's mean and *biased* variance, and updates the
    running statistics as PyTorch does (the running variance is *unbiased*):

        running_mean = (1 - momentum) * running_mean + momentum * mean
        running_var  = (1 - momentum) * running_var  + momentum * var * M / (M - 1)

    (``momentum=None`` gives the cumulative average, factor 1/num_batches_tracked.)
    Eval mode uses the running statistics instead, so the output of one
    image no longer depends on the rest of its batch.

    Backward in train mode — mean and var depend on every x of the channel,
    which is where the two extra terms come from (sums over N, H, W):

        dx_hat = dout * weight
        dx     = (M * dx_hat - sum(dx_hat) - x_hat * sum(dx_hat * x_hat)) / (M * sqrt(var + eps))

    In eval mode the statistics are constants: dx = dout * weight / sqrt(running_var + eps).
    In both modes dweight = sum(dout * x_hat) and dbias = sum(dout).
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.num_features = positive_int(num_features, "num_features", "BatchNorm2d")
        self.eps = eps
        self.momentum = momentum
        xp = get_array_module()
        self.weight = Parameter(xp.ones(num_features, dtype=xp.float32))
        self.bias = Parameter(xp.zeros(num_features, dtype=xp.float32))
        self.register_buffer("running_mean", xp.zeros(num_features, dtype=xp.float32))
        self.register_buffer("running_var", xp.ones(num_features, dtype=xp.float32))
        self.register_buffer("num_batches_tracked", xp.zeros((), dtype=xp.int64))
        self._cache = None

    def forward(self, x):
        self._cache = None
        check_float_input(self, x, 4, "(N, C, H, W)", like=self.weight.data)
        check_dim(self, x, 1, self.num_features, "channels")
        xp = get_array_module(x)
        N, C, H, W = x.shape
        M = N * H * W
        if self.training:
            if M < 2:
                raise ValueError(f"{layer_name(self)}: train mode needs more than 1 value per channel, "
                                 f"got input shape {tuple(x.shape)}")
            mean = batch_channel_sum(x) / M
        else:
            mean, var = self.running_mean, self.running_var
        # The passes over the data below run on a share of the images per thread.
        x_centered = xp.empty_like(x)
        mean_map = per_channel(mean, x.shape)
        training = self.training

        def center(n0, n1):  # x - mean and, in train mode, its per-channel sum of squares: one call per thread
            xc = xp.subtract(x[n0:n1], mean_map, out=x_centered[n0:n1])
            return channel_sum(xc, xc) if training else 0
        squares = add_in_order(parallel.for_each_part(center, N, parallel.min_images(x), xp))
        if self.training:
            var = squares / M
            self._update_running_stats(mean, var, M)
        inv_std = 1.0 / xp.sqrt(var + self.eps)
        # weight * x_hat + bias with x_hat = x_centered * inv_std, folded into one
        # scale per channel: two passes over the data instead of three.
        scale_map = per_channel(self.weight.data * inv_std, x.shape)
        bias_map = per_channel(self.bias.data, x.shape)
        out = xp.empty_like(x)

        def scale_and_shift(n0, n1):
            xp.multiply(x_centered[n0:n1], scale_map, out=out[n0:n1])
            out[n0:n1] += bias_map
        parallel.for_each_part(scale_and_shift, N, parallel.min_images(x), xp)
        self._cache = (self.training, x_centered, inv_std)
        return out

    def _update_running_stats(self, mean, var, M):
        self.num_batches_tracked += 1
        if self.momentum is None:
            factor = 1.0 / float(self.num_batches_tracked)
        else:
            factor = self.momentum
        self.running_mean *= 1.0 - factor
        self.running_mean += factor * mean
        self.running_var *= 1.0 - factor
        self.running_var += factor * var * (M / (M - 1))

    def backward(self, dout):
        check_forward_done(self, self._cache)
        trained, x_centered, inv_std = self._cache
        check_dout(self, dout, x_centered.shape)
        N, C, H, W = dout.shape
        M = N * H * W
        xp = get_array_module(dout)

        def sums(n0, n1):  # sum(dout) and sum(dout * x_centered) in one call per thread
            return channel_sum(dout[n0:n1]), channel_sum(dout[n0:n1], x_centered[n0:n1])
        parts = parallel.for_each_part(sums, N, parallel.min_images(dout), xp)
        dbias = add_in_order([s for s, _ in parts])
        dweight = add_in_order([s_xc for _, s_xc in parts]) * inv_std    # sum(dout * x_hat)
        scale = self.weight.data * inv_std                                 # gamma / sqrt(var + eps)
        scale_map = per_channel(scale, dout.shape)
        dx = xp.empty_like(dout)
        if trained:
            # dx = scale * (dout - sum(dout)/M - x_hat * sum(dout * x_hat)/M), with x_hat = x_centered * inv_std
            mean_map = per_channel(dbias / M, dout.shape)
            slope_map = per_channel(inv_std * dweight / M, dout.shape)

            def chain_rule(n0, n1):
                d = xp.subtract(dout[n0:n1], mean_map, out=dx[n0:n1])
                d -= xp.multiply(x_centered[n0:n1], slope_map)
                d *= scale_map
        else:
            def chain_rule(n0, n1):
                xp.multiply(dout[n0:n1], scale_map, out=dx[n0:n1])
        parallel.for_each_part(chain_rule, N, parallel.min_images(dout), xp)
        if self.weight.requires_grad:
            self.weight.accumulate_grad(dweight)
        if self.bias.requires_grad:
            self.bias.accumulate_grad(dbias)
        return dx

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"
