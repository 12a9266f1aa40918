"""Finding the layer where a NaN or an Inf first appeared.

A network that diverges fills with NaN within a step or two, and by then
every layer downstream holds NaN as well: the loss only says *that* it
happened. Checking every activation of every layer at every step would cost
a pass over all of them, so training checks two cheap things per step
(see ``resnet_np.train``):

* the loss (``SoftmaxCrossEntropy`` refuses logits that are not finite), and
* ``gradients_are_finite``: one sum over all parameter gradients. NaN and
  Inf survive a sum (``NaN + x = NaN``, ``Inf + x = Inf``, ``Inf - Inf =
  NaN``), so a single number says whether any gradient is bad.

Only when one of them fails does ``locate_non_finite`` re-run that batch —
forward, loss, backward — with every module watched, and name the first
module whose forward output, or whose gradient in backward, is not finite::

    layer3.1.bn2 (BatchNorm2d) produced NaN in its forward output

"First" means first in the order the computation ran: a module's forward
returns after its sub-modules' forwards did, so the innermost culprit is
seen before the blocks that contain it; in backward, the layers run from
the loss towards the input.

How a module is watched: through the hooks of ``Module`` (module.py). A
forward hook on every module checks its output; a backward hook checks the
gradient it returns and its own parameters' gradients. ``module(x)`` runs
the forward hooks and ``module.run_backward(d)`` the backward hooks, and
the networks, the blocks and ``Sequential`` call their layers that way. The
hooks are removed afterwards, and the batch-norm running statistics the
re-run updated are put back: the re-run changes nothing in the model
except the gradients.
"""

from .backend import get_array_module, is_floating
from .module import Parameter


def non_finite_kind(a):
    """"NaN" or "Inf" if the array ``a`` holds one (NaN wins), else None."""
    xp = get_array_module(a)
    if bool(xp.isnan(a).any()):
        return "NaN"
    if bool(xp.isinf(a).any()):
        return "Inf"
    return None


def gradients_are_finite(parameters):
    """True when every parameter's gradient is finite.

    The cheap test, once per step: the sum of each gradient, added up into
    one number, read once (on a GPU, one synchronisation). A NaN or an Inf
    anywhere makes that number non-finite. The converse can fail — huge but
    finite gradients can overflow the sum — so a non-finite sum is confirmed
    element by element before anyone is told.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return True
    total = grads[0].sum()
    for g in grads[1:]:
        total = total + g.sum()
    if bool(get_array_module(total).isfinite(total)):
        return True
    return all(non_finite_kind(g) is None for g in grads)


def _arrays_in(value):
    """The arrays in a forward output or a backward result (an array, a tuple of them, or None)."""
    if isinstance(value, (tuple, list)):
        return [a for a in value if hasattr(a, "shape")]
    return [value] if hasattr(value, "shape") else []


def _describe(name, module):
    return f"{name or 'the model'} ({type(module).__name__})"


class _Watcher:
    """Hooks a check on every module's forward and backward; remembers the first fault."""

    def __init__(self, model):
        self.model = model
        self.first = None  # the report of the first non-finite value seen
        self._handles = []

    def __enter__(self):
        for name, module in self.model.named_modules():
            self._handles.append(module.register_forward_hook(self._forward_check(name)))
            self._handles.append(module.register_full_backward_hook(self._backward_check(name)))
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        return False

    def _report(self, text):
        if self.first is None:
            self.first = text

    def _forward_check(self, name):
        def check(module, inputs, out):
            for a in _arrays_in(out):
                kind = non_finite_kind(a)
                if kind:
                    self._report(f"{_describe(name, module)} produced {kind} in its forward output"
                                 + _parameter_note(module))
                    break
        return check

    def _backward_check(self, name):
        def check(module, grad_input, grad_output):
            for a in _arrays_in(grad_input):
                kind = non_finite_kind(a)
                if kind:
                    self._report(f"{_describe(name, module)} produced {kind} in its input gradient (backward)")
                    break
            bad_gradient = _non_finite_gradient(name, module)
            if bad_gradient:
                self._report(bad_gradient)
        return check


def _non_finite_gradient(name, module):
    """"<name> (<type>) produced NaN in the gradient of its parameter 'weight' (backward)", or None."""
    for pname, p in vars(module).items():
        if isinstance(p, Parameter) and p.grad is not None:
            kind = non_finite_kind(p.grad)
            if kind:
                return (f"{_describe(name, module)} produced {kind} in the gradient of its parameter {pname!r} "
                        "(backward)")
    return None


def _parameter_note(module):
    """" (its weight holds NaN)" when the module's own parameters or buffers are not finite, else ""."""
    bad = []
    for name, value in vars(module).items():
        if isinstance(value, Parameter):
            array = value.data
        elif name in module._buffer_names:
            array = value
        else:
            continue
        kind = non_finite_kind(array) if is_floating(array) else None
        if kind:
            bad.append(f"its {name} holds {kind}")
    return " (" + ", ".join(bad) + ")" if bad else ""


def locate_non_finite(model, loss_fn, x, y):
    """Re-run one batch watching every module; say where a NaN or Inf first appeared.

    Returns a sentence such as "layer1.0.conv2 (Conv2d) produced Inf in its
    forward output", or None when the re-run is finite everywhere. The
    model's gradients are overwritten (with those of this batch); its
    weights and running statistics are left as they were.
    """
    kind = non_finite_kind(x)
    if kind:
        return f"the input batch contains {kind}: check the data and its normalisation"
    saved = {key: value.copy() for key, value in model.state_dict().items()}
    try:
        with _Watcher(model) as watcher:
            model.zero_grad()
            logits = model(x)
            if watcher.first is not None:
                return watcher.first
            try:
                loss_fn(logits, y)
            except ValueError as e:  # finite logits never give a non-finite loss, but say so if they do
                return f"the loss {type(loss_fn).__name__} failed on finite logits: {e}"
            dlogits = loss_fn.backward()
            kind = non_finite_kind(dlogits)
            if kind:
                return f"the loss {type(loss_fn).__name__} produced {kind} in its gradient"
            model.run_backward(dlogits)  # run_backward: the model's own backward hook runs too
            if watcher.first is None:
                # A network of one's own whose backward calls child.backward(d), not child.run_backward(d),
                # runs no hooks below it: name at least the parameter, the nearest the loss first.
                for name, module in reversed(list(model.named_modules())):
                    watcher.first = watcher.first or _non_finite_gradient(name, module)
            return watcher.first
    finally:
        model.load_state_dict(saved)  # the running statistics the re-run moved
