"""benchmarks/gpu_check.py, the prepared GPU check, runs end to end on the CuPy stand-in (``--dry-run``).

No GPU is here: the dry run checks that every stage of the script works
(the CuPy tests stage is left out: tests/test_cupy.py runs in CI anyway), so
the day a GPU machine is available the check runs there first time.
"""

import pathlib
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from test_cupy import CASES  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_gpu_check_dry_run_writes_every_section(tmp_path):
    out = tmp_path / "bench_cupy.md"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry-run", "--skip", "tests",
                             "--repeat", "1", "--out", str(out)], capture_output=True, text=True, cwd=str(tmp_path),
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = out.read_text()
    assert "DRY RUN on the stand-in" in text and "says nothing about a GPU" in text
    for heading in ("## 2. Gradient check", "## 3. Training steps", "## 4. One CIFAR-10 epoch"):
        assert heading in text, heading
    assert text.count("| ok |") == len(CASES) and "FAILED" not in text  # every layer of tests/test_cupy.py
    assert "| resnet20 |" in text and "| resnet50 |" in text


def test_gpu_check_refuses_to_overwrite_the_gpu_results_in_a_dry_run(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry-run"],
                            capture_output=True, text=True, cwd=str(tmp_path), timeout=120)
    assert result.returncode != 0 and "--out" in result.stderr
