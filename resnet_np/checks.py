"""Clear errors for bad input, shared by the layers.

Every message names the layer, what it expected and what it got, so a
learner sees "Conv2d(3, 16, ...): expected 3 input channels, got 1" instead
of a broadcasting error three calls deeper.
"""

from . import backend


def layer_name(layer):
    """``Conv2d(3, 16, kernel_size=(3, 3), ...)``: the layer as it prints, on one line."""
    if isinstance(layer, str):
        return layer
    return f"{type(layer).__name__}({layer.extra_repr()})"


def check_array(layer, x, ndim=None, layout=""):
    """``x`` must be an array with ``ndim`` dimensions (``layout`` names them)."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise ValueError(f"{layer_name(layer)}: expected an array, got {type(x).__name__}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(
            f"{layer_name(layer)}: expected a {ndim}-D input {layout}, got {x.ndim}-D shape {tuple(x.shape)}"
        )


def check_float_input(layer, x, ndim, layout, like=None):
    """A floating-point array of ``ndim`` dims, of the dtype and device of ``like``.

    Mixing float32 and float64 would silently upcast everything downstream,
    and mixing NumPy and CuPy arrays would fail deep inside; both are refused
    here with a message that says how to fix it.
    """
    check_array(layer, x, ndim, layout)
    if not backend.is_floating(x):
        raise ValueError(f"{layer_name(layer)}: expected a floating-point input, got dtype {x.dtype}")
    if like is not None:
        if x.dtype != like.dtype:
            raise ValueError(
                f"{layer_name(layer)}: input dtype {x.dtype} does not match the layer's dtype {like.dtype} "
                f"(cast the input, or call model.astype('{x.dtype}'))"
            )
        if backend.backend_of(x) != backend.backend_of(like):
            raise ValueError(
                f"{layer_name(layer)}: input is a {backend.backend_of(x)} array but the layer's parameters are "
                f"on {backend.backend_of(like)} "
                f"(use backend.to_device(x, '{backend.backend_of(like)}') or model.to(...))"
            )


def check_dim(layer, x, axis, expected, what):
    """``x.shape[axis]`` must equal ``expected``; ``what`` names that axis."""
    if x.shape[axis] != expected:
        raise ValueError(
            f"{layer_name(layer)}: expected {expected} {what}, got {x.shape[axis]} (input shape {tuple(x.shape)})"
        )


def check_not_empty_image(layer, x):
    """An (N, C, H, W) input needs H >= 1 and W >= 1: padding around nothing is not an image."""
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"{layer_name(layer)}: expected a feature map of at least 1x1, got an empty "
                         f"{x.shape[2]}x{x.shape[3]} one (input shape {tuple(x.shape)})")


def pair(value, name, layer_cls, minimum):
    """An int or an ``(h, w)`` pair, as a tuple of two ints >= ``minimum``."""
    if isinstance(value, int):
        value = (value, value)
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise ValueError(f"{layer_cls}: {name} must be an int or a pair of ints, got {value!r}")
    if min(value) < minimum:
        raise ValueError(f"{layer_cls}: {name} must be >= {minimum}, got {tuple(value)}")
    return tuple(value)


def positive_int(value, name, layer_cls):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{layer_cls}: {name} must be a positive int, got {value!r}")
    return value


def check_dout(layer, dout, expected_shape):
    """The upstream gradient must have the shape of the forward output."""
    if getattr(dout, "shape", None) is None or tuple(dout.shape) != tuple(expected_shape):
        got = tuple(dout.shape) if hasattr(dout, "shape") else type(dout).__name__
        raise ValueError(
            f"{layer_name(layer)}: backward expected an upstream gradient of shape {tuple(expected_shape)} "
            f"(the forward output's), got {got}"
        )


def check_forward_done(layer, cache):
    if cache is None:
        raise RuntimeError(f"{layer_name(layer)}: backward called before forward")
