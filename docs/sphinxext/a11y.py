"""Accessibility fixes made to every HTML page at build time (issue 16).

axe-core, run on the built site (tests/browser/test_a11y.py), reported two kinds of
serious WCAG 2 A/AA violations that come from the HTML that Sphinx, Pygments and
sphinx-gallery write; this extension fixes them in each page's body as it is rendered
(``html-page-context``), so no generated file is edited by hand:

* **scrollable-region-focusable** (WCAG 2.1.1, keyboard): code and output blocks scroll
  sideways (and outputs downwards, past sphinx-gallery's 30em) when their lines are
  longer than the column, but a ``<pre>`` holds nothing focusable, so a keyboard user
  cannot scroll it. Every ``<pre>`` gets ``tabindex="0"``, and the blocks Pygments
  highlights become named regions (``role="region"``, ``aria-label`` "Python code",
  "Output", "Source code", ...) so that a screen reader says what received the focus.
  Wide tables (furo's ``div.table-wrapper``, which scrolls) get the same treatment. All
  of them are made focusable, not only those that overflow at one window width: whether a
  block scrolls depends on the reader's screen.

The other violation axe found, gallery thumbnails whose only text is hidden with
``display: none`` (rule **link-name**, WCAG 2.4.4 and 4.1.2), is fixed in
``_static/custom.css``, which hides that text visually only.

A focusable block is of no use if its keys are taken from it: with Sphinx's
``navigation_with_keys`` (conf.py), ArrowLeft and ArrowRight turned the page even when the
focus was in a code block or an explorer. ``_static/a11y.js``, added to every page here,
keeps those keys where the focus is.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sphinx.application import Sphinx

# Pygments' block: <div class="highlight-LANG notranslate"><div class="highlight"><pre>
# (sphinx-gallery's text output: <div class="sphx-glr-script-out highlight-none ...">)
_HIGHLIGHT = re.compile(r'(?:<div class="(?P<outer>[^"]*)">)?<div class="highlight"><pre>')
_RAW = re.compile(r"(<script\b.*?</script\s*>|<style\b.*?</style\s*>)", re.I | re.S)
_PRE = re.compile(r"<pre(?P<attrs>(?:\s[^>]*)?)>")
_TABLE_WRAPPER = re.compile(r'<div class="table-wrapper(?P<rest>[^"]*)"(?P<attrs>[^>]*)>')
_LANGUAGES = {"python": "Python", "py": "Python", "pycon": "Python", "ipython3": "Python"}
_LANGUAGES |= {"bash": "Shell", "shell": "Shell", "console": "Shell", "sh": "Shell"}
_LANGUAGES |= {"yaml": "YAML", "toml": "TOML", "json": "JSON", "ini": "INI", "rst": "reST"}
_LANGUAGES |= {"javascript": "JavaScript", "js": "JavaScript", "html": "HTML", "css": "CSS"}


def block_label(outer_classes: str, pagename: str = "") -> str:
    """The accessible name of a highlighted block, from its wrapper's classes.

    >>> block_label("sphx-glr-script-out highlight-none notranslate")
    'Output'
    >>> block_label("highlight-Python notranslate")
    'Python code'
    >>> block_label("", "_modules/attnlib/masks")
    'Source code'
    """
    classes = outer_classes.split()
    if "sphx-glr-script-out" in classes:
        return "Output"
    if pagename.startswith("_modules/"):
        return "Source code"
    languages = [
        c.removeprefix("highlight-").lower() for c in classes if c.startswith("highlight-")
    ]
    language = _LANGUAGES.get(languages[0], "") if languages else ""
    return f"{language} code" if language else "Code"


def make_accessible(body: str, pagename: str = "") -> str:
    """``body`` (a page's HTML) with every ``<pre>`` and wide table reachable by keyboard.

    >>> make_accessible('<div class="highlight-python notranslate"><div class="highlight"><pre>x')
    '<div class="highlight-python notranslate"><div class="highlight"><pre tabindex="0" \
role="region" aria-label="Python code">x'
    >>> make_accessible('<pre class="literal-block">x</pre>')
    '<pre class="literal-block" tabindex="0">x</pre>'
    >>> make_accessible(make_accessible('<pre>x</pre>'))
    '<pre tabindex="0">x</pre>'
    >>> make_accessible('<script>const s = "<pre>";</script><pre>')
    '<script>const s = "<pre>";</script><pre tabindex="0">'
    """

    def highlighted(match: re.Match) -> str:
        outer = match["outer"]
        label = block_label(outer or "", pagename)
        head = f'<div class="{outer}">' if outer is not None else ""
        return (
            f'{head}<div class="highlight"><pre tabindex="0" role="region" aria-label="{label}">'
        )

    def pre(match: re.Match) -> str:
        attrs = match["attrs"]
        return match[0] if "tabindex" in attrs else f'<pre{attrs} tabindex="0">'

    def table(match: re.Match) -> str:
        if "tabindex" in match["attrs"]:
            return match[0]
        return (
            f'<div class="table-wrapper{match["rest"]}"{match["attrs"]} tabindex="0" '
            'role="region" aria-label="Table">'
        )

    def markup(part: str) -> str:
        part = _HIGHLIGHT.sub(highlighted, part)
        part = _PRE.sub(pre, part)
        return _TABLE_WRAPPER.sub(table, part)

    # the text of scripts and styles (an explorer's code, say) is left as it is
    parts = _RAW.split(body)
    return "".join(part if i % 2 else markup(part) for i, part in enumerate(parts))


def _page_context(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    if context.get("body"):
        context["body"] = make_accessible(context["body"], pagename)


def setup(app: Sphinx) -> dict:
    # after furo (priority 500), which wraps tables while reading, not here
    app.connect("html-page-context", _page_context, priority=600)
    app.add_js_file("a11y.js")  # in docs/_static (html_static_path)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
