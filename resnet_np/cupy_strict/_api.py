"""The names CuPy has, read from ``cupy_api.txt`` (see ``make_api_list.py`` for where they come from)."""

import os

API_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cupy_api.txt")


def _read():
    version, names = None, []
    with open(API_FILE, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("# CuPy's documented API at "):
                version = line.split(" at ", 1)[1].split(" ", 1)[0]  # "v14.2.0"
            elif line and not line.startswith("#"):
                names.append(line)
    return version, names


CUPY_VERSION, _NAMES = _read()


def _members(prefix):
    """The names directly under ``prefix`` ("cupy", "cupy.random", ...)."""
    start = prefix + "."
    return frozenset(n[len(start):] for n in _NAMES if n.startswith(start) and "." not in n[len(start):])


FUNCTIONS = _members("cupy")
RANDOM = _members("cupy.random")
LINALG = _members("cupy.linalg")
ARRAY_MEMBERS = _members("cupy.ndarray")

# The ufunc methods CuPy implements, and for which ufuncs (docs/source/reference/ufunc.rst).
UFUNC_METHODS = {
    "reduce": {"add", "multiply"},
    "accumulate": {"add", "multiply"},
    "reduceat": {"add"},
    "outer": None,  # every ufunc
    "at": {"add", "subtract", "maximum", "minimum", "bitwise_and", "bitwise_or", "bitwise_xor"},
}
