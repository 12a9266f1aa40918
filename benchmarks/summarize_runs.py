"""Separate runs of bench.py against the speed targets: each step's ours/PyTorch ratio per run, range and median.

    python benchmarks/bench.py --rounds 3 --out benchmarks/results/bench_numpy_run1.md   (and run2, run3)
    python benchmarks/bench.py --focus --load --rounds 4
    python benchmarks/summarize_runs.py [RUN.md ...] [--load FILE] [--out FILE]

Reads the "Training steps" table of each results file (the ratio column as
bench.py wrote it) and writes one table: a row per network and batch, a
column per run, the range, the median and the issue's target, and whether
the target holds. Nothing is measured here; the numbers are the runs'.
"""

import argparse
import pathlib
import re
import statistics
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

# (network, batch, image): (what the median must not exceed, what no run may exceed or None): the targets of the
# last performance round.
TARGETS = {
    ("resnet20 (shortcut B)", "128", "32x32"): (1.0, 1.15),
    ("resnet20 (shortcut B)", "32", "32x32"): (1.15, None),
    ("resnet18", "16", "224x224"): (1.0, 1.0),
    ("resnet50", "16", "224x224"): (1.0, 1.0),
}
LOAD_TARGET = 1.2
ROW = re.compile(r"^\| (?P<net>[^|]+?) \| (?P<batch>\d+) \| (?P<image>\S+) \| [\d.]+ \| [\d.]+ \| "
                 r"(?P<ratio>[\d.]+)x \|")


def step_ratios(path):
    """{(network, batch, image): ours/PyTorch} from a bench.py results file."""
    ratios = {}
    for line in pathlib.Path(path).read_text().splitlines():
        match = ROW.match(line)
        if match:
            ratios[(match["net"], match["batch"], match["image"])] = float(match["ratio"])
    if not ratios:
        raise SystemExit(f"{path}: no training-step table found (is it a bench.py results file?)")
    return ratios


def verdict(values, target):
    median_max, each_max = target
    ok = statistics.median(values) <= median_max and (each_max is None or max(values) <= each_max)
    rule = f"median <= {median_max}" + (f", each <= {each_max}" if each_max is not None else "")
    return rule, "met" if ok else "NOT met"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", help="bench.py results files (default: results/bench_numpy_run*.md)")
    parser.add_argument("--load", default=str(RESULTS / "bench_numpy_focus_load.md"))
    parser.add_argument("--out", default=str(RESULTS / "bench_numpy_runs.md"))
    args = parser.parse_args()
    runs = args.runs or sorted(str(p) for p in RESULTS.glob("bench_numpy_run*.md"))
    if not runs:
        raise SystemExit("no runs: give bench.py results files, or write results/bench_numpy_run1.md ... first")
    tables = [step_ratios(path) for path in runs]
    names = [pathlib.Path(path).name for path in runs]
    lines = ["# Ours / PyTorch over separate full runs of bench.py", "",
             "Each column is one full run of `benchmarks/bench.py` (its own alternating rounds, medians); "
             "written by `benchmarks/summarize_runs.py` from: " + ", ".join(f"`{n}`" for n in names) + ".", "",
             "| network | batch | image | " + " | ".join(f"run {i + 1}" for i in range(len(runs)))
             + " | range | median | target | |",
             "| --- | ---: | ---: | " + " | ".join("---:" for _ in runs) + " | ---: | ---: | --- | --- |"]
    for key in tables[0]:
        values = [table[key] for table in tables if key in table]
        row = [f"{v:.2f}" for v in values]
        rule, ok = verdict(values, TARGETS[key]) if key in TARGETS else ("", "")
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(row)
                     + f" | {min(values):.2f}-{max(values):.2f} | {statistics.median(values):.2f} | {rule} | {ok} |")
    load = pathlib.Path(args.load)
    if load.exists():
        loaded = step_ratios(load)
        key = ("resnet20 (shortcut B)", "128", "32x32")
        if key in loaded:
            ok = "met" if loaded[key] <= LOAD_TARGET else "NOT met"
            lines += ["", f"Beside a memory-bound neighbour (`bench.py --focus --load`, `{load.name}`): ResNet-20 (B) "
                      f"batch 128 ours / PyTorch {loaded[key]:.2f} (target <= {LOAD_TARGET}: {ok})."]
    text = "\n".join(lines) + "\n"
    pathlib.Path(args.out).write_text(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
