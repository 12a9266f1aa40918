"""Two threads in one process against two processes: what the engine's threads leave on the table.

    python benchmarks/threads_vs_processes.py [--batch 128] [--steps 10] [--rounds 3]

Times a ResNet-20 (shortcut B) training step on random 32x32 images three ways,
each in fresh processes, the ways taking turns round after round:

* one process, one thread, the whole batch (BLAS at one thread);
* one process, two threads (the engine's default on two cores): each layer
  shares its images out between the threads;
* two processes at once, one thread each, each stepping half the batch —
  the work of one step of the whole batch, split as data parallelism splits
  it, but with nothing shared between the halves (no batch-norm statistics,
  no gradients exchanged): the most two cores can give this step;
* where mpi4py and mpiexec are installed: the same split as a real training
  step, two MPI ranks (``DistributedDataParallel`` and ``SyncBatchNorm``: the
  batch's statistics and its gradient, the same step as one process takes);
* where PyTorch is installed: its step, one process with two threads
  (``benchmarks/torch_models.py``), for scale.

"per batch" is the time for the whole batch: the step's own time for the
first two, the slower process's median step for the third. If the threads
were as good as processes the second and third would match; what separates
them is what threads share — the wait for the slower part at every layer,
the work between layers that runs on one core, and Python's global
interpreter lock between NumPy calls. Run it like the benchmark, without
OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE.
"""

import argparse
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.machine import describe, write_results  # noqa: E402

WAYS = ["1 process x 1 thread", "1 process x 2 threads", "2 processes x 1 thread, half the batch each"]
MPI_WAY = "2 MPI ranks x 1 thread, half the batch each (DistributedDataParallel + SyncBatchNorm)"
TORCH_WAY = "PyTorch, 1 process x 2 threads"
MPIEXEC = pathlib.Path(sys.executable).parent / "mpiexec"


def available_ways():
    """The three ways, then the MPI step and PyTorch's where they can run here."""
    ways = list(WAYS)
    if MPIEXEC.exists() and importlib.util.find_spec("mpi4py") is not None:
        ways.append(MPI_WAY)
    if importlib.util.find_spec("torch") is not None:
        ways.append(TORCH_WAY)
    return ways


def worker(kind, threads, batch, steps):
    """One process's median step (s), after two warm-up steps; under mpiexec ("mpi"), the slower rank's."""
    from benchmarks.bench import median_time

    if kind == "torch":
        import torch

        from benchmarks.torch_models import build
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        net = build("resnet20")
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))

        def step():
            loss = torch.nn.functional.cross_entropy(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return median_time(step, steps, 2, lambda: None)

    from benchmarks.profile_step import training_step
    from resnet_np import distributed, fast

    fast.set_num_threads(threads)
    with fast.tuned():
        if kind == "ours":
            return median_time(training_step("resnet20", batch)[3], steps, 2, lambda: None)
        world = distributed.init()
        step = training_step("resnet20", batch, seed=world.rank,   # each rank its own half of the batch
                             wrap=lambda model: distributed.DistributedDataParallel(
                                 distributed.convert_sync_batchnorm(model, world), world))[3]
        world.barrier()
        seconds = max(world.allgather_object(median_time(step, steps, 2, world.barrier)))
        return seconds if world.is_main else None   # one answer for the job: rank 0's


def launch(kind, threads, batch, steps):
    """Start one worker ("ours", "torch"; "mpi": two ranks under mpiexec, ``batch`` images each)."""
    # One BLAS thread in every process of ours: with one thread of ours, tuned() leaves BLAS alone, and two
    # processes with two BLAS threads each would fight over the two cores.
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    command = [sys.executable, __file__, "--worker", kind, str(threads), str(batch), str(steps)]
    if kind == "torch":
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if kind == "mpi":
        command = [str(MPIEXEC), "-n", "2"] + command
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)


def result(process):
    out, _ = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"a worker process failed (exit {process.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def one_round(batch, steps, order):
    """Each way once, in ``order``; seconds per batch for each."""
    seconds = {}
    for way in order:
        if way == WAYS[0]:
            seconds[way] = result(launch("ours", 1, batch, steps))
        elif way == WAYS[1]:
            seconds[way] = result(launch("ours", 2, batch, steps))
        elif way == WAYS[2]:
            pair = [launch("ours", 1, batch // 2, steps) for _ in range(2)]
            seconds[way] = max(result(p) for p in pair)
        elif way == MPI_WAY:
            seconds[way] = result(launch("mpi", 1, batch // 2, steps))
        else:
            seconds[way] = result(launch("torch", 2, batch, steps))
    return seconds


def report(rounds, batch, steps):
    ways = list(rounds[0])
    medians = {way: float(np.median([r[way] for r in rounds])) for way in ways}
    single = medians[WAYS[0]]
    lines = ["# Two threads in one process against two processes", "",
             f"`python benchmarks/threads_vs_processes.py --batch {batch} --steps {steps} --rounds {len(rounds)}`; "
             f"{describe()}. ResNet-20 (shortcut B), float32, random 32x32 images; each way in fresh processes, "
             "the ways taking turns; median step of each process, then the median over the rounds.", "",
             f"| way | s per batch of {batch}, median | rounds | speed-up vs 1 thread |",
             "| --- | ---: | --- | ---: |"]
    for way in [w for w in WAYS + [MPI_WAY, TORCH_WAY] if w in medians]:
        each = ", ".join(f"{r[way]:.3f}" for r in rounds)
        lines.append(f"| {way} | {medians[way]:.3f} | {each} | {single / medians[way]:.2f}x |")
    lines += ["", f"Two threads take {medians[WAYS[1]] / medians[WAYS[2]]:.2f}x the time of two processes "
              "for the same batch."]
    if MPI_WAY in medians:
        lines.append(f"The training step on two MPI ranks takes {medians[MPI_WAY] / medians[WAYS[1]]:.2f}x the "
                     "time of the two-thread step.")
    if TORCH_WAY in medians:
        torch_seconds = medians[TORCH_WAY]
        mpi = f", on two MPI ranks {medians[MPI_WAY] / torch_seconds:.2f}" if MPI_WAY in medians else ""
        lines.append(f"Ours / PyTorch (median rounds): two threads {medians[WAYS[1]] / torch_seconds:.2f}{mpi}.")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128, help="images per step, even (default 128)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per process (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="turns of the ways (default 3)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "threads_vs_processes.md"))
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)   # KIND THREADS BATCH STEPS
    args = parser.parse_args(argv)
    if args.worker:
        seconds = worker(args.worker[0], *(int(v) for v in args.worker[1:]))
        if seconds is not None:
            print(json.dumps(seconds))
        return 0
    if args.batch < 2 or args.batch % 2 or args.steps < 1 or args.rounds < 1:
        parser.error("--batch must be even and at least 2, --steps and --rounds at least 1")
    ways = available_ways()
    rounds = [one_round(args.batch, args.steps, ways if r % 2 == 0 else ways[::-1]) for r in range(args.rounds)]
    write_results(args.out, report(rounds, args.batch, args.steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
