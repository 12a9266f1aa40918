"""The benchmark suite: every layer and a whole ResNet-20 training step, beside PyTorch.

    python benchmarks/bench.py [--backend numpy|cupy] [--repeat 5] [--quick] [--threads N]

For each layer at the shapes of ResNet-20 (batch 128, 32x32) and of
ResNet-18 (batch 16, 224x224): forward and backward time, GFLOP/s and the
fraction of this machine's matrix-product peak (measured in the same run);
then one full ResNet-20 training step (forward, loss, backward, SGD step) at
batch 128 with its peak memory. Where torch is installed, the same rows in
PyTorch on the same machine, with the ratio ours / PyTorch; both use the
same number of threads: all cores, or ``--threads N`` (which restarts the
script with OMP_NUM_THREADS and OPENBLAS_NUM_THREADS set, since BLAS reads
them only at start-up). Medians of ``--repeat`` runs.

The table is printed and written, with the machine's description, to
benchmarks/results/bench_<backend>.md (bench_<backend>_<N>threads.md with --threads).
"""

import argparse
import os
import pathlib
import statistics
import sys
import time
import tracemalloc

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from benchmarks.machine import describe, write_results  # noqa: E402
from resnet_np import backend  # noqa: E402
from resnet_np import layers as L  # noqa: E402
from resnet_np.models import resnet20  # noqa: E402
from resnet_np.optim import SGD  # noqa: E402

# PyTorch's OpenMP threads spin for a while after each operation; in the same
# process that steals the cores from NumPy's BLAS threads and inflates our times.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
try:
    import torch
except ImportError:
    torch = None


def synchronize():
    if backend.current() == "cupy":
        backend.get_array_module().cuda.Device().synchronize()
    if torch is not None and torch.cuda.is_available():
        torch.cuda.synchronize()


def median_time(fn, repeat):
    fn()  # warm-up: first-call allocations, kernel compilation
    synchronize()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak(repeat):
    """GFLOP/s of the best float32 matrix product of the backend: the ceiling for im2col convolutions."""
    xp = backend.get_array_module()
    best = 0.0
    for n in (1024, 2048):
        a = xp.asarray(np.random.default_rng(0).standard_normal((n, n)), dtype=xp.float32)
        b = xp.asarray(np.random.default_rng(1).standard_normal((n, n)), dtype=xp.float32)
        t = median_time(lambda: a @ b, repeat)
        best = max(best, 2 * n ** 3 / t / 1e9)
    return best


def conv_flops(n, c, f, k, out_hw):
    return 2 * n * f * c * k * k * out_hw * out_hw


# (name, make our layer, make the torch layer, input shape, forward FLOPs)
def layer_cases(quick):
    n20 = 32 if quick else 128
    n18 = 4 if quick else 16
    cases = []
    for c, f, hw, s in [(16, 16, 32, 1), (16, 32, 32, 2), (32, 32, 16, 1), (32, 64, 16, 2), (64, 64, 8, 1)]:
        out = hw // s
        cases.append((f"R20 conv3x3 {c}->{f} s{s} @{hw}", lambda c=c, f=f, s=s: L.Conv2d(c, f, 3, s, 1, bias=False),
                      lambda c=c, f=f, s=s: torch.nn.Conv2d(c, f, 3, s, 1, bias=False),
                      (n20, c, hw, hw), conv_flops(n20, c, f, 3, out)))
    for c, hw in [(16, 32), (64, 8)]:
        cases.append((f"R20 batchnorm {c} @{hw}", lambda c=c: L.BatchNorm2d(c), lambda c=c: torch.nn.BatchNorm2d(c),
                      (n20, c, hw, hw), 8 * n20 * c * hw * hw))
        cases.append((f"R20 relu {c} @{hw}", L.ReLU, torch.nn.ReLU, (n20, c, hw, hw), n20 * c * hw * hw))
    cases.append(("R20 global avg pool 64 @8", L.GlobalAvgPool2d, lambda: torch.nn.AdaptiveAvgPool2d(1),
                  (n20, 64, 8, 8), n20 * 64 * 64))
    cases.append(("R20 linear 64->10", lambda: L.Linear(64, 10), lambda: torch.nn.Linear(64, 10), (n20, 64),
                  2 * n20 * 64 * 10))
    cases.append(("R18 conv7x7 3->64 s2 @224", lambda: L.Conv2d(3, 64, 7, 2, 3, bias=False),
                  lambda: torch.nn.Conv2d(3, 64, 7, 2, 3, bias=False), (n18, 3, 224, 224),
                  conv_flops(n18, 3, 64, 7, 112)))
    cases.append(("R18 maxpool 3x3 s2 64 @112", lambda: L.MaxPool2d(3, 2, 1), lambda: torch.nn.MaxPool2d(3, 2, 1),
                  (n18, 64, 112, 112), 9 * n18 * 64 * 56 * 56))
    for c, hw in [(64, 56), (128, 28), (256, 14), (512, 7)]:
        cases.append((f"R18 conv3x3 {c}->{c} @{hw}", lambda c=c: L.Conv2d(c, c, 3, 1, 1, bias=False),
                      lambda c=c: torch.nn.Conv2d(c, c, 3, 1, 1, bias=False), (n18, c, hw, hw),
                      conv_flops(n18, c, c, 3, hw)))
    return cases


def time_ours(make, shape, repeat):
    xp = backend.get_array_module()
    layer = make()
    x = xp.asarray(np.random.default_rng(0).standard_normal(shape), dtype=xp.float32)
    y = layer(x)
    dy = xp.asarray(np.random.default_rng(1).standard_normal(y.shape), dtype=xp.float32)
    forward = median_time(lambda: layer(x), repeat)

    def backward():
        layer.zero_grad()
        layer.backward(dy)
    return forward, median_time(backward, repeat)


def time_torch(make, shape, repeat, device):
    layer = make().to(device)
    x = torch.randn(shape, device=device, requires_grad=True)
    y = layer(x)
    dy = torch.randn_like(y)
    forward = median_time(lambda: layer(x), repeat)

    def backward():
        out = layer(x)  # autograd needs a fresh graph; its forward is subtracted below
        layer.zero_grad(set_to_none=True)
        x.grad = None
        out.backward(dy)
    return forward, max(median_time(backward, repeat) - forward, 0.0)


def torch_resnet20(device):
    """ResNet-20 (option A shortcut) in plain torch.nn, the same network as ours."""
    nn = torch.nn

    class Shortcut(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.pad = (cout - cin) // 2

        def forward(self, x):
            return nn.functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.shortcut = Shortcut(cin, cout) if stride != 1 or cin != cout else nn.Identity()

        def forward(self, x):
            out = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))

    layers = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
    cin = 16
    for cout, stride in [(16, 1), (32, 2), (64, 2)]:
        for i in range(3):
            layers.append(Block(cin, cout, stride if i == 0 else 1))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)]
    return nn.Sequential(*layers).to(device)


def training_step_rows(batch, repeat, device):
    xp = backend.get_array_module()
    rng = np.random.default_rng(0)
    x_host = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
    y_host = rng.integers(0, 10, batch)
    x, y = xp.asarray(x_host), xp.asarray(y_host)

    backend.manual_seed(0)
    model = resnet20()
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    loss_fn = L.SoftmaxCrossEntropy()

    def step():
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        model.backward(loss_fn.backward())
        opt.step()
        return loss

    peak = None
    if backend.current() == "numpy":
        tracemalloc.start()
        step()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()

    if torch is None:
        return median_time(step, repeat), None, peak
    net = torch_resnet20(device)
    topt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    tx, ty = torch.from_numpy(x_host).to(device), torch.from_numpy(y_host).to(device)

    def torch_step():
        loss = torch.nn.functional.cross_entropy(net(tx), ty)
        topt.zero_grad(set_to_none=True)
        loss.backward()
        topt.step()

    # Alternate the two, step by step, so that both see the same moments of a
    # noisy machine; then compare the medians.
    ours, theirs = [], []
    for fn, times in [(step, ours), (torch_step, theirs)] * (repeat + 1):
        start = time.perf_counter()
        fn()
        synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(ours[1:]), statistics.median(theirs[1:]), peak


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["numpy", "cupy"], default="numpy")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small batches, for a smoke test")
    parser.add_argument("--threads", type=int, default=None, help="threads for BLAS and PyTorch (default: all cores)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.threads and os.environ.get("OPENBLAS_NUM_THREADS") != str(args.threads):
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = str(args.threads)
        os.execv(sys.executable, [sys.executable] + sys.argv)  # BLAS reads these only when it loads
    backend.use(args.backend)
    device = "cuda" if args.backend == "cupy" else "cpu"
    threads = None
    if torch is not None:
        if device == "cuda" and not torch.cuda.is_available():
            raise SystemExit("--backend cupy compares with PyTorch on the GPU, but torch sees no CUDA device")
        # OpenBLAS (NumPy) uses every core by default; give PyTorch the same number.
        threads = int(os.environ.get("OMP_NUM_THREADS", os.cpu_count()))
        torch.set_num_threads(threads)

    peak = matmul_peak(args.repeat)
    rows = []
    for name, ours_make, torch_make, shape, flops in layer_cases(args.quick):
        fwd, bwd = time_ours(ours_make, shape, args.repeat)
        tf, tb = time_torch(torch_make, shape, args.repeat, device) if torch is not None else (None, None)
        rows.append((name, fwd, bwd, flops, tf, tb))

    batch = 32 if args.quick else 128
    step, torch_step, mem = training_step_rows(batch, 3 * args.repeat, device)

    def ratio(a, b):
        return f"{a / b:.2f}x" if b else "-"

    lines = [
        f"# resnet_np benchmark ({args.backend})", "",
        f"Machine: {describe()}" + (f"; PyTorch {torch.__version__}, {threads} threads" if torch else "; no PyTorch"),
        f"Matrix-product peak measured in this run: {peak:.0f} GFLOP/s (float32).",
        f"Median of {args.repeat} runs ({3 * args.repeat} alternating steps for the training step); float32; "
        "backward times exclude the forward pass.", "",
        "| layer and shape | fwd ms | bwd ms | fwd GFLOP/s | % of peak | torch fwd ms | torch bwd ms "
        "| fwd ours/torch | bwd ours/torch |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, fwd, bwd, flops, tf, tb in rows:
        gflops = flops / fwd / 1e9
        lines.append(f"| {name} | {fwd * 1e3:.2f} | {bwd * 1e3:.2f} | {gflops:.1f} | {100 * gflops / peak:.0f}% | "
                     + (f"{tf * 1e3:.2f} | {tb * 1e3:.2f} | {ratio(fwd, tf)} | {ratio(bwd, tb)} |"
                        if tf is not None else "- | - | - | - |"))
    lines += ["", f"## ResNet-20 training step, batch {batch} (forward, loss, backward, SGD step)", "",
              "| | ours | PyTorch | ours / PyTorch |", "| --- | ---: | ---: | ---: |",
              f"| time per step (s) | {step:.3f} | {torch_step:.3f} | {ratio(step, torch_step)} |" if torch_step
              else f"| time per step (s) | {step:.3f} | - | - |",
              f"| images per second | {batch / step:.0f} | " + (f"{batch / torch_step:.0f} |" if torch_step else "- |")
              + " |"]
    if mem is not None:
        lines.append(f"| peak NumPy memory of one step (MB) | {mem / 2**20:.0f} | - | |")
    text = "\n".join(lines) + "\n"
    suffix = f"_{args.threads}threads" if args.threads else ""
    write_results(args.out or pathlib.Path(__file__).parent / "results" / f"bench_{args.backend}{suffix}.md", text)


if __name__ == "__main__":
    main()
