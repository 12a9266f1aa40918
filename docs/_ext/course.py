"""The course site's own Sphinx extension.

At ``builder-inited`` it makes the generated sources (all under ``docs/``, ignored by git):

* ``lessons/NN_*.ipynb``: every ``lessons/NN_*.py`` (found by its name: a new lesson needs no edit here)
  as a notebook, executed in its quick mode (``--quick``) in a fresh kernel, two at a time, its printed
  output and figures kept, a line of download links under its title. A lesson whose source, the package
  and ``lessons/_common.py`` are unchanged since the last build is not run again.
* ``exercises/exNN_*.ipynb``: every exercise as a page (not executed: its TODO cells raise).
* ``_generated/downloads/``: the ``.py`` and the ``.ipynb`` (no outputs) of each, and ``_common.py``.
* ``results/``: one page per ``benchmarks/results/*.md``, and the figures next to them.

It also turns the formula blocks of the API's docstrings into math (``formula_blocks``) and, at the end
of the build, copies MathJax from the ``sphinx-mathjax-offline`` package into ``_static/mathjax``: the
site needs no network to show its math.
"""

import concurrent.futures
import hashlib
import importlib.util
import json
import os
import pathlib
import pkgutil
import re
import shutil
import time

import nbformat
from sphinx.util import logging
from sphinx.util.fileutil import copy_asset

import course_notebooks as cn

logger = logging.getLogger(__name__)
DOCS = pathlib.Path(__file__).resolve().parents[1]
RESULTS = cn.ROOT / "benchmarks" / "results"
EXECUTOR_VERSION = "2"  # bump to re-execute every lesson
API = {"resnet_np.module": "Module and Parameter", "resnet_np.layers": "Layers",
       "resnet_np.fast": "The engine: the layers' fast twins", "resnet_np.models": "Models",
       "resnet_np.optim": "Optimizers and schedules", "resnet_np.data": "Data",
       "resnet_np.distributed": "Data parallelism on MPI", "resnet_np.gradcheck": "Gradient checks"}


def _write(path, text):
    """Write ``text`` to ``path`` unless it is already there (an untouched file is not read again)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _digest(*paths):
    h = hashlib.sha256(EXECUTOR_VERSION.encode())
    for path in paths:
        h.update(str(path.relative_to(cn.ROOT)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _downloads_line(py, extra=()):
    links = [f"{{download}}`the notebook (.ipynb) </_generated/downloads/{py.stem}.ipynb>`",
             f"{{download}}`the script (.py) </_generated/downloads/{py.name}>`"]
    links += [f"{{download}}`{name} </_generated/downloads/{name}>`" for name in extra]
    return "**Download:** " + " · ".join(links)


def _with_downloads(nb, py, extra=()):
    """``nb`` with the download links under the title of its first text cell."""
    first = next(cell for cell in nb.cells if cell.cell_type == "markdown")
    lines = first.source.split("\n")
    title = next((i for i, line in enumerate(lines) if line.startswith("# ")), -1)
    lines[title + 1:title + 1] = ["", _downloads_line(py, extra)]
    first.source = "\n".join(lines)
    return nb


def _fold_setup(nb):
    """``nb`` with its setup cell (the first code cell: imports, the argument parser, matplotlib's backend)
    folded away behind a "Show code cell source" toggle, its output still shown."""
    first = next((cell for cell in nb.cells if cell.cell_type == "code"
                  and "remove-cell" not in cell.metadata.get("tags", [])), None)  # not the executor's own
    if first is not None and "argparse" in first.source:
        tags = first.metadata.setdefault("tags", [])
        if "hide-input" not in tags:
            tags.append("hide-input")
    return nb


def _needs_common(py):
    return re.search(r"^\s*from _common import|^\s*import _common", py.read_text(), re.M) is not None


def _run_lesson(py, key, run, workdir, jobs):
    nb = cn.notebook_of(py)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    shutil.copy(cn.LESSONS / "_common.py", workdir)  # beside the notebook, as a student keeps it
    start = time.perf_counter()
    # --out relative to the kernel's folder (workdir): the page prints "figures/x.png", not the build's path.
    executed = cn.execute(nb, workdir, ["--quick", "--out", "figures"], threads=1 if jobs > 1 else None)
    seconds = time.perf_counter() - start
    if cn.errors(executed):
        error = cn.errors(executed)[0]
        raise RuntimeError(f"{py.name}: {error.ename}: {error.evalue}")
    executed.metadata["course"] = {"key": key, "seconds": round(seconds, 1), "images": cn.images(executed),
                                   "figures_saved": len(list((workdir / "figures").glob("*.png")))}
    _write(run, nbformat.writes(executed))
    return py.name, seconds


def make_sources(app):
    downloads = DOCS / "_generated" / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    shutil.copy(cn.LESSONS / "_common.py", downloads / "_common.py")
    package = sorted((cn.ROOT / "resnet_np").rglob("*.py"))

    # Lessons: executed (when their inputs changed), two at a time on two cores.
    todo = []
    runs = DOCS / "_build" / "lesson-runs"  # the executed notebooks, kept between builds
    for py in cn.lessons():
        shutil.copy(py, downloads / py.name)
        _write(downloads / f"{py.stem}.ipynb", nbformat.writes(cn.notebook_of(py)))
        run = runs / f"{py.stem}.ipynb"
        key = _digest(py, cn.LESSONS / "_common.py", *package)
        if run.exists() and json.loads(run.read_text()).get("metadata", {}).get("course", {}).get("key") == key:
            continue
        todo.append((py, key, run, runs / py.stem))
    jobs = max(1, min(len(todo), int(os.environ.get("RESNET_NP_DOCS_JOBS", os.cpu_count() or 1))))
    if todo:
        logger.info(f"executing {len(todo)} lesson(s) in quick mode, {jobs} at a time")
        with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
            futures = [pool.submit(_run_lesson, *args, jobs) for args in todo]
            for future in concurrent.futures.as_completed(futures):
                name, seconds = future.result()
                logger.info(f"  {name}: {seconds:.1f} s")
    lesson_pages = set()
    for py in cn.lessons():
        page = DOCS / "lessons" / f"{py.stem}.ipynb"
        lesson_pages.add(page)
        executed = nbformat.read(runs / f"{py.stem}.ipynb", as_version=4)
        page_nb = _fold_setup(_with_downloads(executed, py, ["_common.py"] if _needs_common(py) else []))
        _write(page, nbformat.writes(page_nb))
    for stale in (DOCS / "lessons").glob("*.ipynb"):
        if stale not in lesson_pages:
            stale.unlink()

    # Exercises: pages without outputs.
    exercise_pages = set()
    for py in cn.exercises():
        shutil.copy(py, downloads / py.name)
        nb = cn.notebook_of(py)
        _write(downloads / f"{py.stem}.ipynb", nbformat.writes(nb))
        page = DOCS / "exercises" / f"{py.stem}.ipynb"
        exercise_pages.add(page)
        _write(page, nbformat.writes(_with_downloads(nb, py)))
    for stale in (DOCS / "exercises").glob("*.ipynb"):
        if stale not in exercise_pages:
            stale.unlink()

    # The API: one page per package, every module of it (a new module is picked up by itself); a page of a
    # package no longer listed must not linger (it would be a page outside every toctree).
    pages = {f"{package.rsplit('.', 1)[-1]}.md" for package in API} | {"index.md"}
    for old in (DOCS / "api").glob("*.md"):
        if old.name not in pages:
            old.unlink()
    for package, title in API.items():
        names = [package] if not (cn.ROOT / package.replace(".", "/")).is_dir() else [package] + [
            f"{package}.{info.name}" for info in pkgutil.iter_modules([str(cn.ROOT / package.replace(".", "/"))])
            if not info.name.startswith("_")]  # the package first: its docstring, and what it defines itself
        lines = [f"# {title}", ""]
        for module in names:
            options = ["   :no-members:", "   :no-index:"] if module == package and len(names) > 1 else []
            lines += [f"## `{module}`", "", "```{eval-rst}", f".. automodule:: {module}", *options, "```", ""]
        _write(DOCS / "api" / f"{package.rsplit('.', 1)[-1]}.md", "\n".join(lines))

    # Results: one page per results file, the figures beside them.
    results = DOCS / "results"
    results.mkdir(exist_ok=True)
    for old in results.glob("*.*"):  # a results file since removed must not linger as a page
        if old.name != "index.md" and not (RESULTS / old.name).exists():
            old.unlink()
    for md in sorted(RESULTS.glob("*.md")):
        _write(results / md.name, md.read_text())
    figures = sorted(RESULTS.glob("*.png"))
    for png in figures:
        if not (results / png.name).exists() or (results / png.name).read_bytes() != png.read_bytes():
            shutil.copy(png, results / png.name)
    lines = ["# Results", "",
             "What `benchmarks/` measured, as it wrote it to `benchmarks/results/`. The pages "
             "[Speed](../speed.md), [Fine-tuning](../finetuning.md), [CIFAR-10](../cifar10.md), "
             "[Models and variants](../models.md) and [Data parallelism](../distributed.md) give the commands "
             "and read the figures.", ""]
    if figures:
        lines += ["## Figures", ""]
        for png in figures:
            lines += [f"```{{figure}} {png.name}", f":alt: {png.stem}", "", f"`benchmarks/results/{png.name}`",
                      "```", ""]
    lines += ["```{toctree}", ":maxdepth: 1", ":caption: Tables", ""]
    lines += [md.stem for md in sorted(RESULTS.glob("*.md"))] + ["```", ""]
    _write(results / "index.md", "\n".join(lines))


# ---------------------------------------------------------------------------------------------------------
# The API's docstrings: formula blocks become math
# ---------------------------------------------------------------------------------------------------------
#
# The docstrings write their forward and backward formulas as indented blocks of plain text, one or more
# formulas a line, set apart by three or more spaces, sometimes with a comment in parentheses:
#
#     dx_hat = dout * weight
#     dx     = (M * dx_hat - sum(dx_hat) - x_hat * sum(dx_hat * x_hat)) / (M * sqrt(var + eps))
#
# Such a block becomes a ``.. math::`` block (aligned at the first = of each line); a block that does not
# read as formulas (a table of shapes, a diagram, code) becomes a literal block, so that nothing in it is
# taken for markup.

FUNCTIONS = {"sqrt": r"\sqrt", "exp": r"\exp", "log": r"\log", "max": r"\max", "min": r"\min",
             "logsumexp": r"\operatorname{logsumexp}", "softmax": r"\operatorname{softmax}",
             "relu": r"\operatorname{relu}", "sum": r"\sum", "mean": r"\operatorname{mean}",
             "col2im": r"\text{col2im}", "im2col": r"\text{im2col}"}
GREEK = {"eps": r"\varepsilon", "gamma": r"\gamma", "beta": r"\beta", "mu": r"\mu", "lambda": r"\lambda",
         "sigma": r"\sigma", "eta": r"\eta"}
TOKEN = re.compile(r"\s+|sum_\{[^}]*\}|sum_\w+|[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?(?:e-?\d+)?|\*\*|\+=|==|>=|<="
                   r"|[-+*/@()\[\],.:<>=~|^']")


def _identifier(name):
    if name in GREEK:
        return GREEK[name]
    if len(name) == 1:
        return name
    if re.fullmatch(r"[A-Za-z]_?\d", name):
        return f"{name[0]}_{name[-1]}"
    return r"\mathrm{" + name.replace("_", r"\_") + "}"


def _formula(text):
    """One formula as LaTeX, or None when it does not read as one."""
    tokens = [t for t in TOKEN.findall(text)]
    if "".join(tokens) != text:
        return None
    out, i, depth = [], 0, 0
    tokens = [t for t in tokens if not t.isspace()]
    while i < len(tokens):
        t, nxt = tokens[i], tokens[i + 1] if i + 1 < len(tokens) else ""
        if t.startswith("sum_"):
            sub = t[4:].strip("{}")
            out.append(r"\sum_{" + ",".join(_identifier(s.strip()) for s in sub.split(",")) + "}")
        elif t in FUNCTIONS and nxt == "(":
            out.append(FUNCTIONS[t] + ("" if t == "sqrt" else r"\,"))
            if t == "sqrt":  # sqrt(...) -> \sqrt{...}
                j, level = i + 1, 0
                while j < len(tokens):
                    level += tokens[j] == "("
                    level -= tokens[j] == ")"
                    if level == 0:
                        break
                    j += 1
                inner = _formula("".join(tokens[i + 2:j]))
                if inner is None or j == len(tokens):
                    return None
                out.append("{" + inner + "}")
                i = j
        elif re.fullmatch(r"[A-Za-z_]\w*", t):
            if t == "T" and out and out[-1] == ".":
                out[-1] = r"^{\top}"
            else:
                out.append(_identifier(t))
        elif t == "*":
            out.append(r"\cdot")
        elif t == "**":
            out.append("^")
        elif t == "@":
            out.append(r"\,")
        elif t == "+=":
            out.append(r"\mathrel{+}=")
        elif t == "==":
            out.append("=")
        elif t == "~":
            out.append(r"\sim")
        elif t in "([":
            depth += 1
            out.append(t)
        elif t in ")]":
            depth -= 1
            out.append(t)
        elif t in {"<", ">", "<=", ">="}:
            out.append({"<=": r"\le", ">=": r"\ge"}.get(t, t))
        elif t in {"|", "'", "^", ":"}:
            return None
        else:
            out.append(t)
        i += 1
    if depth != 0:
        return None
    return " ".join(out)


def _block_to_math(lines):
    """The LaTeX of a formula block, or None."""
    rows = []
    for line in lines:
        line = re.sub(r"\s+(\+?=)\s+", r" \1 ", line.strip())  # the alignment before an = is no separator
        parts = [p for p in re.split(r"\s{3,}", line) if p]
        cells = []
        for part in parts:
            if part.startswith("(") and part.endswith(")") and "=" not in part:
                words = part[1:-1].replace("\\", "")
                if re.search(r"[{}$#%&_^~]", words):
                    return None
                cells.append(r"\quad\text{(" + words + ")}")
                continue
            if not re.search(r"(?<![=<>!+])=(?!=)", part):
                return None
            lhs, rhs = re.split(r"(?<![=<>!+])=(?!=)", part, maxsplit=1)
            left, right = _formula(lhs.strip().rstrip("+")), _formula(rhs.strip())
            if re.search(r"[A-Za-z]{2,} [A-Za-z]{2,}", rhs) and not re.search(r"[{}$#%&_^~\\]", rhs):
                right = r"\text{" + rhs.strip() + "}"  # words, not a formula
            if left is None or right is None:
                return None
            op = r"\mathrel{+}=" if lhs.rstrip().endswith("+") else "="
            cells.append((left, op, right))
        if not cells or isinstance(cells[0], str):
            return None
        first = cells[0]
        row = f"{first[0]} &{first[1]} {first[2]}"
        for cell in cells[1:]:
            row += cell if isinstance(cell, str) else rf"\qquad {cell[0]} {cell[1]} {cell[2]}"
        rows.append(row)
    return r"\begin{aligned}" + r" \\ ".join(rows) + r"\end{aligned}"


def _indent(line):
    return len(line) - len(line.lstrip())


def formula_blocks(app, what, name, obj, options, lines):
    """autodoc-process-docstring: an indented block after a paragraph becomes math, else a literal block.

    The rest is prose, written as plain text: its bars and lone stars are escaped (``_escape_prose``). The
    docstring's own literal blocks (after a line ending in ``::``) and doctest blocks are left as written.
    """
    out, i = [], 0
    literal = None  # the indent of the line that ended in "::": the lines indented deeper are its code
    while i < len(lines):
        line = lines[i]
        if literal is not None:
            if not line.strip() or _indent(line) > literal:
                out.append(line)
                i += 1
                continue
            literal = None
        paragraph = next((x for x in reversed(out) if x.strip()), None)
        if (line.strip() and out and not out[-1].strip() and paragraph is not None
                and _indent(line) >= _indent(paragraph) + 4 and not paragraph.rstrip().endswith("::")):
            base = _indent(paragraph)
            block = []
            while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > base):
                block.append(lines[i])
                i += 1
            while block and not block[-1].strip():  # trailing blank lines stay outside
                block.pop()
                i -= 1
            math = None if any(not b.strip() for b in block) else _block_to_math(block)
            pad = " " * base
            if math is not None:
                out += [pad + ".. math::", "", pad + "   " + math, ""]
            else:
                out += [pad + "::", ""] + block + [""]
            continue
        if line.lstrip().startswith(">>>"):  # a doctest block, to the next blank line
            while i < len(lines) and lines[i].strip():
                out.append(lines[i])
                i += 1
            continue
        out.append(_escape_prose(line))
        if line.rstrip().endswith("::"):
            literal = _indent(line)
        i += 1
    lines[:] = out


# ``literals`` and `interpreted text` (roles such as :math:`...`) are left as written.
_LITERALS = re.compile(r"(``.+?``|`[^`]+`)")
# *emphasis* and **strong**, as the docstrings use them: a star pair around a word or words.
_EMPHASIS = re.compile(r"(?<![\w*\\])(\*\*|\*)(?![\s*])[^*]*?[^\s*\\]\1(?![\w*])")


def _escape_prose(line):
    """A line of prose as plain text: ``|a - b|`` is no substitution, and ``*args`` or ``(size, *shape)``
    opens no emphasis. Bars and stars outside ``literals``, roles and *emphasis* are escaped."""
    bullet = re.match(r"\s*\* ", line)  # a list item's own star stays one
    prefix = bullet.group() if bullet else ""
    parts = _LITERALS.split(line[len(prefix):])
    for k in range(0, len(parts), 2):
        text, pieces, last = parts[k], [], 0
        for match in _EMPHASIS.finditer(text):
            pieces += [_escape_plain(text[last:match.start()]), match.group()]
            last = match.end()
        parts[k] = "".join(pieces + [_escape_plain(text[last:])])
    return prefix + "".join(parts)


def _escape_plain(text):
    return re.sub(r"(?<!\\)([|*])", r"\\\1", text)


def copy_mathjax(app, exception):
    """MathJax from the sphinx-mathjax-offline package into _static/mathjax: math without a network."""
    if exception is not None or app.builder.format != "html":
        return
    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    if spec is None:
        raise RuntimeError("the docs need sphinx-mathjax-offline (pip install -e '.[docs]'): MathJax, served "
                           "with the site")
    source = pathlib.Path(spec.origin).parent / "static" / "mathjax"
    target = pathlib.Path(app.outdir) / "_static" / "mathjax"
    if (target / "tex-svg.js").exists():
        return
    for item in source.iterdir():  # the one combined component the site loads, and everything it may load
        if item.is_dir():
            copy_asset(str(item), str(target / item.name))
        elif item.name in {"tex-svg.js", "startup.js", "core.js", "loader.js"}:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy(item, target / item.name)


def setup(app):
    app.connect("builder-inited", make_sources)
    app.connect("autodoc-process-docstring", formula_blocks)
    app.connect("build-finished", copy_mathjax)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
