"""Every lesson runs from top to bottom (with --quick) and saves its figures."""

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
LESSONS = sorted((ROOT / "lessons").glob("[0-9][0-9]_*.py"))


def test_there_are_lessons():
    assert LESSONS


def test_the_course_is_complete_and_listed():
    """Lessons 01, 02, ... with none missing (12 at least), each in the percent format with --quick and --out,
    each in the README's table."""
    numbers = sorted(int(p.name[:2]) for p in LESSONS)
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 12, numbers
    readme = (ROOT / "lessons" / "README.md").read_text()
    for lesson in LESSONS:
        text = lesson.read_text()
        assert text.startswith("# %% [markdown]"), f"{lesson.name}: not in the percent format"
        assert "--quick" in text and "--out" in text, f"{lesson.name}: needs --quick and --out"
        assert f"`{lesson.name}`" in readme, f"{lesson.name} is missing from lessons/README.md"


# With the docs packages installed (the test extra), tests/test_notebooks.py runs every lesson once, as a
# notebook, in the course site's build, with the same checks: the script runs here only without them.
_AS_NOTEBOOKS = all(importlib.util.find_spec(name) is not None for name in ("sphinx", "myst_nb", "nbclient"))


@pytest.mark.skipif(_AS_NOTEBOOKS, reason="run as a notebook by tests/test_notebooks.py (the site's build)")
@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem)
def test_lesson_runs(lesson, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    result = subprocess.run([sys.executable, str(lesson), "--quick", "--out", str(tmp_path)],
                            capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert list(tmp_path.glob("*.png")), "the lesson saved no figure"


def test_quick_lessons_never_download(tmp_path, monkeypatch):
    """Without MNIST, --quick falls back to synthetic digits instead of downloading."""
    import resnet_np.data.download as download

    def refuse(*args, **kwargs):
        raise AssertionError("a --quick lesson tried to download")

    monkeypatch.setattr(download, "download", refuse)
    monkeypatch.setenv("RESNET_NP_DATA", str(tmp_path))
    spec = importlib.util.spec_from_file_location("lessons_common", ROOT / "lessons" / "_common.py")
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    train, test, source = common.load_digits(quick=True, synthetic_sizes=(200, 50))
    assert source == "synthetic digits"
    assert train.images.shape == (200, 1, 28, 28) and test.images.shape == (50, 1, 28, 28)
    assert set(train.labels.tolist()) == set(range(10))
    assert not any(tmp_path.iterdir()), "nothing may be written where the data would go"


def test_a_lesson_without_its_dataset_stops_with_the_loaders_message_not_a_traceback(tmp_path):
    """Lesson 15 needs CIFAR-10's test images, and --quick never downloads: without the files it ends with the
    message that says which file is missing and where to put it (exit status 1), not a traceback."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg", RESNET_NP_DATA=str(tmp_path))
    result = subprocess.run([sys.executable, str(ROOT / "lessons" / "15_input_gradient.py"), "--quick", "--out",
                             str(tmp_path / "out")], capture_output=True, text=True, env=env, cwd=str(tmp_path),
                            timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "cifar-10-python.tar.gz" in result.stderr and "--quick never downloads" in result.stderr


def test_a_full_lesson_whose_download_fails_stops_with_the_message(tmp_path, monkeypatch):
    """Without --quick, lessons download MNIST; when that fails (offline), the lesson ends with the loader's
    message (which files, where to put them) as SystemExit, not an exception's traceback."""
    import resnet_np.data.download as download

    def offline(name, folder, expected_md5, mirrors):   # what download() returns when every mirror fails
        return [f"{mirrors[0]}{name}: URLError: no network"]

    monkeypatch.setattr(download, "download", offline)
    monkeypatch.setenv("RESNET_NP_DATA", str(tmp_path))
    spec = importlib.util.spec_from_file_location("lessons_common", ROOT / "lessons" / "_common.py")
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    with pytest.raises(SystemExit) as stop:
        common.load_digits(quick=False)
    message = str(stop.value.code)
    assert message.startswith("this lesson needs its dataset") and "train-images-idx3-ubyte.gz" in message, message
