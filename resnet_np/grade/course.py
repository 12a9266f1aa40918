"""What a teacher hands out and uploads: the students' handout and the Gradescope autograder.

    python -m resnet_np.grade make-handout handout.zip [--exercise ex03 ...]
    python -m resnet_np.grade make-autograder autograder.zip --exercise ex03 [--timeout 120]

The handout: the starting files of the exercises (.py, and .ipynb made by jupytext), the lessons they
need (each grader module's ``LESSONS``) and a README with the instructions. The reference solutions live
in ``tests/exercise_solutions/``, outside ``lessons/``, and nothing of them goes in.

The autograder, as Gradescope takes it (a zip with ``setup.sh`` at its root): ``setup.sh`` installs this
package from the wheel inside the zip (``pip install --no-index``: no download of the grader; NumPy and
the other run-time dependencies come from the image, or from the index when the image lacks them);
``run_autograder`` grades the files under ``/autograder/submission`` and writes
``/autograder/results/results.json`` (``python -m resnet_np.grade --gradescope``); ``exercises.json``
lists the exercises and their checks (one point each). Both commands need the source tree (a checkout of
the repository): the wheel is built from it with ``pip wheel --no-deps``, the lessons are read from it.
"""

import argparse
import io
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import zipfile

from ..atomic import write_atomically
from . import DEFAULT_TIMEOUT, EXERCISES, GradeError, _number, plan

__all__ = ["source_root", "build_wheel", "make_autograder", "make_handout", "main"]

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, when it builds the autograder's image, from /autograder/source.
# It installs the grader (resnet_np) from the wheel beside this file, without a download; NumPy and the
# package's other run-time dependencies come from the image, or from the index when the image lacks them.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
    apt-get update && apt-get install -y python3 python3-pip
fi
export PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1
"$PYTHON" -m pip install --no-index --no-deps --force-reinstall "$HERE"/resnet_np-*.whl
if ! "$PYTHON" -c "import resnet_np.grade" >/dev/null 2>&1; then
    "$PYTHON" -m pip install "numpy>=1.22" "matplotlib>=3.5" "tqdm>=4.60" "Pillow>=9" "threadpoolctl>=3"
fi
"$PYTHON" -c "import resnet_np.grade; print('resnet_np grader installed:', resnet_np.__version__)"
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for every submission (copied to /autograder/run_autograder): it grades the files
# under $ROOT/submission and writes $ROOT/results/results.json.
ROOT="${{RESNET_NP_AUTOGRADER_ROOT:-/autograder}}"
PYTHON="${{PYTHON:-python3}}"
cd "$ROOT"
exec "$PYTHON" -m resnet_np.grade --gradescope --autograder-root "$ROOT" {arguments}
"""

AUTOGRADER_README = """The autograder of resnet_np's exercises {exercises}, for Gradescope.

Upload this zip as the assignment's autograder (Configure Autograder > Zip file upload, base image Ubuntu
with Python 3.9 or newer). Students submit their exercise files, .py or .ipynb, named as handed out
(ex03_conv_backward.py; a name that contains ex03 is enough{single}). Each check is one point;
exercises.json lists them. A submission runs with a time limit of {timeout:g} s.

Try it locally: python -m resnet_np.grade --gradescope --autograder-root DIR {arguments}
grades DIR/submission and writes DIR/results/results.json.
"""

HANDOUT_README = """# resnet_np: exercises {exercises}

Each exercise asks you to DERIVE a backward pass (or a rule) and write it as a plain NumPy function.

Setup (once):

    git clone <the course's copy of resnet_np> && cd resnet_np && python -m pip install -e .

(or the wheel your teacher gives you: python -m pip install resnet_np-*.whl)

What is here:

* `exercises/`: one starting file per exercise, as a script (`.py`) and as a notebook (`.ipynb`): the
  task, the questions that lead to the derivation, the given code and the functions to write (each
  raises `NotImplementedError("TODO: ...")` until you write it). The last cell grades what you wrote.
* `lessons/`: the lessons these exercises build on (run them with `python lessons/NN_name.py --quick`,
  or open them in Jupyter with jupytext).

Work on an exercise and check it as often as you like:

    python -m resnet_np.grade exercises/ex03_conv_backward.py
    python -m resnet_np.grade exercises/ex03_conv_backward.py --hint      (the hint for your first failing check)
    python -m resnet_np.grade exercises/ex03_conv_backward.py --hint 2    (hint 2; they come one at a time)

In the notebook, the last cell does the same: `grade.check_functions("ex03", globals())`.

One line per check: PASS or FAIL, the relative error and, on FAIL, what to look at; known mistakes are
named. Derive; do not borrow: a file that uses the library's own implementation of what the exercise
derives (for example `resnet_np.layers.col2im` in exercise 3) scores 0.

Hand in: the exercise file, with its name kept (a notebook is fine too).

| exercise | what you derive and write |
| --- | --- |
{table}
"""


def source_root():
    """The repository the package runs from (setup.cfg and lessons/ beside resnet_np/), or GradeError."""
    root = pathlib.Path(__file__).resolve().parent.parent.parent
    if not ((root / "setup.cfg").is_file() or (root / "pyproject.toml").is_file()) \
            or not (root / "lessons" / "exercises").is_dir():
        raise GradeError(f"{root}: not a checkout of the resnet_np repository (no setup.cfg and lessons/exercises "
                         "beside the package): make-autograder and make-handout read the source tree; run them "
                         "from a clone (pip install -e .)")
    return root


def build_wheel(folder):
    """Build this package's wheel into ``folder`` with ``pip wheel --no-deps``, offline; its path."""
    root = source_root()
    with tempfile.TemporaryDirectory(prefix="resnet_np_wheel_") as tmp:
        copy = pathlib.Path(tmp) / "src"  # a clean copy: the build writes its build/ and egg-info there
        shutil.copytree(root / "resnet_np", copy / "resnet_np",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        for name in ("setup.cfg", "setup.py", "pyproject.toml", "README.md", "LICENSE", "MANIFEST.in"):
            if (root / name).is_file():
                shutil.copy2(root / name, copy / name)
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                   "--disable-pip-version-check", "-q", "-w", str(folder), str(copy)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            tail = " ".join((done.stderr or done.stdout).split())[-300:]
            raise GradeError(f"pip wheel failed (setuptools and pip must be installed): {tail}")
    wheels = sorted(pathlib.Path(folder).glob("resnet_np-*.whl"))
    if not wheels:
        raise GradeError("pip wheel wrote no resnet_np wheel")
    return wheels[-1]


def _write_zip(out, members):
    """Write ``members`` ({name in the zip: bytes or str, or (data, mode)}) to the zip ``out``, atomically."""
    out = pathlib.Path(out)
    if out.suffix != ".zip":
        raise GradeError(f"{out}: the output must be a .zip file")
    if not out.parent.is_dir():
        raise GradeError(f"{out}: no folder {out.parent}")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            mode = 0o644
            if isinstance(data, tuple):
                data, mode = data
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data.encode("utf-8") if isinstance(data, str) else data)
    write_atomically(out, lambda f: f.write(buffer.getvalue()))
    return out


def _numbers(exercises):
    return [_number(e) for e in exercises] if exercises else list(EXERCISES)


def make_autograder(out, exercises, timeout=DEFAULT_TIMEOUT, visibility="visible", wheel=None):
    """Write Gradescope's autograder zip for ``exercises`` (numbers or "ex03") to ``out``."""
    numbers = _numbers(exercises)
    arguments = " ".join([f"--exercise ex{n:02d}" for n in numbers]
                         + [f"--timeout {timeout:g}", f"--visibility {visibility}"])
    with tempfile.TemporaryDirectory(prefix="resnet_np_autograder_") as tmp:
        if wheel is None:
            wheel = build_wheel(tmp)
        wheel = pathlib.Path(wheel)
        if not wheel.is_file() or not wheel.name.startswith("resnet_np-") or wheel.suffix != ".whl":
            raise GradeError(f"--wheel {wheel}: not a resnet_np wheel file")
        data = {"timeout": timeout, "visibility": visibility, "points_per_check": 1,
                "exercises": [{"exercise": f"ex{n:02d}", "title": EXERCISES[n].TITLE, "checks": list(plan(n))}
                              for n in numbers]}
        members = {
            "setup.sh": (SETUP_SH, 0o755),
            "run_autograder": (RUN_AUTOGRADER.format(arguments=arguments), 0o755),
            wheel.name: wheel.read_bytes(),
            "exercises.json": json.dumps(data, indent=1),
            "README.txt": AUTOGRADER_README.format(
                exercises=", ".join(f"ex{n:02d}" for n in numbers), timeout=timeout, arguments=arguments,
                single="; a single file of any name when the assignment has one exercise" if len(numbers) == 1
                else ""),
        }
        return _write_zip(out, members)


def _notebook(path):
    try:
        import jupytext
    except ImportError:
        raise GradeError("make-handout writes the notebooks with jupytext: pip install jupytext") from None
    return jupytext.writes(jupytext.read(path), fmt="ipynb")


def _first_line(path):
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# Exercise"):
            return line.lstrip("# ").strip()
    return path.stem


def make_handout(out, exercises):
    """Write the students' zip for ``exercises``: starting files (.py, .ipynb), lessons, README."""
    root = source_root()
    numbers = _numbers(exercises)
    folder = "resnet_np_exercises"
    members, lessons, rows = {}, [], []
    for n in numbers:
        module = EXERCISES[n]
        stub = root / "lessons" / "exercises" / f"{module.__name__.rsplit('.', 1)[1]}.py"
        if not stub.is_file():
            raise GradeError(f"{stub}: the starting file of exercise {n} is missing")
        members[f"{folder}/exercises/{stub.name}"] = stub.read_text(encoding="utf-8")
        members[f"{folder}/exercises/{stub.stem}.ipynb"] = _notebook(stub)
        rows.append(f"| `{stub.name}` | {_first_line(stub)} |")
        lessons += [name for name in getattr(module, "LESSONS", ()) if name not in lessons]
    for name in sorted(lessons):
        lesson = root / "lessons" / name
        if not lesson.is_file():
            raise GradeError(f"{lesson}: a lesson that {name!r} names in LESSONS is missing")
        text = lesson.read_text(encoding="utf-8")
        members[f"{folder}/lessons/{name}"] = text
        if "_common" in text and (root / "lessons" / "_common.py").is_file():
            members[f"{folder}/lessons/_common.py"] = (root / "lessons" / "_common.py").read_text(encoding="utf-8")
    members[f"{folder}/README.md"] = HANDOUT_README.format(
        exercises=", ".join(f"ex{n:02d}" for n in numbers), table="\n".join(rows))
    leaked = [name for name in members if "solution" in name.lower()]
    if leaked:  # a guard against a future change of the layout
        raise GradeError(f"the handout would contain {leaked[0]}: solutions stay out")
    return _write_zip(out, members)


def main(argv):
    command, argv = argv[0], argv[1:]
    parser = argparse.ArgumentParser(prog=f"python -m resnet_np.grade {command}", description=(
        "Write the students' handout (the exercises as .py and .ipynb, the lessons they need, instructions; "
        "no solution)" if command == "make-handout" else
        "Write Gradescope's autograder zip: setup.sh (installs this package from the wheel inside), "
        "run_autograder (grades /autograder/submission, writes /autograder/results/results.json) and "
        "exercises.json"))
    parser.add_argument("out", help="the zip file to write")
    parser.add_argument("--exercise", action="append", metavar="EX",
                        help="an exercise to include (ex03); repeat it for several; default: all")
    if command == "make-autograder":
        parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                            help=f"time limit per submitted file (default {DEFAULT_TIMEOUT:g})")
        parser.add_argument("--visibility", choices=("visible", "hidden", "after_due_date", "after_published"),
                            default="visible", help="when students see each check (default visible)")
        parser.add_argument("--wheel", help="a resnet_np wheel to ship instead of building one from the source")
    args = parser.parse_args(argv)
    try:
        if command == "make-handout":
            out = make_handout(args.out, args.exercise)
        else:
            if args.timeout <= 0:
                parser.error(f"--timeout must be a positive number of seconds, not {args.timeout:g}")
            out = make_autograder(args.out, args.exercise, args.timeout, args.visibility, args.wheel)
    except GradeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {args.out}: {e.strerror}", file=sys.stderr)
        return 1
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
    print(f"{out}: {len(names)} files, {os.path.getsize(out) / 1e6:.1f} MB")
    return 0
