"""Rebuild ``cupy_api.txt``, the names the stand-in offers, from CuPy's own documentation and source.

Run against a git clone of https://github.com/cupy/cupy at the release the ``gpu`` extra installs::

    python -m resnet_np.cupy_strict.make_api_list /path/to/cupy/.git v14.2.0 > resnet_np/cupy_strict/cupy_api.txt

Functions: every name in an ``autosummary`` list of ``docs/source/reference/*.rst`` (the NumPy-compatible
routines and ufuncs, ``cupy.random``, ``cupy.linalg``), under the page's ``currentmodule``. Array methods
and attributes: the ``def``/``cpdef`` members of ``_ndarray_base`` in ``cupy/_core/core.pyx`` (the class
page is generated from it, so the rst lists none) and the public attributes of ``core.pxd``. Dtypes and
constants: the ``from numpy import`` lines of ``cupy/__init__.py`` (``cupy.float32`` is ``numpy.float32``), and its
aliases of documented functions (``cupy.abs`` for ``cupy.absolute``).
"""

import re
import subprocess
import sys

PAGES = ("creation", "manipulation", "binary", "dtype", "functional", "indexing", "io", "linalg", "logic",
         "math", "misc", "polynomials", "random", "set", "sorting", "statistics", "ufunc", "window", "ndarray")
KEPT_MODULES = ("cupy", "cupy.random", "cupy.linalg")


def _show(git_dir, ref, path):
    return subprocess.run(["git", "--git-dir", git_dir, "show", f"{ref}:{path}"], check=True,
                          capture_output=True, text=True).stdout


def documented_functions(text):
    """``module.name`` for each entry of the page's autosummary lists."""
    names, module, in_list = [], "cupy", False
    for line in text.splitlines():
        found = re.match(r"\.\. (?:currentmodule|module):: (\S+)", line)
        if found:
            module = found.group(1)
            continue
        if line.startswith(".. autosummary::"):
            in_list = True
            continue
        if in_list:
            entry = line.strip()
            if not entry or entry.startswith((":", "#")):
                continue
            if not line.startswith(" ") or entry.startswith(".."):
                in_list = False
                continue
            names.append(entry if entry.startswith("cupy") else f"{module}.{entry}")
    return names


def array_members(core_pyx, core_pxd):
    """The public methods and attributes of ``cupy.ndarray``."""
    body = core_pyx.split("cdef class _ndarray_base:")[1].split("\ncdef ")[0].split("\nclass ")[0]
    names = set(re.findall(r"^    (?:def|cpdef(?: [\w.\[\]]+)?) (\w+)\(", body, flags=re.M))
    names |= set(re.findall(r"^    property (\w+):", body, flags=re.M))
    attrs = core_pxd.split("cdef class _ndarray_base:")[1].split("\ncdef ")[0]
    names |= set(re.findall(r"^\s+(?:cdef )?(?:readonly|public) [\w.]+ (\w+)", attrs, flags=re.M))
    return sorted(n for n in names if not n.startswith("_") or (n.startswith("__") and n.endswith("__")))


def main(git_dir, ref):
    commit = subprocess.run(["git", "--git-dir", git_dir, "rev-parse", f"{ref}^{{commit}}"], check=True,
                            capture_output=True, text=True).stdout.strip()
    functions = set()
    for page in PAGES:
        for name in documented_functions(_show(git_dir, ref, f"docs/source/reference/{page}.rst")):
            if name.rsplit(".", 1)[0] in KEPT_MODULES:
                functions.add(name)
    # The dtypes and constants cupy/__init__.py takes over from NumPy (cupy.float32 is numpy.float32).
    init = _show(git_dir, ref, "cupy/__init__.py")
    for source, name, alias in re.findall(r"^ *from (\S+) import (\w+)(?: as (\w+))?", init, flags=re.M):
        if source == "numpy" or (alias and f"cupy.{name}" in functions):  # numpy's names, aliases (abs, max)
            functions.add(f"cupy.{alias or name}")
    members = array_members(_show(git_dir, ref, "cupy/_core/core.pyx"), _show(git_dir, ref, "cupy/_core/core.pxd"))
    print(f"# CuPy's documented API at {ref} (commit {commit}), the release the 'gpu' extra installs.")
    print("# Functions: the autosummary lists of docs/source/reference/*.rst; cupy.ndarray members: the def/cpdef")
    print("# members of _ndarray_base in cupy/_core/core.pyx and its public attributes in core.pxd; dtypes and")
    print("# constants: the `from numpy import` lines of cupy/__init__.py, and its aliases of documented functions.")
    print(f"# Rebuilt by: python -m resnet_np.cupy_strict.make_api_list <cupy .git> {ref}")
    for name in sorted(functions):
        print(name)
    for name in members:
        print(f"cupy.ndarray.{name}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
