"""What every exercise's checks share: a check's outcome, running it safely, comparing with a diagnosis.

A check is a function that returns a ``Check``; ``run_check`` runs it and
turns whatever the student's code raises into one FAIL line. ``compare``
measures the relative error of ``resnet_np.gradcheck``,
max|a - b| / max(1e-8, max(|a| + |b|)), against the right answer and, on
FAIL, names the known mistake (the answer a typical error gives) that the
student's output matches.
"""

import types
import warnings
from dataclasses import dataclass
from typing import Optional

from ..backend import host as np
from ..gradcheck import rel_error

TOL = 1e-7        # a right answer lands near 1e-10 (finite differences) or 1e-15 (values) in float64
MATCH_TOL = 1e-6  # the student's output IS a known wrong answer when this close to it


# ----------------------------------------------------------------------------
# A check and its outcome
# ----------------------------------------------------------------------------

@dataclass
class Check:
    """The outcome of one check: passed or not, the relative error, what went wrong and a hint."""

    passed: bool
    error: Optional[float] = None  # relative error, when the check has one
    note: str = ""                 # what was seen: a shape, an exception, "not implemented yet"
    hint: str = ""                 # on FAIL: the likely mistake
    name: str = ""

    def line(self):
        parts = [f"{'PASS' if self.passed else 'FAIL'}  {self.name:<60}"]
        if self.error is not None:
            parts.append(f"rel error {self.error:.1e}")
        if self.note:
            parts.append(self.note)
        if not self.passed and self.hint:
            parts.append(f"hint: {self.hint}")
        return "  ".join(parts).rstrip()

    def to_dict(self):
        return {"name": self.name, "passed": bool(self.passed),
                "error": None if self.error is None else float(self.error), "note": self.note, "hint": self.hint}


def _is_submission(obj):
    """Whether ``obj`` is the student's file as the checks see it: the imported module (``load_exercise`` names
    it ``_exercise_...``) or a notebook's namespace."""
    return isinstance(obj, types.SimpleNamespace) or (
        isinstance(obj, types.ModuleType) and obj.__name__.startswith("_exercise_"))


def run_check(name, thunk, error_hint=""):
    """Run one check; the student's exceptions become a FAIL line, never a traceback."""
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = thunk()
    except NotImplementedError as e:
        result = Check(False, note="not implemented yet" + (f" ({e})" if str(e) else ""))
    except SystemExit as e:  # sys.exit() in the student's function: a FAIL, not the end of the grader
        result = Check(False, note=f"SystemExit: the function called sys.exit({e.code!r})",
                       hint="a function returns its answer; it never ends the program")
    except AttributeError as e:
        if _is_submission(getattr(e, "obj", None)):  # the file lacks the function (not np.typo inside it)
            result = Check(False, note=f"the file defines no function {e.name}",
                           hint=f"keep the name {e.name} of the starting file (def {e.name}(...):)")
        else:
            result = Check(False, note=f"AttributeError: {' '.join(str(e).split())[:160]}", hint=error_hint)
    except Exception as e:  # noqa: BLE001 - whatever the student's code raises
        message = " ".join(str(e).split())
        if len(message) > 160:
            message = message[:157] + "..."
        result = Check(False, note=f"{type(e).__name__}: {message}", hint=error_hint)
    result.name = name
    return result


def compare(got, want, mistakes=(), hint="", nonfinite_hint="", tol=TOL):
    """PASS when ``got`` is within ``tol`` of ``want``; on FAIL, the hint of the mistake it matches.

    ``mistakes`` are (wrong answer, hint) pairs. A wrong answer is an array,
    matched when ``got`` is within MATCH_TOL of it (the closest one wins), or
    a shape tuple, matched when ``got`` has that shape. ``hint`` is the
    fallback when no mistake matches.
    """
    if got is None:
        return Check(False, note="returned None", hint="did you forget the return statement?")
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        note = f"shape {got.shape}, expected {want.shape}"
        for wrong, wrong_hint in mistakes:
            if isinstance(wrong, tuple) and wrong == got.shape:
                return Check(False, note=note, hint=wrong_hint)
        return Check(False, note=note, hint=_closest(got, mistakes) or hint)
    if not np.isfinite(got).all():
        return Check(False, note="NaN or Inf in the result", hint=nonfinite_hint or hint)
    error = rel_error(got, want)
    if error <= tol:
        return Check(True, error=error)
    return Check(False, error=error, hint=_closest(got, mistakes) or hint)


def _closest(got, mistakes):
    """The hint of the wrong answer closest to ``got``, if one is within MATCH_TOL."""
    best, best_hint = MATCH_TOL, ""
    for wrong, wrong_hint in mistakes:
        if isinstance(wrong, tuple):
            continue
        wrong = np.asarray(wrong, dtype=np.float64)
        if wrong.shape == got.shape and (error := rel_error(got, wrong)) <= best:
            best, best_hint = error, wrong_hint
    return best_hint


def check_shape(got, shape, mistakes=(), hint=""):
    """PASS when ``got`` has ``shape``; the mistakes are (shape, hint) pairs."""
    if got is None:
        return Check(False, note="returned None", hint="did you forget the return statement?")
    got_shape = tuple(np.shape(got))
    if got_shape == tuple(shape):
        return Check(True, note=f"shape {got_shape}")
    for wrong, wrong_hint in mistakes:
        if tuple(wrong) == got_shape:
            return Check(False, note=f"shape {got_shape}, expected {tuple(shape)}", hint=wrong_hint)
    return Check(False, note=f"shape {got_shape}, expected {tuple(shape)}", hint=hint)


def check_shapes(outputs):
    """``check_shape`` over several returned arrays: the first wrong one, its name in front, or PASS.

    ``outputs`` holds (name, got, shape, mistakes, hint) for each array.
    """
    for name, got, shape, mistakes, hint in outputs:
        result = check_shape(got, shape, [m for m in mistakes if isinstance(m[0], tuple)], hint)
        if not result.passed:
            result.note = f"{name}: {result.note}"
            return result
    return Check(True)


def randn(rng, *shape, scale=1.0):
    """Standard normal float64 values of ``shape``, times ``scale``."""
    return rng.standard_normal(shape) * scale
