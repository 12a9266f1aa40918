"""The lessons and exercises as notebooks: made from the percent-format scripts, executed with nbclient.

Used by the site's build (``docs/_ext/course.py``) and by ``tests/test_notebooks.py``, so that what the
site shows is what the test ran.

* ``notebook_of(path)``: the ``.ipynb`` a student downloads (jupytext, no outputs).
* ``execute(nb, workdir, args)``: runs it in a fresh Jupyter kernel, in ``workdir``, the way a student's
  Jupyter would, with one hidden first cell (tagged ``remove-cell``, which the site drops) that passes
  ``args`` to the lesson's argument parser (``--quick``, ``--out``) and shows every PNG the lesson saves
  as an output of the cell that saved it: the lessons draw with the Agg backend and save their figures,
  so without it a notebook would show none.
"""

import copy
import os
import pathlib

import jupytext
import nbformat
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[2]
LESSONS = ROOT / "lessons"
EXERCISES = LESSONS / "exercises"
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}

SETUP = '''\
def _course_setup(argv):
    """Hidden cell of the course's notebooks: the lesson's arguments, and its saved figures shown inline."""
    import os
    import sys

    from IPython import get_ipython
    from IPython.display import Image, display
    from matplotlib.figure import Figure

    sys.argv = sys.argv[:1] + argv
    saved, savefig = [], Figure.savefig

    def record(self, fname, *args, **kwargs):
        result = savefig(self, fname, *args, **kwargs)
        if isinstance(fname, (str, os.PathLike)) and str(fname).endswith(".png"):
            saved.append(os.fspath(fname))
        return result

    def show(result=None):
        while saved:
            display(Image(filename=saved.pop(0)))

    Figure.savefig = record
    get_ipython().events.register("post_run_cell", show)


_course_setup({argv!r})
del _course_setup
'''


def lessons():
    """Every lesson script, in order: ``lessons/NN_*.py`` (a new one is picked up by its name)."""
    return sorted(LESSONS.glob("[0-9][0-9]_*.py"))


def exercises():
    """Every exercise: ``lessons/exercises/exNN_*.py``."""
    return sorted(EXERCISES.glob("ex[0-9][0-9]_*.py"))


def notebook_of(path):
    """The notebook of a percent-format script, as a student downloads it."""
    nb = jupytext.read(path, fmt="py:percent")
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata.pop("jupytext", None)
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.validate(nb)
    return nb


def kernel_env(threads=None):
    """The environment of a kernel: this one, with the BLAS and the layers at ``threads`` threads if given."""
    env = dict(os.environ)
    if threads:
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RESNET_NP_NUM_THREADS"):
            env.setdefault(name, str(threads))
    env.pop("MPLBACKEND", None)  # the lessons choose theirs
    return env


def execute(nb, workdir, args=(), timeout=600, threads=None, extra_cells=()):
    """Run a copy of ``nb`` in ``workdir`` and return it with its outputs (raises on the first error).

    ``args`` go to the lesson's parser, ``extra_cells`` (source strings) run after the notebook's own cells.
    """
    nb = copy.deepcopy(nb)
    setup = nbformat.v4.new_code_cell(SETUP.format(argv=list(args)))
    setup.metadata["tags"] = ["remove-cell"]
    nb.cells.insert(0, setup)
    nb.cells.extend(nbformat.v4.new_code_cell(source) for source in extra_cells)
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(workdir)}},
                            extra_arguments=["--IPKernelApp.log_level=ERROR"])
    client.execute(env=kernel_env(threads))
    return nb


def errors(nb):
    """The error outputs of an executed notebook."""
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]


def images(nb):
    """How many PNG images an executed notebook shows."""
    return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
               for o in c.get("outputs", []))


def text(nb):
    """All the text an executed notebook printed."""
    parts = []
    for c in nb.cells:
        for o in c.get("outputs", []) if c.cell_type == "code" else []:
            if o.output_type == "stream":
                parts.append(o.text)
            elif "text/plain" in o.get("data", {}):
                parts.append(o.data["text/plain"])
    return "".join(parts)
