"""The training loop: forward, loss, backward, step — with progress, checkpoints and curves.

One training step is the whole story of the library in four lines::

    loss = loss_fn(model(x), y)          # forward, then the loss
    optimizer.zero_grad()                # gradients accumulate: clear them
    model.backward(loss_fn.backward())   # backward, layer by layer
    optimizer.step()                     # update the parameters

``fit`` repeats it over the epochs, evaluates after each one, keeps a
history of the metrics, writes a checkpoint each epoch (atomically), and
stops cleanly on Ctrl-C or when the loss or a gradient turns NaN/Inf,
leaving the last good checkpoint in place.

Numerical faults are checked cheaply once per step — the loss, and one sum
over all parameter gradients, before the optimizer may use them — and when
a check fails the batch is re-run with every layer watched
(``resnet_np.nancheck``) so the error can name the layer where the NaN or
Inf first appeared.

Under ``mpiexec`` (``model`` a ``distributed.DistributedDataParallel``)
every rank runs the same loop on its share of each batch; the metrics of
an epoch are summed over the ranks once, at its end (one all-reduce of
three numbers, nothing added to the steps), and only rank 0 shows the
progress bar, logs, and writes the checkpoint and the curves.
"""

import glob
import math
import os
import time

from tqdm import tqdm

from .atomic import signals_deferred, write_atomically
from .backend import get_array_module, to_numpy
from .checkpoint import load_checkpoint, save_checkpoint
from .distributed import WORLD_OF_ONE, DistributedDataParallel, unwrap
from .fast import tuned
from .layers import NonFiniteLossError, SoftmaxCrossEntropy
from .nancheck import gradients_are_finite, locate_non_finite

HISTORY_KEYS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "images_per_sec", "seconds", "lr")


class TrainingDiverged(RuntimeError):
    """The loss or a gradient became NaN or infinite; the message says where and what to try."""


def _where(model, loss_fn, x, y):
    """The layer where the NaN/Inf of this batch first appears, as a phrase for an error message."""
    world = _world_of(model)
    if world.size > 1:
        # The re-run would call synchronised batch norms on this rank alone, and wait forever.
        return (f"(rank {world.rank} of {world.size}; the layer is not searched for under several processes: "
                "resume the last checkpoint in one process to find it)")
    found = locate_non_finite(unwrap(model), loss_fn, x, y)
    if found is None:
        return "re-running the batch gave finite values everywhere, so no layer could be named"
    return found


def _diverged(what, epoch, step, optimizer, model, loss_fn, x, y):
    """The error for a training step whose loss or gradients are not finite, naming the layer."""
    return TrainingDiverged(
        f"{what} became NaN or infinite at epoch {epoch + 1}, step {step + 1} (learning rate "
        f"{optimizer.param_groups[0]['lr']:g}): {_where(model, loss_fn, x, y)}; training has diverged; "
        "try a lower learning rate (for example a tenth)")


def evaluate(model, loader, loss_fn=None):
    """(mean loss, accuracy) of ``model`` over ``loader``, in eval mode.

    The loss sum, the count of correct answers and the labels' range are
    accumulated where the logits are and read back once, at the end: on a
    GPU each read waits for all the work queued before it. Only when the
    loss sum is NaN or Inf is the loader gone over again, batch by batch,
    to name the layer where it first appears.

    For a ``DistributedDataParallel`` model of several ranks, each rank
    evaluates its share (a loader with ``DistributedSampler(pad=False)``)
    and the sums are all-reduced over the model's world.
    """
    world = _world_of(model)
    loss_fn = loss_fn or SoftmaxCrossEntropy()
    was_training = model.training
    model.eval()
    total_loss, correct, seen, low, high, classes = 0.0, 0, 0, None, None, None
    try:
        for x, y in loader:
            logits = model(x)
            try:
                loss = _loss_on_device(loss_fn, logits, y)  # left on the device where the loss function can
            except NonFiniteLossError as e:  # a loss function that reads its value itself
                raise NonFiniteLossError(f"{e} ({_where(model, loss_fn, x, y)})") from None
            xp = get_array_module(logits)
            total_loss = total_loss + (loss if isinstance(loss, float) else loss.astype("float64")) * len(y)
            correct = correct + (logits.argmax(axis=1) == y).sum()
            low = y.min() if low is None else xp.minimum(low, y.min())  # checked with the rest, at the end
            high = y.max() if high is None else xp.maximum(high, y.max())
            seen, classes = seen + len(y), logits.shape[1]
        if seen:  # one read of the device for the whole pass
            numbers = [correct, low, high] + ([] if isinstance(total_loss, float) else [total_loss])
            xp = get_array_module(*numbers)
            read = [float(v) for v in to_numpy(xp.stack([xp.asarray(v, dtype="float64") for v in numbers]))]
            correct, low, high = int(read[0]), int(read[1]), int(read[2])
            total_loss = read[3] if len(read) == 4 else total_loss
            if low < 0 or high >= classes:
                raise ValueError(f"evaluate: the labels must be in [0, {classes - 1}] for a model with {classes} "
                                 f"outputs, got {low if low < 0 else high}")
            if not math.isfinite(total_loss):
                for x, y in loader:  # again, one read per batch, to name the layer (SoftmaxCrossEntropy.forward)
                    try:
                        loss_fn(model(x), y)
                    except NonFiniteLossError as e:
                        raise NonFiniteLossError(f"{e} ({_where(model, loss_fn, x, y)})") from None
                raise NonFiniteLossError(f"evaluate: the loss is {total_loss} (the logits of some batch contain NaN "
                                         "or Inf, and a second pass over the loader did not find which)")
    finally:
        model.train(was_training)
    if world.size > 1:
        total_loss, correct, seen = world.sum_numbers(total_loss, correct, seen)
        correct, seen = int(correct), int(seen)
    if seen == 0:
        raise ValueError("evaluate: the loader yielded no examples")
    return total_loss / seen, correct / seen


def _world_of(model):
    """The processes that share ``model``'s work: a DistributedDataParallel's world, else a world of one."""
    return model.world if isinstance(model, DistributedDataParallel) else WORLD_OF_ONE


def _train_one_epoch(model, loader, optimizer, loss_fn, scheduler, epoch, epochs, progress):
    """One pass over ``loader``; returns this rank's (summed loss, correct answers, images seen, seconds)."""
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    start = time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", leave=False, disable=not progress, unit="batch")
    for step, (x, y) in enumerate(bar):
        logits = model(x)
        if step == 0:
            _check_labels(loader, logits.shape[1])
        try:
            loss = _loss_on_device(loss_fn, logits, y)
        except NonFiniteLossError:
            raise _diverged("the loss", epoch, step, optimizer, model, loss_fn, x, y) from None
        optimizer.zero_grad()
        model.backward(loss_fn.backward())
        # One read of the device per step: the logged loss and the NaN/Inf check of the gradients together.
        loss, gradient_sum = _read_loss_and_gradient_sum(loss, model.parameters())
        if not math.isfinite(loss):
            raise _diverged("the loss", epoch, step, optimizer, model, loss_fn, x, y)
        # Before the optimizer spreads them into the weights; a non-finite sum is confirmed element by element.
        if not math.isfinite(gradient_sum) and not gradients_are_finite(model.parameters()):
            raise _diverged("the gradients", epoch, step, optimizer, model, loss_fn, x, y)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()  # schedules here count iterations, as in the paper (32k, 48k)

        total_loss += loss * len(y)
        correct = correct + (get_array_module(logits).argmax(logits, axis=1) == y).sum()  # read once per epoch
        seen += len(y)
        if progress and (step % 10 == 0 or step == len(loader) - 1):  # the accuracy waits for the epoch's end
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", img_s=f"{seen / (time.perf_counter() - start):.0f}")
    bar.close()
    return total_loss, int(correct), seen, time.perf_counter() - start


def _check_labels(loader, num_classes):
    """Every label of the loader's dataset names one of the model's classes: checked once, on the host.

    The loss checks each batch's labels only where they are on the host: on
    a GPU that check would read the device twice per step.
    """
    labels = getattr(getattr(loader, "dataset", None), "labels", None)
    if labels is None or len(labels) == 0:
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise ValueError(f"fit: the training labels must be in [0, {num_classes - 1}] for a model with "
                         f"{num_classes} outputs, got {low if low < 0 else high}: build the model with "
                         "num_classes equal to the dataset's number of classes")


def _loss_on_device(loss_fn, logits, y):
    """The batch's loss, left on the device where the loss function can (``forward_array``)."""
    forward_array = getattr(loss_fn, "forward_array", None)
    return forward_array(logits, y) if forward_array is not None else loss_fn(logits, y)


def _read_loss_and_gradient_sum(loss, parameters):
    """The step's loss and the sum of all its gradients as two floats, read from the device together.

    On a GPU each read waits for all the work queued before it: one read
    per step serves the logged loss and the NaN/Inf check. NaN and Inf
    survive a sum (see ``nancheck.gradients_are_finite``).
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return float(loss), 0.0
    total = grads[0].sum()
    for g in grads[1:]:
        total = total + g.sum()
    if isinstance(loss, float):  # a loss function that returns a number: only the sum is left to read
        return loss, float(total)
    both = to_numpy(get_array_module(total).stack([loss.astype(total.dtype), total]))
    return float(both[0]), float(both[1])


@tuned()  # while fit runs: freed memory kept, BLAS at one thread beside our threads; restored after (fast/__init__.py)
def fit(model, train_loader, val_loader, epochs, optimizer, scheduler=None, loss_fn=None, out_dir=None,
        resume=None, config=None, progress=True, log=print, world=WORLD_OF_ONE, val_name="val"):
    """Train ``model`` for ``epochs`` epochs; returns the history of metrics (a dict of lists).

    ``scheduler`` is stepped once per training step. With ``out_dir``, a
    checkpoint ``checkpoint.npz`` is written there after every epoch (and
    ``curves.png``). ``resume`` is the path of such a checkpoint: training
    continues after the epoch it records, with the optimizer, schedule,
    history and random state it had. ``config`` (a JSON-able dict, such as
    the command-line settings) is stored in each checkpoint.

    Ctrl-C stops after the current step and returns the history so far;
    the last checkpoint on disk is the last complete epoch's. A NaN or
    infinite loss, gradient or validation loss raises ``TrainingDiverged``
    naming the layer where it first appeared, also leaving it in place
    (the faulty step is not applied).

    ``world``: the processes that train together (a world of one by
    default; under mpiexec, the world of the ``DistributedDataParallel``
    model). Every rank calls ``fit`` alike; rank 0 alone logs, shows
    progress and writes ``out_dir``; every rank reads ``resume``.
    ``val_name`` is what the log and the curves call ``val_loader``'s
    images: "test" for an official test set, "held-out" for images held
    out of the training data.
    """
    loss_fn = loss_fn or SoftmaxCrossEntropy()
    if _world_of(model).size != world.size:
        raise ValueError(f"fit: the model is shared by {_world_of(model).size} process(es), but world has "
                         f"{world.size}: pass world=model.world")
    if len(train_loader) == 0:
        raise ValueError("fit: the training loader yields no batch (fewer images than one batch, and drop_last): "
                         "lower the batch size")
    if not world.is_main:
        progress, log = False, _silent
    history = {key: [] for key in HISTORY_KEYS}
    start_epoch = 0
    if resume is not None:
        state = load_checkpoint(resume, model=unwrap(model), optimizer=optimizer, scheduler=scheduler)
        start_epoch = state.epoch
        history.update({key: list(value) for key, value in state.history.items()})
        log(f"resumed from {resume} after epoch {start_epoch}")
    checkpoint_path = os.path.join(out_dir, "checkpoint.npz") if out_dir else None
    writes = bool(out_dir) and world.is_main
    if writes:
        os.makedirs(out_dir, exist_ok=True)
        _remove_leftover_temporary_files(out_dir, log)

    saved_epoch = start_epoch if resume is not None else None
    for epoch in range(start_epoch, epochs):
        train_loader.set_epoch(epoch)  # the data order depends on (seed, epoch) only: resumable
        try:
            total_loss, correct, seen, seconds = _train_one_epoch(
                model, train_loader, optimizer, loss_fn, scheduler, epoch, epochs, progress)
            if world.size > 1:
                total_loss, correct, seen = world.sum_numbers(total_loss, correct, seen)
            train_loss, train_acc, speed = total_loss / seen, correct / seen, seen / seconds
            try:
                val_loss, val_acc = (evaluate(model, val_loader, loss_fn) if val_loader is not None
                                     else (None, None))
            except NonFiniteLossError as e:
                raise TrainingDiverged(f"validation after epoch {epoch + 1}: {e}") from None
            # An epoch's history, checkpoint and curves go together: a Ctrl-C or SIGTERM here acts at the end
            # of the block, so what the run reports saved is on disk (atomic.signals_deferred).
            with signals_deferred():
                for key, value in zip(HISTORY_KEYS, (epoch + 1, train_loss, train_acc, val_loss, val_acc, speed,
                                                     seconds, optimizer.param_groups[0]["lr"])):
                    history[key].append(value)
                val_text = (f", {val_name} loss {val_loss:.4f}, {val_name} acc {val_acc:.2%}" if val_loader is not None
                            else "")
                log(f"epoch {epoch + 1}/{epochs}: train loss {train_loss:.4f}, train acc {train_acc:.2%}{val_text}"
                    f" ({speed:.0f} images/s, {seconds:.0f} s)")
                if out_dir:
                    if writes:
                        save_checkpoint(checkpoint_path, unwrap(model), optimizer, scheduler, epoch + 1, history,
                                        config)
                    saved_epoch = epoch + 1  # on every rank: what the error messages below say
                    if writes:
                        save_curves(history, os.path.join(out_dir, "curves.png"), val_name)
        except KeyboardInterrupt:
            kept = (f"; the last good checkpoint is {checkpoint_path} (epoch {saved_epoch})"
                    if checkpoint_path and saved_epoch else "")
            log(f"interrupted during epoch {epoch + 1}{kept}")
            history["interrupted"] = True
            return history
        except TrainingDiverged as e:
            kept = (f" The last good checkpoint is {checkpoint_path} (epoch {saved_epoch})."
                    if checkpoint_path and saved_epoch else "")
            raise TrainingDiverged(f"{e}.{kept}") from None
    return history


def _silent(*args, **kwargs):
    """The log of ranks other than 0 (the command line's too)."""


def _remove_leftover_temporary_files(out_dir, log):
    """Delete the temporary files of writes that a killed run never finished.

    ``write_atomically`` removes its temporary file on any exception, but a
    process killed outright (SIGKILL, a power cut) cannot: the half-written
    ``.checkpoint.npz.<random>.tmp`` stays beside the intact checkpoint.
    Nothing ever reads such a file, so it is only wasted space.
    """
    for name in ("checkpoint.npz", "curves.png"):
        for path in glob.glob(os.path.join(glob.escape(out_dir), f".{name}.*.tmp")):
            try:
                os.remove(path)
                log(f"removed {path}, left unfinished by an interrupted run")
            except FileNotFoundError:
                pass


def save_curves(history, path, val_name="val"):
    """Loss and accuracy per epoch, of training and of ``val_name`` images, as a PNG (written atomically)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = history["epoch"]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, history["train_loss"], "o-", label="train")
    ax_acc.plot(epochs, [100 * a for a in history["train_acc"]], "o-", label="train")
    if any(v is not None for v in history["val_loss"]):
        ax_loss.plot(epochs, history["val_loss"], "o-", label=val_name)
        ax_acc.plot(epochs, [100 * a for a in history["val_acc"]], "o-", label=val_name)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    write_atomically(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
