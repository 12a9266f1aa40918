"""Sphinx configuration of the course site: ``make -C docs html`` (warnings are errors)."""

import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

project = "resnet_np"
author = "the resnet_np authors"
copyright = "the resnet_np authors, MIT licence"

extensions = [
    "myst_nb",               # Markdown (MyST) pages and the lessons' notebooks
    "sphinx.ext.autodoc",    # the API reference, from the docstrings
    "sphinx.ext.napoleon",   # their "Args:" sections
    "sphinx.ext.mathjax",    # math, with MathJax served from the site itself (course.copy_mathjax)
    "course",                # docs/_ext/course.py: executes the lessons, makes the notebook pages
]

# Pages: Markdown and notebooks. What course.py generates lives beside the committed pages and is
# ignored by git; _generated holds the downloads, which are not pages.
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "_generated", "_ext", "lessons/*/**", "Thumbs.db", ".DS_Store"]
master_doc = "index"

# The lessons are executed by course.py (in quick mode, two at a time) before Sphinx reads them.
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

# Math: MathJax 3, SVG output (no web fonts), from _static/mathjax (the sphinx-mathjax-offline package).
mathjax_path = "mathjax/tex-svg.js"
mathjax3_config = {"svg": {"fontCache": "global"}}

autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "none"

html_theme = "furo"
html_title = "resnet_np: ResNets from scratch"
html_static_path = ["_static"]
html_css_files = ["course.css"]  # shell commands wrap, wide formulas scale to the column
html_favicon = "_static/favicon.svg"  # else a browser asks for /favicon.ico
html_copy_source = False
html_show_sourcelink = False
