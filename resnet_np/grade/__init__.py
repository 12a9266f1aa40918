"""The grader of the classroom exercises in ``lessons/exercises/``.

    python -m resnet_np.grade lessons/exercises/ex03_conv_backward.py
    python -m resnet_np.grade lessons/exercises/ex0*.py             (several at once)
    python -m resnet_np.grade lessons/exercises/ex03_conv_backward.py --hint      (the first hint)
    python -m resnet_np.grade lessons/exercises/ex03_conv_backward.py --hint 2    (the next one)

In a notebook (or ``python ex03_conv_backward.py``) the exercise's last cell
grades the functions it defined: ``grade.check_functions("ex03", globals())``,
and ``grade.hint("ex03", 1)`` gives the first hint.

It imports the student's file by its path, tells the exercise from the file
name (``ex01`` ... ``ex09``), runs that exercise's checks and prints one line
per check: which check, PASS or FAIL, the relative error and, on FAIL, what
to look at::

    PASS  dw: finite differences, stride 1, pad 1        rel error 3.1e-11
    FAIL  dx: finite differences, stride 1, pad 1        rel error 2.7e-01  hint: col2im must ADD ...

The relative error is the one of ``resnet_np.gradcheck``:
max|a - b| / max(1e-8, max(|a| + |b|)). Values are compared with the
library's layers; gradients with central differences in float64 for a
RANDOM upstream gradient (never the gradient of ``sum(out)``, which is zero
for batch norm whatever one forgets).

The messages come from a diagnosis, not from a table of error messages: each
check also computes the answers that typical mistakes give (the weight
gradient transposed, col2im assigning instead of adding, the mean term of
the batch-norm backward left out, ...) and, when the student's output is one
of them, names that mistake. Otherwise the message says where to look. The
formulas themselves are the student's to derive: the hints (``--hint N``)
lead there one step at a time.

A function that still raises ``NotImplementedError`` gives "not implemented
yet"; any other exception is one FAIL line with its type and message, never
a traceback. The exit status is 0 when every check passes, 1 otherwise.

The package: ``core`` holds what every exercise's checks share, and each
exercise has one module named like its file (``ex03_conv_backward.py``)
with its ``TITLE``, its ``HINTS``, its ``PLANTED`` mistakes (what
``tests/test_grade.py`` plants in the reference solution) and ``checks(mod)``.
A new module ``exNN_name.py`` here is found by its name: adding an exercise
touches no other file of the grader.
"""

import argparse
import functools
import importlib
import importlib.util
import pathlib
import pkgutil
import re
import sys
import types

from .. import backend
from ..backend import host as np
from .core import MATCH_TOL, TOL, Check, check_shape, check_shapes, compare, randn, run_check

__all__ = ["MATCH_TOL", "TOL", "Check", "check_shape", "check_shapes", "compare", "randn", "run_check",
           "EXERCISES", "CHECKERS", "GradeError", "exercise_number", "load_exercise", "grade", "check_functions",
           "hint", "main"]


def _find_exercises():
    """{number: module} for every ``exNN_name`` module of this package."""
    found = {}
    for info in pkgutil.iter_modules(__path__):
        match = re.fullmatch(r"ex(\d\d)_\w+", info.name)
        if match:
            module = importlib.import_module(f"{__name__}.{info.name}")
            for attribute in ("TITLE", "HINTS", "PLANTED", "checks"):
                if not hasattr(module, attribute):
                    raise ImportError(f"{module.__name__} has no {attribute}: every exercise module defines "
                                      "TITLE, HINTS, PLANTED and checks(mod)")
            found[int(match.group(1))] = module
    return dict(sorted(found.items()))


EXERCISES = _find_exercises()
CHECKERS = {number: module.checks for number, module in EXERCISES.items()}


class GradeError(Exception):
    """The file cannot be graded: missing, or not an exercise."""


def _known():
    return ", ".join(f"ex{n:02d}" for n in EXERCISES)


def exercise_number(path):
    """The exercise a file is, from its name: ``ex03_conv_backward.py`` -> 3."""
    path = pathlib.Path(path)
    match = re.match(r"ex(\d\d)", path.name)
    if not match or int(match.group(1)) not in EXERCISES:
        raise GradeError(f"{path}: not an exercise file: the name must start with one of {_known()} "
                         "(for example ex03_conv_backward.py)")
    if path.suffix != ".py":
        raise GradeError(f"{path}: not a Python file")
    if not path.is_file():
        raise GradeError(f"{path}: no such file")
    return int(match.group(1))


def _number(exercise):
    """3, "ex03" or "ex03_conv_backward" -> 3."""
    match = re.match(r"(?:ex)?(\d+)", str(exercise))
    if not match or int(match.group(1)) not in EXERCISES:
        raise GradeError(f"{exercise!r} is not an exercise: one of {_known()}")
    return int(match.group(1))


def load_exercise(path):
    """Import the student's file by its path (it is not part of any package)."""
    path = pathlib.Path(path)
    spec = importlib.util.spec_from_file_location(f"_exercise_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_checks(number, load):
    """The checks of exercise ``number`` on the module ``load()`` returns, on the NumPy backend."""
    previous = backend.current()
    backend.use("numpy")
    try:
        try:
            module = load()
        except Exception as e:  # noqa: BLE001 - a syntax error, or an exception at import time
            yield run_check(f"import {getattr(load, 'name', 'the exercise')}", functools.partial(_reraise, e),
                            "the file must import without errors: run it with python first")
            return
        with np.errstate(all="ignore"):  # the wrong answers computed for the diagnosis may overflow
            yield from EXERCISES[number].checks(module)
    finally:
        backend.use(previous)


def grade(path):
    """Yield the Check of every check of the exercise in ``path`` (raises GradeError for a bad path)."""
    number = exercise_number(path)
    load = functools.partial(load_exercise, path)
    load.name = pathlib.Path(path).name
    yield from _run_checks(number, load)


def _reraise(e):
    raise e


def _report(number, label, results, hint_how):
    """Print the header, one line per check and the summary; True when every check passed."""
    print(f"{label}: exercise {number}, {EXERCISES[number].TITLE}")
    lines = []
    for result in results:
        print(result.line(), flush=True)
        lines.append(result)
    passed = sum(r.passed for r in lines)
    if passed == len(lines):
        print(f"{passed}/{len(lines)} checks pass: well done")
    else:
        print(f"{passed}/{len(lines)} checks pass; stuck? {hint_how} gives a hint, one at a time")
    return passed == len(lines)


def check_functions(exercise, namespace):
    """Grade the functions a notebook (or a script run as ``__main__``) defined: print the lines, return True
    when every check passes. ``exercise``: 3, "ex03" or "ex03_conv_backward"; ``namespace``: ``globals()``."""
    number = _number(exercise)
    module = types.SimpleNamespace(**namespace)
    return _report(number, "your functions", _run_checks(number, lambda: module),
                   f'grade.hint("ex{number:02d}", 1) (on the command line: --hint)')


def hint_text(exercise, n=1, next_how="--hint {n}"):
    """Hint ``n`` (from 1) of an exercise, with where it stands: "hint 2 of 4 (--hint 3 for the next): ..."."""
    number = _number(exercise)
    hints = EXERCISES[number].HINTS
    if not 1 <= n <= len(hints):
        return f"exercise {number} has hints 1 to {len(hints)}"
    more = f" ({next_how.format(n=n + 1)} for the next)" if n < len(hints) else " (the last one)"
    return f"hint {n} of {len(hints)}{more}: {hints[n - 1]}"


def hint(exercise, n=1):
    """Print hint ``n`` of an exercise: one at a time, from a nudge to the last step."""
    print(hint_text(exercise, n, f'grade.hint("ex{_number(exercise):02d}", {{n}})'))


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m resnet_np.grade",
        description="Check exercises from lessons/exercises/: one line per check, PASS or FAIL, the relative "
                    "error and what to look at. Exit status 0 when every check passes.")
    parser.add_argument("files", nargs="+", help="exercise files, e.g. lessons/exercises/ex03_conv_backward.py")
    parser.add_argument("--hint", type=int, nargs="?", const=1, metavar="N",
                        help="instead of grading, print hint N (1 when N is left out); hints come one at a time, "
                             "from a nudge to the last step")
    args = parser.parse_args(argv)
    all_passed = True
    for file in args.files:
        try:
            number = exercise_number(file)
        except GradeError as e:
            print(f"error: {e}", file=sys.stderr)
            all_passed = False
            continue
        if args.hint is not None:
            print(f"{file}: exercise {number}, {EXERCISES[number].TITLE}")
            print(hint_text(number, args.hint))
            continue
        all_passed = _report(number, file, grade(file), f"python -m resnet_np.grade {file} --hint") and all_passed
    return 0 if all_passed else 1
