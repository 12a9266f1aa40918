"""The README and the site's pages keep their promises.

The README is the front page: CI runs its test command verbatim, its main command trains on MNIST, its
offline note names the files the loader checks, and every page it links to exists and is on the site.
The rest of what the README used to hold lives on the site's pages (docs/*.md): their Python examples
run, and every `python -m resnet_np ...` command they show is one the command line accepts.
"""

import pathlib
import re
import shlex

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
# The site's pages that took over the README's sections: their examples and commands are checked here.
PAGES = ["training", "cifar10", "models", "finetuning", "speed", "distributed", "library", "robustness"]


def page(name):
    return (ROOT / "docs" / f"{name}.md").read_text()


def blocks(text, language):
    return [block.strip() for block in re.findall(rf"```{language}\n(.*?)```", text, re.S)]


def bash_commands():
    return blocks(README, "bash")


def test_ci_runs_the_readme_test_command_verbatim():
    test_command = next(c for c in bash_commands() if "pytest" in c)
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines


def test_readme_main_command_trains_on_mnist():
    main = bash_commands()[0]
    assert main.endswith("python -m resnet_np train")


def test_readme_says_how_to_run_the_main_command_offline():
    """The offline note names RESNET_NP_DATA and exactly the MNIST files the loader checks."""
    from resnet_np.data.datasets import DATASETS

    assert "export RESNET_NP_DATA=" in README and "mnist/" in README
    named = set(re.findall(r"`([\w-]+-idx\d-ubyte\.gz)`", README.split("## The two commands")[1]))
    assert named == set(DATASETS["mnist"]["md5"]), named


def test_readme_is_a_front_page():
    """Five minutes of reading: the rest is on the site."""
    lines = README.count("\n")
    assert lines < 150, f"README.md has {lines} lines: move the details to a page of the site (docs/)"
    for heading in ("## The two commands", "## Start the course", "## Where everything else lives"):
        assert heading in README
    assert "python -m resnet_np.grade" in README and "--hint" in README


def test_readme_links_resolve_and_its_pages_are_on_the_site():
    links = [link.split("#")[0] for link in re.findall(r"\]\(([^)\s]+)\)", README)
             if not link.startswith(("http://", "https://", "#"))]
    assert links
    for link in links:
        assert (ROOT / link).exists(), f"README.md links to {link}, which does not exist"
    index = (ROOT / "docs" / "index.md").read_text()
    toctrees = "\n".join(re.findall(r"```\{toctree\}\n(.*?)```", index, re.S))
    for link in links:
        if link.startswith("docs/") and link.endswith(".md"):
            assert re.search(rf"^{re.escape(link[5:-3])}$", toctrees, re.M), f"{link} is not in docs/index.md's toctree"


def _resnet_np_commands():
    """Every `python -m resnet_np ...` command of the README and of the pages, as argument lists."""
    commands = []
    for name, text in [("README.md", README)] + [(f"docs/{p}.md", page(p)) for p in PAGES]:
        for block in blocks(text, "bash"):
            for line in block.splitlines():
                match = re.search(r"python3? -m resnet_np (.*)", line.split(" #")[0])
                if match:
                    commands.append(pytest.param(shlex.split(match.group(1)), id=f"{name}: {match.group(1)[:60]}"))
    return commands


@pytest.mark.parametrize("argv", _resnet_np_commands())
def test_the_pages_commands_are_accepted(argv):
    """A renamed or removed option would make a page's command fail: the parser must accept each one."""
    from resnet_np.__main__ import build_parser

    try:
        build_parser().parse_args(argv)
    except SystemExit as e:
        pytest.fail(f"python -m resnet_np {' '.join(argv)}: the parser refuses it (exit {e.code})")


def test_the_pages_python_examples_run(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples may save files
    examples = [(p, example) for p in PAGES for example in blocks(page(p), "python")]
    assert len(examples) >= 6
    np.random.seed(0)
    for name, example in examples:
        exec(compile(example, f"docs/{name}.md", "exec"), {})
    out = capsys.readouterr().out
    assert "worst relative error" in out and "Total params" in out


def test_every_exercise_is_in_the_course_guide():
    """lessons/README.md (the site's "Exercises and the grader" page) lists every exercise a student gets."""
    guide = (ROOT / "lessons" / "README.md").read_text()
    exercises = sorted((ROOT / "lessons" / "exercises").glob("ex[0-9][0-9]_*.py"))
    assert exercises
    missing = [p.name for p in exercises if f"`{p.name}`" not in guide]
    assert not missing, f"add a row for each to the exercises table in lessons/README.md: {missing}"


def pytorch_table():
    """The rows of README's "From PyTorch, name for name" table: (PyTorch's names, ours, options) cells."""
    section = README.split("## From PyTorch, name for name", 1)[1].split("\n## ", 1)[0]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in section.splitlines()
            if line.startswith("| ") and not line.startswith("| PyTorch") and not line.startswith("| ---")]


def test_the_pytorch_table_names_only_what_exists():
    """Every class the table names exists, and every option it lists is an argument of one of the row's
    classes (or a function of the package): a renamed or removed option makes the README lie."""
    import inspect

    import resnet_np
    from resnet_np import distributed, layers, models, optim

    packages = {"layers": layers, "models": models, "optim": optim, "distributed": distributed}
    rows = pytorch_table()
    assert len(rows) >= 12
    for theirs, ours, options in rows:
        if ".*" in ours:  # "same names": PyTorch's names, found in our package
            package = packages[ours.split("`")[1].split(".")[0]]
            names = [n for n in re.findall(r"`(?:\w+\.)?(\w+)`", theirs) if hasattr(package, n)]
        else:
            names = re.findall(r"`(layers|models|optim|distributed)\.(\w+)`", ours)
            package, names = None, [(packages[p], n) for p, n in names]
        classes = [getattr(package, n) for n in names] if package else [getattr(p, n) for p, n in names]
        assert classes, (theirs, ours)
        accepted = set()
        for c in classes:
            for function in (c, getattr(c, "forward", None), getattr(c, "__call__", None)):
                try:
                    accepted |= set(inspect.signature(function).parameters)
                except (TypeError, ValueError):
                    pass
        for option in re.findall(r"`([a-z_]+)`", options):
            known = option in accepted or any(hasattr(m, option) for m in (resnet_np, *packages.values()))
            assert known, f"README's PyTorch table: {option!r} is not an argument of {ours}"
