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


def _optional(entry):
    """A schema entry that also accepts None (JSON null)."""
    ok, what = entry
    return (lambda v: v is None or ok(v)), what + " or null"


def _list_of_numbers(v):
    return isinstance(v, list) and all(x is None or weights._is_number(x) for x in v)


def _positive_number(v):
    return weights._is_number(v) and v > 0


_STRING = (lambda v: isinstance(v, str), "a string")
_NUMBERS = (_list_of_numbers, "a list of numbers")

# The parts of a checkpoint's "training" metadata: what each must be before anything is built from it.
TRAINING_SCHEMA = {
    "epoch": weights.int_in(0, 10**7),
    "history": _optional((lambda v: isinstance(v, dict) and all(_list_of_numbers(x) for x in v.values()),
                          "a JSON object of lists of numbers")),
    "config": _optional((lambda v: isinstance(v, dict), "a JSON object of settings")),
    "rng_state": _optional((lambda v: isinstance(v, dict), "a random generator's state (a JSON object)")),
    "optimizer": _optional((lambda v: isinstance(v, dict), "a JSON object")),
    "scheduler": _optional((lambda v: isinstance(v, dict), "a JSON object")),
}

# The settings of the command line that a checkpoint's "training" -> "config" holds (others are not checked).
CONFIG_SCHEMA = {
    "dataset": _STRING, "model": _STRING, "optimizer": _STRING, "schedule": _STRING, "augment": _STRING,
    "shortcut": _optional(weights.one_of("A", "B")),
    "epochs": weights.int_in(1, 10**6),
    "batch_size": weights.int_in(1, 10**6),
    "lr": _optional((_positive_number, "a positive number")),
    "momentum": ((lambda v: weights._is_number(v) and 0 <= v < 1), "a number from 0 to below 1"),
    "weight_decay": ((lambda v: weights._is_number(v) and v >= 0), "a number >= 0"),
    "label_smoothing": _optional(((lambda v: weights._is_number(v) and 0 <= v <= 1), "a number from 0 to 1")),
    "warmup_steps": weights.int_in(0, 10**9),
    "train_size": _optional(weights.int_in(0, 10**9)),
    "test_size": _optional(weights.int_in(0, 10**9)),
    "seed": weights.int_in(0, 2**63 - 1),
    "image_size": _optional(weights.int_in(1, 4096)),
    "val_fraction": _optional(((lambda v: weights._is_number(v) and 0 < v < 1), "a number between 0 and 1")),
    "mean": _optional(_NUMBERS),
    "std": _optional(((lambda v: _list_of_numbers(v) and all(x is not None and x > 0 for x in v)),
                      "a list of positive numbers")),
}

OPTIMIZER_SCHEMA = {
    "class": _STRING,
    "param_groups": ((lambda v: isinstance(v, list) and all(isinstance(g, dict) for g in v)),
                     "a list of JSON objects"),
    "scalars": ((lambda v: isinstance(v, dict) and all(isinstance(x, dict) for x in v.values())
                 and all(k.isdigit() for k in v)), "a JSON object of JSON objects, one per parameter index"),
}


def check_training(path, meta):
    """The "training" part of a checkpoint's metadata, checked against the schema; returns it.

    Types and ranges, field by field, before any network or optimizer is
    built from them: one ``weights.ModelFileError`` naming the file and the
    first bad field.
    """
    training = meta.get("training")
    if training is None:
        raise weights.ModelFileError(f"{path} holds model weights only, not a training checkpoint: it cannot "
                                     "resume training (load it with resnet_np.models.load)")
    if not isinstance(training, dict):
        raise weights.bad_field(path, "training", "a JSON object", training)
    if "epoch" not in training:
        raise weights.bad_field(path, "training.epoch", "present", None)
    weights.check_fields(path, "training.", training, TRAINING_SCHEMA)
    weights.check_fields(path, "training.config.", training.get("config") or {}, CONFIG_SCHEMA)
    optimizer = training.get("optimizer")
    if optimizer is not None:
        for key in OPTIMIZER_SCHEMA:
            if key not in optimizer:
                raise weights.bad_field(path, f"training.optimizer.{key}", "present", None)
        weights.check_fields(path, "training.optimizer.", optimizer, OPTIMIZER_SCHEMA)
    if training.get("rng_state") is not None:
        try:  # a generator of its own takes the state first: the package's one is untouched if it is bad
            backend.host.random.PCG64().state = training["rng_state"]
        except (TypeError, ValueError, KeyError, OverflowError) as e:
            raise weights.bad_field(path, "training.rng_state", f"a PCG64 generator's state ({e})",
                                    training["rng_state"]) from None
    return training


def _restore(path, field, restore, *args):
    """``restore(*args)``; a state the object refuses is an error naming the file and the field."""
    try:
        restore(*args)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as e:
        raise weights.ModelFileError(f"{path}: cannot restore training.{field}: {type(e).__name__}: {e}") from None


def load_checkpoint(path, model=None, optimizer=None, scheduler=None, backend_name=None):
    """Restore what ``save_checkpoint`` wrote; returns a ``Checkpoint``.

    The model is rebuilt from the file unless given. A given optimizer or
    scheduler gets its state back; a mismatch (another optimizer class, a
    different number of parameters) is a ValueError naming the file, and so
    is metadata of the wrong type or range (checked before anything is built).
    """
    path = os.fspath(path)
    weights.check_archive(path)
    if model is not None:
        _check_dtype(path, model)
    arrays = weights._read_npz(path)
    meta = weights._parse_meta(path, arrays)
    training = check_training(path, meta)
    extras = {key: a for key, a in arrays.items() if "/" in key}
    for key in extras:
        parts = key.split("/")
        if len(parts) != 4 or parts[:2] != ["optimizer", "state"] or not parts[2].isdigit():
            raise weights.ModelFileError(f"{path}: an array named {weights.shown_value(key)}, where only model "
                                         "weights and optimizer/state/<index>/<name> belong")
    model = weights.model_from_arrays(path, arrays, meta, model, backend_name)
    saved_opt = training.get("optimizer")
    if optimizer is not None:
        if saved_opt is None:
            raise weights.ModelFileError(f"{path} has no optimizer state to restore")
        if saved_opt["class"] != type(optimizer).__name__:
            raise weights.ModelFileError(f"{path} was trained with {weights.shown_value(saved_opt['class'])}, "
                                         f"not {type(optimizer).__name__}")
        state = {}
        for index, entries in saved_opt["scalars"].items():
            state.setdefault(int(index), {}).update(entries)
        for key, array in extras.items():
            _, _, index, name = key.split("/", 3)
            state.setdefault(int(index), {})[name] = array
        _restore(path, "optimizer", optimizer.load_state_dict,
                 {"state": state, "param_groups": saved_opt["param_groups"]})
    if scheduler is not None and training.get("scheduler") is not None:
        _restore(path, "scheduler", scheduler.load_state_dict, training["scheduler"])
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
    if saved in weights.FLOAT_DTYPES and own is not None and saved != own:  # another value: the schema says
        raise ValueError(f"{path} holds {saved} weights, but the model to load them into is {own}: "
                         f"convert the model first (model.astype({saved!r})) so the run continues in {saved}")


def read_training_config(path):
    """The settings a training checkpoint was written with (its "training" → "config"), without
    building anything: what ``--resume`` needs before it can build the model and optimizer."""
    path = os.fspath(path)
    weights.check_archive(path)
    arrays = weights._read_npz(path)
    meta = weights._parse_meta(path, arrays)
    return check_training(path, meta).get("config") or {}
