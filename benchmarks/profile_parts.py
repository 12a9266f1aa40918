"""How well a training step uses the threads: the engine's parallel parts, in the step and repeated alone.

    python benchmarks/profile_parts.py [--model resnet20] [--batch 32] [--steps 8]

The engine runs every heavy pass as parts on the threads
(``resnet_np.fast.threads.for_each_part``): the calling thread takes the
last part, helper threads the others. This script wraps the function that
hands the parts out and reports, for a ResNet-20 (shortcut B) step:

* how much of the step is inside parallel parts and how much outside
  (Python between layers and the small serial sums, one core idle);
* for each kind of part: its wall time, the calling thread's share and the
  helpers' (a helper slower than the caller leaves the caller waiting);
* the calls of one more step, each repeated on its own right after it
  (``--repeat`` times, the median): a call is faster alone when its data
  and buffers stay in the cache from one repetition to the next, so the
  ratio of the wall time in the steps to the time alone says how much the
  step loses to memory traffic between layers rather than to the work
  itself. (That one more step is not timed: it keeps its calls, and with
  them its arrays, alive, so it allocates fresh memory.)

The repetitions write into the step's arrays again (in-place passes run on
their own output): their values are not used afterwards. Run it like the
benchmark, without OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE.
"""

import argparse
import collections
import pathlib
import sys
import time

import numpy as np

sys.path.append(str(pathlib.Path(__file__).resolve().parent.parent))
from benchmarks.profile_step import training_step  # noqa: E402
from resnet_np.fast import threads, tuned  # noqa: E402


def part_name(fn):
    """'row_taps: conv2d.images' for the part function ``images`` defined in ``row_taps.conv2d``."""
    module = getattr(fn, "__module__", "") or ""
    return f"{module.rsplit('.', 1)[-1]}: {getattr(fn, '__qualname__', repr(fn)).replace('.<locals>', '')}"


class PartRecorder:
    """Stands in for ``threads._run_parts``: times each call and each part, and keeps the calls for a replay."""

    def __init__(self, run_parts):
        self.run_parts = run_parts
        self.totals = collections.defaultdict(lambda: np.zeros(4))   # calls, wall, caller's part, helpers' parts
        self.calls = []
        self.recording = False
        self.keeping = False   # keep the calls (their closures hold the step's arrays: one step's worth only)

    def __call__(self, fn, N, count):
        times = {}

        def timed(n0, n1):
            start = time.perf_counter()
            result = fn(n0, n1)
            times[n0] = time.perf_counter() - start
            return result
        start = time.perf_counter()
        result = self.run_parts(timed, N, count)
        wall = time.perf_counter() - start
        if self.recording:
            starts = sorted(times)
            self.totals[part_name(fn)] += (1, wall, times[starts[-1]], sum(times[s] for s in starts[:-1]))
        if self.keeping:
            self.calls.append((fn, N, count))
        return result


def profile(model_name, batch, steps, repeat):
    step = training_step(model_name, batch)[-1]
    recorder = PartRecorder(threads._run_parts)
    threads._run_parts = recorder
    try:
        with tuned():
            for _ in range(2):
                step()
            recorder.recording = True
            start = time.perf_counter()
            for _ in range(steps):
                step()
            step_time = (time.perf_counter() - start) / steps
            recorder.recording, recorder.keeping = False, True
            step()
            recorder.keeping = False
            alone = collections.defaultdict(float)
            for fn, N, count in recorder.calls:
                times = []
                for _ in range(repeat):
                    start = time.perf_counter()
                    recorder.run_parts(fn, N, count)
                    times.append(time.perf_counter() - start)
                alone[part_name(fn)] += float(np.median(times))
    finally:
        threads._run_parts = recorder.run_parts
    return step_time, {k: v / steps for k, v in recorder.totals.items()}, alone


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    step_time, totals, alone = profile(args.model, args.batch, args.steps, args.repeat)
    inside = sum(t[1] for t in totals.values())
    print(f"{args.model} batch {args.batch}: step {step_time * 1e3:.1f} ms; inside parallel parts "
          f"{inside * 1e3:.1f} ms ({inside / step_time:.0%}), outside {(step_time - inside) * 1e3:.1f} ms")
    print("| parts | calls per step | wall (ms) | caller's part (ms) | helpers' parts (ms) | repeated alone (ms) "
          "| wall / alone |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, (calls, wall, own, helpers) in sorted(totals.items(), key=lambda kv: -kv[1][1]):
        ratio = wall / alone[name] if alone[name] else float("nan")
        print(f"| {name} | {calls:.0f} | {wall * 1e3:.2f} | {own * 1e3:.2f} | {helpers * 1e3:.2f} | "
              f"{alone[name] * 1e3:.2f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
