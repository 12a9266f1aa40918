"""The course site, built once per test session by its documented command (tests/test_docs.py and
tests/test_notebooks.py share the build: the lessons run once, as notebooks, in quick mode)."""

import fcntl
import functools
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
HTML = DOCS / "_build" / "html"
# The documented command (README, "Start the course"; docs/course.md, "The course as a website and as notebooks").
COMMAND = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html"]
NEEDED = ("sphinx", "myst_nb", "furo", "jupytext", "nbclient", "ipykernel", "sphinx-mathjax-offline")


def missing():
    """The docs packages that are not installed."""
    return [name for name in NEEDED if importlib.util.find_spec(name) is None]


def needs_docs_packages():
    lacking = missing()
    if lacking:
        pytest.skip(f"the docs packages are not installed ({', '.join(lacking)}): pip install -e '.[test]'")


def _run_build():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    result = subprocess.run(COMMAND, cwd=str(ROOT), capture_output=True, text=True, env=env, timeout=1200)
    return result.returncode, result.stdout + result.stderr, time.perf_counter() - start


@functools.lru_cache(maxsize=None)
def build():
    """Run the documented build command once per test run; returns (returncode, output, seconds).

    Under pytest-xdist (`-n auto`) each worker process may ask for the site: the first one builds it and
    the others wait for that build and read its result from a file, as two builds writing into one folder
    at once spoil each other (and a second build would run every lesson again).
    """
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if not run:
        return _run_build()
    folder = DOCS / "_build"
    folder.mkdir(exist_ok=True)
    record = folder / f".tests-build-{run}.json"
    with open(folder / ".tests-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if record.exists():
            return tuple(json.loads(record.read_text()))
        for old in folder.glob(".tests-build-*.json"):  # other test runs' results
            old.unlink()
        result = _run_build()
        record.write_text(json.dumps(result))
        return result


def built_site():
    """The built site's folder, or a failed test that shows the build's output."""
    needs_docs_packages()
    code, output, _ = build()
    assert code == 0, f"{' '.join(COMMAND[1:])} failed:\n{output[-6000:]}"
    return HTML


def course_notebooks():
    """docs/_ext/course_notebooks.py, the one place that turns lessons into notebooks and runs them."""
    needs_docs_packages()
    spec = importlib.util.spec_from_file_location("course_notebooks", DOCS / "_ext" / "course_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
