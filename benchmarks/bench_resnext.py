"""ResNeXt-50 32x4d against ResNet-50: one forward and backward pass each, ours and PyTorch's.

    python benchmarks/bench_resnext.py [--batch 8] [--size 224] [--repeat 3] [--rounds 2] [--threads N] [--quick]

ResNeXt-50 has about the FLOPs of ResNet-50 (4.2 against 4.1 GFLOPs per
224x224 image) and fewer parameters, but its 3x3 convolutions are split
into 32 groups of 4 to 32 channels: 32 small matrix products instead of one
large one. How much slower is that, here and in PyTorch? The target for
ours: ResNeXt-50 at most twice ResNet-50's time.

Timed, in float32: forward, softmax cross-entropy and backward (no
optimizer step) of a batch of ``--batch`` random images of ``--size`` x
``--size`` (default 8 at 224x224), the median of ``--repeat`` calls after
one warm-up call, and the fastest call (on a shared machine other jobs only
ever add time: the fastest call is the least disturbed). As in
``benchmarks/bench.py`` (whose docstring says why): each library runs in
worker processes of its own, alternating over ``--rounds`` rounds (the
table shows the median over rounds); the workers run without
``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` (a forced old OpenBLAS
kernel slows a current NumPy), and the results file records the BLAS
kernel that ran (threadpoolctl). PyTorch's networks come from
``benchmarks/torch_models.py``.

Writes benchmarks/results/resnext.md (``--out`` to change).
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.bench import FORCED_BLAS_KERNEL  # noqa: E402  (removed from the workers' environment)
from benchmarks.machine import describe, write_results  # noqa: E402

NETWORKS = ("resnet50", "resnext50_32x4d")


def call_times(fn, repeat, warmup=1):
    """The wall time of each of ``repeat`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):  # first-call allocations and caches
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def ours_worker(args):
    import numpy as np
    from threadpoolctl import threadpool_info

    from resnet_np import backend, fast
    from resnet_np.layers import SoftmaxCrossEntropy
    from resnet_np.models import ARCHITECTURES

    fast.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, 3, args.size, args.size)).astype(np.float32)
    y = rng.integers(0, 1000, args.batch)
    loss_fn = SoftmaxCrossEntropy()

    def time_steps(model):
        def step():
            loss_fn(model(x), y)
            model.zero_grad()
            model.backward(loss_fn.backward())
        return call_times(step, args.repeat)

    times = {}
    for name in NETWORKS:
        backend.manual_seed(0)
        times[name] = time_steps(ARCHITECTURES[name]())
    blas = [f"{i['internal_api']} {i.get('version')} kernel {i.get('architecture')}, {i['num_threads']} threads"
            for i in threadpool_info() if i["user_api"] == "blas"]
    return {"library": f"resnet_np (NumPy {np.__version__})", "threads": fast.get_num_threads(), "blas": blas,
            "times": times}


def torch_worker(args):
    import torch

    from benchmarks.torch_models import build

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, 1000, (args.batch,))

    def time_steps(net):
        def step():
            net.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(x), y).backward()
        return call_times(step, args.repeat)

    times = {name: time_steps(build(name)) for name in NETWORKS}
    return {"library": f"PyTorch {torch.__version__}", "threads": torch.get_num_threads(),
            "blas": [f"oneDNN/MKL, CPU capability {torch.backends.cpu.get_cpu_capability()}"], "times": times}


def run_worker(library, args):
    env = {k: v for k, v in os.environ.items() if k not in FORCED_BLAS_KERNEL}
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RESNET_NP_NUM_THREADS"):
        env[name] = str(args.threads)
    command = [sys.executable, __file__, "--worker", library, "--batch", str(args.batch), "--size", str(args.size),
               "--repeat", str(args.repeat), "--threads", str(args.threads)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=str(ROOT), check=False)
    if done.returncode != 0:
        raise SystemExit(f"the {library} worker failed:\n{done.stderr}")
    result = done.stdout.strip().splitlines()[-1]
    print(result, file=sys.stderr, flush=True)  # in the log too, whatever happens to the rest of the run
    return json.loads(result)


def torch_available():
    import importlib.util
    return importlib.util.find_spec("torch") is not None


def report(args, ours, theirs, wall):
    def median(rounds, name):  # over the rounds, of each round's median call
        return statistics.median(statistics.median(r["times"][name]) for r in rounds)

    def best(rounds, name):  # the fastest call of all: what a call costs when nothing else runs
        return min(min(r["times"][name]) for r in rounds)

    first = ours[0]
    title = f"# ResNeXt-50 32x4d vs ResNet-50: forward + backward, batch {args.batch}, {args.size}x{args.size}, float32"
    blas = f"BLAS that ran in our worker: {'; '.join(first['blas'])} (benchmark processes run without " \
           f"{' and '.join(FORCED_BLAS_KERNEL)})."
    how = f"Each library in its own processes, {args.rounds} alternating round(s); each time is the median over " \
          f"the rounds of the median of {args.repeat} calls after one warm-up call (forward, softmax " \
          f"cross-entropy, backward; no optimizer step); the fastest call of all is shown too. " \
          f"Whole run: {wall:.0f} s."
    lines = [title, "",
             f"Machine: {describe()}.",
             f"Threads: {first['threads']} for resnet_np (and its BLAS)"
             + (f", {theirs[0]['threads']} for {theirs[0]['library']}." if theirs else "; PyTorch not installed."),
             blas, how, "",
             "| network | parameters | ours (s) | PyTorch (s) | ours / PyTorch | ours images/s "
             "| ours, fastest call (s) | PyTorch, fastest call (s) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    params = {"resnet50": "25.6M", "resnext50_32x4d": "25.0M"}
    for name in NETWORKS:
        t = median(ours, name)
        tt = median(theirs, name) if theirs else None
        lines.append(f"| {name} | {params[name]} | {t:.2f} | " + (f"{tt:.2f} | {t / tt:.2f}x |" if tt else "- | - |")
                     + f" {args.batch / t:.1f} | {best(ours, name):.2f} | "
                     + (f"{best(theirs, name):.2f} |" if theirs else "- |"))

    def ratios(summary):
        text = f"ours {summary(ours, NETWORKS[1]) / summary(ours, NETWORKS[0]):.2f}x"
        if theirs:
            text += f", PyTorch {summary(theirs, NETWORKS[1]) / summary(theirs, NETWORKS[0]):.2f}x"
        return text

    def calls(rounds):
        return "; ".join(", ".join(f"{n} " + " ".join(f"{t:.2f}" for t in r["times"][n]) for n in NETWORKS)
                         for r in rounds)

    lines += ["", f"**ResNeXt-50 / ResNet-50 (target for ours: at most 2x): {ratios(median)}** by the medians; "
                  f"{ratios(best)} by the fastest calls.", "",
              f"Every timed call (s), round by round, ours: {calls(ours)}."
              + (f" PyTorch: {calls(theirs)}." if theirs else "")]
    if args.note:
        lines += ["", args.note]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeat", type=int, default=3, help="timed calls per network in a worker (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of worker processes (default 3)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for both libraries (default: every core this process may use)")
    parser.add_argument("--quick", action="store_true", help="batch 2 at 64x64, one call, one round: a smoke test")
    parser.add_argument("--note", default="", help="a sentence added to the results file (say, a busy machine)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "resnext.md"))
    parser.add_argument("--worker", choices=["ours", "torch"], default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.batch, args.size, args.repeat, args.rounds = 2, 64, 1, 1
    if args.threads is None:  # the same number for both libraries, whatever the caller's environment says
        args.threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    if args.worker:  # one library, in this process; the result as one JSON line
        if args.worker == "ours":
            from resnet_np.fast import tuned
            with tuned():  # training's process-wide settings, as fit has them
                print(json.dumps(ours_worker(args)))
        else:
            print(json.dumps(torch_worker(args)))
        return

    start = time.perf_counter()
    with_torch = torch_available()
    ours, theirs = [], []
    for r in range(args.rounds):
        for library in (["ours", "torch"] if r % 2 == 0 else ["torch", "ours"]):
            if library == "torch" and not with_torch:
                continue
            print(f"round {r + 1}/{args.rounds}: {library} ...", file=sys.stderr, flush=True)
            (ours if library == "ours" else theirs).append(run_worker(library, args))
    write_results(args.out, report(args, ours, theirs, time.perf_counter() - start))


if __name__ == "__main__":
    main()
