"""The benchmark scripts run (on tiny sizes) and write their results files."""

import pathlib
import subprocess
import sys

import numpy as np

from _mnist import needs_mnist

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_col2im_benchmark_runs(tmp_path):
    out = tmp_path / "col2im.md"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_col2im.py"), "--batch", "2", "--repeat", "1",
                    "--out", str(out)], check=True, capture_output=True, cwd=str(tmp_path))
    text = out.read_text()
    assert "Machine:" in text and "np.add.at" in text and text.count("|") > 20


def test_winograd_probe_checks_itself_and_writes_its_verdict(tmp_path):
    # The script asserts its F(2x2, 3x3) convolution against conv2d_naive before timing anything.
    out = tmp_path / "winograd.md"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "winograd_probe.py"), "--batch", "2", "--repeat", "1",
                    "--out", str(out)], check=True, capture_output=True, cwd=str(tmp_path))
    text = out.read_text()
    assert "Machine:" in text and "kernel" in text and "Verdict:" in text and text.count("\n| ") == 5


def test_benchmark_suite_runs_quick(tmp_path):
    out = tmp_path / "bench.md"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--quick", "--repeat", "1",
                    "--rounds", "2", "--out", str(out)], check=True, capture_output=True, cwd=str(tmp_path))
    text = out.read_text()
    assert "Matrix-product peak" in text and "Training steps" in text and "R18 conv3x3" in text
    assert "grouped conv3x3" in text and "kernel" in text  # the grouped row, and which BLAS kernel ran
    steps = [line for line in text.splitlines() if line.startswith("| resnet")]
    assert len(steps) == 3, steps
    try:
        import torch  # noqa: F401
    except ImportError:
        return
    assert all(line.count("x |") == 1 for line in steps), steps  # a ratio against PyTorch on every step row


@needs_mnist
def test_transfer_benchmark_runs_quick(tmp_path):
    """benchmarks/transfer.py on tiny sizes: every method of every setting of every draw lands in the table."""
    out, plot = tmp_path / "transfer.md", tmp_path / "transfer.png"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "transfer.py"), "--quick", "--seeds", "1,2",
                    "--work", str(tmp_path / "work"), "--results", str(out), "--plot", str(plot)],
                   check=True, capture_output=True, cwd=str(tmp_path))
    text = out.read_text()
    assert "Machine:" in text and "draws where fine-tune wins" in text
    runs = [line for line in text.splitlines() if line.startswith("| random crops |")
            or line.startswith("| no augmentation |")]
    assert len(runs) == 2 * 2 + 2 * 2 * 3, runs  # the summary rows, then one row per run (two draws each)
    assert all(line.count("%") == 2 for line in runs[4:]), runs[4:]
    assert plot.stat().st_size > 10_000


def test_scaling_benchmark_runs_quick(tmp_path):
    """benchmarks/scaling.py on tiny sizes: the three tables (batch, depth, width) and the figure."""
    out = tmp_path / "scaling.md"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scaling.py"), "--quick", "--repeat", "1",
                    "--out", str(out)], check=True, capture_output=True, cwd=str(tmp_path))
    text = out.read_text()
    assert "Against the batch size" in text and "Against the depth" in text and "Against the width" in text
    rows = [line for line in text.splitlines() if line.startswith("| resnet") or line.startswith("| wrn")]
    assert len(rows) == 3 + 2 + 2, rows
    assert (tmp_path / "scaling.png").stat().st_size > 10_000


def _bench_file(path, ratios):
    """A bench.py results file with the training-step rows of ``ratios`` {(network, batch, image): ratio}."""
    rows = "\n".join(f"| {net} | {batch} | {image} | 0.500 | 0.400 | {ratio:.2f}x | 1 | 1 |"
                     for (net, batch, image), ratio in ratios.items())
    path.write_text("# resnet_np benchmark (numpy)\n\n## Training steps\n\n| network | batch | image | ours (s) | "
                    "PyTorch (s) | ours / PyTorch | ours images/s | PyTorch images/s |\n| --- |\n" + rows + "\n")
    return str(path)


def test_summarize_runs_gives_the_range_median_and_verdicts(tmp_path):
    r128, r32, r18 = ("resnet20 (shortcut B)", "128", "32x32"), ("resnet20 (shortcut B)", "32", "32x32"), \
        ("resnet18", "16", "224x224")
    runs = [_bench_file(tmp_path / f"run{i}.md", {r128: a, r32: b, r18: c})
            for i, (a, b, c) in enumerate([(0.98, 1.20, 0.9), (1.20, 1.30, 0.95), (0.95, 1.10, 0.99)])]
    load = _bench_file(tmp_path / "load.md", {r128: 1.25, r32: 0.9})
    out = tmp_path / "summary.md"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "summarize_runs.py"), *runs, "--load", load,
                    "--out", str(out)], check=True, capture_output=True)
    lines = out.read_text().splitlines()
    row = next(line for line in lines if line.startswith("| resnet20 (shortcut B) | 128 "))
    # median 0.98 <= 1.0, but one run at 1.20 > 1.15: not met
    assert "| 0.98 | 1.20 | 0.95 | 0.95-1.20 | 0.98 |" in row and row.endswith("| NOT met |")
    row = next(line for line in lines if line.startswith("| resnet20 (shortcut B) | 32 "))
    assert "| 1.10-1.30 | 1.20 |" in row and row.endswith("| NOT met |")   # one run under 1.15, the median not
    assert next(line for line in lines if line.startswith("| resnet18 ")).endswith("| met |")
    assert "ours / PyTorch 1.25 (target <= 1.2: NOT met)" in out.read_text()


def test_profile_parts_counts_every_parallel_call_and_puts_the_engine_back(monkeypatch):
    """benchmarks/profile_parts.py on a tiny step: each kind of part per step, and threads._run_parts restored."""
    from benchmarks import profile_parts
    from resnet_np import fast
    monkeypatch.setattr(fast.threads, "MIN_PART_BYTES", 1)          # every pass in parts, even on tiny maps
    old_threads = fast.get_num_threads()
    fast.set_num_threads(2)
    run_parts = fast.threads._run_parts
    try:
        step_time, totals, alone = profile_parts.profile("resnet20", 4, 2, 1)
    finally:
        fast.set_num_threads(old_threads)
    assert fast.threads._run_parts is run_parts
    # ResNet-20: 16 of its 19 convolutions are 3x3 at stride 1 (the rows route), forward and backward once a step.
    assert totals["row_taps: conv2d.images"][0] == 16 and totals["row_taps: conv2d_backward.images"][0] == 16
    inside = sum(t[1] for t in totals.values())
    assert 0 < inside < step_time
    assert set(alone) == set(totals) and all(t > 0 for t in alone.values())


def test_depth_table_reads_resumed_logs_and_counts_hours_at_the_quiet_pace(tmp_path):
    """benchmarks/depth_cifar10.py: a resumed epoch printed twice counts once (its last record), and an epoch
    whose wall time includes a pause of the run does not stretch the hours (the median epoch's pace)."""
    from benchmarks import depth_cifar10
    line = "epoch {}/{}: train loss 0.5, train acc 80.00%, test loss 0.7, test acc {}% (80 images/s, {} s)"
    log20 = tmp_path / "r20.log"
    log20.write_text("\n".join([line.format(1, 2, 60.0, 600), "=== resumed ===", line.format(1, 2, 61.0, 600),
                                line.format(2, 2, 91.5, 600)]) + "\n")
    log56 = tmp_path / "r56.log"
    log56.write_text("\n".join(line.format(e, 100, 50.0 + e, 36000 if e == 2 else 600) for e in (1, 2, 3)) + "\n")
    rows, total = depth_cifar10.read_log(log20)
    assert total == 2 and [r[0] for r in rows] == [1, 2] and abs(rows[0][1] - 39.0) < 1e-9
    text = depth_cifar10.table({"ResNet-20": depth_cifar10.read_log(log20),
                                "ResNet-56": depth_cifar10.read_log(log56)})
    ours = [row for row in text.splitlines() if "resnet_np" in row]
    assert ours[0].endswith("| 8.50 % | 91.50 % | 2 | 0.3 |"), ours[0]              # 2 epochs x 600 s
    assert "(epoch 3 of 100: still training)" in ours[1] and ours[1].endswith("| 3 | 0.5 |"), ours[1]  # 3 x 600 s


def test_row_taps_parts_times_every_chunk_of_each_part(monkeypatch):
    """benchmarks/row_taps_parts.py: each round's copies and products cover every chunk of the images (not the
    first chunk only), once per part, and the additions are what the product alone leaves of the engine's call."""
    from benchmarks import row_taps_parts
    from resnet_np.fast import row_taps
    per_image = 3 * 8 * (8 + 1) * 8 * 4                 # three shifted copies of one 8-channel 8x8 image, float32
    monkeypatch.setattr(row_taps, "CHUNK_BYTES", 4 * per_image)
    loads, products = [], []
    load = row_taps.Chunk.load
    matmul = np.matmul
    monkeypatch.setattr(row_taps.Chunk, "load", lambda self, images: loads.append(len(images)) or load(self, images))
    monkeypatch.setattr(np, "matmul", lambda *a, **k: products.append(a[1].shape) or matmul(*a, **k))
    old_threads = row_taps.threads.get_num_threads()
    row_taps.threads.set_num_threads(1)
    try:
        N, B, ms = row_taps_parts.measure(8, 8, 12, 2, np.random.default_rng(0))
    finally:
        row_taps.threads.set_num_threads(old_threads)
    assert (N, B) == (12, 4)
    # One load to start, then per round: the copies part and the whole conv2d, three chunks of 4 images each.
    assert loads == [4] + [4] * 3 * 2 * 2, loads
    # Per round: the product part, the product inside the engine's call, the whole conv2d's: three chunks each.
    assert len(products) == 3 * 3 * 2, products
    assert set(ms) == set(row_taps_parts.PARTS) and all(v >= 0 for v in ms.values()) and ms["product"] > 0
    assert abs(row_taps_parts.conv_gflop(1, 1, 1) - 18e-9) < 1e-20


def test_row_taps_parts_writes_its_table_and_gives_the_threads_back(tmp_path):
    from benchmarks import row_taps_parts
    from resnet_np import fast
    before = fast.get_num_threads()
    out = tmp_path / "parts.md"
    assert row_taps_parts.main(["--images", "1", "--rounds", "1", "--out", str(out)]) == 0
    assert fast.get_num_threads() == before
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ") and "->" in line]
    assert [row.split(" | ")[0] for row in rows] == ["| 16->16 @32x32", "| 32->32 @16x16", "| 64->64 @8x8"]
    assert "kernel" in out.read_text()


def test_threads_vs_processes_runs_the_pair_at_once_on_half_the_batch_each(monkeypatch):
    """benchmarks/threads_vs_processes.py: the two one-thread processes of a round both start before either is
    waited for, each on half the batch; the report's per-batch time of the pair is the slower one's."""
    from benchmarks import threads_vs_processes as tvp
    events = []

    class Fake:
        def __init__(self, threads, batch):
            self.threads, self.batch, self.returncode = threads, batch, 0

        def communicate(self):
            events.append(("wait", self.threads, self.batch))
            return f"{0.1 * self.batch / (1 + (self.threads == 2))}\n", None

    def launch(kind, threads, batch, steps):
        assert kind == "ours"
        events.append(("start", threads, batch))
        return Fake(threads, batch)

    monkeypatch.setattr(tvp, "launch", launch)
    seconds = tvp.one_round(8, 1, tvp.WAYS)
    assert events == [("start", 1, 8), ("wait", 1, 8), ("start", 2, 8), ("wait", 2, 8),
                      ("start", 1, 4), ("start", 1, 4), ("wait", 1, 4), ("wait", 1, 4)], events
    assert seconds == {tvp.WAYS[0]: 0.8, tvp.WAYS[1]: 0.4, tvp.WAYS[2]: 0.4}
    text = tvp.report([seconds, {tvp.WAYS[0]: 1.0, tvp.WAYS[1]: 0.6, tvp.WAYS[2]: 0.5}], 8, 1)
    assert "| 1 process x 2 threads | 0.500 | 0.400, 0.600 | 1.80x |" in text, text
    assert "Two threads take 1.11x the time of two processes" in text   # 0.5 against 0.45


def test_threads_vs_processes_measures_for_real(tmp_path):
    out = tmp_path / "tvp.md"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "threads_vs_processes.py"), "--batch", "4", "--steps",
                    "1", "--rounds", "1", "--out", str(out)], check=True, capture_output=True)
    from benchmarks import threads_vs_processes as tvp
    rows = {line.split(" | ")[0][2:]: float(line.split(" | ")[1]) for line in out.read_text().splitlines()
            if line.startswith("| ") and not line.startswith("| way") and not line.startswith("| ---")}
    assert list(rows) == tvp.available_ways() and all(v > 0 for v in rows.values()), rows
