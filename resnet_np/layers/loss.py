"""Softmax and cross-entropy, fused for numerical stability (lesson 08 trains with it; exercise 06 derives it)."""

import math

from ..backend import get_array_module, host, is_integer
from ..checks import check_array, check_forward_done, layer_name
from .cross_entropy import check_label_smoothing


class NonFiniteLossError(ValueError):
    """The loss is NaN or infinite: training has diverged."""


class SoftmaxCrossEntropy:
    """Mean cross-entropy of softmax(logits) against integer class labels.

    For logits z of shape (N, K) and labels y of shape (N,):

        log p[n, k] = z[n, k] - logsumexp(z[n])          (computed after
                                                          subtracting max z[n],
                                                          so exp never overflows)
        loss        = -(1/N) * sum_n log p[n, y[n]]

    and its gradient — softmax minus the one-hot label, averaged:

        dz[n, k] = (p[n, k] - [k == y[n]]) / N  *  dloss

    ``label_smoothing`` eps (``train --label-smoothing``) moves the target
    from the one-hot label towards the uniform distribution over the K
    classes, and the gradient follows it:

        q[n, k]  = (1 - eps) [k == y[n]] + eps / K
        loss     = -(1/N) * sum_n sum_k q[n, k] log p[n, k]
        dz[n, k] = (p[n, k] - q[n, k]) / N  *  dloss

    It is ``CrossEntropyLoss(label_smoothing=eps)`` without weights or
    ignored labels, with the checks a training loop wants.

    It is not a Module (it has no parameters and ends the chain): call
    ``forward(logits, labels)`` for the loss as a Python float, then
    ``backward()`` for dlogits. ``forward_array`` gives the loss as a 0-d
    array without reading it back, for a training loop on a GPU.
    """

    def __init__(self, label_smoothing=0.0):
        self.label_smoothing = check_label_smoothing(label_smoothing)
        self._cache = None

    def __call__(self, logits, labels):
        return self.forward(logits, labels)

    def forward(self, logits, labels):
        """The loss as a Python float; refuses labels out of range and logits that are not finite."""
        K = self._check(logits, labels)
        self._check_label_range(labels, K)
        xp = get_array_module(logits)
        if not bool(xp.isfinite(logits).all()):  # cheap: N x K values, and it saves a NaN-filled backward
            raise NonFiniteLossError(f"{layer_name(self)}: the logits contain NaN or Inf, so the loss is not "
                                     "finite: training has diverged; try a lower learning rate")
        loss = float(self._loss(logits, labels))
        if not math.isfinite(loss):
            self._cache = None  # no backward of a loss that was refused
            raise NonFiniteLossError(f"{layer_name(self)}: the loss is {loss} (the logits contain NaN or Inf: "
                             f"training has diverged; try a lower learning rate)")
        return loss

    def forward_array(self, logits, labels):
        """The loss as a 0-d array where the logits are, not read back (no check of its value).

        On a GPU, every read of a value waits until the GPU has finished all
        the work queued before it. A training loop reads this loss once per
        step, together with its check of the gradients (``resnet_np.train``);
        NaN or +Inf in the logits make the loss NaN, which it sees there.
        The labels' range is checked here only when they are on the host
        (free there); on the device ``fit`` checks its dataset's labels once.
        """
        K = self._check(logits, labels)
        if get_array_module(labels) is host:
            self._check_label_range(labels, K)
        return self._loss(logits, labels)

    def _check(self, logits, labels):
        """Shapes and dtypes (no value is read); returns the number of classes K."""
        self._cache = None
        check_array(self, logits, 2, "(N, num_classes)")
        check_array(self, labels, 1, "(N,) of class indices")
        N, K = logits.shape
        if not is_integer(labels):
            raise ValueError(f"{layer_name(self)}: labels must be integers (class indices), got dtype {labels.dtype}")
        if labels.shape[0] != N:
            raise ValueError(f"{layer_name(self)}: expected {N} labels (one per row of logits), got {labels.shape[0]}")
        if N == 0:
            raise ValueError(f"{layer_name(self)}: empty batch: logits of shape {tuple(logits.shape)} have no rows")
        if K == 0:
            raise ValueError(f"{layer_name(self)}: logits of shape {tuple(logits.shape)} have no classes")
        return K

    def _check_label_range(self, labels, K):
        """Labels in [0, K - 1]. It reads two values: on a GPU, a synchronisation."""
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= K:
            bad = low if low < 0 else high
            raise ValueError(f"{layer_name(self)}: labels must be in [0, {K - 1}] for {K} classes, got {bad}")

    def _loss(self, logits, labels):
        """The mean loss as a 0-d array; keeps the softmax for backward."""
        xp = get_array_module(logits)
        N = logits.shape[0]
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        self._cache = (xp.exp(log_probs), labels)
        if self.label_smoothing == 0:
            return -log_probs[xp.arange(N), labels].mean()
        eps, K = self.label_smoothing, logits.shape[1]
        return -((1.0 - eps) * log_probs[xp.arange(N), labels] + (eps / K) * log_probs.sum(axis=1)).mean()

    def backward(self, dloss=1.0):
        check_forward_done(self, self._cache)
        probs, labels = self._cache
        xp = get_array_module(probs)
        N = probs.shape[0]
        dlogits = probs.copy()
        dlogits[xp.arange(N), labels] -= 1.0 - self.label_smoothing
        if self.label_smoothing:
            dlogits -= self.label_smoothing / probs.shape[1]
        dlogits *= dloss / N
        return dlogits

    def extra_repr(self):
        return "" if self.label_smoothing == 0 else f"label_smoothing={self.label_smoothing:g}"
