"""Batch normalisation over the channels of an (N, C, H, W) tensor (derived in lesson 04).

The functions here are the formulas; ``resnet_np/fast/batchnorm.py`` holds
their twins in fewer, threaded passes, and ``BatchNorm2d`` takes one or the
other as ``resnet_np.use_fast`` says.
"""

from .. import fast
from ..backend import get_array_module
from ..checks import check_dim, check_dout, check_float_input, check_forward_done, layer_name, positive_int
from ..fast import batchnorm as fast_batchnorm
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


def as_map(v):
    """Per-channel values (C,) as a (1, C, 1, 1) array, ready to broadcast over (N, C, H, W)."""
    return v.reshape(1, -1, 1, 1)


def batch_statistics(x):
    """The batch's per-channel mean and biased variance over its M = N*H*W values, and x - mean:

        mean = sum(x) / M          x_centered = x - mean          var = sum(x_centered**2) / M

    Returns (mean, var, M, x_centered).
    """
    N, C, H, W = x.shape
    M = N * H * W
    mean = channel_sum(x) / M
    x_centered = x - as_map(mean)
    var = channel_sum(x_centered, x_centered) / M
    return mean, var, M, x_centered


def normalize(x, mean, var, eps, weight, bias, x_centered=None):
    """out = weight * x_hat + bias, and what backward needs; ``x_centered`` (x - mean) if already known:

        inv_std = 1 / sqrt(var + eps)          x_hat = (x - mean) * inv_std

    Returns (out, x_centered, inv_std).
    """
    if x_centered is None:
        x_centered = x - as_map(mean)
    inv_std = 1.0 / get_array_module(x).sqrt(var + eps)
    x_hat = x_centered * as_map(inv_std)
    return as_map(weight) * x_hat + as_map(bias), x_centered, inv_std


def gradient_sums(dout, x_centered):
    """The two per-channel sums backward needs: (sum(dout), sum(dout * x_centered))."""
    return channel_sum(dout), channel_sum(dout, x_centered)


def input_grad(dout, x_centered, inv_std, weight, sum_dout, sum_dout_xc, M, trained):
    """dx of batch norm, with x_hat = x_centered * inv_std and sums over the channel's M values:

        dx = weight * inv_std * (dout - sum(dout) / M - x_hat * sum(dout * x_hat) / M)      (train mode)
        dx = weight * inv_std * dout                                                        (eval mode)

    (sum(dout * x_hat) = inv_std * sum_dout_xc.) In eval mode the statistics
    are constants, so only the first term is left.
    """
    if not trained:
        return as_map(weight * inv_std) * dout
    x_hat = x_centered * as_map(inv_std)
    sum_dout_xhat = sum_dout_xc * inv_std
    return as_map(weight * inv_std) * (dout - as_map(sum_dout / M) - x_hat * as_map(sum_dout_xhat / M))


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

    PyTorch's options: ``affine=False`` has no ``weight`` and ``bias``
    (both None, no state-dict keys: out = x_hat, the formulas above with
    weight = 1); ``track_running_stats=False`` keeps no running statistics
    (no ``running_*`` or ``num_batches_tracked``) and normalises with the
    batch's statistics in eval mode too, so eval mode's forward and backward
    are train mode's. The input must be a batch (N, C, H, W): an unbatched
    (C, H, W) image is refused, as in PyTorch.

    A subclass that spreads the batch over several processes
    (``SyncBatchNorm``) overrides ``_batch_statistics`` and
    ``_gradient_sums`` only: both paths (fast and plain) go through them.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__()
        self.num_features = positive_int(num_features, "num_features", "BatchNorm2d")
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        xp = get_array_module()
        # As PyTorch: without affine (or without running statistics) the attributes exist, set to None, and the
        # state dict has no such key.
        self.weight = Parameter(xp.ones(num_features, dtype=xp.float32)) if affine else None
        self.bias = Parameter(xp.zeros(num_features, dtype=xp.float32)) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", xp.zeros(num_features, dtype=xp.float32))
            self.register_buffer("running_var", xp.ones(num_features, dtype=xp.float32))
            self.register_buffer("num_batches_tracked", xp.zeros((), dtype=xp.int64))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None
        self._cache = None
        self._centered = None   # (x, mean, x - mean), left by _batch_statistics for forward to reuse

    def forward(self, x):
        self._cache = self._centered = None
        self._check_input(x)
        N, C, H, W = x.shape
        # Batch statistics in train mode, and in eval mode too when there are no running ones (as PyTorch).
        use_batch_stats = self.training or not self.track_running_stats
        if use_batch_stats:
            if N * H * W < 2:
                mode = "train mode" if self.training else "eval mode without running statistics"
                raise ValueError(f"{layer_name(self)}: {mode} needs more than 1 value per channel, "
                                 f"got input shape {tuple(x.shape)}")
            mean, var, M = self._batch_statistics(x)
            if self.training and self.track_running_stats:
                self._update_running_stats(mean, var, M)
        else:
            mean, var, M = self.running_mean, self.running_var, N * H * W
        centered, self._centered = self._centered, None
        x_centered = centered[2] if centered is not None and centered[0] is x and centered[1] is mean else None
        weight, bias = self._scale_and_shift(x)
        if fast.fast_enabled():
            out, x_centered, inv_std = fast_batchnorm.normalize(x, mean, var, self.eps, weight, bias, x_centered)
        else:
            out, x_centered, inv_std = normalize(x, mean, var, self.eps, weight, bias, x_centered)
        self._cache = (use_batch_stats, x_centered, inv_std, M)
        return out

    def _check_input(self, x):
        """A 4-D float array with num_features channels; an unbatched (C, H, W) one is refused, as PyTorch does."""
        if hasattr(x, "ndim") and hasattr(x, "shape") and x.ndim != 4:
            raise ValueError(f"{layer_name(self)}: expected 4D input (got {x.ndim}D input): a 4-D batch "
                             f"(N, C, H, W), got {x.ndim}-D shape {tuple(x.shape)}"
                             + ("; for one image, add the batch axis: x[None]" if x.ndim == 3 else ""))
        like = self.weight.data if self.affine else self.running_mean
        check_float_input(self, x, 4, "(N, C, H, W)", like=like)
        check_dim(self, x, 1, self.num_features, "channels")

    def _scale_and_shift(self, x):
        """(weight, bias): the parameters' arrays, or 1 and 0 (constants, not trained) without ``affine``."""
        if self.affine:
            return self.weight.data, self.bias.data
        xp = get_array_module(x)
        return xp.ones(self.num_features, dtype=x.dtype), xp.zeros(self.num_features, dtype=x.dtype)

    def _batch_statistics(self, x):
        """Train mode: (mean, var, M) of the batch x, per channel (var biased, M values per channel)."""
        if fast.fast_enabled():
            mean, var, M, x_centered = fast_batchnorm.batch_statistics(x)
        else:
            mean, var, M, x_centered = batch_statistics(x)
        self._centered = (x, mean, x_centered)
        return mean, var, M

    def _update_running_stats(self, mean, var, M):
        """The running statistics, PyTorch's way (see the class docstring)."""
        self.num_batches_tracked += 1
        if self.momentum is None:
            factor = 1.0 / float(self.num_batches_tracked)
        else:
            factor = self.momentum
        self.running_mean *= 1.0 - factor
        self.running_mean += factor * mean
        self.running_var *= 1.0 - factor
        self.running_var += factor * var * (M / (M - 1))

    def _gradient_sums(self, dout, x_centered):
        """(sum(dout), sum(dout * x_centered)) per channel, for dx's formula; adds the parameters' gradients.

        The parameters' gradients are this layer's own sums — dbias =
        sum(dout), dweight = sum(dout * x_hat) — added here, so that an
        override that adds other processes' sums to what it returns
        (SyncBatchNorm) leaves them local.
        """
        if fast.fast_enabled():
            sum_dout, sum_dout_xc = fast_batchnorm.gradient_sums(dout, x_centered)
        else:
            sum_dout, sum_dout_xc = gradient_sums(dout, x_centered)
        inv_std = self._cache[2]
        if self.affine and self.weight.requires_grad:
            self.weight.accumulate_grad(sum_dout_xc * inv_std)
        if self.affine and self.bias.requires_grad:
            self.bias.accumulate_grad(sum_dout)
        return sum_dout, sum_dout_xc

    def backward(self, dout):
        check_forward_done(self, self._cache)
        trained, x_centered, inv_std, M = self._cache
        check_dout(self, dout, x_centered.shape)
        sum_dout, sum_dout_xc = self._gradient_sums(dout, x_centered)
        weight = self._scale_and_shift(dout)[0]
        if fast.fast_enabled():
            return fast_batchnorm.input_grad(dout, x_centered, inv_std, weight, sum_dout, sum_dout_xc, M, trained)
        return input_grad(dout, x_centered, inv_std, weight, sum_dout, sum_dout_xc, M, trained)

    def extra_repr(self):
        extra = "" if self.affine else ", affine=False"
        extra += "" if self.track_running_stats else ", track_running_stats=False"
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}{extra}"
