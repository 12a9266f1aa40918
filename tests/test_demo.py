"""The README's main command runs the demo: it must gradient-check and learn."""

import os
import pathlib
import subprocess
import sys

from resnet_np.__main__ import main as cli
from resnet_np.demo import main as demo

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_demo_learns_the_bars(capsys):
    accuracy = demo(steps=150)
    out = capsys.readouterr().out
    assert "worst relative error" in out and "FAIL" not in out
    assert accuracy >= 0.9


def test_cli_demo_runs(capsys):
    assert cli(["demo", "--steps", "2"]) == 0
    assert "test accuracy" in capsys.readouterr().out


def test_a_diverging_demo_is_one_line_without_numpys_warnings():
    """--lr 1e30 diverges: the message that says so, with none of NumPy's overflow warnings before it (nor from
    the engine's helper threads, whose error state is the caller's). In a process of its own: pytest would
    collect the warnings instead of letting them reach stderr."""
    env = dict(os.environ, RESNET_NP_NUM_THREADS="2", PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-m", "resnet_np", "demo", "--steps", "2", "--lr", "1e30"],
                            capture_output=True, text=True, env=env, timeout=300)
    err = result.stderr
    assert result.returncode == 1 and "training has diverged" in err, err
    assert "RuntimeWarning" not in err and err.count("\n") == 1, err
