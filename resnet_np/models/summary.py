"""A layer-by-layer table of a model (output shapes and parameter counts), and its multiply-adds."""

from ..backend import get_array_module
from ..layers import Conv2d, Linear


def summary(model, input_shape, print_fn=print):
    """Run one forward pass on zeros of ``input_shape`` and tabulate every layer.

    Like torchinfo's table: every module, indented under the block that holds
    it, with the shape of its output; layers show their parameter count,
    containers "--" (their layers are counted below them); then the totals. The model runs in eval
    mode (batch-norm statistics are not touched) and is put back in the mode
    it was in. Returns the table as a string (and prints it with ``print_fn``).
    """
    params = list(model.parameters())
    xp = get_array_module(*[p.data for p in params[:1]])
    dtype = params[0].data.dtype if params else xp.float32
    was_training = model.training
    model.eval()
    try:
        model(xp.zeros(input_shape, dtype=dtype))
    finally:
        model.train(was_training)

    rows = []
    for name, module in model.named_modules():
        if not name:
            continue
        is_container = any(True for _ in module.children())
        count = "--" if is_container else f"{sum(p.size for _, p in module.named_parameters()):,}"
        shape = "--" if module.output_shape is None else str(tuple(module.output_shape))
        depth = name.count(".")
        label = name if is_container else name.rsplit(".", 1)[-1]  # containers show their full key prefix
        rows.append(("  " * depth + f"{label} ({type(module).__name__})", shape, count))
    total = sum(p.size for p in params)
    trainable = sum(p.size for p in params if p.requires_grad)

    widths = [max(len(r[i]) for r in rows + [("Layer (type)", "Output shape", "Param #")]) for i in range(3)]
    line = "-" * (sum(widths) + 4)
    fmt = f"{{:<{widths[0]}}}  {{:<{widths[1]}}}  {{:>{widths[2]}}}"
    out = [line, fmt.format("Layer (type)", "Output shape", "Param #"), line]
    out += [fmt.format(*r) for r in rows]
    out += [line, f"Input shape: {tuple(input_shape)}", f"Total params: {total:,}",
            f"Trainable params: {trainable:,}", f"Non-trainable params: {total - trainable:,}", line]
    table = "\n".join(out)
    if print_fn is not None:
        print_fn(table)
    return table


def flops(model, input_shape):
    """Multiply-adds of one forward pass on ``input_shape``, counted from the layer shapes.

    The unit the ResNet, ResNeXt and Wide ResNet papers call "FLOPs" (ResNet-50:
    4.1 x 10^9 at 224 x 224). Only the convolutions and linear layers count,
    as in the papers (batch norm, ReLU, pooling and the additions are a few
    percent more):

        Conv2d: N * OH * OW * F * (C / G) * KH * KW       Linear: N * in * out

    A grouped convolution costs 1/G of the dense one. One forward pass on
    zeros (in eval mode, as ``summary``) gives every layer's output size.
    """
    params = list(model.parameters())
    xp = get_array_module(*[p.data for p in params[:1]])
    dtype = params[0].data.dtype if params else xp.float32
    was_training = model.training
    model.eval()
    try:
        model(xp.zeros(input_shape, dtype=dtype))
    finally:
        model.train(was_training)
    total = 0
    for module in model.modules():
        if isinstance(module, Conv2d):
            N, _, OH, OW = module.output_shape
            total += N * OH * OW * module.weight.size  # weight: F x C/G x KH x KW
        elif isinstance(module, Linear):
            total += module.output_shape[0] * module.weight.size
    return total
