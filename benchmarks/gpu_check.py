"""One prepared check of the CuPy backend on a CUDA machine, written to benchmarks/results/bench_cupy.md.

    python benchmarks/gpu_check.py                 # on a machine with a GPU and CuPy (about 3-6 min on an H100)
    python benchmarks/gpu_check.py --dry-run --out /tmp/bench_cupy_dry.md   # anywhere: on the CuPy stand-in

Nothing is downloaded: it uses the CuPy and PyTorch already installed
(CuPy's CUDA 12 or CUDA 13 wheel, ``cupy-cuda12x`` or ``cupy-cuda13x``,
whichever is there; PyTorch with CUDA if present, else the comparison
columns say so). In order, each stage with its own time limit, so that the
whole fits in 8 minutes on one H100-class GPU:

1. the CuPy tests (``tests/test_cupy.py``: every layer on the GPU against
   NumPy, in float64, and the GPU's determinism);
2. a gradient check of each layer on the GPU (float64, finite differences),
   the worst relative error per layer in a table;
3. training steps of ResNet-20 (batch 128, 32x32) and ResNet-50 (batch 32,
   224x224) on the same batch for resnet_np on CuPy and for PyTorch on CUDA,
   float32, the median of timed steps after warm-up;
4. one epoch of CIFAR-10 with ``fit`` (ResNet-20, batch 128, the loader's
   augmentation): seconds, images per second and the test accuracy after it
   (real CIFAR-10 from ``$RESNET_NP_DATA``, else random images of its shape,
   said in the table).

``--dry-run`` runs the same stages on the strict CuPy stand-in
(``resnet_np.cupy_strict``, which emulates CuPy's rules on NumPy, not a GPU)
at tiny sizes, and PyTorch on the CPU: its timings mean nothing, but a
broken stage fails there first (tests/test_cupy_strict_gpu_check.py runs it).
"""

import argparse
import importlib.metadata
import importlib.util
import os
import pathlib
import re
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import numpy as np  # noqa: E402

from benchmarks.bench import median_time  # noqa: E402  (the median of timed calls after warm-up, synced)
from benchmarks.machine import describe, write_results  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "bench_cupy.md"


def cupy_distribution():
    """The CuPy wheel installed ("cupy-cuda12x 14.2.0"), or why none is usable."""
    found = []
    for name in ("cupy-cuda13x", "cupy-cuda12x", "cupy"):
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    if len(found) > 1:
        print(f"warning: several CuPy packages are installed ({', '.join(found)}); they share the module "
              "'cupy' and overwrite each other: keep one (pip uninstall the other)", file=sys.stderr)
    return ", ".join(found) or None


def device_description(xp, dry_run):
    if dry_run:
        return "none: the strict CuPy stand-in (resnet_np.cupy_strict, NumPy on the CPU; timings are not a GPU's)"
    props = xp.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    runtime = xp.cuda.runtime.runtimeGetVersion()
    return (f"{name}, {props['totalGlobalMem'] / 2**30:.0f} GiB; "
            f"CUDA runtime {runtime // 1000}.{runtime % 1000 // 10}; {cupy_distribution()}")


def torch_cuda(dry_run):
    """(torch module, device) for the comparison, or (None, why not)."""
    if importlib.util.find_spec("torch") is None:
        return None, "PyTorch is not installed"
    import torch
    if dry_run:
        return torch, "cpu"
    if not torch.cuda.is_available():
        return None, f"PyTorch {torch.__version__} has no CUDA here (a CPU build?)"
    return torch, "cuda"


# ----------------------------------------------------------------------------
# The stages
# ----------------------------------------------------------------------------

def stage_tests(args):
    """tests/test_cupy.py in a subprocess: (passed, failed, skipped, seconds, last lines)."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "test_cupy.py")]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, cwd=str(ROOT), env=env,
                              timeout=args.test_timeout)
        text = done.stdout + done.stderr
    except subprocess.TimeoutExpired as e:
        out = e.stdout or ""
        out = out.decode(errors="replace") if isinstance(out, bytes) else out
        text = f"{out}\ntimed out after {args.test_timeout} s"
    summary = text.strip().splitlines()[-1] if text.strip() else ""
    counts = {word.rstrip("s"): int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?)", summary)}
    return counts, time.perf_counter() - start, "\n".join(text.strip().splitlines()[-3:])


def stage_gradcheck(args):
    """Each layer of tests/test_cupy.py's CASES, gradient-checked on the device in float64."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_cupy import CASES, build_case

    from resnet_np import backend
    from resnet_np.gradcheck import check_module

    rows = []
    for name in CASES:
        module, inputs = build_case(name)
        module.to("cupy")
        inputs = [backend.to_device(x, "cupy") for x in inputs]
        start = time.perf_counter()
        report = check_module(module, *inputs, max_elements=40 if args.dry_run else 300)
        worst = max(r.error for r in report.results)
        rows.append((name, report.ok, worst, time.perf_counter() - start))
    return rows


def stage_steps(args, torch, torch_device):
    """Training-step medians: ours on the device, PyTorch on its device, the same batch."""
    from benchmarks.torch_models import build
    from resnet_np import backend
    from resnet_np import layers as L
    from resnet_np.models import ARCHITECTURES
    from resnet_np.optim import SGD

    xp = backend.get_array_module()

    def sync():
        xp.cuda.Device().synchronize()

    cases = [("resnet20", 128, 32), ("resnet50", 32, 224)]
    if args.dry_run:
        cases = [("resnet20", 2, 16), ("resnet50", 2, 32)]
    rows = []
    rng = np.random.default_rng(0)
    for model_name, batch, size in cases:
        x_host = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
        y_host = rng.integers(0, 10, batch)
        backend.manual_seed(0)
        model = ARCHITECTURES[model_name](**({"shortcut": "B"} if model_name == "resnet20" else {}), num_classes=10)
        model.need_input_grad = False
        opt = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        loss_fn = L.SoftmaxCrossEntropy()
        x, y = xp.asarray(x_host), xp.asarray(y_host)
        losses = []

        def step():
            losses.append(loss_fn.forward_array(model(x), y))
            opt.zero_grad()
            model.backward(loss_fn.backward())
            opt.step()
        ours = median_time(step, args.repeat, args.warmup, sync)
        first_loss = float(losses[0])
        model = opt = step = None  # the device memory goes back to the pool before PyTorch's turn
        theirs = None
        if torch is not None:
            net = build(model_name)
            net[-1] = torch.nn.Linear(net[-1].in_features, 10)
            net = net.to(torch_device)
            topt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
            tx = torch.from_numpy(x_host).to(torch_device)
            ty = torch.from_numpy(y_host).to(torch_device)

            def torch_step():
                loss = torch.nn.functional.cross_entropy(net(tx), ty)
                topt.zero_grad(set_to_none=True)
                loss.backward()
                topt.step()

            def torch_sync():
                if torch_device == "cuda":
                    torch.cuda.synchronize()
            theirs = median_time(torch_step, args.repeat, args.warmup, torch_sync)
            net = topt = torch_step = None
        free_device_memory(xp, torch, torch_device)
        rows.append((model_name, batch, size, ours, theirs, first_loss))
    return rows


def free_device_memory(xp, torch, torch_device):
    if hasattr(xp, "get_default_memory_pool"):
        xp.get_default_memory_pool().free_all_blocks()
    if torch is not None and torch_device == "cuda":
        torch.cuda.empty_cache()


def stage_epoch(args):
    """One epoch of CIFAR-10 (or random images of its shape) with fit: (source, seconds, images/s, accuracy)."""
    from resnet_np import backend
    from resnet_np.data import Dataset, load_dataset
    from resnet_np.data.loader import DataLoader
    from resnet_np.models import resnet20
    from resnet_np.optim import SGD
    from resnet_np.train import evaluate, fit

    train = test = None
    source = "random images of CIFAR-10's shape (" + ("dry run" if args.dry_run else
                                                      "CIFAR-10 not found under $RESNET_NP_DATA") + ")"
    if not args.dry_run:
        try:  # nothing is downloaded on the GPU machine
            train = load_dataset("cifar10", train=True, download=False)
            test = load_dataset("cifar10", train=False, download=False)
            source = "CIFAR-10 (50,000 training images, 10,000 test images)"
        except Exception as e:  # no files and no network: random images measure the speed just as well
            print(f"CIFAR-10 not loaded ({str(e).splitlines()[0]}): using random images", file=sys.stderr)
    if train is None:
        n_train, n_test = (32, 16) if args.dry_run else (50_000, 10_000)
        rng = np.random.default_rng(0)
        classes = [str(c) for c in range(10)]
        stats = ((0.49, 0.48, 0.45), (0.25, 0.24, 0.26))
        train = Dataset(rng.integers(0, 256, (n_train, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, n_train),
                        classes, *stats, name="random")
        test = Dataset(rng.integers(0, 256, (n_test, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, n_test),
                       classes, *stats, name="random")
    backend.manual_seed(0)
    model = resnet20()
    model.need_input_grad = False
    batch = 16 if args.dry_run else 128
    loader = DataLoader(train, batch_size=batch, augment="cifar", drop_last=True)
    steps = len(loader)
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    history = fit(model, loader, None, 1, optimizer, progress=False, log=lambda *a: None)
    start = time.perf_counter()
    _, accuracy = evaluate(model, DataLoader(test, batch_size=500 if not args.dry_run else 32, shuffle=False))
    return source, steps, batch, history["seconds"][0], history["images_per_sec"][0], accuracy, \
        time.perf_counter() - start


# ----------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true",
                        help="run every stage on the CuPy stand-in at tiny sizes (no GPU needed; timings meaningless)")
    parser.add_argument("--out", default=None, help=f"results file (default: {DEFAULT_OUT.relative_to(ROOT)}; "
                                                    "required with --dry-run)")
    parser.add_argument("--repeat", type=int, default=None, help="timed steps per model (default: 10, dry run 2)")
    parser.add_argument("--test-timeout", type=int, default=240, help="seconds for the CuPy tests (default 240)")
    parser.add_argument("--skip", action="append", default=[], choices=["tests", "gradcheck", "steps", "epoch"],
                        help="leave a stage out (repeatable)")
    args = parser.parse_args(argv)
    if args.dry_run and args.out is None:
        parser.error("--dry-run writes to --out only (not over the GPU results in the repository)")
    args.repeat = args.repeat or (2 if args.dry_run else 10)
    args.warmup = 1 if args.dry_run else 2

    from resnet_np import backend
    try:
        backend.use("cupy-strict" if args.dry_run else "cupy")
    except RuntimeError as e:
        raise SystemExit(f"gpu_check: {e}. On a machine without a GPU, --dry-run checks the script itself.")
    xp = backend.get_array_module()
    torch, torch_device = torch_cuda(args.dry_run)
    started = time.perf_counter()
    lines = [f"# resnet_np on CuPy: the prepared GPU check{' (DRY RUN on the stand-in)' if args.dry_run else ''}",
             "", f"Command: `python benchmarks/gpu_check.py{' --dry-run' if args.dry_run else ''}`",
             f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", f"Host: {describe()}.",
             f"GPU: {device_description(xp, args.dry_run)}.",
             f"PyTorch: {torch.__version__ + ' on ' + torch_device if torch is not None else torch_device}.", ""]
    if args.dry_run:
        lines += ["**Dry run: every number below comes from NumPy on the CPU behind the CuPy stand-in; "
                  "it checks that the script works, and says nothing about a GPU.**", ""]

    if "tests" not in args.skip:
        counts, seconds, tail = stage_tests(args)
        lines += ["## 1. The CuPy tests (tests/test_cupy.py)", "",
                  f"{counts.get('passed', 0)} passed, {counts.get('failed', 0)} failed, "
                  f"{counts.get('skipped', 0)} skipped, {counts.get('error', 0)} errors in {seconds:.0f} s.", "",
                  "```", tail, "```", ""]
        print(f"tests: {counts} in {seconds:.0f} s", file=sys.stderr)

    if "gradcheck" not in args.skip:
        rows = stage_gradcheck(args)
        lines += ["## 2. Gradient check of each layer on the device (float64)", "",
                  "| layer | result | worst relative error | seconds |", "| --- | --- | ---: | ---: |"]
        lines += [f"| {name} | {'ok' if ok else '**FAILED**'} | {worst:.1e} | {s:.1f} |" for name, ok, worst, s in rows]
        lines.append("")
        print(f"gradient checks: {sum(ok for _, ok, _, _ in rows)}/{len(rows)} ok", file=sys.stderr)

    if "steps" not in args.skip:
        rows = stage_steps(args, torch, torch_device)
        lines += ["## 3. Training steps, the same batch (float32; forward, loss, backward, SGD step)", "",
                  f"Median of {args.repeat} timed steps after {args.warmup} warm-up step(s).", "",
                  "| network | batch | image | resnet_np on CuPy (s) | PyTorch (s) | ours / PyTorch | ours images/s "
                  "| first loss |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for model_name, batch, size, ours, theirs, loss in rows:
            lines.append(f"| {model_name} | {batch} | {size}x{size} | {ours:.4f} | "
                         + (f"{theirs:.4f} | {ours / theirs:.2f}x" if theirs else "- | -")
                         + f" | {batch / ours:.0f} | {loss:.3f} |")
        lines.append("")
        print("steps: done", file=sys.stderr)

    if "epoch" not in args.skip:
        source, steps, batch, seconds, speed, accuracy, eval_seconds = stage_epoch(args)
        lines += ["## 4. One CIFAR-10 epoch with `fit` (ResNet-20, SGD 0.1, augmentation on the host)", "",
                  f"Data: {source}.", "",
                  "| steps | batch | epoch (s) | images/s | test accuracy after it | evaluation (s) |",
                  "| ---: | ---: | ---: | ---: | ---: | ---: |",
                  f"| {steps} | {batch} | {seconds:.1f} | {speed:.0f} | {accuracy:.2%} | {eval_seconds:.1f} |", ""]
        print(f"epoch: {seconds:.1f} s, {speed:.0f} images/s", file=sys.stderr)

    lines.append(f"Whole check: {time.perf_counter() - started:.0f} s.")
    write_results(args.out or DEFAULT_OUT, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
