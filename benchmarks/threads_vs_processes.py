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
  no gradients exchanged): the most two cores can give this step.

"per batch" is the time for the whole batch: the step's own time for the
first two, the slower process's median step for the third. If the threads
were as good as processes the second and third would match; what separates
them is what threads share — the wait for the slower part at every layer,
the work between layers that runs on one core, and Python's global
interpreter lock between NumPy calls. Run it like the benchmark, without
OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE.
"""

import argparse
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


def worker(threads, batch, steps):
    """One process's median step (s), after two warm-up steps."""
    from benchmarks.bench import median_time
    from benchmarks.profile_step import training_step
    from resnet_np import fast

    fast.set_num_threads(threads)
    with fast.tuned():
        step = training_step("resnet20", batch)[3]
        return median_time(step, steps, 2, lambda: None)


def launch(threads, batch, steps):
    # One BLAS thread in every process: with one thread of ours, tuned() leaves BLAS alone, and two processes
    # with two BLAS threads each would fight over the two cores.
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, __file__, "--worker", str(threads), str(batch), str(steps)],
                            stdout=subprocess.PIPE, text=True, env=env)


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
            seconds[way] = result(launch(1, batch, steps))
        elif way == WAYS[1]:
            seconds[way] = result(launch(2, batch, steps))
        else:
            pair = [launch(1, batch // 2, steps) for _ in range(2)]
            seconds[way] = max(result(p) for p in pair)
    return seconds


def report(rounds, batch, steps):
    medians = {way: float(np.median([r[way] for r in rounds])) for way in WAYS}
    single = medians[WAYS[0]]
    lines = ["# Two threads in one process against two processes", "",
             f"`python benchmarks/threads_vs_processes.py --batch {batch} --steps {steps} --rounds {len(rounds)}`; "
             f"{describe()}. ResNet-20 (shortcut B), float32, random 32x32 images; each way in fresh processes, "
             "the ways taking turns; median step of each process, then the median over the rounds.", "",
             f"| way | s per batch of {batch}, median | rounds | speed-up vs 1 thread |",
             "| --- | ---: | --- | ---: |"]
    for way in WAYS:
        each = ", ".join(f"{r[way]:.3f}" for r in rounds)
        lines.append(f"| {way} | {medians[way]:.3f} | {each} | {single / medians[way]:.2f}x |")
    lines += ["", f"Two threads take {medians[WAYS[1]] / medians[WAYS[2]]:.2f}x the time of two processes "
              "for the same batch."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128, help="images per step, even (default 128)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per process (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="turns of the three ways (default 3)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "threads_vs_processes.md"))
    parser.add_argument("--worker", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return 0
    if args.batch < 2 or args.batch % 2 or args.steps < 1 or args.rounds < 1:
        parser.error("--batch must be even and at least 2, --steps and --rounds at least 1")
    rounds = [one_round(args.batch, args.steps, WAYS if r % 2 == 0 else WAYS[::-1]) for r in range(args.rounds)]
    write_results(args.out, report(rounds, args.batch, args.steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
