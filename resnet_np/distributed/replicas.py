"""The same model on every rank: checked once, then started from rank 0's weights.

Data parallelism adds up gradients position by position, so every rank
must hold the same network (the same tensors, in the same order, of the
same shapes, dtypes and trainability) and start from the same weights.
``DistributedDataParallel`` calls both functions when it wraps a model.
"""

from ..module import Parameter


def _signature(model):
    """What must agree between ranks: the class, and each tensor's key, shape, dtype and trainability."""
    rows = []
    for key, value in model._state_order():
        array = value.data if isinstance(value, Parameter) else value
        trainable = value.requires_grad if isinstance(value, Parameter) else None
        rows.append((key, tuple(array.shape), str(array.dtype), trainable))
    return type(model).__name__, getattr(model, "arch", None), rows


def check_same_model(world, model):
    """A ValueError, raised alike on every rank, unless every rank built the same model.

    A rank with another model would send gradient buffers of other sizes,
    and the all-reduce would mix unrelated numbers or wait forever.
    """
    signatures = world.allgather_object(_signature(model))
    mine = signatures[0]
    for rank, theirs in enumerate(signatures[1:], start=1):
        if theirs == mine:
            continue
        problems = []
        if theirs[:2] != mine[:2]:
            problems.append(f"class/architecture {mine[0]}/{mine[1]} on rank 0, {theirs[0]}/{theirs[1]} on rank {rank}")
        ours = {row[0]: row[1:] for row in mine[2]}
        other = {row[0]: row[1:] for row in theirs[2]}
        for key in [k for k in ours if k not in other][:3]:
            problems.append(f"{key} only on rank 0")
        for key in [k for k in other if k not in ours][:3]:
            problems.append(f"{key} only on rank {rank}")
        for key in [k for k in ours if k in other and ours[k] != other[k]][:5]:
            (s0, d0, t0), (s1, d1, t1) = ours[key], other[key]
            problems.append(f"{key}: shape {s0}, {d0}, trainable {t0} on rank 0; shape {s1}, {d1}, "
                            f"trainable {t1} on rank {rank}")
        if not problems:
            problems.append("the tensors come in another order")
        raise ValueError(f"DistributedDataParallel: the model on rank {rank} differs from rank 0's: "
                         + "; ".join(problems) + ". Every rank must build the same network (same --model, "
                         "--shortcut, dataset, dtype and frozen layers)")


def broadcast_state(world, model):
    """Copy rank 0's parameters and buffers to every rank (in place)."""
    for _, value in model._state_order():
        world.broadcast_(value.data if isinstance(value, Parameter) else value)
