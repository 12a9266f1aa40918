"""``Parameter`` and ``Module``: the PyTorch-like protocol every layer follows.

A layer computes ``y = layer(x)`` in ``forward`` and keeps what it needs for
``backward(dy) -> dx``. Unlike PyTorch there is no autograd tape: each layer
writes its own backward pass, and a network's backward calls its layers'
backward in reverse order — the chain rule, spelled out.

Each layer keeps what its backward pass needs in ``self._cache`` and clears
it at the start of every forward, so a rejected input can never leave the
previous batch behind for a later backward.

Parameter gradients ACCUMULATE (``grad += ...``) exactly as in PyTorch, so
call ``zero_grad()`` before each backward pass of a training step.

Sub-modules and parameters are found by looking at the attributes a module
has (in the order they were set), so ``self.conv1 = Conv2d(...)`` is all it
takes to make ``conv1.weight`` appear in ``named_parameters()`` and in
``state_dict()``. Buffers (``running_mean``, ...) are arrays that belong in
the state dict but are not trained; a module lists them with
``register_buffer``.

Fine-tuning adds two switches: ``requires_grad_(False)`` freezes every
parameter of a module, and ``keep_eval = True`` keeps a module in eval mode
whatever ``train()`` says (a frozen batch norm whose statistics must not
move while the rest of the network trains).

Hooks let a tool watch the two passes without touching the layers: the
NaN search (``nancheck.py``) checks every layer's output and gradients,
and ``DistributedDataParallel`` sends gradients while backward still runs.
There are three, named as in PyTorch, and each ``register_...`` returns a
handle whose ``remove()`` takes the hook away again:

* ``module.register_forward_hook(hook)``: ``hook(module, inputs, output)``
  after each forward pass. It runs in ``__call__``: ``layer(x)`` runs the
  hooks, ``layer.forward(x)`` does not (as in PyTorch).
* ``module.register_full_backward_hook(hook)``: ``hook(module, grad_input,
  grad_output)`` after each backward pass, with ``grad_input`` what backward
  returned (dL/dx; a tuple for ``Add``, None for a first convolution that
  skipped it) and ``grad_output`` the ``dout`` it was given. Without an
  autograd tape nothing calls backward but the parent module, so the
  parent decides: ``child.run_backward(d)`` is to ``child.backward(d)`` what
  ``child(x)`` is to ``child.forward(x)`` — the same computation, plus the
  hooks. The networks, the blocks and ``Sequential`` call
  ``run_backward``; code that calls ``backward`` directly (an exercise, a
  test) simply runs without hooks.
* ``parameter.register_post_accumulate_grad_hook(hook)``: ``hook(parameter)``
  right after a backward pass has added to ``parameter.grad``, whoever
  called it: the layers add their parameter gradients through
  ``accumulate_grad``. That is the moment a gradient is complete (a
  parameter used once per forward receives it once), which is what
  ``DistributedDataParallel`` waits for before sending it.

Hooks are plain functions kept in dictionaries on the object, called in
the order they were registered; no method of any object is replaced. (The
tools used to put a wrapper in front of each module's ``backward``, an
attribute set on the object: invisible where ``BasicBlock.backward`` is
read, and two tools wrapping at once had to unwrap in the right order.
Here what runs is written where it is called.)
"""

import itertools
from collections import OrderedDict, namedtuple

from . import backend

# Keys of registered hooks: unique, increasing, so a dict of hooks keeps their registration order.
_hook_ids = itertools.count()


class RemovableHandle:
    """What the ``register_*_hook`` methods return: ``handle.remove()`` unregisters the hook."""

    def __init__(self, hooks, key):
        self._hooks, self._key = hooks, key

    def remove(self):
        self._hooks.pop(self._key, None)


def _register(hooks, hook):
    if not callable(hook):
        raise ValueError(f"a hook must be callable, got {type(hook).__name__}")
    key = next(_hook_ids)
    hooks[key] = hook
    return RemovableHandle(hooks, key)


class Parameter:
    """A trainable array: ``data``, its gradient ``grad`` and ``requires_grad``.

    ``grad`` is ``None`` until a backward pass accumulates into it.
    A frozen parameter (``requires_grad=False``) receives no gradient: the
    layers skip computing it.
    """

    def __init__(self, data, requires_grad=True):
        self.data = data
        self.grad = None
        self.requires_grad = requires_grad
        self._post_accumulate_grad_hooks = {}

    def accumulate_grad(self, g):
        """Add ``g`` to ``grad`` (PyTorch's accumulation semantics), then run the post-accumulate hooks.

        ``g`` must be a fresh array that nothing else holds: it may be stored
        as is and later added to in place.
        """
        if g.shape != self.data.shape:
            raise ValueError(f"gradient shape {g.shape} does not match parameter shape {self.data.shape}")
        if self.grad is None:
            self.grad = g
        else:
            self.grad += g
        for hook in list(self._post_accumulate_grad_hooks.values()):
            hook(self)

    def register_post_accumulate_grad_hook(self, hook):
        """Call ``hook(self)`` each time ``accumulate_grad`` has added to ``grad``; returns a handle.

        As PyTorch's hook of the same name: ``DistributedDataParallel``
        uses it to send a gradient as soon as backward has computed it.
        """
        return _register(self._post_accumulate_grad_hooks, hook)

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self):
        return self.data.size

    def __repr__(self):
        return f"Parameter(shape={tuple(self.data.shape)}, dtype={self.data.dtype}, requires_grad={self.requires_grad})"


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Module:
    """Base class of every layer and network."""

    def __init__(self):
        self.training = True
        # True: train() leaves this module in eval mode (see train()).
        self.keep_eval = False
        self.output_shape = None
        self._buffer_names = []
        self._forward_hooks = {}
        self._backward_hooks = {}

    # -- the two passes -------------------------------------------------------

    def forward(self, *inputs):
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, dout):
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def __call__(self, *inputs):
        """``forward(*inputs)``, then the forward hooks."""
        out = self.forward(*inputs)
        # Remembered for summary(): the table of output shapes.
        self.output_shape = getattr(out, "shape", None)
        for hook in list(self._forward_hooks.values()):
            hook(self, inputs, out)
        return out

    def run_backward(self, dout, **options):
        """``backward(dout, **options)``, then the backward hooks: how a parent calls its children's backward.

        ``options`` go to ``backward`` as they are (``need_input_grad`` of a
        first convolution).
        """
        dx = self.backward(dout, **options)
        for hook in list(self._backward_hooks.values()):
            hook(self, dx, dout)
        return dx

    # -- hooks (see the module docstring) -------------------------------------

    def register_forward_hook(self, hook):
        """Call ``hook(module, inputs, output)`` after each ``module(*inputs)``; returns a handle."""
        return _register(self._forward_hooks, hook)

    def register_full_backward_hook(self, hook):
        """Call ``hook(module, grad_input, grad_output)`` after each ``module.run_backward``; returns a handle.

        ``grad_input`` is what backward returned, ``grad_output`` its ``dout``.
        """
        return _register(self._backward_hooks, hook)

    # -- walking the tree ----------------------------------------------------

    def register_buffer(self, name, array):
        """Set ``self.<name> = array`` and save it in the state dict."""
        setattr(self, name, array)
        if name not in self._buffer_names:
            self._buffer_names.append(name)

    def named_children(self):
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def children(self):
        for _, m in self.named_children():
            yield m

    def named_modules(self, prefix=""):
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(prefix + name if not prefix else f"{prefix}.{name}")

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix=""):
        for mod_name, mod in self.named_modules(prefix):
            for name, value in vars(mod).items():
                if isinstance(value, Parameter):
                    yield (f"{mod_name}.{name}" if mod_name else name), value

    def parameters(self):
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self, prefix=""):
        for mod_name, mod in self.named_modules(prefix):
            for name in mod._buffer_names:
                yield (f"{mod_name}.{name}" if mod_name else name), getattr(mod, name)

    # -- modes and gradients -------------------------------------------------

    def train(self, mode=True):
        """Set train mode (``mode=True``) or eval mode on this module and every sub-module.

        A module with ``keep_eval = True`` stays in eval mode. Fine-tuning
        sets it on the batch norms of a frozen backbone: the training loop
        calls ``model.train()`` every epoch, and their running statistics
        must still not move.
        """
        for m in self.modules():
            m.training = mode and not m.keep_eval
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        """Set ``requires_grad`` on every parameter of this module (False freezes them); returns self.

        A frozen parameter gets no gradient (the layers skip computing it)
        and the optimizers leave it exactly as it is.
        """
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def zero_grad(self):
        """Forget accumulated gradients (``grad = None``, as PyTorch's default)."""
        for p in self.parameters():
            p.grad = None

    # -- state dict ------------------------------------------------------------

    def state_dict(self):
        """Parameters and buffers by PyTorch key name (``layer1.0.bn1.running_mean``).

        Keys come in PyTorch's order (module by module: parameters, then
        buffers). The values are the module's own arrays, not copies.
        """
        return OrderedDict((k, v.data if isinstance(v, Parameter) else v) for k, v in self._state_order())

    def _state_order(self):
        for mod_name, mod in self.named_modules():
            prefix = f"{mod_name}." if mod_name else ""
            for name, value in vars(mod).items():
                if isinstance(value, Parameter):
                    yield prefix + name, value
            for name in mod._buffer_names:
                yield prefix + name, getattr(mod, name)

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays from ``state_dict`` into this module's parameters and buffers.

        Values may be NumPy or CuPy arrays (or anything array-like, such as
        ``torch_tensor.numpy()``); they are copied onto this module's device
        and cast to its dtype. Every problem is reported at once: missing
        keys and unexpected keys (when ``strict``) and shape mismatches
        (always). Nothing is loaded unless everything fits.
        """
        own = OrderedDict(self._state_order())
        # Array-likes (lists, torch CPU tensors) become NumPy arrays; CuPy arrays stay on the GPU.
        state_dict = {k: v if backend.is_cupy_array(v) else backend.to_numpy(v) for k, v in state_dict.items()}
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        mismatched = []
        for key, target in own.items():
            if key in state_dict:
                target_shape = tuple(target.shape)
                source_shape = tuple(state_dict[key].shape)
                if source_shape != target_shape:
                    mismatched.append(f"{key}: expected shape {target_shape}, got {source_shape}")
        problems = []
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        if mismatched:
            problems.append("shape mismatches:\n    " + "\n    ".join(mismatched))
        if problems:
            raise ValueError(f"Error(s) in loading state_dict for {type(self).__name__}:\n  " + "\n  ".join(problems))

        for key, target in own.items():
            if key not in state_dict:
                continue
            array = target.data if isinstance(target, Parameter) else target
            array[...] = backend.to_device(state_dict[key], backend.backend_of(array)).astype(array.dtype, copy=False)
        return IncompatibleKeys(missing, unexpected)

    # -- dtype and device ----------------------------------------------------

    def _map_arrays(self, fn):
        """Replace every parameter's data and every buffer by ``fn(array)``."""
        for mod in self.modules():
            for value in vars(mod).values():
                if isinstance(value, Parameter):
                    value.data = fn(value.data)
                    if value.grad is not None:
                        value.grad = fn(value.grad)
            for name in mod._buffer_names:
                setattr(mod, name, fn(getattr(mod, name)))
        return self

    def astype(self, dtype):
        """Cast floating-point parameters and buffers to ``dtype``; returns self.

        Integer buffers (``num_batches_tracked``) keep their dtype.
        """
        def cast(a):
            return a.astype(dtype) if backend.is_floating(a) else a
        return self._map_arrays(cast)

    def to(self, device):
        """Move every parameter and buffer to "numpy" or "cupy"; returns self."""
        return self._map_arrays(lambda a: backend.to_device(a, device))

    # -- printing ------------------------------------------------------------

    def extra_repr(self):
        return ""

    def __repr__(self):
        children = list(self.named_children())
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, child in children:
            child_repr = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child_repr}")
        lines.append(")")
        return "\n".join(lines)
