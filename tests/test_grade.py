"""The exercise grader: reference solutions pass, stubs are "not implemented yet", planted mistakes get their hint."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from resnet_np import grade

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXERCISES = ROOT / "lessons" / "exercises"
SOLUTIONS = ROOT / "tests" / "exercise_solutions"  # out of lessons/: a handout cut from it holds no answer
NAMES = sorted(p.name for p in EXERCISES.glob("ex[0-9][0-9]_*.py"))

# For every exercise, typical mistakes planted in the reference solution: (old text, new text, the hint
# the grader must give). Each grader module lists its own (PLANTED), so that a new exercise touches no other
# file; each replacement must apply, or the test fails.
PLANTED = {name: grade.EXERCISES[int(name[2:4])].PLANTED for name in NAMES}
PLANTED_CASES = [pytest.param(name, old, new, hint, id=f"{name[:4]}-{hint[:30]}")
                 for name, mistakes in PLANTED.items() for old, new, hint in mistakes]


def run_grader(path, capsys):
    code = grade.main([str(path)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def check_lines(out):
    return [line for line in out.splitlines() if line.startswith(("PASS", "FAIL"))]


def test_every_exercise_has_a_stub_a_solution_and_a_checker():
    assert len(NAMES) >= 7
    assert NAMES == sorted(p.name for p in SOLUTIONS.glob("ex[0-9][0-9]_*.py"))
    assert sorted(grade.exercise_number(EXERCISES / name) for name in NAMES) == sorted(grade.CHECKERS)
    assert set(PLANTED) == set(NAMES)
    for name in NAMES:  # one grader module per exercise, named like the exercise's file
        assert grade.EXERCISES[int(name[2:4])].__name__ == f"resnet_np.grade.{name[:-3]}", name
    for name in NAMES:
        stub = (EXERCISES / name).read_text()
        assert "TODO" in stub and "raise NotImplementedError" in stub, name
        assert "TODO" not in (SOLUTIONS / name).read_text(), name
        assert len(PLANTED[name]) >= 3, f"{name}: fewer than three planted mistakes"


@pytest.mark.parametrize("name", NAMES)
def test_reference_solution_passes(name, capsys):
    code, out, err = run_grader(SOLUTIONS / name, capsys)
    lines = check_lines(out)
    assert code == 0, out + err
    assert len(lines) >= 5 and all(line.startswith("PASS") for line in lines), out
    assert lines[0].startswith(f"PASS  {grade.HONEST}"), "the honest-work line comes first"
    points = len(lines) - 1  # the honest-work line is a gate, not a point
    assert f"{points}/{points} checks pass" in out


@pytest.mark.parametrize("name", NAMES)
def test_stub_is_not_implemented_yet(name, capsys):
    code, out, err = run_grader(EXERCISES / name, capsys)
    assert code == 1
    assert "Traceback" not in out + err
    fails = [line for line in check_lines(out) if line.startswith("FAIL")]
    assert fails and all("not implemented yet" in line for line in fails), out
    assert check_lines(out)[0].startswith("PASS  honest work"), "what the starting file imports is allowed"
    passes = sum(line.startswith("PASS") for line in check_lines(out)) - 1  # the given code's checks pass
    assert f"{passes}/{len(check_lines(out)) - 1} checks pass" in out


@pytest.mark.parametrize("name, old, new, hint", PLANTED_CASES)
def test_planted_mistake_fails_with_its_hint(name, old, new, hint, tmp_path, capsys):
    source = (SOLUTIONS / name).read_text()
    assert old in source, f"the planted mistake no longer applies to {name}: {old!r}"
    path = tmp_path / name
    path.write_text(source.replace(old, new))
    code, out, err = run_grader(path, capsys)
    assert code == 1, out
    assert "Traceback" not in out + err
    fails = [line for line in check_lines(out) if line.startswith("FAIL")]
    assert any("hint: " in line and hint in line.split("hint: ", 1)[1] for line in fails), out


def test_other_exceptions_are_one_fail_line_each(tmp_path, capsys):
    path = tmp_path / "ex06_softmax_cross_entropy.py"
    path.write_text("def softmax_cross_entropy(logits, y):\n    return 1 / 0\n")
    code, out, err = run_grader(path, capsys)
    assert code == 1 and "Traceback" not in out + err
    fails = [line for line in check_lines(out) if line.startswith("FAIL")]
    assert len(fails) == 4 and all("ZeroDivisionError: division by zero" in line for line in fails), out


def test_calling_block_backward_is_refused(tmp_path, capsys):
    path = tmp_path / "ex05_basic_block_backward.py"
    path.write_text("def basic_block_backward(block, dout):\n    return block.backward(dout)\n")
    code, out, err = run_grader(path, capsys)
    assert code == 1 and "Traceback" not in out + err
    lines = check_lines(out)
    assert lines[0].startswith("FAIL  honest work") and "line 2: block.backward" in lines[0], out
    assert len(lines) == 5 and all("not graded" in line for line in lines[1:]) and "0/4 checks pass" in out
    # Past the syntax tree (a computed attribute), the block's own backward is still switched off when it runs.
    path.write_text("def basic_block_backward(block, dout):\n    return getattr(block, 'back' + 'ward')(dout)\n")
    code, out, err = run_grader(path, capsys)
    fails = [line for line in check_lines(out) if line.startswith("FAIL")]
    assert len(fails) == 4 and all("RuntimeError: block.backward is switched off by the grader" in line
                                   for line in fails), out


def test_a_file_that_does_not_import_is_one_fail_line(tmp_path, capsys):
    path = tmp_path / "ex07_sgd_momentum.py"
    path.write_text("def sgd_momentum_step(w, dw, v, lr, momentum, weight_decay)\n    return w, v\n")
    code, out, err = run_grader(path, capsys)
    assert code == 1 and "Traceback" not in out + err
    fails = [line for line in check_lines(out) if line.startswith("FAIL")]
    assert "SyntaxError" in fails[0] and all("not run: the file does not import" in line for line in fails[1:]), out
    assert "0/4 checks pass" in out


def test_unknown_and_missing_files_are_clear_errors(tmp_path, capsys):
    other = tmp_path / "homework.py"
    other.write_text("x = 1\n")
    code, out, err = run_grader(other, capsys)
    assert code == 1 and "not an exercise file" in err and "ex03" in err
    code, out, err = run_grader(tmp_path / "ex03_conv_backward.py", capsys)
    assert code == 1 and "no such file" in err
    (tmp_path / "ex99_nothing.py").write_text("x = 1\n")
    code, out, err = run_grader(tmp_path / "ex99_nothing.py", capsys)
    assert code == 1 and "not an exercise file" in err
    code, out, err = run_grader(tmp_path / "ex98_missing.py", capsys)   # missing: that first, whatever the name
    assert code == 1 and "ex98_missing.py: no such file" in err
    code, out, err = run_grader(tmp_path, capsys)
    assert code == 1 and "a folder" in err and "--batch" in err


def test_compare_names_the_closest_known_mistake():
    want = np.arange(6.0).reshape(2, 3)
    mistakes = [(want * 2, "doubled"), (want.T, "transposed"), ((3, 2), "shape hint")]
    assert grade.compare(want + 1e-12, want, mistakes).passed
    assert grade.compare(want * 2, want, mistakes, "general").hint == "doubled"
    assert grade.compare(want.T.copy(), want, mistakes, "general").hint == "shape hint"
    assert grade.compare(want + 1.0, want, mistakes, "general").hint == "general"
    result = grade.compare(np.full((2, 3), np.nan), want, mistakes, "general", nonfinite_hint="overflow")
    assert not result.passed and result.hint == "overflow"
    assert grade.compare(None, want).note == "returned None"


def test_check_line_shows_status_name_error_and_hint():
    line = grade.Check(False, error=0.25, hint="add, do not assign", name="dx").line()
    assert line.startswith("FAIL  dx") and "rel error 2.5e-01" in line and line.endswith("hint: add, do not assign")
    line = grade.Check(True, error=1e-11, hint="unused", name="dw").line()
    assert line.startswith("PASS  dw") and "hint" not in line


def test_command_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")

    def run(*paths):
        return subprocess.run([sys.executable, "-m", "resnet_np.grade", *map(str, paths)], capture_output=True,
                              text=True, env=env, cwd=str(ROOT), timeout=300)

    ok = run(SOLUTIONS / "ex03_conv_backward.py")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "PASS  dx: finite differences" in ok.stdout and "13/13 checks pass" in ok.stdout

    wrong = tmp_path / "ex03_conv_backward.py"
    wrong.write_text((SOLUTIONS / "ex03_conv_backward.py").read_text().replace("] += window", "] = window"))
    failed = run(wrong, EXERCISES / "ex07_sgd_momentum.py")
    assert failed.returncode == 1
    assert "col2im must ADD" in failed.stdout and "not implemented yet" in failed.stdout
    assert "Traceback" not in failed.stdout + failed.stderr

    usage = run()
    assert usage.returncode != 0 and "usage:" in usage.stderr


# Formulas the old starting files gave away, in the solutions' notation (spaces removed): the exercises now
# ask for the derivation, so no starting file may contain them.
GIVEN_AWAY = {
    "ex01_im2col.py": ["//stride+1", "kernel)//stride"],
    "ex02_conv_forward.py": ["@cols[n]+b", "w.reshape(F,C*KH*KW)@"],
    "ex03_conv_backward.py": ["dout@cols", "cols[n].T", "W_mat.T@", "+=dcols"],
    "ex04_batchnorm_backward.py": ["M*dx_hat", "sum(dx_hat*x_hat)", "dout*x_hat", "dout*gamma"],
    "ex05_basic_block_backward.py": ["relu2.backward(dout)", "dx_branch+dx_shortcut"],
    "ex06_softmax_cross_entropy.py": ["p-onehot", "shifted-log", "-1attheTrueclass"],
    "ex07_sgd_momentum.py": ["dw+weight_decay*w", "momentum*v+g", "w-lr*v", "mu*v+g"],
    "ex08_grouped_conv_backward.py": ["dout_g@", "w_mat.transpose"],
    "ex09_preact_block_backward.py": ["d_pre+", "+d_shortcut"],
}


def _squeezed(text):
    return "".join(text.split())


@pytest.mark.parametrize("name", NAMES)
def test_no_starting_file_contains_the_formula_it_asks_for(name):
    """Neither an old give-away nor any answer line of the solution appears in the starting file's text."""
    stub = (EXERCISES / name).read_text()
    stub_code = {line.split("  #")[0].strip() for line in stub.splitlines() if not line.strip().startswith("#")}
    for formula in GIVEN_AWAY.get(name, []):
        assert _squeezed(formula).lower() not in _squeezed(stub).lower(), f"{name} gives away {formula!r}"
    solution = (SOLUTIONS / name).read_text().split('"""', 2)[-1]  # the code, without the docstring
    for line in solution.splitlines():
        line = line.split("  #")[0].strip()
        if len(line) > 15 and not line.startswith(("#", "def ", "import ", "from ", "return ")) \
                and "np.zeros(" not in line and "= im2col(x" not in line and line not in stub_code:  # setup
            assert _squeezed(line) not in _squeezed(stub), f"{name} contains the answer line {line!r}"


def test_hints_come_one_at_a_time(capsys):
    for name in NAMES:
        hints = grade.EXERCISES[int(name[2:4])].HINTS
        assert len(hints) >= 3, f"{name}: fewer than three hints"
        code = grade.main([str(EXERCISES / name), "--hint", "1"])
        out = capsys.readouterr().out
        assert code == 0 and f"hint 1 of {len(hints)}" in out and hints[0] in out, out
        assert not any(h in out for h in hints[1:]), "--hint 1 shows the first hint only"
        assert "--hint 2 for the next" in out and not check_lines(out), "hints do not grade"
    code = grade.main([str(EXERCISES / "ex03_conv_backward.py"), "--hint", "5"])
    out = capsys.readouterr().out
    assert code == 0 and "hint 5 of 5 (the last one)" in out
    code = grade.main([str(EXERCISES / "ex03_conv_backward.py"), "--hint", "9"])
    assert code == 1 and "error: --hint 9: exercise 3 has hints 1 to 5" in capsys.readouterr().err


def test_a_failing_run_points_to_the_hints(tmp_path, capsys):
    code, out, err = run_grader(EXERCISES / "ex04_batchnorm_backward.py", capsys)
    assert code == 1 and "checks pass; stuck? python -m resnet_np.grade" in out and "--hint" in out


@pytest.mark.parametrize("name, first_hint", [("ex03_conv_backward.py", 5), ("ex09_preact_block_backward.py", 1)])
def test_check_functions_grades_a_notebook_namespace(name, first_hint, capsys):
    namespace = {"__name__": "__main__"}
    exec(compile((SOLUTIONS / name).read_text(), name, "exec"), namespace)
    assert grade.check_functions(name[:4], namespace) is True
    out = capsys.readouterr().out
    assert "your functions: exercise" in out and "well done" in out
    stub_namespace = {"__name__": "stub"}
    exec(compile((EXERCISES / name).read_text(), name, "exec"), stub_namespace)
    assert grade.check_functions(name[:-3], stub_namespace) is False
    out = capsys.readouterr().out
    # The hint offered is the one of the first failing check (ex03's first checks are col2im's: hint 5).
    assert "not implemented yet" in out and f'grade.hint("{name[:4]}", {first_hint})' in out
    with pytest.raises(grade.GradeError, match="not an exercise"):
        grade.check_functions("ex99", namespace)
