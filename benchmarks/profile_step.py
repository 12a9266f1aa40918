"""Where the time of one training step goes: a share for each kind of layer, forward and backward.

    python benchmarks/profile_step.py [--model resnet20] [--batch 128] [--steps 5] [--out FILE]

Every leaf layer of the network (Conv2d, BatchNorm2d, ReLU, Add, ...) gets a
timer in front of its ``forward`` and ``backward`` (set on the object, as
``resnet_np.nancheck`` does to watch layers); the loss and the optimizer
step are timed too, and what is left of the step's wall time is "other"
(Python between the layers). Shares are of the median step. The script
uses only the public API, so the same file measures an older checkout
(``PYTHONPATH=old/checkout python benchmarks/profile_step.py``): that is
how the "before" column of benchmarks/results/scaling.md was made.
Run it like the benchmark, without OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE.
"""

import argparse
import collections
import json
import pathlib
import sys
import time

import numpy as np

sys.path.append(str(pathlib.Path(__file__).resolve().parent.parent))  # after PYTHONPATH: an old checkout there wins
from resnet_np import backend  # noqa: E402
from resnet_np import layers as L  # noqa: E402
from resnet_np.models import ARCHITECTURES  # noqa: E402
from resnet_np.optim import SGD  # noqa: E402


def timed(method, totals, key):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        result = method(*args, **kwargs)
        totals[key] += time.perf_counter() - start
        return result
    return wrapper


def training_step(model_name, batch, size=32, wrap=None, seed=0):
    """(model, loss_fn, opt, step): a network (shortcut B for the CIFAR ResNets) and ``step()``, one SGD training
    step on a fixed batch of random images (drawn with ``seed``). ``wrap(model)``, when given, is what trains
    (a DistributedDataParallel, say). ``step`` looks the layers' and the optimizer's methods up when it runs, so
    timers set on them afterwards count."""
    backend.manual_seed(0)
    kwargs = {"shortcut": "B"} if model_name in ("resnet20", "resnet56", "resnet110") else {}
    model = ARCHITECTURES[model_name](**kwargs)
    model.need_input_grad = False  # as in training: the images need no gradient
    classes = model.fc.out_features
    if wrap is not None:
        model = wrap(model)
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    loss_fn = L.SoftmaxCrossEntropy()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
    y = rng.integers(0, classes, batch)

    def step():
        loss_fn(model(x), y)
        opt.zero_grad()
        model.backward(loss_fn.backward())
        opt.step()
    return model, loss_fn, opt, step


def profile(model_name, batch, steps, size=32):
    model, loss_fn, opt, step = training_step(model_name, batch, size)
    totals = collections.Counter()
    for module in model.modules():
        if not list(module.children()):
            kind = type(module).__name__
            module.forward = timed(module.forward, totals, f"{kind} forward")
            module.backward = timed(module.backward, totals, f"{kind} backward")
    # The engine's passes inside the blocks (ReLU and the addition over batch norm's output, and their backward:
    # resnet_np/fast/blocks.py) run outside any leaf layer's forward or backward: timed as rows of their own.
    blocks = getattr(getattr(sys.modules.get("resnet_np"), "fast", None), "blocks", None)
    for name, key in [("relu_", "block ReLU (engine) forward"), ("add_relu_", "block Add+ReLU (engine) forward"),
                      ("relu_bn_backward_", "block ReLU+BatchNorm2d (engine) backward"),
                      ("add_", "block Add (engine) backward")]:
        if blocks is not None and hasattr(blocks, name):
            setattr(blocks, name, timed(getattr(blocks, name), totals, key))
    loss_fn.forward = timed(loss_fn.forward, totals, "loss")
    loss_fn.backward = timed(loss_fn.backward, totals, "loss")
    opt.step = timed(opt.step, totals, "optimizer step")

    step()
    step()  # warm-up
    records = []
    for _ in range(steps):
        totals.clear()
        start = time.perf_counter()
        step()
        wall = time.perf_counter() - start
        records.append((wall, dict(totals)))
    wall, parts = sorted(records, key=lambda r: r[0])[len(records) // 2]  # the median step
    parts["other (Python between layers)"] = max(wall - sum(parts.values()), 0.0)
    return wall, parts, count_calls(step)


def count_calls(step):
    """(Python function calls, parts handed to threads) in one step, counted by cProfile (timers included)."""
    import cProfile
    import pstats
    profiler = cProfile.Profile()
    profiler.enable()
    step()
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    handoffs = sum(v[0] for k, v in stats.items() if k[2] == "for_each_part")
    return sum(v[0] for v in stats.values()), handoffs


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = parser.parse_args()
    wall, parts, (calls, handoffs) = profile(args.model, args.batch, args.steps)
    if args.json:
        print(json.dumps({"wall": wall, "parts": parts, "calls": calls, "handoffs": handoffs}))
        return
    print(f"{args.model}, batch {args.batch}: median step {wall:.3f} s; {calls} Python calls and {handoffs} "
          "calls of for_each_part per step (cProfile)")
    for key, seconds in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"  {key:32s} {seconds * 1e3:8.1f} ms  {100 * seconds / wall:5.1f} %")


if __name__ == "__main__":
    from resnet_np.fast import tuned
    with tuned():  # training's process-wide settings, as fit has them
        sys.exit(main())
