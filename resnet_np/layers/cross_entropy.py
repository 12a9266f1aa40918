"""CrossEntropyLoss with PyTorch's options: class weights, ignore_index, label smoothing, soft targets, reductions."""

from ..backend import backend_of, get_array_module, host, is_floating, is_integer, to_device
from ..checks import check_array, check_dout, check_forward_done, layer_name

REDUCTIONS = ("mean", "sum", "none")


def check_label_smoothing(label_smoothing):
    """PyTorch's range for ``label_smoothing``, [0, 1]; its message (PyTorch ignores a negative one silently)."""
    if (isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float))
            or not 0.0 <= label_smoothing <= 1.0):
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    return float(label_smoothing)


class CrossEntropyLoss:
    """Cross-entropy of softmax(input) against class indices or class probabilities (``torch.nn.CrossEntropyLoss``).

    ``input``: logits z of shape (N, K), or (K,) for one sample. ``target``:
    class indices y of shape (N,) (a 0-d array for one sample), or class
    probabilities T of the input's shape ("soft" targets: mixup,
    distillation). Either becomes a target matrix Q of shape (N, K), and
    each sample's loss is the cross-entropy of its softmax against its row:

        log p[n, k] = z[n, k] - logsumexp(z[n])       (after subtracting max z[n])
        l[n] = -sum_k Q[n, k] log p[n, k]

    With class weights w (ones when not given), label smoothing eps and
    m[n] = [y[n] != ignore_index], class indices give

        Q[n, k] = m[n] ((1 - eps) w[y[n]] [k == y[n]] + (eps / K) w[k])

    and probabilities give (PyTorch smooths them the same way)

        Q[n, k] = ((1 - eps) T[n, k] + eps / K) w[k]

    ``reduction``: "none" returns l, "sum" its sum, "mean" its sum divided
    by the batch's total weight D: a weighted mean over the samples not
    ignored (NaN when D = 0, as in PyTorch). Probabilities divide by N:

        D = sum_n m[n] w[y[n]]         (class indices)
        D = N                          (probabilities)

    The gradient is the softmax minus the target, each row scaled by its
    share g[n] of the upstream gradient (dout[n] for "none", dout for
    "sum", dout / D for "mean"):

        s[n] = sum_k Q[n, k]      dz[n, k] = g[n] (s[n] p[n, k] - Q[n, k])

    Without weights s[n] = 1: label smoothing's gradient is
    softmax(z) - ((1 - eps) onehot(y) + eps / K). An ignored sample has
    Q[n] = 0, so its gradient is 0 (and 0 everywhere when all are ignored).

    ``forward`` returns an array where the input is, as PyTorch returns a
    tensor (``float(loss)`` reads it); ``backward(dout)`` returns dz.
    ``SoftmaxCrossEntropy``, the training loop's loss, is the case
    "mean" with class indices, checked for a training loop.
    """

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        if reduction not in REDUCTIONS:
            raise ValueError(f"{reduction} is not a valid value for reduction")
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
            raise TypeError(f"CrossEntropyLoss: ignore_index must be an int, not {type(ignore_index).__name__}")
        if weight is not None and not hasattr(weight, "shape"):
            weight = host.asarray(weight, dtype=host.float64)  # a list or tuple of numbers
        self.weight, self.ignore_index, self.reduction = weight, ignore_index, reduction
        self.label_smoothing = check_label_smoothing(label_smoothing)
        self._cache = None

    def __call__(self, input, target):
        return self.forward(input, target)

    def forward(self, input, target):
        """The loss: a 0-d array ("mean", "sum"), or one value per sample ("none")."""
        z, Q, D, unbatched = self._prepare(input, target)
        xp = get_array_module(z)
        shifted = z - z.max(axis=1, keepdims=True)
        log_p = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        losses = -(Q * log_p).sum(axis=1)                                         # (N,)
        self._cache = (xp.exp(log_p), Q, D, unbatched)
        if self.reduction == "none":
            return losses.reshape(()) if unbatched else losses
        if self.reduction == "sum":
            return losses.sum()
        return _divide(losses.sum(), D, xp.nan)

    def backward(self, dout=1.0):
        """dz = g (s p - Q): the softmax minus the target, row n scaled by its upstream gradient g[n]."""
        check_forward_done(self, self._cache)
        p, Q, D, unbatched = self._cache
        N = p.shape[0]
        if self.reduction == "none":
            check_dout(self, dout, () if unbatched else (N,))
            g = dout.reshape(N, 1)
        elif self.reduction == "sum":
            g = dout
        else:
            g = _divide(dout, D, 0.0)  # D = 0: every sample ignored, and PyTorch's gradient is 0
        dz = g * (Q.sum(axis=1, keepdims=True) * p - Q)
        return dz.reshape(p.shape[1:]) if unbatched else dz

    def _prepare(self, input, target):
        """(logits (N, K), target matrix Q (N, K), divisor D of "mean", unbatched?), after the checks."""
        self._cache = None
        check_array(self, input)
        check_array(self, target)
        if input.ndim not in (1, 2):
            raise ValueError(f"{layer_name(self)}: expected input of shape (N, C) or (C,) for one sample, got "
                             f"{input.ndim}-D shape {tuple(input.shape)} (PyTorch's (N, C, d1, ...) is not supported)")
        if not is_floating(input):
            raise ValueError(f"{layer_name(self)}: expected floating-point logits, got dtype {input.dtype}")
        unbatched = input.ndim == 1
        z = input.reshape(1, -1) if unbatched else input
        if z.shape[1] == 0:
            raise ValueError(f"{layer_name(self)}: input of shape {tuple(input.shape)} has no classes")
        if tuple(target.shape) == tuple(input.shape):  # PyTorch's rule: the input's shape means probabilities
            Q, D = self._probability_targets(z, target.reshape(z.shape))
        else:
            Q, D = self._class_targets(z, target, unbatched)
        return z, Q, D, unbatched

    def _class_targets(self, z, target, unbatched):
        """Q and D for class indices: one-hot rows, weighted, smoothed; ignored samples' rows are 0."""
        xp = get_array_module(z)
        (N, K), name = z.shape, layer_name(self)
        if not is_integer(target):
            raise ValueError(f"{name}: expected target dtype to be an integer type (class indices), or a "
                             f"floating-point target of the input's shape {tuple(z.shape[unbatched:])} (class "
                             f"probabilities), but got {target.dtype} of shape {tuple(target.shape)}")
        if target.ndim != (0 if unbatched else 1):
            raise ValueError(f"{name}: expected a target of shape {'()' if unbatched else '(N,)'} (class indices) "
                             f"or {tuple(z.shape[unbatched:])} (probabilities), got shape {tuple(target.shape)}")
        if not unbatched and target.shape[0] != N:
            raise ValueError(f"{name}: Expected input batch_size ({N}) to match target batch_size "
                             f"({target.shape[0]}).")
        w = self._class_weights(z)
        y = target.reshape(N)
        kept = y != self.ignore_index                                             # m (N,)
        y = xp.where(kept, y, 0)
        low, high = (int(y.min()), int(y.max())) if N else (0, 0)  # two reads: on a GPU, a synchronisation
        if low < 0 or high >= K:
            bad = low if low < 0 else high
            raise ValueError(f"{name}: Target {bad} is out of bounds (classes 0 to {K - 1}; ignore_index "
                             f"{self.ignore_index})")
        w_y = w[y] * kept                                                         # m[n] w[y[n]]
        Q = (1.0 - self.label_smoothing) * w_y[:, None] * (xp.arange(K) == y[:, None])
        if self.label_smoothing > 0:
            Q = Q + (self.label_smoothing / K) * kept[:, None] * w
        return Q, w_y.sum()

    def _probability_targets(self, z, T):
        """Q and D for class probabilities: smoothed towards 1/K, then weighted per class; D = N."""
        xp = get_array_module(z)
        N, K = z.shape
        if not is_floating(T):
            raise ValueError(f"{layer_name(self)}: Expected floating point type for target with class "
                             f"probabilities, got {T.dtype}")
        if self.ignore_index >= 0:
            raise ValueError(f"{layer_name(self)}: ignore_index is not supported for floating point target")
        w = self._class_weights(z)
        eps = self.label_smoothing
        Q = ((1.0 - eps) * T.astype(z.dtype, copy=False) + eps / K) * w
        return Q, xp.full((), N, dtype=z.dtype)

    def _class_weights(self, z):
        """w (K,) on the logits' device and of their dtype: the given weights, or ones."""
        xp = get_array_module(z)
        K = z.shape[1]
        if self.weight is None:
            return xp.ones(K, dtype=z.dtype)
        if self.weight.ndim != 1 or self.weight.shape[0] != K:
            raise ValueError(f"{layer_name(self)}: weight tensor should be defined either for all {K} classes or "
                             f"no classes but got weight tensor of shape: {list(self.weight.shape)}")
        return to_device(self.weight, backend_of(z)).astype(z.dtype, copy=False)

    def extra_repr(self):
        parts = [] if self.weight is None else [f"weight=({self.weight.shape[0]},)"]
        parts += [] if self.ignore_index == -100 else [f"ignore_index={self.ignore_index}"]
        parts += [] if self.reduction == "mean" else [f"reduction={self.reduction!r}"]
        parts += [] if self.label_smoothing == 0 else [f"label_smoothing={self.label_smoothing:g}"]
        return ", ".join(parts)


def _divide(a, D, if_zero):
    """a / D, or ``if_zero`` where the divisor D is 0, without reading D (no division-by-zero warning)."""
    xp = get_array_module(D)
    nonzero = D != 0
    return xp.where(nonzero, a / xp.where(nonzero, D, 1), if_zero)
