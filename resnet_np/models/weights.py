"""Saving and loading weights: resnet_np's own ``.npz`` files and PyTorch's ``.pth``.

A resnet_np checkpoint is a plain NumPy ``.npz`` archive: one array per
state-dict key (``layer1.0.bn1.running_mean``, ...) plus one reserved entry,
``__meta__``, a JSON string that says how to rebuild the network::

    {"format_version": 1, "arch": "resnet20",
     "config": {"num_classes": 10, "in_channels": 3, "shortcut": "A", "residual": true},
     "dtype": "float32"}

so ``load(path)`` needs nothing but the file. Everything in it is a plain
array (the JSON is a 0-d unicode array), so it reads with
``allow_pickle=False``: loading a checkpoint never runs code from the file.

Writes are atomic: the archive goes to a temporary file in the same folder,
is flushed to disk, and only then renamed onto the target. A crash or a
full disk half-way leaves the previous checkpoint as it was, never a
truncated file under the good name.

The state-dict keys are torchvision's, so ``load_torch_state_dict`` and
``save_torch_state_dict`` exchange weights with PyTorch (the optional
``torch`` extra).
"""

import json
import math
import os
import re
import warnings
import zipfile
import zlib
from collections import OrderedDict

from ..atomic import write_atomically
from ..backend import host, to_numpy

# Bump when the layout changes; load() refuses files newer than it knows.
FORMAT_VERSION = 1

# The reserved archive entry holding the JSON metadata.
META_KEY = "__meta__"

FLOAT_DTYPES = ("float16", "float32", "float64")

# Beyond any network of the papers, and far below what would exhaust memory before the
# shapes in the file are compared: a num_classes of 10**9 would be a 477 GiB classifier.
MAX_CLASSES = 100_000


class ModelFileError(ValueError):
    """A model file or checkpoint that cannot be used; the message names the file and what is wrong."""


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def int_in(low, high):
    """A schema entry: an int in [low, high]."""
    return (lambda v: _is_int(v) and low <= v <= high), f"an int from {low} to {high}"


def one_of(*choices):
    return (lambda v: v in choices and type(v) is type(choices[0])), "one of " + ", ".join(map(repr, choices))


# The constructor arguments a model file's "config" may hold: what each must be.
CONFIG_SCHEMA = {
    "num_classes": int_in(1, MAX_CLASSES),
    "in_channels": int_in(1, 1024),
    "shortcut": one_of("A", "B"),
    "residual": one_of(True, False),
    "dropout": ((lambda v: _is_number(v) and 0 <= v < 1), "a number from 0 to below 1"),
    "depth": int_in(1, 2000),
    "widen_factor": int_in(1, 64),
    "groups": int_in(1, 1024),
    "width_per_group": int_in(1, 4096),
    "base_planes": int_in(1, 4096),
    "replace_stride_with_dilation": ((lambda v: isinstance(v, list) and len(v) == 3
                                      and all(isinstance(b, bool) for b in v)), "a list of three booleans"),
}


def shown_value(value, width=60):
    """``repr(value)``, cut to ``width`` characters: a bad field may hold a megabyte."""
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def bad_field(path, field, what, value):
    """The one error for a metadata field of the wrong type or range."""
    return ModelFileError(f"{path}: metadata field {field} must be {what}, got {shown_value(value)}: the file is "
                          "damaged or was not written by resnet_np; use another copy")


def check_fields(path, prefix, values, schema):
    """Each field of ``values`` that ``schema`` knows is checked; the first bad one is a ``ModelFileError``."""
    for key, (ok, what) in schema.items():
        if key in values and not ok(values[key]):
            raise bad_field(path, f"{prefix}{key}", what, values[key])


def check_model_meta(path, meta, arrays):
    """The model part of a file's metadata, checked against the schema and the arrays, before anything is built.

    The classifier and the first convolution in the file must have the shapes
    ``num_classes`` and ``in_channels`` say: then a network built from the
    metadata is no bigger than the file itself.
    """
    arch, config = meta.get("arch"), meta.get("config")
    if arch is not None and not isinstance(arch, str):
        raise bad_field(path, "arch", "an architecture name (a string)", arch)
    if config is None:
        return
    if not isinstance(config, dict):
        raise bad_field(path, "config", "a JSON object of constructor arguments", config)
    check_fields(path, "config.", config, CONFIG_SCHEMA)
    for field, key, axis in (("num_classes", "fc.weight", 0), ("in_channels", "conv1.weight", 1)):
        array = arrays.get(key)
        if field in config and array is not None and array.ndim > axis and array.shape[axis] != config[field]:
            raise ModelFileError(f"{path}: metadata field config.{field} says {config[field]}, but {key} in the "
                                 f"file has shape {tuple(array.shape)}: the file is damaged or not resnet_np's")


# ----------------------------------------------------------------------------
# resnet_np checkpoints (.npz)
# ----------------------------------------------------------------------------

def _model_dtype(model):
    """The dtype name of the model's first floating parameter ("float32", ...), or None."""
    for p in model.parameters():
        name = str(p.data.dtype)
        if name in FLOAT_DTYPES:
            return name
    return None


def save(model, path, extra_arrays=None, extra_meta=None):
    """Write ``model``'s state dict and how to rebuild it to the ``.npz`` file ``path``.

    The file is written exactly at ``path`` (no ``.npz`` suffix is added).
    A model without an ``arch`` attribute (say, a hand-built Sequential)
    can be saved too; loading it then needs ``load(path, model=...)``.

    A training checkpoint (``resnet_np.checkpoint``) is the same file with
    more in it: ``extra_arrays`` under names containing "/" (such as
    ``optimizer/state/3/momentum_buffer``), which ``load`` ignores, and
    ``extra_meta`` entries in the JSON metadata.
    """
    arrays = OrderedDict((key, to_numpy(a)) for key, a in model.state_dict().items())
    if META_KEY in arrays:
        raise ValueError(f"cannot save: the model has a state-dict key named {META_KEY!r}, reserved for metadata")
    for key, a in (extra_arrays or {}).items():
        if "/" not in key:
            raise ValueError(f"extra array names must contain '/' to stay apart from the model's keys, got {key!r}")
        arrays[key] = to_numpy(a)
    meta = {
        "format_version": FORMAT_VERSION,
        "arch": getattr(model, "arch", None),
        "config": getattr(model, "config", None),
        "dtype": _model_dtype(model),
    }
    meta.update(extra_meta or {})
    arrays[META_KEY] = host.array(json.dumps(meta))  # a 0-d unicode array: no pickle needed

    def write(fileobj):
        # A file object, not a name: numpy would append ".npz" to a name.
        host.savez(fileobj, **arrays)

    write_atomically(path, write)


def check_archive(path):
    """A ValueError naming ``path`` unless every entry of the zip archive is intact.

    Each entry is read to its end, which makes the zip module compare it with
    its CRC-32 and its local header with the archive's directory. Names must
    be unique: a damaged name that duplicates another would hide one entry.
    """
    if not os.path.isfile(path):
        return  # the caller says that there is no such file
    problem = None
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if len(set(names)) != len(names):
                problem = "two of its entries have the same name"
            for info in archive.infolist():
                with archive.open(info) as entry:
                    while entry.read(1 << 20):
                        pass
    # A damaged zip directory can also claim an unknown compression method (NotImplementedError)
    # or an encrypted entry (RuntimeError).
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as e:
        problem = str(e)
    if problem is not None:
        raise ValueError(f"{path} is not a resnet_np checkpoint (truncated or corrupted?): {problem}")


def _read_npz(path):
    """Every array in the archive ``path`` as a dict, or a ValueError saying why not."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint file at {path}")
    if _is_torch_file(path):
        raise ModelFileError(f"{path} is a PyTorch file (torch.save), not a resnet_np model file (.npz): fine-tune "
                             "from it (finetune --from PATH --model ARCH), or load it into a network with "
                             "resnet_np.models.load_torch_state_dict(model, path) and write it with "
                             "resnet_np.models.save(model, 'model.npz')")
    check_archive(path)  # NumPy stops reading an entry where its header says: a damaged header would pass
    try:
        data = host.load(path, allow_pickle=False)
        if not hasattr(data, "files"):  # a single .npy array, not an archive
            raise ValueError("it holds a single array, not an .npz archive")
        try:
            # Reading every entry now is what finds a truncated or corrupted one.
            arrays = {name: data[name] for name in data.files}
        finally:
            data.close()
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError) as e:
        raise ModelFileError(f"{path} is not a resnet_np checkpoint (truncated or corrupted?): {e}") from None
    not_arrays = [name for name, a in arrays.items() if not isinstance(a, host.ndarray)]
    if not_arrays:  # a zip member that is not an .npy file comes back as bytes
        raise ModelFileError(f"{path} is not a resnet_np checkpoint: its entries {shown_value(not_arrays)} are not "
                             "NumPy arrays")
    return arrays


def _is_torch_file(path):
    """True for a file ``torch.save`` wrote: a zip with a ``data.pkl`` (or, before PyTorch 1.6, a pickle)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("data.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        pass
    with open(path, "rb") as f:
        head = f.read(2)
    return path.lower().endswith((".pth", ".pt")) and head[:1] == b"\x80"  # the pickle protocol opcode


def _parse_meta(path, arrays):
    """Take the ``__meta__`` entry out of ``arrays`` and return it as a checked dict."""
    if META_KEY not in arrays:
        raise ValueError(f"{path} has no {META_KEY!r} entry: it is an .npz archive but not a resnet_np "
                         "checkpoint (write one with resnet_np.models.save)")
    entry = arrays.pop(META_KEY)
    try:
        if entry.dtype.kind != "U" or entry.ndim != 0:
            raise ValueError(f"expected a 0-d unicode array, got dtype {entry.dtype} shape {entry.shape}")
        meta = json.loads(str(entry[()]))
        if not isinstance(meta, dict):
            raise ValueError(f"expected a JSON object, got {type(meta).__name__}")
    except ValueError as e:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"{path}: unreadable {META_KEY!r} entry: {e}") from None

    version = meta.get("format_version")
    if not _is_int(version) or version < 1:
        raise ModelFileError(f"{path}: format_version must be a positive int, got {shown_value(version)}")
    if version > FORMAT_VERSION:
        raise ValueError(f"{path} has format version {version}, but this resnet_np reads versions up to "
                         f"{FORMAT_VERSION}: upgrade resnet_np to load it")
    dtype = meta.get("dtype")
    if dtype is not None and dtype not in FLOAT_DTYPES:
        raise ModelFileError(f"{path}: dtype must be one of {FLOAT_DTYPES}, got {shown_value(dtype)}")
    check_model_meta(path, meta, arrays)
    return meta


def _build_model(path, meta):
    """The untrained network the metadata describes, in the saved dtype."""
    from . import ARCHITECTURES  # here, not at the top: models/__init__.py imports this module
    arch = meta.get("arch")
    if arch is None:
        raise ValueError(f"{path} was saved from a model without an architecture name: "
                         "build the model yourself and pass it as load(path, model=...)")
    if arch not in ARCHITECTURES:
        raise ModelFileError(f"{path}: unknown architecture {shown_value(arch)}; expected one of "
                             f"{sorted(ARCHITECTURES)}")
    config = meta.get("config") or {}
    try:
        model = ARCHITECTURES[arch](**config)
    except (TypeError, ValueError) as e:  # a config key the constructor does not take, or a value it refuses
        raise ModelFileError(f"{path}: cannot build {arch} from config {shown_value(config, 200)}: {e}") from None
    dtype = meta.get("dtype")
    if dtype is not None and dtype != "float32":  # new layers are float32
        model.astype(dtype)
    return model


def load(path, model=None, backend=None):
    """Read the checkpoint ``path`` (written by ``save``) and return the model.

    Without ``model``, the network is rebuilt from the file alone: its
    architecture, constructor arguments and dtype. With ``model``, the
    weights are loaded into it (cast to its dtype) and it is returned.
    Loading is strict: every key must match, and every shape.

    ``backend`` ("numpy" or "cupy") moves the model there first; by default
    a rebuilt model is on the current backend and a given one stays put.
    """
    model, _, _ = load_with_extras(path, model, backend)
    return model


def load_with_extras(path, model=None, backend=None):
    """``load``, also returning the metadata and the extra ("/"-named) arrays."""
    path = os.fspath(path)
    arrays = _read_npz(path)
    meta = _parse_meta(path, arrays)
    extras = {key: a for key, a in arrays.items() if "/" in key}
    return model_from_arrays(path, arrays, meta, model, backend), meta, extras


def model_from_arrays(path, arrays, meta, model=None, backend=None):
    """The model with the weights of ``arrays`` (read from ``path``, its metadata ``meta`` already checked)."""
    if model is None:
        model = _build_model(path, meta)
    else:
        own_arch = getattr(model, "arch", None)
        saved_arch = meta.get("arch")
        if own_arch is not None and saved_arch is not None and own_arch != saved_arch:
            raise ModelFileError(f"{path} holds a {saved_arch}, but the model to load it into is a {own_arch}")
        _check_structure(path, meta, model, arrays)
    if backend is not None:
        model.to(backend)
    # Names with a "/" hold a training checkpoint's optimizer state, not weights.
    weights = {key: a for key, a in arrays.items() if "/" not in key}
    try:
        model.load_state_dict(weights, strict=True)
    except ValueError as e:
        raise ModelFileError(f"{path}: {e}") from None
    return model


# Constructor arguments that change the network without changing a key or a shape: a file and a model
# that differ in one of them fit key by key, yet are not the same network (residual=False is a plain net).
STRUCTURE = ("residual", "shortcut", "depth", "widen_factor", "groups", "width_per_group", "base_planes",
             "replace_stride_with_dilation")
# What a structure key's absence means (files written before it existed, networks that leave it out).
STRUCTURE_DEFAULTS = {"replace_stride_with_dilation": [False, False, False]}


def _check_structure(path, meta, model, arrays):
    """Refuse a file whose network differs from ``model``'s in what no key or shape shows.

    (When keys or shapes differ, ``load_state_dict`` lists them: that says more.)
    """
    saved = {**STRUCTURE_DEFAULTS, **(meta.get("config") or {})}
    own = {**STRUCTURE_DEFAULTS, **(getattr(model, "config", None) or {})}
    differ = [key for key in STRUCTURE if key in saved and key in own and saved[key] != own[key]]
    shapes = {key: tuple(a.shape) for key, a in model.state_dict().items()}
    if differ and shapes == {key: tuple(a.shape) for key, a in arrays.items() if "/" not in key}:
        name = meta.get("arch") or "network"
        raise ModelFileError(
            f"{path} holds a {name} with " + ", ".join(f"{key}={saved[key]!r}" for key in differ)
            + ", but the model to load it into has " + ", ".join(f"{key}={own[key]!r}" for key in differ)
            + ": the weights fit key by key, but the networks differ; build the model as the file says "
              "(or load(path) without a model)")


def read_state_dict(path):
    """The weights (an ordered dict of NumPy arrays) and the metadata dict of the ``.npz`` file ``path``.

    Nothing is built: what fine-tuning needs to load a checkpoint into a
    network that differs from it by design (a new head). A training
    checkpoint's optimizer state ("/"-named arrays) is left out.
    """
    path = os.fspath(path)
    arrays = _read_npz(path)
    meta = _parse_meta(path, arrays)
    weights = OrderedDict((key, a) for key, a in arrays.items() if "/" not in key)
    return weights, meta


# ----------------------------------------------------------------------------
# PyTorch state dicts (.pth / .pt)
# ----------------------------------------------------------------------------

def _import_torch(what):
    try:
        import torch
    except ImportError:
        raise RuntimeError(f"{what} needs PyTorch: pip install -e '.[torch]'") from None
    return torch


def _unwrap_checkpoint(state):
    """The state dict inside a training checkpoint, or ``state`` itself.

    Training scripts often save ``{"epoch": ..., "state_dict": ...}`` or
    ``{"model": ...}``; and ``nn.DataParallel`` prefixes every key with
    ``module.``.
    """
    return _unwrap_with_arch(state)[0]


def _unwrap_with_arch(state):
    """(the state dict inside ``state``, the architecture name the wrapper records or None).

    PyTorch's ImageNet example saves ``{"epoch", "arch", "state_dict", ...}``:
    its "arch" is the one record a ``.pth`` file has of what network it holds.
    """
    arch = None
    for wrapper in ("state_dict", "model"):
        if isinstance(state.get(wrapper), dict):
            arch = state.get("arch") if isinstance(state.get("arch"), str) else None
            state = state[wrapper]
            break
    if state and all(isinstance(key, str) and key.startswith("module.") for key in state):
        state = OrderedDict((key[len("module."):], value) for key, value in state.items())
    return state, arch


def _torch_problem(error):
    """What a failed ``torch.load(..., weights_only=True)`` means, in words, without torch's advice.

    Torch suggests re-running with ``weights_only=False``: that runs whatever
    code the file names, the one thing to never do with a file from elsewhere.
    """
    text = str(error)
    found = re.search(r"GLOBAL ([\w.]+)", text)  # "Unsupported global: GLOBAL x.Y", "unsupported GLOBAL posix.system"
    if found:
        return (f"it holds a pickled Python object ({found.group(1)}), not a plain state dict of tensors; "
                "resnet_np reads only state dicts, which run no code when read: where the file was made, save "
                "torch.save(model.state_dict(), path)")
    if "Weights only load failed" in text:
        return ("it is a Python pickle that asks for more than tensors, not a plain state dict: where the file was "
                "made, save torch.save(model.state_dict(), path)")
    if isinstance(error, EOFError) or not text:
        return "it is empty or truncated, not a PyTorch file"
    if "zip archive" in text or "central directory" in text:
        return "it is truncated or corrupted: not a readable PyTorch zip archive; use another copy"
    first = text.strip().splitlines()[0][:200]
    return f"it is not a PyTorch file that can be read ({type(error).__name__}: {first})"


def _torch_load(torch, path):
    """``torch.load`` with ``weights_only=True``; its failures as one ``ModelFileError`` naming ``path``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no PyTorch weights file at {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's note on a pickle protocol: the error below says more
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (torch raises UnpicklingError, RuntimeError, KeyError, EOFError...)
        problem = _torch_problem(e)
        if "weights_only" in problem:  # never pass on the advice to turn the protection off
            problem = f"it is not a PyTorch state dict that can be read safely ({type(e).__name__})"
        raise ModelFileError(f"{path}: {problem}") from None


def _type_name(value):
    return f"{type(value).__module__}.{type(value).__name__}".replace("builtins.", "")


def _kind_of(value):
    name = _type_name(value)
    return ("an " if name[0] in "aeiou" else "a ") + name


def read_torch_checkpoint(path_or_state_dict):
    """(state dict as an ordered dict of NumPy arrays, the architecture the file records or None).

    Anything but a dict of tensors (wrapped or not, see ``_unwrap_with_arch``)
    is a ``ModelFileError`` naming the file and what was found in it.
    """
    torch = _import_torch("read_torch_state_dict")
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        where = os.fspath(path_or_state_dict)
        state = _torch_load(torch, where)
    else:
        where, state = "the state dict", path_or_state_dict
    if not isinstance(state, dict):
        raise ModelFileError(f"{where} holds {_kind_of(state)}, not a state dict (a dict of tensors named like "
                             "'conv1.weight'): where it was made, save torch.save(model.state_dict(), path)")
    state, arch = _unwrap_with_arch(state)
    if not state:
        raise ModelFileError(f"{where} holds an empty dict: no weights")
    not_named = [key for key in state if not isinstance(key, str)]
    if not_named:
        raise ModelFileError(f"{where}: a state dict's keys are names like 'conv1.weight', but it has "
                             f"{shown_value(not_named)}")
    arrays = OrderedDict()
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            try:
                if value.dtype == torch.bfloat16:  # NumPy has no bfloat16
                    value = value.float()
                value = value.detach().cpu().numpy()
            except (TypeError, RuntimeError, NotImplementedError) as e:  # sparse, quantized, meta tensors
                raise ModelFileError(f"{where}: {key} is a tensor NumPy cannot hold ({value.layout}, "
                                     f"{value.dtype}: {str(e).splitlines()[0][:120]})") from None
        elif not (hasattr(value, "shape") and hasattr(value, "dtype")):
            others = [f"{k} ({_type_name(v)})" for k, v in state.items()
                      if not isinstance(v, torch.Tensor) and not hasattr(v, "dtype")]
            raise ModelFileError(f"{where} is not a plain state dict: its entries {', '.join(others[:5])}"
                                 f"{' ...' if len(others) > 5 else ''} are not tensors (a training checkpoint "
                                 "without a 'state_dict' or 'model' entry?)")
        arrays[key] = value
    return arrays, arch


def read_torch_state_dict(path_or_state_dict):
    """A torchvision-format state dict as an ordered dict of NumPy arrays (needs PyTorch).

    ``path_or_state_dict`` is a ``.pth``/``.pt`` file (read with
    ``weights_only=True``: no code runs from it) or an already-loaded dict
    of tensors, possibly wrapped in a checkpoint under "state_dict" or "model".
    What is not a plain state dict is a ``ModelFileError`` naming the file
    and what it holds.
    """
    return read_torch_checkpoint(path_or_state_dict)[0]


def load_torch_state_dict(model, path_or_state_dict, strict=True):
    """Load a torchvision-format state dict into ``model`` and return the model.

    ``path_or_state_dict`` is a ``.pth``/``.pt`` file (read with
    ``weights_only=True``: no code runs from it) or an already-loaded dict
    of tensors, possibly wrapped in a checkpoint under "state_dict" or "model".
    A wrapper that records the architecture ("arch", as PyTorch's ImageNet
    example saves it) must name the model's.

    Files written before PyTorch 0.4.1 (among them the first torchvision
    ImageNet weights) have no ``num_batches_tracked``; as PyTorch does, a
    batch norm that has its running statistics but not that counter keeps
    its own counter instead of failing the strict check.
    """
    _import_torch("load_torch_state_dict")  # without PyTorch, the error names the function called
    where = (os.fspath(path_or_state_dict) if isinstance(path_or_state_dict, (str, os.PathLike))
             else "the state dict")
    state, recorded = read_torch_checkpoint(path_or_state_dict)
    own = getattr(model, "arch", None)
    if recorded is not None and own is not None and recorded != own:
        raise ModelFileError(f"{where} records the architecture {shown_value(recorded)}, but the model to load it "
                             f"into is a {own}: build a {recorded} instead, or use the file of a {own}")
    for key, value in model.state_dict().items():
        prefix = key[:-len("num_batches_tracked")]
        if key.endswith("num_batches_tracked") and key not in state and prefix + "running_mean" in state:
            state[key] = value
    try:
        model.load_state_dict(state, strict=strict)
    except ValueError as e:
        raise ModelFileError(f"{where}: {e}") from None
    return model


def save_torch_state_dict(model, path):
    """Write ``model``'s weights as a torchvision-format state dict with ``torch.save``.

    Floating arrays keep the model's dtype; ``num_batches_tracked`` is a
    0-d int64 tensor, as in PyTorch. ``torch.load(path, weights_only=True)``
    reads it back.
    """
    torch = _import_torch("save_torch_state_dict")
    state = OrderedDict()
    for key, a in model.state_dict().items():
        a = to_numpy(a)
        if key.endswith("num_batches_tracked"):
            a = host.asarray(a, dtype=host.int64).reshape(())
        state[key] = torch.from_numpy(a.copy())  # a C-ordered copy: the model's arrays may be views
    write_atomically(path, lambda fileobj: torch.save(state, fileobj))
