"""Training checkpoints: everything needed to stop a run and carry on later.

A checkpoint is a model file of ``resnet_np.models.save`` (so
``models.load(path)`` reads its weights) with more inside:

* the optimizer's per-parameter state (momentum buffers, Adam's moments) as
  arrays named ``optimizer/state/<index>/<name>``;
* in the JSON metadata, under "training": the epoch just finished, the
  optimizer's hyper-parameters, the schedule's position, the history of
  metrics, the random generator's state and the run's settings.

With all of that restored, a resumed run takes exactly the steps the
uninterrupted run would have taken: the data loader's order depends only on
its seed and the epoch number. The file is written atomically, like every
model file, so the previous checkpoint survives a crash during the write.

Loading refuses, with an error that names the file and says which problem
it has: a missing file, a truncated or corrupted one, a model file without
training state, a newer format version, another architecture (or another
configuration of it: other keys or shapes), another optimizer, and weights
of another dtype than the model to resume (casting float64 weights to
float32 would quietly change the run, so it is refused, not done).

Before anything is read from it, every entry of the archive is checked
against the CRC-32 checksum the zip format stores for it. NumPy stops
reading an entry where the entry's own header says the array ends, and the
zip module compares the checksum only when an entry is read to its end: a
damaged header (a shape, a dtype) would otherwise load as wrong numbers
without any error.
"""

import json
import os

from . import backend
from .models import weights


class Checkpoint:
    """What ``load_checkpoint`` returns: the model and where training stood."""

    def __init__(self, model, epoch, history, config, meta):
        self.model, self.epoch, self.history, self.config, self.meta = model, epoch, history, config, meta


def _split_optimizer_state(state):
    """Arrays go into the archive, plain numbers into the JSON metadata."""
    arrays, scalars = {}, {}
    for index, entries in state.items():
        for name, value in entries.items():
            if hasattr(value, "shape") and value.ndim > 0:
                arrays[f"optimizer/state/{index}/{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value.item() if hasattr(value, "item") else value
    return arrays, scalars


def save_checkpoint(path, model, optimizer=None, scheduler=None, epoch=0, history=None, config=None):
    """Write model, optimizer, schedule, epoch, history and RNG state to ``path`` atomically."""
    arrays, training = {}, {
        "epoch": epoch,
        "history": history or {},
        "config": config or {},
        "rng_state": backend.get_rng_state(),
        "optimizer": None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
    }
    if optimizer is not None:
        state = optimizer.state_dict()
        arrays, scalars = _split_optimizer_state(state["state"])
        training["optimizer"] = {"class": type(optimizer).__name__, "param_groups": state["param_groups"],
                                 "scalars": scalars}
    weights.save(model, path, extra_arrays=arrays, extra_meta={"training": training})


def load_checkpoint(path, model=None, optimizer=None, scheduler=None, backend_name=None):
    """Restore what ``save_checkpoint`` wrote; returns a ``Checkpoint``.

    The model is rebuilt from the file unless given. A given optimizer or
    scheduler gets its state back; a mismatch (another optimizer class, a
    different number of parameters) is a ValueError naming the file.
    """
    path = os.fspath(path)
    weights.check_archive(path)
    if model is not None:
        _check_dtype(path, model)
    model, meta, extras = weights.load_with_extras(path, model, backend_name)
    training = meta.get("training")
    if training is None:
        raise ValueError(f"{path} holds model weights only, not a training checkpoint: "
                         "it cannot resume training (load it with resnet_np.models.load)")
    saved_opt = training.get("optimizer")
    if optimizer is not None:
        if saved_opt is None:
            raise ValueError(f"{path} has no optimizer state to restore")
        if saved_opt["class"] != type(optimizer).__name__:
            raise ValueError(f"{path} was trained with {saved_opt['class']}, not {type(optimizer).__name__}")
        state = {}
        for index, entries in saved_opt["scalars"].items():
            state.setdefault(int(index), {}).update(entries)
        for key, array in extras.items():
            _, _, index, name = key.split("/", 3)
            state.setdefault(int(index), {})[name] = array
        try:
            optimizer.load_state_dict({"state": state, "param_groups": saved_opt["param_groups"]})
        except ValueError as e:
            raise ValueError(f"{path}: cannot restore the optimizer: {e}") from None
    if scheduler is not None and training.get("scheduler") is not None:
        scheduler.load_state_dict(training["scheduler"])
    if training.get("rng_state") is not None:
        backend.set_rng_state(training["rng_state"])
    return Checkpoint(model, training["epoch"], training.get("history") or {}, training.get("config") or {}, meta)


def _saved_meta(path):
    """The JSON metadata of ``path``, reading nothing else; None if it cannot be read that way.

    (A file this fails on is damaged: ``weights.load_with_extras`` then
    reads it in full and says what is wrong.)
    """
    try:
        with backend.host.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data[weights.META_KEY][()]))
    except Exception:
        return None
    return meta if isinstance(meta, dict) else None


def _check_dtype(path, model):
    """Refuse to resume a model of one dtype from weights of another."""
    meta = _saved_meta(path)
    saved = meta.get("dtype") if meta else None
    own = weights._model_dtype(model)
    if saved is not None and own is not None and saved != own:
        raise ValueError(f"{path} holds {saved} weights, but the model to load them into is {own}: "
                         f"convert the model first (model.astype({saved!r})) so the run continues in {saved}")


def read_training_config(path):
    """The settings a training checkpoint was written with (its "training" → "config"), without
    building anything: what ``--resume`` needs before it can build the model and optimizer."""
    path = os.fspath(path)
    weights.check_archive(path)
    arrays = weights._read_npz(path)
    meta = weights._parse_meta(path, arrays)
    training = meta.get("training")
    if training is None:
        raise ValueError(f"{path} holds model weights only, not a training checkpoint")
    return training.get("config") or {}
