"""The grader for a class: files of any name, a child process with a time limit, early exits, honest work, the
roster, JSON, hints from the first failing check, and checks that a one-image answer no longer passes."""

import csv
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from resnet_np import grade

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXERCISES = ROOT / "lessons" / "exercises"
SOLUTIONS = ROOT / "tests" / "exercise_solutions"
EX03 = (SOLUTIONS / "ex03_conv_backward.py").read_text()
EX07 = (SOLUTIONS / "ex07_sgd_momentum.py").read_text()


def run(argv, capsys):
    code = grade.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def lines_of(out):
    return [line for line in out.splitlines() if line.startswith(("PASS", "FAIL"))]


def test_a_file_of_any_name(tmp_path, capsys):
    renamed = tmp_path / "smithjohn_12345_ex03_conv_backward-1.py"  # as a course platform renames an upload
    renamed.write_text(EX03)
    code, out, err = run([renamed], capsys)
    assert code == 0 and "13/13 checks pass" in out, out + err
    anonymous = tmp_path / "homework.py"
    anonymous.write_text(EX03)
    code, out, err = run([anonymous, "--exercise", "ex03"], capsys)
    assert code == 0 and "13/13 checks pass" in out, out + err
    with pytest.raises(SystemExit) as exit_status:
        grade.main([str(anonymous), "--exercise", "ex42"])
    err = capsys.readouterr().err
    assert exit_status.value.code == 2 and "--exercise: 'ex42' is not an exercise" in err and "ex03" in err


def test_an_infinite_loop_is_a_fail_line_not_a_hang(tmp_path, capsys):
    path = tmp_path / "ex07_sgd_momentum.py"
    path.write_text(EX07.replace("    return w, v", "    while True:\n        pass"))
    start = time.monotonic()
    code, out, err = run([path, "--timeout", "8"], capsys)
    assert time.monotonic() - start < 60
    lines = lines_of(out)
    assert code == 1 and "time limit: the submission ran 8 s" in lines[1], out
    assert all("not run" in line for line in lines[2:]) and "0/4 checks pass" in out


@pytest.mark.parametrize("exit_call", ["import sys\nsys.exit(0)\n", "raise SystemExit\n", "exit()\n",
                                       "import os\nos._exit(0)\n"])
def test_a_submission_that_exits_early_fails(exit_call, tmp_path, capsys):
    path = tmp_path / "ex03_conv_backward.py"
    path.write_text(exit_call + EX03)
    code, out, err = run([path], capsys)
    lines = lines_of(out)
    assert code == 1 and "0/13 checks pass" in out, out
    assert len(lines) == 14 and all(line.startswith("FAIL") for line in lines[1:])
    assert ("exits when it is imported" if "_exit" not in exit_call else "stopped the grader") in lines[1], out


def test_sys_exit_inside_a_function_fails_that_check_only(tmp_path, capsys):
    path = tmp_path / "ex07_sgd_momentum.py"
    path.write_text(EX07.replace("def sgd_momentum_step(w, dw, v, lr, momentum, weight_decay):\n",
                                 "def sgd_momentum_step(w, dw, v, lr, momentum, weight_decay):\n"
                                 "    if momentum == 0:\n        import sys\n        sys.exit(0)\n"))
    code, out, err = run([path], capsys)
    lines = lines_of(out)
    assert code == 1 and "SystemExit" in lines[1] and "3/4 checks pass" in out, out


def test_a_file_that_runs_no_check_scores_zero(tmp_path, capsys):
    path = tmp_path / "ex04_batchnorm_backward.py"
    path.write_text("print('PASS  everything')\n")  # defines nothing: prints cannot fake a check line
    code, out, err = run([path], capsys)
    lines = lines_of(out)
    assert code == 1 and "0/6 checks pass" in out and len(lines) == 7, out
    assert all("the file defines no function" in line for line in lines[1:]), out


CHEATS = {  # the import: the name of col2im and of Conv2d after it
    "from resnet_np.layers import col2im as c2i, Conv2d": ("c2i", "Conv2d"),
    "import resnet_np.layers as L": ("L.col2im", "L.Conv2d"),
    "from resnet_np import layers": ("layers.col2im", "layers.Conv2d"),
    "import resnet_np": ("resnet_np.layers.col2im", "resnet_np.layers.Conv2d"),
}


@pytest.mark.parametrize("imports", CHEATS)
def test_calling_the_library_implementation_is_flagged(imports, tmp_path, capsys):
    """A file that calls the library's col2im and Conv2d.backward passed every check; now it scores 0."""
    name, conv_name = CHEATS[imports]
    path = tmp_path / "ex03_conv_backward.py"
    path.write_text(f"""import numpy as np
{imports}
from resnet_np.layers import im2col


def conv_forward(x, w, b, stride, pad):
    conv = {conv_name}(x.shape[1], w.shape[0], w.shape[2:], stride=stride, padding=pad)
    conv = conv.astype("float64")
    conv.weight.data, conv.bias.data = w, b
    return conv.forward(x), conv


def col2im(dcols, x_shape, KH, KW, stride, pad):
    return {name}(dcols, x_shape, (KH, KW), (stride, stride), (pad, pad))


def conv_backward(dout, conv):
    dx = conv.backward(dout)
    return dx, conv.weight.grad, conv.bias.grad
""")
    code, out, err = run([path], capsys)
    lines = lines_of(out)
    assert code == 1 and lines[0].startswith("FAIL  honest work") and "col2im" in lines[0], out
    assert "Conv2d" in lines[0] or imports.startswith("import resnet_np"), out
    assert "0/13 checks pass" in out and all("not graded" in line for line in lines[1:]), out
    honest = path.read_text().replace(imports + "\n", "")  # the same file without the library: the scan is quiet
    assert grade.library_uses(honest, grade.EXERCISES[3].DERIVES) == []


def test_the_starting_files_imports_are_allowed():
    for path in EXERCISES.glob("ex[0-9][0-9]_*.py"):
        derives = grade.EXERCISES[int(path.name[2:4])].DERIVES
        assert grade.library_uses(path.read_text(), derives) == [], path.name


def test_one_image_is_not_enough_for_dw(tmp_path, capsys):
    """A dw from the first image alone passed the stride-2 check (its case had one image): every dw check fails."""
    path = tmp_path / "ex03_conv_backward.py"
    path.write_text(EX03.replace("dw = (dout_mat @ cols.transpose(0, 2, 1)).sum(axis=0)",
                                 "dw = dout_mat[0] @ cols[0].T"))
    code, out, err = run([path], capsys)
    dw = [line for line in lines_of(out) if line[6:].startswith("dw:")]
    assert len(dw) == 3 and all(line.startswith("FAIL") and "dw sums over the batch" in line for line in dw), out


def test_every_case_has_two_images_or_more():
    """Per-image mistakes (an answer from image 0 alone) pass a one-image case: no grader has one."""
    import re

    for path in sorted((ROOT / "resnet_np" / "grade").glob("ex[0-9][0-9]_*.py")):
        text = path.read_text()
        shapes = re.findall(r"(?<!transpose)\((\d+), \d+, \d+, \d+\)", text)  # (N, C, H, W) of the cases
        assert "1" not in shapes, f"{path.name} has a one-image case"


def test_hints_start_from_the_first_failing_check(tmp_path, capsys):
    path = tmp_path / "ex03_conv_backward.py"
    path.write_text(EX03.replace("dw = (dout_mat @ cols.transpose(0, 2, 1)).sum(axis=0)",
                                 "dw = (cols @ dout_mat.transpose(0, 2, 1)).sum(axis=0)"))
    code, out, err = run([path], capsys)
    assert "--hint 2 gives the hint for the first failing check (dw" in out, out
    code, out, err = run([path, "--hint"], capsys)
    hints = grade.EXERCISES[3].HINTS
    assert code == 0 and "the first failing check: dw" in out and hints[1] in out and hints[0] not in out, out
    code, out, err = run([EXERCISES / "ex03_conv_backward.py", "--hint"], capsys)
    assert "hint 5 of 5" in out and "col2im shape" in out, out  # the stub fails col2im first
    code, out, err = run([SOLUTIONS / "ex03_conv_backward.py", "--hint"], capsys)
    assert "every check passes" in out and not any(h in out for h in hints)


def test_json_output(tmp_path, capsys):
    wrong = tmp_path / "ex07_sgd_momentum.py"
    wrong.write_text(EX07.replace("    return w, v", "    return w - 1.0, v"))
    code, out, err = run([SOLUTIONS / "ex07_sgd_momentum.py", wrong, "--json"], capsys)
    right, bad = json.loads(out)
    assert code == 1
    assert right["exercise"] == "ex07" and right["score"] == right["max_score"] == 4
    assert bad["score"] == 0 and bad["max_score"] == 4 and len(bad["checks"]) == 5
    assert bad["checks"][0]["name"] == grade.HONEST and bad["checks"][0]["passed"]
    assert {"name", "passed", "error", "note", "hint"} <= set(bad["checks"][1])


def test_batch_mode_writes_a_roster(tmp_path, capsys):
    folder = tmp_path / "submissions"
    (folder / "alice").mkdir(parents=True)
    (folder / "alice" / "ex07_sgd_momentum.py").write_text(EX07)
    (folder / "bob_4711_ex07_sgd_momentum-2.py").write_text(EX07.replace("    return w, v", "    return w - 1, v"))
    (folder / "carol_ex07.py").write_text("import sys\nsys.exit(0)\n")
    (folder / "dave_notes.py").write_text("x = 1\n")
    roster = tmp_path / "roster.csv"
    code, out, err = run(["--batch", folder, "--roster", roster, "--timeout", "60"], capsys)
    assert code == 0, out + err
    rows = {row["student"]: row for row in csv.DictReader(roster.open())}
    assert set(rows) == {"alice", "bob_4711", "carol", "dave_notes"}
    assert rows["alice"]["score"] == "4" and rows["alice"]["max_score"] == "4"
    assert rows["bob_4711"]["score"] == "0" and rows["carol"]["score"] == "0"
    assert rows["alice"]["exercise"] == "ex07" and "not an exercise file" in rows["dave_notes"]["error"]
    assert rows["alice"]["ex07 5 steps, momentum 0.9, lr changing"] == "PASS"
    assert rows["bob_4711"]["ex07 5 steps, momentum 0.9, lr changing"] == "FAIL"
    code, out, err = run(["--batch", folder, "--exercise", "ex07", "--roster", roster, "--json", "--jobs", "2"],
                         capsys)
    assert [r["student"] for r in json.loads(out)] == ["alice", "bob_4711", "carol", "dave_notes"]  # in order
    assert [r["score"] for r in json.loads(out)] == [4, 0, 0, 0]
    assert "no such folder" in run(["--batch", tmp_path / "none"], capsys)[2]


def test_a_notebook_submission(tmp_path, capsys):
    cells = [{"cell_type": "markdown", "source": "# Exercise 7"},
             {"cell_type": "code", "source": "%matplotlib inline\n" + EX07, "outputs": []}]
    path = tmp_path / "ex07_sgd_momentum.ipynb"
    path.write_text(json.dumps({"cells": cells, "nbformat": 4, "nbformat_minor": 5, "metadata": {}}))
    code, out, err = run([path], capsys)
    assert code == 0 and "4/4 checks pass" in out, out + err


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_the_time_limit_must_be_a_finite_number(value, tmp_path, capsys):
    path = tmp_path / "ex07_sgd_momentum.py"
    path.write_text(EX07)
    with pytest.raises(SystemExit) as exit_status:
        grade.main([str(path), "--timeout", value])
    assert exit_status.value.code == 2 and "--timeout must be a positive number" in capsys.readouterr().err


def test_interrupting_the_grader_stops_the_submission_too(tmp_path):
    """Ctrl-C while a submission loops: one line, exit status 130, and the submission's process is gone (it runs
    in a session of its own, which Ctrl-C does not reach)."""
    path = tmp_path / "ex07_sgd_momentum.py"
    path.write_text(EX07.replace("    return w, v", "    while True:\n        pass"))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    grader = subprocess.Popen([sys.executable, "-m", "resnet_np.grade", str(path), "--timeout", "120"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def children():
        found = []
        for cmdline in pathlib.Path("/proc").glob("[0-9]*/cmdline"):
            try:
                if str(path).encode() in cmdline.read_bytes() and b"_child" in cmdline.read_bytes():
                    found.append(cmdline.parent.name)
            except OSError:
                pass
        return found

    deadline = time.monotonic() + 60
    while not children() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert children(), "the submission never started"
    time.sleep(1.0)
    grader.send_signal(signal.SIGINT)
    out, err = grader.communicate(timeout=60)
    assert grader.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
    deadline = time.monotonic() + 10
    while children() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not children(), "the submission still runs after the grader stopped"


def test_a_malformed_notebook_is_an_error_line_and_the_batch_goes_on(tmp_path, capsys):
    folder = tmp_path / "submissions"
    folder.mkdir()
    (folder / "alice_ex07_sgd_momentum.py").write_text(EX07)
    (folder / "bob_ex07_sgd_momentum.ipynb").write_text(json.dumps({"cells": 5}))
    (folder / "carol_ex07_sgd_momentum.ipynb").write_text(json.dumps({"cells": [{"cell_type": "code",
                                                                                  "source": 5}]}))
    for name in ("bob_ex07_sgd_momentum.ipynb", "carol_ex07_sgd_momentum.ipynb"):
        code, out, err = run([folder / name], capsys)
        assert code == 1 and "not a readable notebook" in err, err
    roster = tmp_path / "roster.csv"
    code, out, err = run(["--batch", folder, "--roster", roster, "--timeout", "60"], capsys)
    assert code == 0, err
    rows = {row["student"]: row for row in csv.DictReader(roster.open())}
    assert rows["alice"]["score"] == "4" and "not a readable notebook" in rows["bob"]["error"]
    assert "not a readable notebook" in rows["carol"]["error"]


def test_a_hint_number_out_of_range_and_a_roster_nowhere_are_errors(tmp_path, capsys):
    path = tmp_path / "ex07_sgd_momentum.py"
    path.write_text(EX07)
    for n in ("0", "99"):
        code, out, err = run([path, "--hint", n], capsys)
        assert code == 1 and f"--hint {n}: exercise 7 has hints 1 to" in err and not out.strip(), (out, err)
    with pytest.raises(SystemExit) as exit_status:
        grade.main(["--batch", str(tmp_path), "--roster", str(tmp_path / "no" / "such" / "roster.csv")])
    assert exit_status.value.code == 2 and "--roster" in capsys.readouterr().err


def test_a_file_without_the_function_says_so_and_a_typo_inside_it_does_not(tmp_path, capsys):
    """A missing function is named as such (not the import machinery's AttributeError); an AttributeError
    inside the student's own code (np.typo) stays what it is."""
    path = tmp_path / "ex07_sgd_momentum.py"
    path.write_text("x = 1\n")
    code, out, err = run([path], capsys)
    assert code == 1 and "the file defines no function sgd_momentum_step" in out and "_exercise_" not in out, out
    path.write_text(EX07.replace("    return w, v", "    np.no_such_function()\n    return w, v"))
    code, out, err = run([path], capsys)
    assert code == 1 and "AttributeError: module 'numpy' has no attribute 'no_such_function'" in out, out
    assert "defines no function" not in out
