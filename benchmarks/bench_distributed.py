"""Data parallelism on this machine: ResNet-20 training, one process with threads against MPI ranks.

    python benchmarks/bench_distributed.py            # about 4 minutes on 2 cores
    python benchmarks/bench_distributed.py --quick    # about 1 minute: one round of 4 timed steps

Needs mpi4py and mpiexec (``pip install -e '.[distributed]'``). Writes
benchmarks/results/distributed.md: the measured table, then the scaling
model on paper.

What is measured: ResNet-20 training steps on MNIST-sized images (1x28x28,
10 classes), global batch 128 (``--batch``), SGD with momentum, the
DataLoader with the digits augmentation included; every setting in a fresh
process (or ``mpiexec`` job), ``--steps`` timed steps after two warm-up
steps, the median taken; the settings take turns, ``--rounds`` times, and
the table shows the median over the rounds (a noisy minute on a shared
machine then hits every setting, not one). An MNIST epoch is 60,000 // 128 = 468 such steps;
its time is the median step times 468 (evaluation not included). The
settings:

* 1 process x 1 thread and x 2 threads (``RESNET_NP_NUM_THREADS``: our
  layers share each convolution's images among the threads);
* 2 ranks x 1 thread (``mpiexec -n 2 ... --distributed``): 64 images each,
  DistributedDataParallel and SyncBatchNorm; MPICH's waiting ranks sleep
  (``MPIR_CVAR_ENABLE_HEAVY_YIELD=1``, what ``distributed.init()`` sets);
* the same with MPICH spinning (``MPIR_CVAR_ENABLE_HEAVY_YIELD=0``);
* the same with each rank's batch norms alone (no SyncBatchNorm).

"Blocked in MPI" is the time a rank spends inside blocking MPI calls: the
synchronised batch norms' all-gathers and all-reduces, and the wait at the
end of backward for gradient buckets not yet reduced. It includes waiting
for the other rank to arrive (load imbalance), which from inside a rank
looks the same as a slow network.
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.machine import describe, write_results  # noqa: E402

MPIEXEC = pathlib.Path(sys.executable).parent / "mpiexec"
MNIST_STEPS = 60000 // 128
YIELD = "MPIR_CVAR_ENABLE_HEAVY_YIELD"

# (label, ranks, threads per rank, extra worker options, extra environment)
SETTINGS = [
    ("1 process x 1 thread", 1, 1, [], {}),
    ("1 process x 2 threads", 1, 2, [], {}),
    ("2 ranks x 1 thread (MPICH sleeps while waiting)", 2, 1, [], {YIELD: "1"}),
    ("2 ranks x 1 thread (MPICH spins while waiting)", 2, 1, [], {YIELD: "0"}),
    ("2 ranks x 1 thread, batch norm per rank", 2, 1, ["--local-bn"], {YIELD: "1"}),
]

# The scaling model on paper: interconnects (bandwidth per direction, latency per message).
INTERCONNECTS = [
    ("25 Gb/s Ethernet", 3.1e9, 20e-6),
    ("100 Gb/s InfiniBand EDR", 12.5e9, 1.5e-6),
    ("200 Gb/s InfiniBand HDR", 25e9, 1.5e-6),
    ("NVLink 3 (A100, within a node)", 300e9, 3e-6),
]


# ----------------------------------------------------------------------------
# The worker: one setting, in its own process (or mpiexec job)
# ----------------------------------------------------------------------------

def worker(args):
    from resnet_np import backend
    from resnet_np.data import Dataset
    from resnet_np.data.loader import DataLoader, DistributedSampler
    from resnet_np.distributed import DistributedDataParallel, convert_sync_batchnorm, init
    from resnet_np.layers import SoftmaxCrossEntropy
    from resnet_np.models import resnet20
    from resnet_np.optim import SGD

    world = init()
    steps = args.steps + 2
    rng = np.random.default_rng(0)
    data = Dataset(rng.integers(0, 256, (args.batch * steps, 1, 28, 28), dtype=np.uint8),
                   rng.integers(0, 10, args.batch * steps), [str(c) for c in range(10)], (0.13,), (0.31,))
    backend.manual_seed(0)
    model = resnet20(in_channels=1)
    sampler = None
    if world.size > 1:
        if not args.local_bn:
            model = convert_sync_batchnorm(model, world)
        model = DistributedDataParallel(model, world)
        sampler = DistributedSampler(world.size, world.rank, drop_last=True)
    loader = DataLoader(data, batch_size=args.batch // world.size, drop_last=True, augment="digits",
                        sampler=sampler)
    optimizer = SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    loss_fn = SoftmaxCrossEntropy()
    model.train()
    step_times, blocked, backward_times, end_waits = [], [], [], []
    batches = iter(loader)
    for _ in range(steps):
        blocked_before = world.wait_seconds
        start = time.perf_counter()
        x, y = next(batches)
        loss_fn(model(x), y)
        optimizer.zero_grad()
        before_backward = time.perf_counter()
        model.backward(loss_fn.backward())
        backward = time.perf_counter() - before_backward
        optimizer.step()
        step_times.append(time.perf_counter() - start)
        blocked.append(world.wait_seconds - blocked_before)
        backward_times.append(backward)
        end_waits.append(getattr(model, "wait_seconds", 0.0))
    sent = [round(1e3 * b.launched, 1) for b in getattr(model, "buckets", [])]  # the last step's
    last_backward = 1e3 * backward_times[-1]
    timed = slice(2, None)
    mine = {"step": statistics.median(step_times[timed]), "blocked": statistics.median(blocked[timed]),
            "backward": statistics.median(backward_times[timed]), "end_wait": statistics.median(end_waits[timed])}
    everyone = world.allgather_object(mine)
    if world.is_main:
        result = {key: max(r[key] for r in everyone) if key == "step" else statistics.mean(r[key] for r in everyone)
                  for key in mine}
        result["sent_ms"], result["last_backward_ms"] = sent, round(last_backward, 1)
        print("RESULT " + json.dumps(result), flush=True)


def collective_costs(args):
    """Blocking all-reduce of ResNet-20's gradients (1 MB) and of 32 numbers, 2 ranks: what overlap hides."""
    from resnet_np.distributed import init
    world = init()
    out = {}
    for name, size in (("gradients", 269_434), ("small", 32)):
        buffer = np.ones(size, dtype=np.float32)
        world.barrier()
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            world.allreduce(buffer)
            times.append(time.perf_counter() - start)
        out[name] = statistics.median(times)
    if world.is_main:
        print("RESULT " + json.dumps(out), flush=True)


# ----------------------------------------------------------------------------
# The driver
# ----------------------------------------------------------------------------

def launch(ranks, threads, options, extra_env, args):
    env = dict(os.environ, RESNET_NP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               OMP_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT))
    env.update(extra_env)
    for name in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE"):  # not a rank of an outer job
        env.pop(name, None)
    command = [sys.executable, __file__, "--worker", "--batch", str(args.batch), "--steps", str(args.steps),
               "--repeat", str(args.repeat), *options]
    if ranks > 1:
        command = [str(MPIEXEC), "-n", str(ranks)] + command
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n"
                         f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def median_result(runs):
    """The median over the rounds of every number; the other entries from the first round."""
    merged = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, float):
            merged[key] = statistics.median(r[key] for r in runs)
    return merged


def measured_table(results, costs, batch):
    base = results[0]["step"]
    rows = ["| setting | step (s) | MNIST epoch (min) | images/s | speed-up vs 1 thread | blocked in MPI, "
            "% of step | of which: waiting for gradient buckets after backward (ms) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for (label, ranks, *_), r in zip(SETTINGS, results):
        share = f"{100 * r['blocked'] / r['step']:.1f} %" if ranks > 1 else "-"
        wait = f"{1e3 * r['end_wait']:.1f}" if ranks > 1 else "-"
        rows.append(f"| {label} | {r['step']:.3f} | {r['step'] * MNIST_STEPS / 60:.1f} | "
                    f"{batch / r['step']:.0f} | {base / r['step']:.2f}x | {share} | {wait} |")
    rows.append("")
    rows.append(f"A blocking all-reduce on 2 ranks of ResNet-20's whole gradient (1.03 MB float32) takes "
                f"{1e3 * costs['gradients']:.2f} ms here, of 32 numbers (a batch norm's two sums) "
                f"{1e3 * costs['small']:.3f} ms (MPICH sleeping while it waits).")
    return "\n".join(rows)


def scaling_model(backward_cpu, batch_per_rank):
    """All-reduce volume per step and the bandwidth that keeps it behind backward, on paper."""
    models = [
        # name, parameters, backward seconds per step, where the backward time comes from
        ("ResNet-20, this CPU", 269_434, backward_cpu,
         f"measured here: backward of {batch_per_rank} images on 1 thread (2 ranks)"),
        ("ResNet-20, a GPU", 269_434, 1e-3,
         "assumed: about 1 ms for 128 images on a current GPU, where a network this small is bounded by "
         "launching its few hundred kernels rather than by arithmetic"),
        ("ResNet-50, A100 mixed precision", 25_557_032, 2 / 3 * 256 / 2470,
         "2,470 images/s per A100 (NVIDIA DeepLearningExamples, PyTorch ResNet-50 v1.5), batch 256 per GPU, "
         "backward taken as 2/3 of the step: 69 ms"),
        ("ResNet-50, A100 TF32", 25_557_032, 2 / 3 * 256 / 938,
         "938 images/s per A100 (same source), batch 256: backward 182 ms"),
    ]
    lines = ["| model, where | gradient bytes (float32) | backward (ms) | ranks | sent and received per rank (MB) "
             "| bandwidth to hide it (GB/s) | ring latency 2(R-1)a, a = 1.5 us (ms) | tree latency 2 log2(R) a (ms) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    notes = []
    for name, params, backward, source in models:
        nbytes = 4 * params
        notes.append(f"* {name}: {source}.")
        for R in (8, 64, 512):
            volume = 2 * (R - 1) / R * nbytes  # a ring all-reduce: reduce-scatter, then all-gather
            lines.append(f"| {name} | {nbytes / 1e6:.2f} MB | {1e3 * backward:.1f} | {R} | {volume / 1e6:.2f} | "
                         f"{volume / backward / 1e9:.3g} | {2 * (R - 1) * 1.5e-6 * 1e3:.2f} | "
                         f"{2 * np.log2(R) * 1.5e-6 * 1e3:.3f} |")
    links = ", ".join(f"{name} {bw / 1e9:g} GB/s and about {lat * 1e6:g} us" for name, bw, lat in INTERCONNECTS)
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + f"\n\nInterconnects, per direction: {links}."


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 timed steps per setting instead of --steps")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per setting (default: 20)")
    parser.add_argument("--batch", type=int, default=128, help="global batch (default: 128)")
    parser.add_argument("--repeat", type=int, default=50, help="repetitions of each collective timed")
    parser.add_argument("--rounds", type=int, default=2, help="turns of every setting (default: 2)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "distributed.md"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--collectives", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--local-bn", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.repeat, args.rounds = min(args.steps, 4), min(args.repeat, 20), 1
    if args.collectives:
        return collective_costs(args)
    if args.worker:
        from resnet_np.fast import tuned
        with tuned():  # training's process-wide settings, as fit has them
            return worker(args)
    if not MPIEXEC.is_file():
        raise SystemExit(f"no mpiexec beside {sys.executable}: pip install -e '.[distributed]'")
    load_before = os.getloadavg()
    start = time.time()
    runs = [[] for _ in SETTINGS]
    for round_ in range(args.rounds):
        for i, (label, ranks, threads, options, env) in enumerate(SETTINGS):
            print(f"round {round_ + 1}/{args.rounds}: {label} ...", flush=True)
            runs[i].append(launch(ranks, threads, options, env, args))
    results = [median_result(r) for r in runs]
    costs = launch(2, 1, ["--collectives"], {YIELD: "1"}, args)
    minutes = (time.time() - start) / 60
    load_after = os.getloadavg()
    backward_cpu = results[2]["backward"]
    sent = ", ".join(f"{t:g}" for t in results[2]["sent_ms"])
    text = f"""# Data parallelism: ResNet-20 on {describe().split(',')[0]}

Machine: {describe()}
`python benchmarks/bench_distributed.py{' --quick' if args.quick else ''}`: ResNet-20, 1x28x28 images, global batch
{args.batch}, median of {args.steps} steps per setting after 2 warm-up steps, median of {args.rounds} round(s),
{minutes:.1f} minutes in all.
Load average (1 min) before and after: {load_before[0]:.1f} and {load_after[0]:.1f}. Measured once, on a machine
shared with other jobs: the figures are noisy; rerun the command on a quiet machine to trust the last digit.

## Measured: one process with threads, or two ranks

{measured_table(results, costs, args.batch)}

"Blocked in MPI" is time spent inside blocking MPI calls (the synchronised batch norms' collectives
and the wait for gradient buckets after backward), including waiting for the slower rank.
The gradient buckets (1 MB; {len(results[2]['sent_ms'])} for ResNet-20) leave during backward, at
{sent} ms of a {results[2]['last_backward_ms']:.0f} ms backward (2 ranks, MPICH sleeping, last
step); what is left to wait for at the end is in the last column. MPICH moves a
non-blocking all-reduce only inside MPI calls (here: the test after each layer's backward), and on
2 cores there is no idle core to copy the buffers while both ranks compute, so on this machine
the overlap is partial by construction.

## On paper: how far the overlap carries

Each step every rank all-reduces the whole gradient: as many bytes as the parameters (float32).
A ring all-reduce sends and receives 2(R-1)/R of them per rank, whatever the number of ranks R;
to stay hidden behind backward the link must move them within the backward time. Its latency
grows with R (2(R-1) messages in a ring, 2 log2 R in a tree, as NCCL uses between nodes).

{scaling_model(backward_cpu, args.batch // 2)}

Reading the table: ResNet-50's 102 MB need about 3 GB/s per GPU (mixed precision) to hide behind
backward at any R: all of 25 Gb/s Ethernet (3.1 GB/s, nothing left for latency or the last bucket),
a quarter of 100 Gb/s InfiniBand, a hundredth of NVLink. ResNet-20's
1 MB needs little bandwidth, but on a GPU its whole backward lasts about as long as a ring's
latency at 512 ranks: small models run out of latency, not bandwidth (and 512 ranks x 128 images is
a batch of 65,536, beyond what SGD on CIFAR-10 tolerates anyway).
"""
    write_results(args.out, text)


if __name__ == "__main__":
    main()
