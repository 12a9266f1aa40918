"""What the grader writes for machines: the class roster (CSV) and Gradescope's ``results.json``.

The roster has one row per submission: student, exercise, file, score, max_score, error (a file that
could not be graded), then one column per check, PASS or FAIL (the union of the checks of the
exercises in the batch, in their order).

Gradescope's autograder contract: the upload's ``setup.sh`` runs once in the image, ``run_autograder``
once per submission, with the student's files under ``/autograder/submission/`` and the results expected
in ``/autograder/results/results.json``: ``{"score", "max_score", "output", "visibility",
"stdout_visibility", "tests": [{"name", "score", "max_score", "status", "output", "visibility"}]}``.
One test per check, worth one point.
"""

import csv
import io
import json
import pathlib
import time

from ..atomic import write_atomically
from . import EXERCISES, HONEST, Graded, GradeError, _name_number, _number, grade_file, hint_for, plan, submission_files

__all__ = ["write_roster", "gradescope_results", "gradescope"]


def write_roster(path, rows):
    """Write the CSV roster of ``rows`` (Graded, or (student, file, error) for a file not graded)."""
    columns = []
    for row in rows:
        if isinstance(row, Graded):
            for check in row.checks:
                name = f"{row.exercise} {check.name}"
                if name not in columns:
                    columns.append(name)
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["student", "exercise", "file", "score", "max_score", "error"] + columns)
    for row in rows:
        if isinstance(row, Graded):
            status = {f"{row.exercise} {c.name}": "PASS" if c.passed else "FAIL" for c in row.checks}
            writer.writerow([row.student, row.exercise, row.file, row.score, row.max_score, ""]
                            + [status.get(name, "") for name in columns])
        else:
            student, file, error = row
            writer.writerow([student, _exercise_of(file), file, 0, "", error] + [""] * len(columns))
    try:
        write_atomically(path, lambda f: f.write(text.getvalue().encode("utf-8")))
    except OSError as e:
        raise GradeError(f"--roster {path}: cannot write it ({e.strerror})") from None


def _exercise_of(file):
    number = _name_number(pathlib.Path(file).name)
    return "" if number is None else f"ex{number:02d}"


def _test_output(check):
    parts = [check.note]
    if check.error is not None:
        parts.insert(0, f"relative error {check.error:.1e}")
    if not check.passed and check.hint:
        parts.append(f"hint: {check.hint}")
    return "\n".join(p for p in parts if p)


def gradescope_results(graded, missing=(), visibility="visible", seconds=None):
    """Gradescope's results dict for the ``Graded`` submissions and the exercises ``missing`` a file."""
    tests, outputs = [], []
    for g in graded:
        for check in g.checks:
            point = 0.0 if check.name == HONEST else 1.0  # the honest-work line is a gate, not a point
            tests.append({"name": f"{g.exercise} {check.name}", "score": point if check.passed else 0.0,
                          "max_score": point, "status": "passed" if check.passed else "failed",
                          "output": _test_output(check), "visibility": visibility})
        line = f"{g.exercise} ({EXERCISES[g.number].TITLE}), {pathlib.Path(g.file).name}: {g.score}/{g.max_score}"
        n, name = hint_for(g.number, g.checks)
        if n is not None:
            line += f"; the first failing check is {name!r}, hint {n}: {EXERCISES[g.number].HINTS[n - 1]}"
        outputs.append(line)
    for number, reason in missing:
        for name in plan(number):
            tests.append({"name": f"ex{number:02d} {name}", "score": 0.0, "max_score": 1.0, "status": "failed",
                          "output": reason, "visibility": visibility})
        outputs.append(f"ex{number:02d} ({EXERCISES[number].TITLE}): {reason}")
    results = {"score": sum(t["score"] for t in tests), "max_score": sum(t["max_score"] for t in tests),
               "output": "\n".join(outputs), "visibility": visibility, "stdout_visibility": "hidden",
               "tests": tests}
    if seconds is not None:
        results["execution_time"] = round(seconds, 1)
    return results


def _pick(files, number, several):
    """The submitted file of exercise ``number``: the one whose name says it, else the only file."""
    named = [f for f in files if _name_number(f.name) == number]
    if named:
        return named[0], None
    if not several and len(files) == 1:
        return files[0], None
    if not files:
        return None, "no .py or .ipynb file in the submission"
    return None, (f"no file for exercise {number}: name it ex{number:02d}_....py (or .ipynb); submitted: "
                  + ", ".join(f.name for f in files[:5]))


def gradescope(files, exercises, root, timeout, visibility="visible"):
    """Grade a Gradescope submission and write ROOT/results/results.json; the exit status (0: written)."""
    start = time.monotonic()
    root = pathlib.Path(root)
    files = [pathlib.Path(f) for f in files] if files else submission_files(root / "submission")
    if not exercises:  # the exercises the files' names say
        exercises = sorted({n for n in (_name_number(f.name) for f in files) if n is not None})
    graded, missing = [], []
    if not exercises:
        raise GradeError("no exercise to grade: name the files exNN_....py, or give --exercise ex03 (the "
                         "autograder made by make-autograder passes it)")
    for number in exercises:
        number = _number(number)
        path, reason = _pick(files, number, len(exercises) > 1)
        if path is None:
            missing.append((number, reason))
            continue
        try:
            graded.append(grade_file(path, number, timeout))
        except GradeError as e:
            missing.append((number, str(e)))
    results = gradescope_results(graded, missing, visibility, time.monotonic() - start)
    out = root / "results" / "results.json"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(out, lambda f: f.write(json.dumps(results, indent=1).encode("utf-8")))
    except OSError as e:
        raise GradeError(f"{out}: cannot write the results ({e.strerror}); --autograder-root sets the root") \
            from None
    print(f"{out}: {results['score']:g}/{results['max_score']:g}")
    for line in results["output"].splitlines():
        print(line)
    return 0
