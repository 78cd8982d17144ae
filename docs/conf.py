"""Sphinx configuration for the attnlib site."""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE / "sphinxext"))

import gallery_matrix

import attnlib

project = "attnlib"
author = "attnlib developers"
copyright = "2026, attnlib developers"
release = attnlib.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_nb",
    "sphinx_gallery.gen_gallery",
    "sphinx_copybutton",
    "sphinx_design",
    # Serves MathJax 3 from _static/mathjax: the site makes no request to any other host.
    "sphinx-mathjax-offline",
    # Every code/output block and wide table reachable by keyboard (docs/sphinxext/a11y.py).
    "a11y",
    # The front page's figure, paths and chapter cards, and the closing page's course
    # map, generated from the gallery (docs/sphinxext/frontpage.py; adds frontpage.css).
    "frontpage",
]

# -- Sources ------------------------------------------------------------------
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb"}
# sphinx-gallery writes a .ipynb next to every tutorial for download; myst-nb
# would otherwise claim those notebooks as pages of their own.
exclude_patterns = [
    "_build",
    "auto_gallery/**.ipynb",
    "auto_gallery/**.py",
    "auto_gallery/**.zip",
    "**.codeobj.json",
    "sphinxext",
    "_generated",
    "_data",
]
templates_path = ["_templates"]

# -- MyST / myst-nb -----------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "off"  # theory pages are prose; tutorials execute via sphinx-gallery

# -- API reference ------------------------------------------------------------
autosummary_generate = True
autodoc_typehints = "none"  # the numpy docstrings carry the types
autodoc_member_order = "bysource"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_preprocess_types = True
napoleon_custom_sections = ["Shape"]
nitpicky = True
# No intersphinx: the build must not touch the network. Names from other
# packages are left unlinked instead of warned about.
nitpick_ignore_regex = [
    (r"py:.*", r"(torch|np|numpy|pd|pandas|matplotlib|plt|mpl|nn|F|pathlib)\..*"),
    (r"py:.*", r"(sklearn|sacrebleu|tokenizers|transformers|ipywidgets)\..*"),
    (r"py:class", r"(Tensor|Module|Axes|Figure|optional|callable|array-like|sequence|default .*)"),
    (r"py:class", r"(mapping|mapping of .*|iterable|iterable of .*|batches)"),
    (r"py:class", r"(int|float|bool|str|tuple|list|dict|None)( .*)?"),
]

# -- HTML ---------------------------------------------------------------------
html_theme = "furo"
html_title = "attnlib: attention, from theory to implementation"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_favicon = "_static/favicon.svg"
html_theme_options = {
    "source_repository": "",
    "navigation_with_keys": True,
}
html_show_sourcelink = False
copybutton_exclude = ".linenos, .gp, .go"

# -- sphinx-gallery -----------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "../gallery",
    "gallery_dirs": "auto_gallery",
    # Execute every script (the default pattern only runs plot_*.py).
    "filename_pattern": os.environ.get("ATTNLIB_GALLERY_PATTERN", r".*\.py"),
    "ignore_pattern": r"__init__\.py|^_",
    "within_subsection_order": "FileNameSortKey",
    "abort_on_example_error": True,
    "reset_modules": ("matplotlib", "seaborn", "gallery_utils.reset_state"),
    "doc_module": ("attnlib",),
    # The API pages live at the defining module (attnlib.attention.X), not at
    # the shorter re-export (attnlib.X): record backreferences there.
    "prefer_full_module": {r"^attnlib\."},
    "backreferences_dir": "api/generated/backreferences",
    "exclude_implicit_doc": {r"attnlib\._.*"},
    "min_reported_time": 0,
    # The execution-time summary pages load jQuery and DataTables from a CDN;
    # the site must not touch other hosts. Times are in each tutorial page,
    # in the build log, and in docs/_build/gallery-junit.xml.
    "write_computation_times": False,
    "remove_config_comments": True,
    "first_notebook_cell": "%matplotlib inline",
    "capture_repr": ("_repr_html_", "__repr__"),
    "matplotlib_animations": False,
    "show_memory": False,
    "junit": "../_build/gallery-junit.xml",
    "log_level": {"backreference_missing": "debug"},
    "image_srcset": ["2x"],
    # Tutorials run two (or ATTNLIB_GALLERY_JOBS) at a time, each in its own
    # process with one torch thread (gallery_utils.reset_state). sphinx-gallery
    # parallelises within a chapter; the chapters follow one another.
    "parallel": int(os.environ.get("ATTNLIB_GALLERY_JOBS", min(os.cpu_count() or 1, 4))),
}

# joblib's process pool says so when an idle worker was recycled between two
# chapters: harmless, and not a warning about the site.
warnings.filterwarnings("ignore", message="A worker stopped while some jobs", category=UserWarning)

# -- "How the claims are checked": the published robustness matrix -----------
_generated = HERE / "_generated"
_generated.mkdir(exist_ok=True)
_matrix = json.loads(gallery_matrix.PUBLISHED.read_text(encoding="utf-8"))
_page = gallery_matrix.render_markdown(_matrix)
_target = _generated / "robustness-matrix.md"
if not _target.exists() or _target.read_text(encoding="utf-8") != _page:
    _target.write_text(_page, encoding="utf-8")  # rewritten only when it changed
