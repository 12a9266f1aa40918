"""The grader of the classroom exercises in ``lessons/exercises/``.

    python -m resnet_np.grade lessons/exercises/ex03_conv_backward.py
    python -m resnet_np.grade lessons/exercises/ex0*.py              (several at once)
    python -m resnet_np.grade smith_1234_upload-2.py --exercise ex03  (a file of any name)
    python -m resnet_np.grade lessons/exercises/ex03_conv_backward.py --hint      (the hint where you are stuck)
    python -m resnet_np.grade lessons/exercises/ex03_conv_backward.py --hint 2    (hint 2)
    python -m resnet_np.grade --batch submissions/ --roster roster.csv          (a class: one CSV row each)
    python -m resnet_np.grade FILE --json                            (machine-readable)
    python -m resnet_np.grade --gradescope                           (Gradescope's results.json)
    python -m resnet_np.grade make-autograder autograder.zip --exercise ex03
    python -m resnet_np.grade make-handout handout.zip

In a notebook (or ``python ex03_conv_backward.py``) the exercise's last cell
grades the functions it defined: ``grade.check_functions("ex03", globals())``,
and ``grade.hint("ex03", 1)`` gives the first hint.

It tells the exercise from the file name (``ex03`` anywhere in it, or
``--exercise``), runs that exercise's checks and prints one line per check:
which check, PASS or FAIL, the relative error and, on FAIL, what to look at::

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
lead there one step at a time, and ``--hint`` alone starts at the first
failing check.

A file is graded in a child process with a time limit (``--timeout``): an
infinite loop, a ``sys.exit()`` at the top of the file or a crash of the
interpreter is a FAIL line for the check it stopped and "not run" for the
rest, never a hung or silently passing grader; every check the exercise has
is always listed, so a submission that runs none scores 0. Before it runs,
the file's syntax tree is read: a submission that uses the library's own
implementation of what the exercise derives (``DERIVES`` of its module, see
``honest.py``) is one FAIL line, "honest work", and its checks are not run.
A function that still raises ``NotImplementedError`` gives "not implemented
yet"; any other exception is one FAIL line with its type and message, never
a traceback. The exit status is 0 when every check passes, 1 otherwise.

The package: ``core`` holds what every exercise's checks share, and each
exercise has one module named like its file (``ex03_conv_backward.py``)
with its ``TITLE``, its ``HINTS``, its ``PLANTED`` mistakes (what
``tests/test_grade.py`` plants in the reference solution), ``checks(mod)``
and, optional, ``DERIVES`` (what it must not borrow from the library),
``HINT_START`` (which hint each group of checks starts at) and ``LESSONS``
(what the handout gives with it). A new module ``exNN_name.py`` here is found
by its name: adding an exercise touches no other file of the grader.
``report`` writes the roster, JSON and Gradescope's results; ``course``
makes the autograder upload and the student handout.
"""

import argparse
import concurrent.futures
import functools
import importlib
import importlib.util
import json
import math
import os
import pathlib
import pkgutil
import re
import signal
import subprocess
import sys
import tempfile
import types
from dataclasses import dataclass

from .. import backend
from ..backend import host as np
from .core import MATCH_TOL, TOL, Check, check_shape, check_shapes, compare, randn, run_check
from .honest import library_uses

__all__ = ["MATCH_TOL", "TOL", "Check", "check_shape", "check_shapes", "compare", "randn", "run_check",
           "EXERCISES", "CHECKERS", "GradeError", "Graded", "exercise_number", "load_exercise", "grade",
           "grade_file", "check_functions", "hint", "hint_text", "main", "DEFAULT_TIMEOUT", "HONEST"]

DEFAULT_TIMEOUT = 120.0  # seconds per submission: a right one takes one or two on a laptop


class _FirstFailing:
    """What ``--hint`` without a number means: the hint of the first failing check (not a string, which
    argparse would convert as a number)."""

    def __repr__(self):
        return "the first failing check"


FIRST_FAILING = _FirstFailing()
HONEST = "honest work: derived, not borrowed from the library"


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


def _name_number(name):
    """The exercise a file name mentions (``smith_12_ex03_conv-1.py`` -> 3), or None."""
    for match in re.finditer(r"(?<![A-Za-z0-9])ex(\d\d)(?!\d)", name):
        if int(match.group(1)) in EXERCISES:
            return int(match.group(1))
    return None


def exercise_number(path, exercise=None):
    """The exercise a file is: ``exercise`` when given (3, "ex03"), else from the name (``ex03`` in it)."""
    path = pathlib.Path(path)
    if path.is_dir():
        raise GradeError(f"{path}: a folder: give the exercise files in it, or grade them all with --batch {path}")
    if not path.exists():
        raise GradeError(f"{path}: no such file")
    number = _number(exercise) if exercise is not None else _name_number(path.name)
    if number is None:
        raise GradeError(f"{path}: not an exercise file: the name must contain one of {_known()} "
                         "(for example ex03_conv_backward.py), or say which with --exercise ex03")
    if path.suffix not in (".py", ".ipynb"):
        raise GradeError(f"{path}: not a Python file (.py) or a notebook (.ipynb)")
    if not path.is_file():
        raise GradeError(f"{path}: no such file")
    return number


def _number(exercise):
    """3, "ex03" or "ex03_conv_backward" -> 3."""
    match = re.match(r"(?:ex)?(\d+)", str(exercise))
    if not match or int(match.group(1)) not in EXERCISES:
        raise GradeError(f"{exercise!r} is not an exercise: one of {_known()}")
    return int(match.group(1))


def load_exercise(path):
    """Import the student's file by its path (it is not part of any package)."""
    path = pathlib.Path(path)
    spec = importlib.util.spec_from_file_location(f"_exercise_{path.stem}".replace("-", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def notebook_source(path):
    """The code cells of a notebook as one script (IPython's ``%`` and ``!`` lines left out)."""
    try:
        cells = json.loads(pathlib.Path(path).read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise GradeError(f"{path}: not a readable notebook ({type(e).__name__}: {e})") from None
    code = []
    if not isinstance(cells, list) or not all(isinstance(cell, dict) for cell in cells):
        raise GradeError(f"{path}: not a readable notebook (its cells are not a list of cells)")
    for cell in cells:
        if cell.get("cell_type") == "code":
            source = cell.get("source", "")
            if isinstance(source, list) and all(isinstance(line, str) for line in source):
                source = "".join(source)
            if not isinstance(source, str):
                raise GradeError(f"{path}: not a readable notebook (a code cell's source is not text)")
            code.append("\n".join(line for line in source.splitlines()
                                  if not line.lstrip().startswith(("%", "!"))))
    return "\n\n".join(code) + "\n"


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


def grade(path, exercise=None):
    """Yield the Check of every check of the exercise in ``path``, IN THIS PROCESS (no time limit, no
    honest-work scan: for a trusted file; ``grade_file`` isolates a student's). Raises GradeError."""
    number = exercise_number(path, exercise)
    load = functools.partial(load_exercise, path)
    load.name = pathlib.Path(path).name
    yield from _run_checks(number, load)


def _reraise(e):
    raise e


# ----------------------------------------------------------------------------
# A submission graded in a child process
# ----------------------------------------------------------------------------

def _describe(e):
    """One line for what stopped the import of a submission."""
    if isinstance(e, SystemExit):
        return (f"the file exits when it is imported (SystemExit: {e.code!r}): remove the sys.exit() or exit() "
                "at its top level")
    if isinstance(e, SyntaxError):
        return f"SyntaxError: {e.msg} (line {e.lineno})"
    message = " ".join(str(e).split())
    return f"{type(e).__name__}: {message[:157] + '...' if len(message) > 160 else message}"


def _check_records(number, path):
    """In the child process: one dict per check of the file at ``path`` (the import's failure as one dict)."""
    previous = backend.current()
    backend.use("numpy")
    try:
        try:
            module = load_exercise(path)
        except BaseException as e:  # noqa: BLE001 - SystemExit too: a submission that exits is a failure
            yield {"import_error": _describe(e)}
            return
        with np.errstate(all="ignore"):
            for result in EXERCISES[number].checks(module):
                yield result.to_dict()
    finally:
        backend.use(previous)


@functools.lru_cache(maxsize=None)
def plan(number):
    """The names of every check of exercise ``number``, in order (the checks run on an empty module)."""
    names = tuple(result.name for result in _run_checks(number, types.SimpleNamespace))
    if not names:
        raise GradeError(f"exercise {number} has no checks")
    return names


@dataclass
class Graded:
    """One graded submission: its checks (the honest-work line, then every check of the exercise)."""

    file: str
    number: int
    checks: list
    student: str = ""
    output: str = ""  # the end of what the submission printed

    @property
    def score(self):
        return sum(bool(c.passed) for c in _points(self.checks))

    @property
    def max_score(self):
        return len(_points(self.checks))

    @property
    def exercise(self):
        return f"ex{self.number:02d}"

    def to_dict(self):
        return {"student": self.student, "file": self.file, "exercise": self.exercise,
                "title": EXERCISES[self.number].TITLE, "score": self.score, "max_score": self.max_score,
                "checks": [c.to_dict() for c in self.checks], "output": self.output}


def _points(checks):
    """The checks that score a point: all but the honest-work line (a gate: when it fails, nothing is run)."""
    return [c for c in checks if c.name != HONEST]


def _package_parent():
    return str(pathlib.Path(__file__).resolve().parent.parent.parent)


def _run_child(number, path, timeout):
    """Run the checks in a child process: (records, exit status or None after the time limit, output)."""
    with tempfile.TemporaryDirectory(prefix="resnet_np_grade_") as tmp:
        results, output = pathlib.Path(tmp) / "results.jsonl", pathlib.Path(tmp) / "output.txt"
        env = dict(os.environ, MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_package_parent(), env.get("PYTHONPATH")) if p)
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RESNET_NP_NUM_THREADS"):
            env.setdefault(name, "1")  # a class graded side by side: one core each
        command = [sys.executable, "-m", "resnet_np.grade._child", str(number), str(path), str(results)]
        posix = os.name == "posix"
        with open(output, "wb") as out:
            child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     cwd=tmp, env=env, start_new_session=posix)
            try:
                status = child.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(child, posix)
                status = None
            except BaseException:  # Ctrl-C or an error here: the submission must not run on without us
                _kill_group(child, posix)
                raise
        records = []
        if results.exists():
            for line in results.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    records.append(json.loads(line))
                except ValueError:
                    break  # a line cut off when the process was killed
        printed = output.read_text(encoding="utf-8", errors="replace")
    return records, status, printed[-2000:]


def _kill_group(child, posix):
    """End the child and whatever the submission started (its own process group on POSIX)."""
    if posix:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:  # already gone
            pass
    else:
        child.kill()
    child.wait()


def _honest_line(number, source):
    """The honest-work Check of a submission's source (a file that does not parse passes here: the import
    check reports it)."""
    derives = getattr(EXERCISES[number], "DERIVES", ())
    try:
        uses = library_uses(source, derives)
    except (SyntaxError, ValueError):
        uses = []
    if not uses:
        return Check(True, name=HONEST)
    shown = "; ".join(f"line {line}: {what}" for line, what in uses[:3])
    return Check(False, name=HONEST, note=f"uses the library's implementation of what the exercise derives ({shown})",
                 hint="derive and write it yourself: this exercise grades your derivation; its checks are not run")


def _merge(number, records, status, timeout):
    """One Check per planned check from the child's records; what the child never reported is a FAIL."""
    names = plan(number)
    import_error = next((r["import_error"] for r in records if "import_error" in r), None)
    if import_error is not None:
        first = Check(False, note=import_error, hint="the file must import without errors: run it with python first",
                      name=names[0])
        return [first] + [Check(False, note="not run: the file does not import", name=n) for n in names[1:]]
    found = {r["name"]: r for r in records if "name" in r}
    if status is None:
        stopped = (f"time limit: the submission ran {timeout:g} s without finishing this check (an infinite loop?)",
                   "a loop that never ends, or one far too slow: run the file with python and watch where it waits")
    else:
        stopped = (f"the submission stopped the grader here (exit status {status}: os._exit, a crash of the "
                   "interpreter, or out of memory)", "run the file with python: the check must return, not exit")
    checks, reported_stop = [], False
    for name in names:
        record = found.get(name)
        if record is not None:
            checks.append(Check(record["passed"], record.get("error"), record.get("note", ""),
                                record.get("hint", ""), name))
        elif not reported_stop:
            checks.append(Check(False, note=stopped[0], hint=stopped[1], name=name))
            reported_stop = True
        else:
            checks.append(Check(False, note="not run: the grader was stopped before", name=name))
    # A check whose name depends on the answer (none should) is kept, not lost.
    checks += [Check(r["passed"], r.get("error"), r.get("note", ""), r.get("hint", ""), r["name"])
               for r in records if "name" in r and r["name"] not in names]
    return checks


def grade_file(path, exercise=None, timeout=DEFAULT_TIMEOUT, student=""):
    """Grade the file at ``path`` in a child process with a time limit; a ``Graded``. Raises GradeError
    for a path that is not an exercise (``exercise``, 3 or "ex03", for a file of any name)."""
    path = pathlib.Path(path)
    number = exercise_number(path, exercise)
    try:
        source = notebook_source(path) if path.suffix == ".ipynb" else path.read_text(encoding="utf-8",
                                                                                        errors="replace")
    except OSError as e:
        raise GradeError(f"{path}: cannot read it ({e.strerror})") from None
    honest = _honest_line(number, source)
    if not honest.passed:
        checks = [Check(False, note="not graded: see the honest-work line", name=n) for n in plan(number)]
        return Graded(str(path), number, [honest] + checks, student)
    with tempfile.TemporaryDirectory(prefix="resnet_np_submission_") as tmp:
        script = path.resolve()
        if path.suffix == ".ipynb":
            script = pathlib.Path(tmp) / (re.sub(r"\W", "_", path.stem) + ".py")
            script.write_text(source, encoding="utf-8")
        records, status, printed = _run_child(number, script, timeout)
    return Graded(str(path), number, [honest] + _merge(number, records, status, timeout), student, printed)


# ----------------------------------------------------------------------------
# Hints
# ----------------------------------------------------------------------------

def hint_for(number, checks):
    """The hint to start from: the one of the first failing check (HINT_START), 1 when none is named."""
    starts = getattr(EXERCISES[number], "HINT_START", ())
    for check in checks:
        if not check.passed:
            for prefix, n in starts:
                if check.name.startswith(prefix):
                    return n, check.name
            return 1, check.name
    return None, None


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


# ----------------------------------------------------------------------------
# Printing for a person
# ----------------------------------------------------------------------------

def _summary(number, checks, hint_how):
    passed, total = sum(bool(c.passed) for c in _points(checks)), len(_points(checks))
    if all(c.passed for c in checks):
        return f"{passed}/{total} checks pass: well done"
    n, name = hint_for(number, checks)
    return (f"{passed}/{total} checks pass; stuck? {hint_how.format(n=n)} gives the hint for the first "
            f"failing check ({name.split(':')[0]}), one at a time")


def _report(number, label, results, hint_how):
    """Print the header, one line per check and the summary; True when every check passed."""
    print(f"{label}: exercise {number}, {EXERCISES[number].TITLE}")
    lines = []
    for result in results:
        print(result.line(), flush=True)
        lines.append(result)
    print(_summary(number, lines, hint_how))
    return bool(lines) and all(r.passed for r in lines)


def check_functions(exercise, namespace):
    """Grade the functions a notebook (or a script run as ``__main__``) defined: print the lines, return True
    when every check passes. ``exercise``: 3, "ex03" or "ex03_conv_backward"; ``namespace``: ``globals()``."""
    number = _number(exercise)
    module = types.SimpleNamespace(**namespace)
    return _report(number, "your functions", _run_checks(number, lambda: module),
                   f'grade.hint("ex{number:02d}", {{n}}) (on the command line: --hint)')


# ----------------------------------------------------------------------------
# The command line
# ----------------------------------------------------------------------------

def _student_of(path, folder):
    """The student a submission belongs to: its sub-folder of ``folder``, or its name before ``exNN``."""
    relative = pathlib.Path(path).relative_to(folder)
    if len(relative.parts) > 1:
        return relative.parts[0]
    stem = relative.stem
    before = re.split(r"[_\- .]*(?<![A-Za-z0-9])ex\d\d(?!\d)", stem)[0].strip("_- .")
    return before or stem


def submission_files(folder):
    """Every .py and .ipynb file under ``folder``, sorted (checkpoints and hidden folders left out)."""
    folder = pathlib.Path(folder)
    found = []
    for path in sorted(folder.rglob("*")):
        parts = path.relative_to(folder).parts
        if path.is_file() and path.suffix in (".py", ".ipynb") and not any(
                p.startswith(".") or p in ("__pycache__", "__MACOSX") for p in parts):
            found.append(path)
    return found


def _grade_batch(folder, exercises, timeout, progress=True, jobs=1):
    """A Graded (or a GradeError's row) for every submission in ``folder``, ``jobs`` at a time."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise GradeError(f"{folder}: no such folder (--batch takes the folder of the submissions)")
    work = []
    for path in submission_files(folder):
        number = _name_number(path.name)
        if number is None and len(exercises) == 1:
            number = exercises[0]
        elif exercises and number not in exercises:
            number = None
        work.append((path, _student_of(path, folder), number))
    for number in {n for _, _, n in work if n is not None}:
        plan(number)  # once, before the threads

    def one(item):
        path, student, number = item
        if number is None:
            return (student, str(path), "not an exercise file: its name mentions none of "
                    + (", ".join(f"ex{n:02d}" for n in exercises) or _known()))
        try:
            graded = grade_file(path, number, timeout, student)
        except GradeError as e:
            return (student, str(path), str(e))
        if progress:
            print(f"{student:<30} {graded.exercise}  {graded.score}/{graded.max_score}  {path.name}", flush=True)
        return graded

    if jobs == 1:
        return [one(item) for item in work]
    # Threads only wait: each submission runs in its own child process.
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(one, work))


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("make-autograder", "make-handout"):
        from . import course

        return course.main(argv)
    parser = argparse.ArgumentParser(
        prog="python -m resnet_np.grade",
        description="Check exercises from lessons/exercises/: one line per check, PASS or FAIL, the relative "
                    "error and what to look at. Exit status 0 when every check passes. Also: "
                    "'make-autograder OUT.zip' (a Gradescope upload) and 'make-handout OUT.zip' (the students' "
                    "zip, no solutions).")
    parser.add_argument("files", nargs="*", help="exercise files (.py or .ipynb), e.g. "
                        "lessons/exercises/ex03_conv_backward.py")
    parser.add_argument("--exercise", action="append", metavar="EX",
                        help="which exercise the files are (ex03), for files of any name; repeat it for several "
                             "(with --gradescope and --batch: the exercises of the assignment)")
    parser.add_argument("--hint", type=int, nargs="?", const=FIRST_FAILING, metavar="N",
                        help="instead of the check lines, print hint N; without N, the hint of the first failing "
                             "check (hints come one at a time, from a nudge to the last step)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"time limit for one file (default {DEFAULT_TIMEOUT:g}): past it, the check that "
                             "runs is a FAIL and the rest are not run")
    parser.add_argument("--format", choices=("text", "json", "gradescope"), default="text",
                        help="text (default), json (one object per file, on stdout) or gradescope (results.json)")
    parser.add_argument("--json", dest="format", action="store_const", const="json", help="the same as --format json")
    parser.add_argument("--gradescope", dest="format", action="store_const", const="gradescope",
                        help="the same as --format gradescope: grade the files under AUTOGRADER_ROOT/submission "
                             "(or the FILES given) and write AUTOGRADER_ROOT/results/results.json")
    parser.add_argument("--autograder-root", default=os.environ.get("RESNET_NP_AUTOGRADER_ROOT", "/autograder"),
                        metavar="DIR", help="the platform's root folder (default /autograder, or "
                                            "$RESNET_NP_AUTOGRADER_ROOT)")
    parser.add_argument("--visibility", choices=("visible", "hidden", "after_due_date", "after_published"),
                        default="visible", help="when students see each check on Gradescope (default visible)")
    parser.add_argument("--batch", metavar="FOLDER", help="grade every .py and .ipynb file under FOLDER (one "
                        "sub-folder per student, or the student's name before exNN in the file name)")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="with --batch: grade N submissions at a time (one child process each; default 1)")
    parser.add_argument("--roster", metavar="CSV", default="roster.csv",
                        help="with --batch: the CSV roster to write (default roster.csv)")
    args = parser.parse_args(argv)
    if not math.isfinite(args.timeout) or args.timeout <= 0:
        parser.error(f"--timeout must be a positive number of seconds, not {args.timeout:g}")
    if args.batch and not os.access(os.path.dirname(os.path.abspath(args.roster)), os.W_OK):
        parser.error(f"--roster {args.roster}: its folder does not exist or cannot be written; "
                     "name a CSV file in a folder of yours")
    if args.jobs < 1:
        parser.error(f"--jobs must be 1 or more, not {args.jobs}")
    try:
        exercises = [_number(e) for e in args.exercise or []]
    except GradeError as e:
        parser.error(f"--exercise: {e}")
    try:
        return _main(args, parser, exercises)
    except KeyboardInterrupt:
        print("interrupted: grading stopped (the submission being graded was stopped too)", file=sys.stderr)
        return 130


def _main(args, parser, exercises):
    from . import report

    try:
        if args.format == "gradescope":
            return report.gradescope(args.files, exercises, args.autograder_root, args.timeout, args.visibility)
        if args.batch:
            rows = _grade_batch(args.batch, exercises, args.timeout, args.format == "text", args.jobs)
            report.write_roster(args.roster, rows)
            if args.format == "json":
                print(json.dumps([r.to_dict() if isinstance(r, Graded) else
                                  {"student": r[0], "file": r[1], "error": r[2]} for r in rows], indent=1))
            else:
                print(f"{args.roster}: {len(rows)} submissions")
            return 0
    except GradeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if not args.files:
        parser.error("give the files to grade (or --batch FOLDER, or --gradescope)")
    if len(exercises) > 1:
        parser.error("--exercise: one exercise for the files given (several only with --batch or --gradescope)")
    all_passed, as_json = True, []
    for file in args.files:
        try:
            number = exercise_number(file, exercises[0] if exercises else None)
            hints = len(EXERCISES[number].HINTS)
            if args.hint not in (None, FIRST_FAILING) and not 1 <= args.hint <= hints:
                raise GradeError(f"--hint {args.hint}: exercise {number} has hints 1 to {hints}")
            if args.hint not in (None, FIRST_FAILING):
                print(f"{file}: exercise {number}, {EXERCISES[number].TITLE}")
                print(hint_text(number, args.hint))
                continue
            graded = grade_file(file, number, args.timeout)
        except GradeError as e:
            print(f"error: {e}", file=sys.stderr)
            all_passed = False
            continue
        how = f"python -m resnet_np.grade {file}{' --exercise ' + graded.exercise if exercises else ''} --hint {{n}}"
        passed = graded.score == graded.max_score
        all_passed = all_passed and passed
        if args.hint == FIRST_FAILING:  # --hint alone: where the student is stuck
            print(f"{file}: exercise {number}, {EXERCISES[number].TITLE}")
            n, name = hint_for(number, graded.checks)
            print("every check passes: no hint needed" if n is None else
                  f"the first failing check: {name}\n" + hint_text(number, n, how))
            all_passed = True
        elif args.format == "json":
            as_json.append(graded.to_dict())
        else:
            _report(number, file, graded.checks, how)
    if args.format == "json":
        print(json.dumps(as_json, indent=1))
    return 0 if all_passed else 1
