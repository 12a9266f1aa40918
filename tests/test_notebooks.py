"""Every lesson and every exercise as a notebook: made by jupytext, executed by nbclient in a fresh kernel.

The lessons run once per session, in quick mode, in the course site's build (tests/_site.py, the
documented command), which keeps each executed notebook under docs/_build/lesson-runs/: here each one is
checked for what tests/test_lessons.py checked of the script (it ran to the end and saved a figure) and
for being the notebook of the lesson as it is now. The exercises run here: the starting notebook (its
grader cell reports the TODOs), then the reference solution in the same kernel, graded.
"""

import pathlib

import pytest

from _site import DOCS, ROOT, built_site, course_notebooks

LESSONS = sorted((ROOT / "lessons").glob("[0-9][0-9]_*.py"))
EXERCISES = sorted((ROOT / "lessons" / "exercises").glob("ex[0-9][0-9]_*.py"))


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem)
def test_lesson_runs_as_a_notebook(lesson):
    built_site()
    cn = course_notebooks()
    import nbformat

    run = DOCS / "_build" / "lesson-runs" / f"{lesson.stem}.ipynb"
    assert run.is_file(), f"the site's build did not execute {lesson.name}"
    executed = nbformat.read(run, as_version=4)
    # The notebook of the lesson as it is now (after the hidden setup cell), executed without an error.
    assert [c.source for c in executed.cells[1:]] == [c.source for c in cn.notebook_of(lesson).cells]
    assert "remove-cell" in executed.cells[0].metadata.get("tags", [])
    assert not cn.errors(executed), cn.errors(executed)
    course = executed.metadata["course"]
    assert course["figures_saved"] >= 1, "the lesson saved no figure"
    assert course["images"] >= course["figures_saved"], "every saved figure is shown in the notebook"


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda p: p.stem)
def test_exercise_runs_as_a_notebook(exercise, tmp_path):
    cn = course_notebooks()
    nb = cn.notebook_of(exercise)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert any("TODO" in c and "raise NotImplementedError" in c for c in code), "no TODO cell"
    exercise_id = exercise.name[:4]
    assert f'grade.check_functions("{exercise_id}", globals())' in code[-1], "the last cell runs the grader"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# Exercise")

    solution = (ROOT / "tests" / "exercise_solutions" / exercise.name).read_text()
    executed = cn.execute(nb, tmp_path, timeout=300, extra_cells=[
        solution, f'assert grade.check_functions("{exercise_id}", globals()), "the solution must pass"'])
    assert not cn.errors(executed), cn.errors(executed)
    grader_output = "".join(o.get("text", "") for o in executed.cells[len(nb.cells)].outputs)
    assert "not implemented yet" in grader_output and "FAIL" in grader_output, grader_output
    assert "checks pass: well done" in "".join(o.get("text", "") for o in executed.cells[-1].outputs)


def test_every_notebook_is_on_the_site():
    site = built_site()
    for path in LESSONS:
        assert (site / "lessons" / f"{path.stem}.html").is_file()
    for path in EXERCISES:
        assert (site / "exercises" / f"{path.stem}.html").is_file()
    downloads = {p.name for p in (DOCS / "_generated" / "downloads").iterdir()}
    for path in LESSONS + EXERCISES:
        assert {path.name, f"{path.stem}.ipynb"} <= downloads, path.name
    assert pathlib.Path(DOCS / "_generated" / "downloads" / "_common.py").is_file()
