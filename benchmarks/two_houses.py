"""Before and after a change, on the same machine: bench.py's own worker, run alternately from two trees.

    git worktree add /tmp/before <commit>      (the tree to compare with)
    python benchmarks/two_houses.py --before /tmp/before [--rounds 2] [--repeat 5] [--quick]
    python benchmarks/two_houses.py --before /tmp/before --focus "resnet20 128 32" --rounds 8 [--plain-too]

Each round runs ``benchmarks/bench.py --worker ours`` (our layers only, in a
process of its own) from the "before" tree and from this one, in
alternating order (before, after; then after, before; ...), and then this
tree's worker on the plain layers (``--plain``: ResNet-20's steps under
``resnet_np.use_fast(False)``). The workers run without
``OPENBLAS_CORETYPE``/``OPENBLAS_L2_SIZE``, as bench.py's do. The table gives,
per training step and per layer, the median over the rounds and the range
(fastest-slowest round), and the change of the medians. Written to
benchmarks/results/two_houses_raw.md (``--out`` to change).
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.bench import FORCED_BLAS_KERNEL  # noqa: E402
from benchmarks.machine import describe, write_results  # noqa: E402


def run_worker(tree, args, plain=False):
    env = {k: v for k, v in os.environ.items() if k not in FORCED_BLAS_KERNEL}
    command = [sys.executable, str(pathlib.Path(tree) / "benchmarks" / "bench.py"), "--worker", "ours",
               "--repeat", str(args.repeat)] + (["--quick"] if args.quick else []) + (["--plain"] if plain else [])
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=str(tree))
    if done.returncode != 0:
        raise SystemExit(f"the worker of {tree} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --focus: one training step timed in a small process, many alternating rounds (less time per round, so more rounds
# fit in a quiet spell of a shared machine). The same step as bench.py's rows, from either tree.
FOCUS_WORKER = """
import contextlib, json, statistics, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
import resnet_np
from resnet_np import layers as L
from resnet_np.models import ARCHITECTURES
from resnet_np.optim import SGD
name, batch, size, repeat, plain = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6] == "1"
fast = getattr(resnet_np, "fast", None)          # the tree before the change has no resnet_np.fast
if plain:
    resnet_np.use_fast(False)
with (fast.tuned() if fast is not None else contextlib.nullcontext()):
    resnet_np.backend.manual_seed(0)
    model = ARCHITECTURES[name](**({"shortcut": "B"} if name == "resnet20" else {}))
    model.need_input_grad = False
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    loss_fn = L.SoftmaxCrossEntropy()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
    y = rng.integers(0, model.fc.out_features, batch)
    def step():
        loss_fn(model(x), y)
        opt.zero_grad()
        model.backward(loss_fn.backward())
        opt.step()
    step(); step()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
print(json.dumps({"file": resnet_np.__file__, "seconds": statistics.median(times)}))
"""


def run_focus(tree, args, plain=False):
    env = {k: v for k, v in os.environ.items() if k not in FORCED_BLAS_KERNEL}
    name, batch, size = args.focus.split()
    done = subprocess.run([sys.executable, "-c", FOCUS_WORKER, str(tree), name, batch, size, str(args.repeat),
                           "1" if plain else "0"], env=env, capture_output=True, text=True, cwd=str(tree))
    if done.returncode != 0:
        raise SystemExit(f"the focus worker of {tree} failed:\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["file"].startswith(str(tree)), (tree, result["file"])   # each tree times its own package
    return result["seconds"]


def focus(args):
    before, after, plain = [], [], []
    for r in range(args.rounds):
        for tree in ([args.before, ROOT] if r % 2 == 0 else [ROOT, args.before]):
            (before if tree == args.before else after).append(run_focus(tree, args))
        if args.plain_too:
            plain.append(run_focus(ROOT, args, plain=True))
        print(f"round {r + 1}/{args.rounds}: before {before[-1]:.3f} s, after {after[-1]:.3f} s"
              + (f", plain {plain[-1]:.3f} s" if plain else ""), file=sys.stderr, flush=True)
    lines = [f"# Two houses, one step: {args.focus} (model, batch, image size)", "",
             f"Machine: {describe()}.", f"Before: {args.before}; after: {ROOT}.",
             f"{args.rounds} alternating rounds, each a fresh process timing the median of {args.repeat} steps.", "",
             "| | median (s) | range (s) | per round (s) |", "| --- | ---: | ---: | --- |"]
    for label, values in (("before", before), ("after", after), ("plain layers", plain)):
        if values:
            m, lo, hi = spread(values)
            lines.append(f"| {label} | {m:.3f} | {lo:.3f}-{hi:.3f} | {', '.join(f'{v:.3f}' for v in values)} |")
    ratios = [a / b for a, b in zip(after, before)]
    lines += ["", f"after / before, round by round: {', '.join(f'{v:.3f}' for v in ratios)} "
              f"(median {statistics.median(ratios):.3f})"]
    write_results(args.out, "\n".join(lines) + "\n")


def spread(values):
    return statistics.median(values), min(values), max(values)


def row(name, before, after, scale, unit):
    b, a = spread(before), spread(after)
    change = 100 * (a[0] / b[0] - 1)
    return (f"| {name} | {b[0] * scale:.{unit}f} ({b[1] * scale:.{unit}f}-{b[2] * scale:.{unit}f}) | "
            f"{a[0] * scale:.{unit}f} ({a[1] * scale:.{unit}f}-{a[2] * scale:.{unit}f}) | {change:+.1f} % |")


def report(args, before, after, plain):
    lines = ["# Two houses: the speed before and after, same machine", "",
             f"Machine: {describe()}.", f"Before: {args.before}; after: {ROOT}.",
             f"{args.rounds} alternating rounds of bench.py's worker (`--worker ours`, repeat {args.repeat}); "
             "each cell: the median over the rounds (range: fastest-slowest round).", "",
             "## Training steps, seconds", "", "| step | before | after | after / before |",
             "| --- | ---: | ---: | ---: |"]
    for key in before[0]["steps"]:
        lines.append(row(key, [r["steps"][key][0] for r in before], [r["steps"][key][0] for r in after], 1, 3))
    lines += ["", "## Plain layers (`use_fast(False)`), beside the fast path of the same rounds", "",
              "| step | fast (after) | plain | plain / fast |", "| --- | ---: | ---: | ---: |"]
    for key in plain[0]["steps"]:
        lines.append(row(key, [r["steps"][key][0] for r in after], [r["steps"][key][0] for r in plain], 1, 3))
    lines += ["", "## Layers, milliseconds (forward; backward)", "",
              "| layer | pass | before | after | after / before |", "| --- | --- | ---: | ---: | ---: |"]
    for key in before[0]["layers"]:
        for i, name in enumerate(("fwd", "bwd")):
            lines.append(row(f"{key} | {name}", [r["layers"][key][i] for r in before],
                             [r["layers"][key][i] for r in after], 1e3, 2))
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the tree to compare with (a git worktree)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--focus", default=None, metavar="'MODEL BATCH SIZE'",
                        help="time only this training step, e.g. 'resnet20 128 32', in small alternating processes")
    parser.add_argument("--plain-too", action="store_true", help="--focus: also time the plain layers each round")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "two_houses_raw.md"))
    args = parser.parse_args()
    if not (pathlib.Path(args.before) / "benchmarks" / "bench.py").is_file():
        raise SystemExit(f"--before: {args.before} has no benchmarks/bench.py; make it with git worktree add")
    if args.focus:
        return focus(args)
    before, after, plain = [], [], []
    for r in range(args.rounds):
        for tree in ([args.before, ROOT] if r % 2 == 0 else [ROOT, args.before]):
            print(f"round {r + 1}/{args.rounds}: {tree}", file=sys.stderr, flush=True)
            (before if tree == args.before else after).append(run_worker(tree, args))
        print(f"round {r + 1}/{args.rounds}: plain layers", file=sys.stderr, flush=True)
        plain.append(run_worker(ROOT, args, plain=True))
    with open(pathlib.Path(args.out).with_suffix(".json"), "w") as f:
        json.dump({"before": before, "after": after, "plain": plain}, f)
    write_results(args.out, report(args, before, after, plain))


if __name__ == "__main__":
    main()
