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
SOLUTIONS = EXERCISES / "solutions"
NAMES = sorted(p.name for p in EXERCISES.glob("ex[0-9][0-9]_*.py"))

# For every exercise, typical mistakes planted in the reference solution: (old text, new text, the hint
# the grader must give). Each replacement must apply, or the test fails.
PLANTED = {
    "ex01_im2col.py": [
        ("return (size + 2 * pad - kernel) // stride + 1", "return (size + 2 * pad - kernel) // stride",
         "off by one in the output size"),
        ("return (size + 2 * pad - kernel) // stride + 1", "return (size + pad - kernel) // stride + 1",
         "the padding is on BOTH sides"),
        ("top, left = oh * stride, ow * stride", "top, left = oh, ow", "starts at (oh*stride, ow*stride)"),
        ("window.reshape(N, -1)", "window.transpose(0, 2, 3, 1).reshape(N, -1)", "rows in the wrong order"),
        ("cols[:, :, oh * OW + ow]", "cols[:, :, ow * OH + oh]", "columns in the wrong order"),
    ],
    "ex02_conv_forward.py": [
        ("out = out + b.reshape(1, F, 1)", "out = out", "the bias is missing"),
        ("w_mat = w.reshape(F, -1)", "w_mat = w[:, :, ::-1, ::-1].reshape(F, -1)", "the kernel is flipped"),
        ("OH = (H + 2 * pad - KH) // stride + 1", "OH = (H + 2 * pad - KH) // stride",
         "OH = (H + 2*pad - KH) // stride + 1"),
        ("out = w_mat @ cols ", "out = (w_mat @ np.concatenate(list(cols), axis=1)).reshape(N, F, -1) ",
         "batch and channel axes mixed up"),
        ("w_mat = w.reshape(F, -1)", "w_mat = w.transpose(0, 2, 3, 1).reshape(F, -1)",
         "flatten the weight as w.reshape(F, -1)"),
    ],
    "ex03_conv_backward.py": [
        ("dx_pad[:, :, top:top + KH, left:left + KW] += window", "dx_pad[:, :, top:top + KH, left:left + KW] = window",
         "col2im must ADD (+=), not assign"),
        ("dw = (dout_mat @ cols.transpose(0, 2, 1)).sum(axis=0)",
         "dw = (cols @ dout_mat.transpose(0, 2, 1)).sum(axis=0)", "dw transposed"),
        ("w_mat = w.reshape(F, -1)", "w_mat = w[:, :, ::-1, ::-1].reshape(F, -1)", "the wrong weight orientation"),
        ("db = dout_mat.sum(axis=(0, 2))", "db = dout_mat.mean(axis=(0, 2))", "db is a SUM"),
        ("return dx_pad[:, :, pad:pad + H, pad:pad + W]", "return dx_pad", "cut the padding off"),
        ("dw = (dout_mat @ cols.transpose(0, 2, 1)).sum(axis=0)",
         "dw = (dout_mat @ cols.transpose(0, 2, 1)).mean(axis=0)", "dw sums over the batch"),
    ],
    "ex04_batchnorm_backward.py": [
        ("dx = (M * dx_hat - mean_term - var_term)", "dx = (M * dx_hat - var_term)", "missing the mean term"),
        ("dx = (M * dx_hat - mean_term - var_term)", "dx = (M * dx_hat - mean_term)", "missing the variance term"),
        ("dgamma = (dout * x_hat).sum(axis=axes)", "dgamma = dout.sum(axis=axes)", "you left out x_hat"),
        ("M = N * H * W", "M = N", "not N"),
        ("dx_hat = dout * gamma.reshape(1, C, 1, 1)", "dx_hat = dout", "through gamma"),
        ("dx = (M * dx_hat - mean_term - var_term)", "dx = (M * dx_hat)",
         "missing both the mean and the variance terms"),
    ],
    "ex05_basic_block_backward.py": [
        ("return dx_branch + dx_shortcut", "return dx_branch", "the shortcut's gradient is missing"),
        ("d_sum = block.relu2.backward(dout)", "d_sum = dout", "relu2's backward is missing"),
        ("dx_shortcut = block.downsample.backward(d_shortcut)", "dx_shortcut = d_shortcut",
         "through block.downsample.backward"),
        ("d_shortcut = d_sum", "d_shortcut = dout", "the shortcut must get the gradient AFTER relu2's backward"),
        ("d_branch = block.relu1.backward(d_branch)", "pass", "relu1's backward is missing"),
    ],
    "ex06_softmax_cross_entropy.py": [
        ("dlogits /= N", "dlogits /= 1", "the 1/N is missing"),
        ("dlogits[np.arange(N), y] -= 1.0", "dlogits[np.arange(N), y] -= 0.0", "subtract 1 at the true class"),
        ("shifted = logits - logits.max(axis=1, keepdims=True)", "shifted = logits", "exp overflowed"),
        ("loss = -log_p[np.arange(N), y].mean()", "loss = -log_p[np.arange(N), y].sum()",
         "the loss is the MEAN over the batch"),
    ],
    "ex07_sgd_momentum.py": [
        ("g = dw + weight_decay * w\n    v = momentum * v + g\n    w = w - lr * v",
         "v = momentum * v + dw\n    w = w - lr * (v + weight_decay * w)",
         "weight decay goes into the gradient BEFORE"),
        ("v = momentum * v + g", "v = momentum * v + (1 - momentum) * g", "no dampening"),
        ("v = momentum * v + g\n    w = w - lr * v", "v = momentum * v + lr * g\n    w = w - v",
         "the buffer holds gradients, not steps"),
        ("g = dw + weight_decay * w", "g = dw - weight_decay * w", "pulls the weights toward 0"),
        ("w = w - lr * v", "w = w - lr * g", "the step uses the momentum buffer"),
    ],
}
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
    assert len(lines) >= 4 and all(line.startswith("PASS") for line in lines), out
    assert f"{len(lines)}/{len(lines)} checks pass" in out


@pytest.mark.parametrize("name", NAMES)
def test_stub_is_not_implemented_yet(name, capsys):
    code, out, err = run_grader(EXERCISES / name, capsys)
    assert code == 1
    assert "Traceback" not in out + err
    fails = [line for line in check_lines(out) if line.startswith("FAIL")]
    assert fails and all("not implemented yet" in line for line in fails), out


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
    fails = [line for line in check_lines(out) if line.startswith("FAIL")]
    assert len(fails) == 4 and all("RuntimeError: block.backward is switched off by the grader" in line
                                   for line in fails), out


def test_a_file_that_does_not_import_is_one_fail_line(tmp_path, capsys):
    path = tmp_path / "ex07_sgd_momentum.py"
    path.write_text("def sgd_momentum_step(w, dw, v, lr, momentum, weight_decay)\n    return w, v\n")
    code, out, err = run_grader(path, capsys)
    assert code == 1 and "Traceback" not in out + err
    assert check_lines(out) == [line for line in check_lines(out) if "SyntaxError" in line] and check_lines(out)


def test_unknown_and_missing_files_are_clear_errors(tmp_path, capsys):
    other = tmp_path / "homework.py"
    other.write_text("x = 1\n")
    code, out, err = run_grader(other, capsys)
    assert code == 1 and "not an exercise file" in err and "ex03" in err
    code, out, err = run_grader(tmp_path / "ex03_conv_backward.py", capsys)
    assert code == 1 and "no such file" in err
    code, out, err = run_grader(tmp_path / "ex99_nothing.py", capsys)
    assert code == 1 and "not an exercise file" in err


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
