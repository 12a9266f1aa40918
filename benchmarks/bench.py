"""The benchmark suite: whole training steps and every layer, beside PyTorch on the same CPU.

    python benchmarks/bench.py [--threads N] [--rounds 3] [--repeat 5] [--quick] [--backend numpy|cupy] [--plain]
                               [--focus] [--load]

What is timed (float32):

* training steps (forward, loss, backward, SGD step): ResNet-20 (shortcut B)
  on 32x32 images at batch 32, 128 and 512; ResNet-18 and ResNet-50 on
  224x224 images at batch 16;
* every layer at the shapes of ResNet-20 (batch 128) and ResNet-18 (batch 16,
  224x224), forward and backward, plus the grouped 3x3 convolution of
  ResNeXt-50 (32 groups);
* the peak of NumPy's memory during one ResNet-20 step (tracemalloc).

How, so that the comparison is fair:

* **Each library in its own process.** Both libraries keep worker threads
  that spin for a while after each operation; in one process they steal the
  cores from each other. So every measurement runs in a fresh worker
  process (this script with ``--worker``) that imports one library only.
* **Several alternating rounds.** Round 1 runs our worker, then PyTorch's;
  round 2 the other way round, and so on; each worker discards its warm-up
  calls and reports the median of ``--repeat`` timed calls; the table shows
  the median over the rounds. A noisy minute on a shared machine hits both.
* **The same threads.** ``--threads N`` (default: all cores) for NumPy's
  BLAS, for our layers (``resnet_np.fast.threads``) and for PyTorch.
* **The BLAS a user gets.** Some machines set ``OPENBLAS_CORETYPE`` (and
  ``OPENBLAS_L2_SIZE``) to force an older OpenBLAS kernel; that slows a
  current NumPy. The workers run without both (only they: the tests and CI
  keep them), and the results file records which kernel ran (threadpoolctl).

Our worker runs inside ``resnet_np.fast.tuned()``, as ``fit`` does. With
``--plain`` it times the plain layers (``resnet_np.use_fast(False)``),
ResNet-20's steps only. ``--focus`` times only the comparison of the last performance round: the
ResNet-20 (shortcut B) step at batch 32 and 128, no layer rows, each round's
figures listed. ``--load`` runs a memory-bound neighbour beside every worker:
a process of its own copying a 128 MB array over another in a loop (one
core; what a busy host's other tenants do to the memory bus). The table is
printed and written to benchmarks/results/bench_<backend>.md (``_<N>threads``
added with --threads, ``_plain`` with --plain, ``_focus`` with --focus,
``_load`` with --load).
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
from benchmarks.machine import describe, write_results  # noqa: E402

# Environment variables removed from the workers' environment (see the docstring).
FORCED_BLAS_KERNEL = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def conv_flops(n, c, f, k, out_hw, groups=1):
    return 2 * n * f * (c // groups) * k * k * out_hw * out_hw


# name -> (layer constructor arguments, input shape, forward FLOPs). A layer spec
# is (kind, args) that both workers know how to build (see make_layer).
def layer_cases(quick):
    n20 = 8 if quick else 128
    n18 = 2 if quick else 16
    s18 = 56 if quick else 224  # the 224x224 rows at a quarter of the size in a quick run
    cases = []
    for c, f, hw, s in [(16, 16, 32, 1), (16, 32, 32, 2), (32, 32, 16, 1), (32, 64, 16, 2), (64, 64, 8, 1)]:
        cases.append((f"R20 conv3x3 {c}->{f} s{s} @{hw}", ("conv", (c, f, 3, s, 1, 1)), (n20, c, hw, hw),
                      conv_flops(n20, c, f, 3, hw // s)))
    for c, hw in [(16, 32), (64, 8)]:
        cases.append((f"R20 batchnorm {c} @{hw}", ("bn", (c,)), (n20, c, hw, hw), 8 * n20 * c * hw * hw))
        cases.append((f"R20 relu {c} @{hw}", ("relu", ()), (n20, c, hw, hw), n20 * c * hw * hw))
    cases.append(("R20 global avg pool 64 @8", ("avgpool", ()), (n20, 64, 8, 8), n20 * 64 * 64))
    cases.append(("R20 linear 64->10", ("linear", (64, 10)), (n20, 64), 2 * n20 * 64 * 10))
    cases.append((f"R18 conv7x7 3->64 s2 @{s18}", ("conv", (3, 64, 7, 2, 3, 1)), (n18, 3, s18, s18),
                  conv_flops(n18, 3, 64, 7, s18 // 2)))
    cases.append((f"R18 maxpool 3x3 s2 64 @{s18 // 2}", ("maxpool", (3, 2, 1)), (n18, 64, s18 // 2, s18 // 2),
                  9 * n18 * 64 * (s18 // 4) ** 2))
    for c, hw in [(64, 56), (128, 28), (256, 14), (512, 7)]:
        hw = hw * s18 // 224
        cases.append((f"R18 conv3x3 {c}->{c} @{hw}", ("conv", (c, c, 3, 1, 1, 1)), (n18, c, hw, hw),
                      conv_flops(n18, c, c, 3, hw)))
    hw = 56 * s18 // 224
    cases.append((f"ResNeXt-50 grouped conv3x3 128->128 g32 @{hw}", ("conv", (128, 128, 3, 1, 1, 32)),
                  (n18, 128, hw, hw), conv_flops(n18, 128, 128, 3, hw, 32)))
    return cases


def step_cases(quick, focus=False):
    """(model, batch, image size)."""
    if focus:
        return [("resnet20", 8, 32)] if quick else [("resnet20", 32, 32), ("resnet20", 128, 32)]
    if quick:
        return [("resnet20", 4, 32), ("resnet20", 8, 32), ("resnet18", 2, 64)]
    return [("resnet20", 32, 32), ("resnet20", 128, 32), ("resnet20", 512, 32), ("resnet18", 16, 224),
            ("resnet50", 16, 224)]


# ---------------------------------------------------------------------------
# The workers: one library each, in a process of its own.
# ---------------------------------------------------------------------------

def median_time(fn, repeat, warmup, sync):
    for _ in range(warmup):  # first-call allocations, kernel compilation, caches
        fn()
    sync()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ours_worker(args):
    import numpy as np
    from threadpoolctl import threadpool_info

    from resnet_np import backend, fast
    from resnet_np import layers as L

    backend.use(args.backend)
    xp = backend.get_array_module()
    if args.threads:
        fast.set_num_threads(args.threads)
    fast.use_fast(not args.plain)

    def sync():
        if args.backend == "cupy":
            xp.cuda.Device().synchronize()

    def make_layer(kind, a):
        if kind == "conv":
            c, f, k, s, p, g = a
            return L.Conv2d(c, f, k, s, p, groups=g, bias=False)
        return {"bn": L.BatchNorm2d, "relu": L.ReLU, "avgpool": L.GlobalAvgPool2d, "linear": L.Linear,
                "maxpool": L.MaxPool2d}[kind](*a)

    result = {"library": f"resnet_np (NumPy {np.__version__}{', plain layers' if args.plain else ''})",
              "threads": fast.get_num_threads(),
              "blas": [f"{i['internal_api']} {i.get('version')} kernel {i.get('architecture')}, "
                       f"{i['num_threads']} threads" for i in threadpool_info() if i["user_api"] == "blas"],
              "layers": {}, "steps": {}}
    rng = np.random.default_rng(0)

    # The matrix-product peak of this BLAS: the ceiling of an im2col convolution.
    best = 0.0
    for n in ((256,) if args.quick else (1024, 2048)):
        a = xp.asarray(rng.standard_normal((n, n)), dtype=xp.float32)
        b = xp.asarray(rng.standard_normal((n, n)), dtype=xp.float32)
        best = max(best, 2 * n ** 3 / median_time(lambda: a @ b, args.repeat, 1, sync) / 1e9)
    result["peak_gflops"] = best

    # Training's process-wide settings (freed memory kept, BLAS at one thread beside our threads), as fit has
    # them; entered after the matrix-product peak above, which BLAS reaches on all its threads.
    with fast.tuned():
        if not args.plain and not args.focus:
            time_layers(args, result, make_layer, rng, xp, sync)
        time_steps(args, result, rng, xp, sync)
    return result


def time_layers(args, result, make_layer, rng, xp, sync):
    for name, (kind, a), shape, _ in layer_cases(args.quick):
        layer = make_layer(kind, a)
        x = xp.asarray(rng.standard_normal(shape), dtype=xp.float32)
        dy = xp.asarray(rng.standard_normal(layer(x).shape), dtype=xp.float32)

        def backward():
            layer.zero_grad()
            layer.backward(dy)
        forward = median_time(lambda: layer(x), args.repeat, 2, sync)
        layer(x)
        result["layers"][name] = (forward, median_time(backward, args.repeat, 2, sync))


def time_steps(args, result, rng, xp, sync):
    from resnet_np import backend
    from resnet_np import layers as L
    from resnet_np.models import ARCHITECTURES
    from resnet_np.optim import SGD

    cases = step_cases(args.quick, args.focus)
    if args.plain:  # the plain layers are slower by design: the ResNet-20 rows only
        cases = [case for case in cases if case[0] == "resnet20" and case[1] <= 128]
    for model_name, batch, size in cases:
        backend.manual_seed(0)
        kwargs = {"shortcut": "B"} if model_name == "resnet20" else {}
        model = ARCHITECTURES[model_name](**kwargs)
        model.need_input_grad = False  # as in training, and as PyTorch does for an input without requires_grad
        opt = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        loss_fn = L.SoftmaxCrossEntropy()
        x = xp.asarray(rng.standard_normal((batch, 3, size, size)), dtype=xp.float32)
        y = xp.asarray(rng.integers(0, model.fc.out_features, batch))

        def step():
            loss_fn(model(x), y)
            opt.zero_grad()
            model.backward(loss_fn.backward())
            opt.step()
        repeat = args.repeat if size <= 32 else max(1, args.repeat // 2)
        seconds = median_time(step, repeat, 2, sync)
        peak = None
        if args.backend == "numpy" and model_name == "resnet20":
            import tracemalloc  # NumPy reports its array buffers to tracemalloc
            tracemalloc.start()
            step()
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        result["steps"][f"{model_name} {batch} {size}"] = (seconds, peak)


def torch_worker(args):
    import torch

    from benchmarks.torch_models import build

    device = "cuda" if args.backend == "cupy" else "cpu"
    threads = args.threads or os.cpu_count()
    torch.set_num_threads(threads)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def make_layer(kind, a):
        nn = torch.nn
        if kind == "conv":
            c, f, k, s, p, g = a
            return nn.Conv2d(c, f, k, s, p, groups=g, bias=False)
        if kind == "avgpool":
            return nn.AdaptiveAvgPool2d(1)
        return {"bn": nn.BatchNorm2d, "relu": nn.ReLU, "linear": nn.Linear, "maxpool": nn.MaxPool2d}[kind](*a)

    result = {"library": f"PyTorch {torch.__version__}", "threads": torch.get_num_threads(),
              "blas": [f"oneDNN/MKL, CPU capability {torch.backends.cpu.get_cpu_capability()}"],
              "layers": {}, "steps": {}}
    torch.manual_seed(0)
    for name, (kind, a), shape, _ in ([] if args.focus else layer_cases(args.quick)):
        layer = make_layer(kind, a).to(device)
        x = torch.randn(shape, device=device, requires_grad=True)
        dy = torch.randn_like(layer(x))

        def forward():
            with torch.no_grad():  # what our forward does: no graph to keep
                layer(x)

        def forward_backward():
            out = layer(x)  # autograd needs a fresh graph; its forward is subtracted below
            layer.zero_grad(set_to_none=True)
            x.grad = None
            out.backward(dy)
        fwd = median_time(forward, args.repeat, 2, sync)
        train_fwd = median_time(lambda: layer(x), args.repeat, 2, sync)
        both = median_time(forward_backward, args.repeat, 2, sync)
        result["layers"][name] = (fwd, max(both - train_fwd, 0.0))

    for model_name, batch, size in step_cases(args.quick, args.focus):
        net = build(model_name).to(device)
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        x = torch.randn(batch, 3, size, size, device=device)
        y = torch.randint(0, net[-1].out_features, (batch,), device=device)

        def step():
            loss = torch.nn.functional.cross_entropy(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        repeat = args.repeat if size <= 32 else max(1, args.repeat // 2)
        result["steps"][f"{model_name} {batch} {size}"] = (median_time(step, repeat, 2, sync), None)
    return result


# ---------------------------------------------------------------------------
# The driver: alternating rounds of worker processes, then the table.
# ---------------------------------------------------------------------------

def run_worker(library, args):
    env = {k: v for k, v in os.environ.items() if k not in FORCED_BLAS_KERNEL}
    if args.threads:
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RESNET_NP_NUM_THREADS"):
            env[name] = str(args.threads)
    command = [sys.executable, __file__, "--worker", library, "--repeat", str(args.repeat),
               "--backend", args.backend] + (["--quick"] if args.quick else []) + \
              (["--threads", str(args.threads)] if args.threads else []) + (["--plain"] if args.plain else []) + \
              (["--focus"] if args.focus else [])
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=str(ROOT))
    if done.returncode != 0:
        raise SystemExit(f"the {library} worker failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# The memory-bound neighbour of --load: one core copying 128 MB back and forth, far beyond any cache.
NEIGHBOUR = """
import numpy as np
a = np.ones(2 ** 25, dtype=np.float32)
b = np.empty_like(a)
while True:
    np.copyto(b, a)
    np.copyto(a, b)
"""


def start_neighbour():
    """The --load process (its BLAS and ours at one thread: it is one core's memory traffic)."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", NEIGHBOUR], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def torch_available():
    try:
        import importlib.util
        return importlib.util.find_spec("torch") is not None
    except ValueError:
        return False


def combine(rounds):
    """The median over rounds of each measurement (rounds: list of worker results of one library)."""
    out = dict(rounds[0])
    for key in ("layers", "steps"):
        out[key] = {}
        for name in rounds[0][key]:
            values = [r[key][name] for r in rounds]
            out[key][name] = tuple(statistics.median(v[i] for v in values) if values[0][i] is not None else None
                                   for i in range(len(values[0])))
    if "peak_gflops" in rounds[0]:
        out["peak_gflops"] = statistics.median(r["peak_gflops"] for r in rounds)
    out["step_rounds"] = {name: [r["steps"][name][0] for r in rounds] for name in rounds[0]["steps"]}
    return out


def report(args, ours, theirs):
    def ratio(a, b):
        return f"{a / b:.2f}x" if b else "-"

    lines = [f"# resnet_np benchmark ({args.backend}{', quick sizes' if args.quick else ''})", "",
             f"Machine: {describe()}.",
             f"Threads: {ours['threads']} for resnet_np (and its BLAS)"
             + (f", {theirs['threads']} for {theirs['library']}." if theirs else "; PyTorch not installed."),
             f"BLAS that ran in our worker: {'; '.join(ours['blas'])} "
             f"(benchmark processes run without {' and '.join(FORCED_BLAS_KERNEL)})."
             + (f" PyTorch: {'; '.join(theirs['blas'])}." if theirs else ""),
             f"Matrix-product peak measured in our worker: {ours['peak_gflops']:.0f} GFLOP/s (float32).",
             f"Each library in its own processes, {args.rounds} alternating round(s); each number is the median "
             f"over the rounds of the median of {args.repeat} timed calls after warm-up "
             f"({max(1, args.repeat // 2)} for the 224x224 steps)."
             + (" A memory-bound neighbour (--load: one core copying 128 MB arrays in a loop) ran beside every "
                "worker." if args.load else ""), "",
             "## Training steps (forward, loss, backward, SGD step)", "",
             "| network | batch | image | ours (s) | PyTorch (s) | ours / PyTorch | ours images/s | PyTorch images/s |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for key, (seconds, _) in ours["steps"].items():
        model, batch, size = key.split()
        t = theirs["steps"][key][0] if theirs else None
        lines.append(f"| {model}{' (shortcut B)' if model == 'resnet20' else ''} | {batch} | {size}x{size} | "
                     f"{seconds:.3f} | " + (f"{t:.3f} | {ratio(seconds, t)} |" if t else "- | - |")
                     + f" {int(batch) / seconds:.0f} | " + (f"{int(batch) / t:.0f} |" if t else "- |"))
    if args.focus or args.load:
        lines += ["", "Round by round (seconds per step; ours / PyTorch of the same round):", ""]
        for key, times in ours["step_rounds"].items():
            theirs_times = theirs["step_rounds"][key] if theirs else []
            ratios = [a / b for a, b in zip(times, theirs_times)]
            lines.append(f"* {key}: ours {', '.join(f'{t:.3f}' for t in times)}"
                         + (f"; PyTorch {', '.join(f'{t:.3f}' for t in theirs_times)}; ratios "
                            f"{', '.join(f'{q:.2f}' for q in ratios)} (range {min(ratios):.2f}-{max(ratios):.2f})"
                            if ratios else ""))
    for key, (_, peak) in ours["steps"].items():
        if peak is not None:
            model, batch, _ = key.split()
            lines.append(f"\nPeak NumPy memory of one {model} step at batch {batch}: {peak / 2**20:.0f} MB.")
    if args.backend == "numpy":
        lines += ["", "GPU (CuPy against PyTorch on CUDA): not measured here; on a machine with a GPU run "
                  "`python benchmarks/bench.py --backend cupy` (it writes bench_cupy.md)."]
    if not ours["layers"]:   # --plain, --focus: steps only
        return "\n".join(lines) + "\n"
    lines += ["", "## Layers (backward times exclude the forward pass)", "",
              "| layer and shape | fwd ms | bwd ms | fwd GFLOP/s | % of peak | torch fwd ms | torch bwd ms "
              "| fwd ours/torch | bwd ours/torch |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, _, _, flops in layer_cases(args.quick):
        if name not in ours["layers"]:   # --plain: steps only
            continue
        fwd, bwd = ours["layers"][name]
        gflops = flops / fwd / 1e9
        row = (f"| {name} | {fwd * 1e3:.2f} | {bwd * 1e3:.2f} | {gflops:.1f} | "
               f"{100 * gflops / ours['peak_gflops']:.0f}% | ")
        if theirs:
            tf, tb = theirs["layers"][name]
            row += f"{tf * 1e3:.2f} | {tb * 1e3:.2f} | {ratio(fwd, tf)} | {ratio(bwd, tb)} |"
        else:
            row += "- | - | - | - |"
        lines.append(row)
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["numpy", "cupy"], default="numpy")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of worker processes (default 3)")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per measurement in a worker (default 5)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--threads", type=int, default=None, help="threads for both libraries (default: all cores)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--plain", action="store_true",
                        help="our worker on the plain layers (resnet_np.use_fast(False)): ResNet-20 steps only")
    parser.add_argument("--focus", action="store_true",
                        help="the ResNet-20 step at batch 32 and 128 only (the targets' comparison), each round listed")
    parser.add_argument("--load", action="store_true",
                        help="a memory-bound neighbour process (a 128 MB array copy loop, one core) beside the workers")
    parser.add_argument("--worker", choices=["ours", "torch"], default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:  # one library, in this process; the result as one JSON line
        result = ours_worker(args) if args.worker == "ours" else torch_worker(args)
        print(json.dumps(result))
        return

    with_torch = torch_available()
    ours_rounds, torch_rounds = [], []
    neighbour = start_neighbour() if args.load else None
    try:
        for r in range(args.rounds):
            order = ["ours", "torch"] if r % 2 == 0 else ["torch", "ours"]
            for library in order:
                if library == "torch" and not with_torch:
                    continue
                print(f"round {r + 1}/{args.rounds}: {library} ...", file=sys.stderr, flush=True)
                (ours_rounds if library == "ours" else torch_rounds).append(run_worker(library, args))
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
    text = report(args, combine(ours_rounds), combine(torch_rounds) if torch_rounds else None)
    suffix = (f"_{args.threads}threads" if args.threads else "") + ("_plain" if args.plain else "") + \
             ("_focus" if args.focus else "") + ("_load" if args.load else "")
    write_results(args.out or ROOT / "benchmarks" / "results" / f"bench_{args.backend}{suffix}.md", text)


if __name__ == "__main__":
    main()
