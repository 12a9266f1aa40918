"""The README's main command runs the demo: it must gradient-check and learn."""

from resnet_np.__main__ import main as cli
from resnet_np.demo import main as demo


def test_demo_learns_the_bars(capsys):
    accuracy = demo(steps=150)
    out = capsys.readouterr().out
    assert "worst relative error" in out and "FAIL" not in out
    assert accuracy >= 0.9


def test_cli_demo_runs(capsys):
    assert cli(["demo", "--steps", "2"]) == 0
    assert "test accuracy" in capsys.readouterr().out


def test_a_diverging_demo_is_one_line_without_numpys_warnings(capsys):
    """--lr 1e30 diverges: the message that says so, with none of NumPy's overflow warnings before it (nor from
    the engine's helper threads, whose error state is the caller's)."""
    assert cli(["demo", "--steps", "2", "--lr", "1e30"]) == 1
    err = capsys.readouterr().err
    assert "training has diverged" in err and "RuntimeWarning" not in err and err.count("\n") == 1, err
