"""Honest work: does a submission use the library's implementation of what its exercise derives?

Each exercise module names what it derives in ``DERIVES``: names of the library (``"col2im"``,
``"Conv2d"``; shell patterns such as ``"col2im*"`` cover the engine's variants) and dotted calls
(``"block.backward"``, the block the grader hands over). The submission's syntax tree is read, never
run: a name imported from ``resnet_np`` (``from resnet_np.layers import col2im``), an attribute reached
from an imported ``resnet_np`` module (``resnet_np.layers.Conv2d``, ``L.col2im`` after
``from resnet_np import layers as L``) or a dotted call of ``DERIVES`` is a use. What the starting file
itself imports (``im2col`` in exercise 3) is not in ``DERIVES`` and stays allowed.

This catches the honest mistake and the lazy shortcut, not a determined cheat (``getattr`` with a
computed string passes); the checks of each exercise stay the grade.
"""

import ast
import fnmatch

__all__ = ["library_uses"]


def _dotted(node):
    """``a.b.c`` for an attribute chain on a name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id] + parts[::-1])
    return None


def _is_library(module):
    return module is not None and module.split(".")[0] == "resnet_np"


def library_uses(source, derives):
    """[(line, what)] for every use in ``source`` of what ``derives`` names; [] for honest work.

    Raises SyntaxError when ``source`` does not parse (the grader reports that as the import failure).
    """
    tree = ast.parse(source)
    names = [d for d in derives if "." not in d]
    calls = {d for d in derives if "." in d}

    def derived(name):
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in names)

    modules = set()  # local names bound to resnet_np or one of its modules
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _is_library(alias.name):
                    modules.add(alias.asname or alias.name.split(".")[0])
                    for part in alias.name.split(".")[1:]:
                        if derived(part):
                            found.append((node.lineno, alias.name))
        elif isinstance(node, ast.ImportFrom) and _is_library(node.module):
            for alias in node.names:
                if alias.name == "*":
                    found.append((node.lineno, f"from {node.module} import * (import by name what you use)"))
                elif derived(alias.name):
                    found.append((node.lineno, f"{node.module}.{alias.name}"))
                else:
                    modules.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            dotted = _dotted(node)
            if dotted is None:
                continue
            if dotted in calls:
                found.append((node.lineno, dotted))
                continue
            root, *rest = dotted.split(".")
            if root in modules and rest and derived(rest[-1]):
                found.append((node.lineno, dotted))
    return sorted(set(found))
