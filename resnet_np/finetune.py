"""Fine-tuning and transfer learning: start from trained weights, freeze what to keep, learn a new head.

A network trained on one task has learned features (edges, strokes, parts)
that another task can reuse. With few labels for the new task, training
only what must change beats training everything from scratch. The recipe::

    from resnet_np import finetune
    from resnet_np.models import resnet20
    from resnet_np.optim import SGD

    model = resnet20(num_classes=5, in_channels=1)      # the new task: 5 classes
    finetune.load_backbone(model, "pretrained.npz")     # every weight but fc (.npz or torchvision .pth)
    finetune.freeze(model, "backbone")                  # linear probe: train fc only ...
    # finetune.freeze(model, "none")                    # ... or fine-tune everything
    model.need_input_grad = False                       # backward may stop below the last trainable layer
    opt = SGD(finetune.param_groups(model, head_lr=0.1, backbone_lr=0.05), lr=0.1, momentum=0.9)

What each piece does:

* **Freezing** sets ``requires_grad = False``. A frozen layer computes no
  gradient for its parameters (the layers skip it), the optimizers leave
  the parameter exactly as it is (no step, no weight decay, no momentum),
  and with ``model.need_input_grad = False`` the backward pass stops below
  the last trainable layer altogether. What to freeze is named by module
  (``model.layer1``), by glob pattern over parameter or module names
  (``"layer1.*"``, ``"conv1,bn1,layer1"``), or ``"backbone"`` (all but the
  classifier ``fc``).
* **Batch-norm statistics.** A frozen batch norm still *updates its running
  mean and variance* in train mode: freezing its weight and bias is not
  enough to keep it as it was. ``freeze(..., keep_bn_stats=True)`` (the
  default) sets ``keep_eval`` on every batch norm whose parameters are all
  frozen, so it normalises with the pretrained statistics even while the
  training loop calls ``model.train()``; that is also what makes the
  features of a frozen backbone the same as at evaluation time.
* **Parameter groups** give the new head and the pretrained backbone their
  own learning rates (discriminative learning rates): the head starts from
  random numbers and needs large steps, the backbone is already good and
  must not be wrecked by them. How much lower is an empirical question:
  a tenth is the ImageNet habit; from digits 0-4 to digits 5-9 a half was
  best (``benchmarks/results/transfer.md``), because the last stage's
  features must change more.
* **Loading with the head replaced**: ``load_backbone`` copies every weight
  of a checkpoint except the classifier's, and says exactly what differs
  (missing keys, unexpected keys, shapes) when the backbones do not match.
* ``select_classes`` makes the few-label tasks: some classes of a dataset,
  relabelled 0, 1, ..., and a fixed number of examples per class.
"""

import fnmatch
import os
import sys
from collections import OrderedDict

from .backend import host, is_cupy_array, to_numpy
from .data import Dataset
from .layers import BatchNorm2d
from .models import weights
from .module import Module

# The classifier's name in every network of resnet_np (and of torchvision).
HEAD = "fc"


# ----------------------------------------------------------------------------
# Choosing parameters by name
# ----------------------------------------------------------------------------

def _in_head(name, head=HEAD):
    return name == head or name.startswith(head + ".")


def _module_prefixes(name):
    """The names of the modules that hold the parameter ``name``: "layer1.0.bn1.weight" ->
    ["layer1", "layer1.0", "layer1.0.bn1"]."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _names_of_module(model, module):
    """The full parameter names of the sub-module ``module`` of ``model``."""
    for prefix, m in model.named_modules():
        if m is module:
            return [name for name, _ in m.named_parameters(prefix)]
    raise ValueError(f"the {type(module).__name__} to select is not a part of this {type(model).__name__}")


def select_parameters(model, what):
    """The names of the parameters of ``model`` that ``what`` selects, in the model's order.

    ``what`` is one of:

    * "all", "none", or "backbone" (every parameter outside the classifier ``fc``);
    * a sub-module of ``model`` (``model.layer1``): all its parameters;
    * a string of comma-separated glob patterns, each matched against the
      parameter names and the names of the modules that hold them:
      ``"layer1"`` and ``"layer1.*"`` both select all of ``layer1``,
      ``"*bn*"`` the weight and bias of every batch norm (bn1, layer1.0.bn2, ...);
    * a list of any of these.

    A pattern or module that selects nothing is a ValueError (a typo would
    otherwise freeze nothing, silently).
    """
    names = [name for name, _ in model.named_parameters()]
    if isinstance(what, Module):
        chosen = set(_names_of_module(model, what))
    elif isinstance(what, (list, tuple)):
        chosen = set()
        for item in what:
            chosen.update(select_parameters(model, item))
    elif isinstance(what, str):
        if what == "all":
            chosen = set(names)
        elif what == "none":
            chosen = set()
        elif what == "backbone":
            chosen = {name for name in names if not _in_head(name)}
        else:
            chosen = set()
            for pattern in (p.strip() for p in what.split(",")):
                if not pattern:
                    raise ValueError(f"empty pattern in {what!r}: patterns are separated by single commas")
                matched = {name for name in names
                           if fnmatch.fnmatchcase(name, pattern)
                           or any(fnmatch.fnmatchcase(m, pattern) for m in _module_prefixes(name))}
                if not matched:
                    modules = [n for n, _ in model.named_children()]
                    raise ValueError(f"pattern {pattern!r} matches no parameter of this {type(model).__name__}: "
                                     f"parameter names look like {', '.join(names[:3])}, ...; its top-level "
                                     f"modules are {', '.join(modules)}")
                chosen.update(matched)
    else:
        raise ValueError(f"expected 'all', 'none', 'backbone', a pattern, a module or a list of them, "
                         f"got {type(what).__name__}")
    return [name for name in names if name in chosen]


# ----------------------------------------------------------------------------
# Freezing and unfreezing
# ----------------------------------------------------------------------------

def keep_frozen_batchnorm_in_eval(model, enabled=True):
    """Keep every batch norm whose weight and bias are both frozen in eval mode (``keep_eval``).

    Such a layer then normalises with its running statistics and never
    updates them, even in ``model.train()``. ``enabled=False`` lets every
    batch norm follow the model's mode again. Call it again after changing
    what is frozen (``freeze`` and ``unfreeze`` do).
    A batch norm without weight and bias (``affine=False``) has nothing to
    freeze: it follows the model's mode.
    """
    for m in model.modules():
        if isinstance(m, BatchNorm2d):
            m.keep_eval = enabled and m.affine and not any(p.requires_grad for p in m.parameters())
    model.train(model.training)  # apply: the layers just marked leave train mode now
    return model


def _set_requires_grad(model, what, requires_grad, keep_bn_stats):
    names = select_parameters(model, what)
    chosen = set(names)
    for name, p in model.named_parameters():
        if name in chosen:
            p.requires_grad = requires_grad
            if not requires_grad:
                p.grad = None  # a stale gradient of a frozen parameter would only mislead
    keep_frozen_batchnorm_in_eval(model, keep_bn_stats)
    return names


def freeze(model, what="backbone", keep_bn_stats=True):
    """Stop training the parameters ``what`` selects (see ``select_parameters``); returns their names.

    With ``keep_bn_stats`` (the default), the batch norms left with no
    trainable parameter also stop updating their running statistics.
    """
    return _set_requires_grad(model, what, False, keep_bn_stats)


def unfreeze(model, what="all", keep_bn_stats=True):
    """Train the parameters ``what`` selects again; returns their names.

    Batch norms that become trainable follow the model's mode again. An
    optimizer built before does not know parameters it was not given:
    add them with ``optimizer.add_param_group`` (usually with a small lr).
    """
    return _set_requires_grad(model, what, True, keep_bn_stats)


def trainable_parameters(model):
    """The names of the parameters that will be trained (``requires_grad``)."""
    return [name for name, p in model.named_parameters() if p.requires_grad]


def param_groups(model, head_lr, backbone_lr=None, head=HEAD):
    """Optimizer parameter groups: the classifier at ``head_lr``, the rest at ``backbone_lr``.

    Frozen parameters are left out (as ``torch.optim`` users do with
    ``filter(lambda p: p.requires_grad, ...)``), and so is an empty group.
    ``backbone_lr`` defaults to ``head_lr``. Each group is a dict with
    "params", "lr" and a "name" ("head" or "backbone"), ready for
    ``SGD(groups, lr=head_lr, momentum=0.9)``.
    """
    if backbone_lr is None:
        backbone_lr = head_lr
    head_params = [p for name, p in model.named_parameters() if _in_head(name, head) and p.requires_grad]
    backbone_params = [p for name, p in model.named_parameters() if not _in_head(name, head) and p.requires_grad]
    groups = []
    if head_params:
        groups.append({"params": head_params, "lr": head_lr, "name": "head"})
    if backbone_params:
        groups.append({"params": backbone_params, "lr": backbone_lr, "name": "backbone"})
    if not groups:
        raise ValueError(f"every parameter of this {type(model).__name__} is frozen: there is nothing to train")
    return groups


# ----------------------------------------------------------------------------
# Loading a checkpoint with the head replaced
# ----------------------------------------------------------------------------

def read_weights(source):
    """``(state_dict, description)`` of a checkpoint, without building anything.

    ``source`` is a resnet_np ``.npz`` (a model file or a training
    checkpoint), a torchvision-format ``.pth``/``.pt`` (needs PyTorch), or
    a state dict already in memory (arrays or CPU tensors). The
    description names the file and, for our own files, the architecture.
    """
    if isinstance(source, dict):
        if "torch" in sys.modules:  # it may hold tensors, maybe wrapped as a training script saved them
            return weights.read_torch_state_dict(source), "the state dict"
        return OrderedDict((k, v if is_cupy_array(v) else to_numpy(v)) for k, v in source.items()), "the state dict"
    path = os.fspath(source)
    if path.endswith(".npz"):
        state, meta = weights.read_state_dict(path)
        arch = meta.get("arch")
        return state, (f"{path} (a {arch}, config {meta.get('config')})" if arch else path)
    if path.endswith((".pth", ".pt")):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no checkpoint file at {path}")
        return weights.read_torch_state_dict(path), path
    raise ValueError(f"{path}: expected a resnet_np checkpoint (.npz) or a PyTorch state dict (.pth or .pt)")


def load_backbone(model, source, head=HEAD):
    """Copy every weight of ``source`` except the classifier's into ``model``; returns the model.

    ``source`` is as for ``read_weights``. The model's own head (freshly
    initialised, sized for the new task) is kept; the checkpoint's head,
    if it has one, is ignored: ImageNet's 1000 classes or the pretraining
    task's classes mean nothing for the new task.

    The rest must match exactly. Otherwise nothing is loaded, and the
    ValueError lists every missing key, unexpected key and shape mismatch.
    A missing ``num_batches_tracked`` is not an error: old torchvision
    checkpoints have none, and it is only a counter.
    """
    state, description = read_weights(source)
    own = model.state_dict()
    wanted = [key for key in own if not _in_head(key, head)]
    missing = [key for key in wanted if key not in state and not key.endswith("num_batches_tracked")]
    unexpected = [key for key in state if key not in own and not _in_head(key, head)]
    mismatched = [f"{key}: checkpoint {tuple(state[key].shape)}, model {tuple(own[key].shape)}"
                  for key in wanted if key in state and tuple(state[key].shape) != tuple(own[key].shape)]
    if missing or unexpected or mismatched:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing key(s) (in the model, not in the checkpoint): "
                            + ", ".join(missing))
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected key(s) (in the checkpoint, not in the model): "
                            + ", ".join(unexpected))
        if mismatched:
            problems.append(f"{len(mismatched)} shape mismatch(es):\n    " + "\n    ".join(mismatched))
        arch = getattr(model, "arch", None) or type(model).__name__
        raise ValueError(f"{description}: its backbone does not match the {arch} to load it into "
                         f"(everything but {head!r} must match):\n  " + "\n  ".join(problems))
    model.load_state_dict(OrderedDict((key, state[key]) for key in wanted if key in state), strict=False)
    return model


# ----------------------------------------------------------------------------
# Few-label tasks
# ----------------------------------------------------------------------------

def select_classes(dataset, classes, per_class=None, seed=0):
    """The examples of ``classes`` only, relabelled 0, 1, ... in the order given.

    ``select_classes(mnist, [5, 6, 7, 8, 9])`` is a 5-class task whose label
    0 is the digit 5. With ``per_class``, only that many examples of each
    class, drawn at random with ``seed``: the draw is a prefix of one
    random order per class, so 10 per class are among the 100 per class
    of the same seed. The examples keep the dataset's order.
    """
    classes = [int(c) for c in classes]
    if not classes:
        raise ValueError("select_classes: no classes given")
    if len(set(classes)) != len(classes):
        raise ValueError(f"select_classes: classes must be distinct, got {classes}")
    for c in classes:
        if not 0 <= c < dataset.num_classes:
            raise ValueError(f"select_classes: class {c} does not exist in {dataset.name!r} "
                             f"(classes 0..{dataset.num_classes - 1})")
    labels = to_numpy(dataset.labels)
    rng = host.random.default_rng(seed)
    chosen, new_labels = [], []
    for new_label, c in enumerate(classes):
        indices = host.flatnonzero(labels == c)
        if per_class is not None:
            if per_class > len(indices):
                raise ValueError(f"select_classes: {per_class} examples of class {c} asked for, "
                                 f"{dataset.name!r} has {len(indices)}")
            indices = rng.permutation(indices)[:per_class]
        chosen.append(indices)
        new_labels.append(host.full(len(indices), new_label, dtype=host.int64))
    chosen, new_labels = host.concatenate(chosen), host.concatenate(new_labels)
    order = host.argsort(chosen, kind="stable")  # back to the dataset's order
    chosen, new_labels = chosen[order], new_labels[order]
    return Dataset(dataset.images[chosen], new_labels, [dataset.classes[c] for c in classes],
                   dataset.mean, dataset.std, name=dataset.name)


def parse_classes(text):
    """"5-9" -> [5, 6, 7, 8, 9]; "1,3,5" -> [1, 3, 5]; "0-2,7" -> [0, 1, 2, 7]."""
    classes = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                first, last = (int(s) for s in part.split("-"))
                if last < first:
                    raise ValueError
                classes.extend(range(first, last + 1))
            else:
                classes.append(int(part))
        except ValueError:
            raise ValueError(f"cannot read the classes {text!r}: expected numbers and ranges such as "
                             f"'5-9' or '1,3,5'") from None
    return classes
