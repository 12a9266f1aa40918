"""House habits: ruff is clean (pyflakes, pycodestyle, isort; the configuration is in pyproject.toml)."""

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _ruff():
    try:
        import ruff  # noqa: F401
    except ImportError:
        found = shutil.which("ruff")
        if found is None:
            pytest.skip("ruff is not installed (pip install -e '.[test]')")
        return [found]
    return [sys.executable, "-m", "ruff"]


def test_ruff_check_is_clean():
    result = subprocess.run(_ruff() + ["check", "--no-cache", "--output-format", "concise", "."], cwd=str(ROOT),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"ruff check . found problems (ruff check --fix . mends some):\n" \
                                   f"{result.stdout[-8000:]}{result.stderr[-2000:]}"
