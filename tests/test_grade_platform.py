"""The course platform: Gradescope's results.json, the autograder zip end to end in a fresh venv, the handout."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import numpy
import pytest

from resnet_np import grade
from resnet_np.grade import course

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "tests" / "exercise_solutions"
EXERCISES = ROOT / "lessons" / "exercises"
EX07 = (SOLUTIONS / "ex07_sgd_momentum.py").read_text()
EX06 = (SOLUTIONS / "ex06_softmax_cross_entropy.py").read_text()
DECAY = "dw + weight_decay * w"  # the weight decay term of the ex07 solution (its sign flipped: a partly wrong one)


def test_the_decay_term_is_in_the_solution():
    assert DECAY in EX07


# ----------------------------------------------------------------------------
# results.json
# ----------------------------------------------------------------------------

def test_gradescope_results_json(tmp_path, capsys):
    root = tmp_path / "autograder"
    (root / "submission").mkdir(parents=True)
    (root / "submission" / "ex07_sgd_momentum.py").write_text(EX07.replace(DECAY, "dw - weight_decay * w"))
    (root / "submission" / "notes.txt").write_text("not graded")
    code = grade.main(["--gradescope", "--autograder-root", str(root), "--exercise", "ex07", "--exercise", "ex06"])
    assert code == 0, capsys.readouterr()
    results = json.loads((root / "results" / "results.json").read_text())
    assert {"score", "max_score", "output", "visibility", "stdout_visibility", "tests"} <= set(results)
    tests = results["tests"]
    assert all({"name", "score", "max_score", "status", "output", "visibility"} <= set(t) for t in tests)
    ex07 = [t for t in tests if t["name"].startswith("ex07")]
    ex06 = [t for t in tests if t["name"].startswith("ex06")]
    assert len(ex07) == 5 and ex07[0]["name"] == f"ex07 {grade.HONEST}" and ex07[0]["max_score"] == 0
    assert [t["status"] for t in ex07[1:]] == ["passed", "failed", "passed", "failed"]
    assert "weight decay pulls the weights toward 0" in ex07[2]["output"]
    # ex06 has no file: every check is there, failed, with the reason (the max score stays the same)
    assert len(ex06) == 4 and all(t["score"] == 0 and "no file for exercise 6" in t["output"] for t in ex06)
    assert results["score"] == 2 and results["max_score"] == 8
    assert "hint" in results["output"] and "ex06" in results["output"]


def test_gradescope_root_that_cannot_be_written(tmp_path, capsys):
    (tmp_path / "submission").mkdir()
    (tmp_path / "submission" / "ex07.py").write_text(EX07)
    (tmp_path / "results").write_text("a file where the folder should be")
    code = grade.main(["--gradescope", "--autograder-root", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "cannot write the results" in err and "Traceback" not in err


# ----------------------------------------------------------------------------
# The autograder zip, end to end
# ----------------------------------------------------------------------------

def _venv(path):
    """A fresh venv whose only package is what setup.sh installs; NumPy & co. seen through a .pth (offline)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    python = path / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    dependencies = pathlib.Path(numpy.__file__).resolve().parent.parent  # numpy, pip, ... (not resnet_np)
    pathlib.Path(purelib, "dependencies.pth").write_text(str(dependencies) + "\n")
    return python


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """The zip unpacked as Gradescope lays it out, setup.sh run in a fresh venv: (root, env)."""
    tmp = tmp_path_factory.mktemp("gradescope")
    upload = tmp / "autograder.zip"
    assert course.main(["make-autograder", str(upload), "--exercise", "ex07", "--timeout", "15"]) == 0
    root = tmp / "autograder"
    with zipfile.ZipFile(upload) as archive:
        names = archive.namelist()
        assert "setup.sh" in names and "run_autograder" in names and "exercises.json" in names
        assert any(n.startswith("resnet_np-") and n.endswith(".whl") for n in names)
        archive.extractall(root / "source")
    for name in ("setup.sh", "run_autograder"):
        (root / "source" / name).chmod(0o755)
    shutil.copy2(root / "source" / "run_autograder", root / "run_autograder")  # where the platform puts it
    python = _venv(tmp / "venv")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PYTHON=str(python), RESNET_NP_AUTOGRADER_ROOT=str(root), PIP_NO_INDEX="1")
    setup = subprocess.run(["bash", str(root / "source" / "setup.sh")], capture_output=True, text=True, env=env,
                           cwd=str(root / "source"), timeout=300)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    where = subprocess.run([str(python), "-c", "import resnet_np; print(resnet_np.__file__)"], capture_output=True,
                           text=True, env=env, cwd=str(tmp)).stdout
    assert str(tmp / "venv") in where, f"resnet_np must come from the wheel in the venv, not {where}"
    data = json.loads((root / "source" / "exercises.json").read_text())
    assert data["exercises"][0]["exercise"] == "ex07" and len(data["exercises"][0]["checks"]) == 4
    return root, env


SUBMISSIONS = {  # file name as the platform keeps it, its text, the score out of 4
    "correct": ("sgd_momentum.py", EX07, 4),
    "partly wrong": ("ex07_sgd_momentum.py", EX07.replace(DECAY, "dw - weight_decay * w"), 2),
    "crashing": ("ex07_sgd_momentum.py", EX07 + "\nraise RuntimeError('boom')\n", 0),
    "infinite loop": ("ex07_sgd_momentum.py", EX07.replace("    return w, v", "    while True:\n        pass"), 0),
    "early exit": ("ex07_sgd_momentum.py", "import sys\nsys.exit(0)\n" + EX07, 0),
    "notebook": ("ex07_sgd_momentum.ipynb", json.dumps({"cells": [{"cell_type": "code", "source": EX07}],
                                                        "metadata": {}, "nbformat": 4, "nbformat_minor": 5}), 4),
}


@pytest.mark.parametrize("kind", SUBMISSIONS)
def test_autograder_end_to_end(kind, platform):
    root, env = platform
    name, text, score = SUBMISSIONS[kind]
    for folder in ("submission", "results"):
        shutil.rmtree(root / folder, ignore_errors=True)
        (root / folder).mkdir()
    (root / "submission" / name).write_text(text)
    run = subprocess.run(["bash", str(root / "run_autograder")], capture_output=True, text=True, env=env,
                         cwd=str(root), timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    results = json.loads((root / "results" / "results.json").read_text())
    assert results["max_score"] == 4 and results["score"] == score, json.dumps(results, indent=1)
    assert len(results["tests"]) == 5
    failed = [t["output"] for t in results["tests"] if t["status"] == "failed"]
    expected = {"crashing": "RuntimeError: boom", "infinite loop": "time limit", "early exit": "exits when it is "
                "imported", "partly wrong": "weight decay pulls the weights toward 0"}.get(kind)
    if expected:
        assert any(expected in output for output in failed), failed


# ----------------------------------------------------------------------------
# The handout
# ----------------------------------------------------------------------------

def _answer_lines(solution, stub):
    """The lines of a solution that are its answer: code not in the starting file (setup lines left out)."""
    stub_code = {line.split("  #")[0].strip() for line in stub.splitlines()}
    for line in solution.split('"""', 2)[-1].splitlines():
        line = line.split("  #")[0].strip()
        if len(line) > 15 and not line.startswith(("#", "def ", "import ", "from ", "return ")) \
                and "np.zeros(" not in line and "= im2col(x" not in line and line not in stub_code:
            yield line


def test_handout_has_the_exercises_and_no_solution(tmp_path, capsys):
    out = tmp_path / "handout.zip"
    assert grade.main(["make-handout", str(out)]) == 0, capsys.readouterr()
    with zipfile.ZipFile(out) as archive:
        texts = {name: archive.read(name).decode("utf-8") for name in archive.namelist()}
    stubs = sorted(EXERCISES.glob("ex[0-9][0-9]_*.py"))
    for stub in stubs:
        assert texts[f"resnet_np_exercises/exercises/{stub.name}"] == stub.read_text()
        notebook = json.loads(texts[f"resnet_np_exercises/exercises/{stub.stem}.ipynb"])
        assert notebook["cells"][0]["cell_type"] == "markdown"
        for lesson in grade.EXERCISES[int(stub.name[2:4])].LESSONS:
            assert f"resnet_np_exercises/lessons/{lesson}" in texts, lesson
    assert "python -m resnet_np.grade" in texts["resnet_np_exercises/README.md"]
    assert not any("solution" in name for name in texts)
    squeezed = {name: "".join(text.split()) for name, text in texts.items()}
    for stub in stubs:
        answers = list(_answer_lines((SOLUTIONS / stub.name).read_text(), stub.read_text()))
        assert answers, stub.name
        # A later exercise may give an earlier one's answer as its given code (ex03 gives ex02's conv_forward).
        later = {f"exercises/{s.stem}{ext}" for s in stubs if s.name > stub.name for ext in (".py", ".ipynb")}
        for line in answers:
            holders = [name for name, text in squeezed.items() if "".join(line.split()) in text
                       and name.split("/", 1)[1] not in later]
            assert not holders, f"{holders} hold the answer line {line!r} of {stub.name}"


def test_handout_of_some_exercises(tmp_path, capsys):
    out = tmp_path / "week3.zip"
    assert grade.main(["make-handout", str(out), "--exercise", "ex03"]) == 0
    with zipfile.ZipFile(out) as archive:
        names = set(archive.namelist())
    assert {"resnet_np_exercises/exercises/ex03_conv_backward.py", "resnet_np_exercises/lessons/03_conv_backward.py"} \
        <= names and not any("ex04" in name for name in names)
    assert grade.main(["make-handout", str(tmp_path / "x.tar")]) == 1
    assert "must be a .zip" in capsys.readouterr().err
