"""The front page and the course map, generated from the gallery's own outputs.

A Sphinx extension. On ``builder-inited``, after sphinx-gallery has generated the
tutorial pages and their thumbnails (its ``generate_gallery_rst`` runs at the default
priority, 500; this handler at 600), it writes reST files into ``docs/_generated/``:

* ``front-figure.rst``, ``front-paths.rst``, ``front-chapters.rst`` and
  ``front-outcomes.rst`` (included by ``index.md``): a feature figure drawn by a
  tutorial, suggested paths through the course, the chapters as cards with their
  thumbnails, and what a reader will be able to do at the end;
* ``course-map.rst`` (included by ``next.md``): every chapter with its blurb and a
  link to each of its tutorials.

Chapters are discovered from the gallery folders (``gallery/NN_name/`` holding at
least one tutorial script), their titles and blurbs read from the folder's
``GALLERY_HEADER.rst``, tutorial titles from the scripts' docstrings: a new chapter
appears on both pages without an edit here. A chapter that was never executed (no
thumbnail) gets a card without an image; a suggested tutorial that no longer exists
is left out of its path. Nothing here can fail the build.

It also registers a role, ``attnlib-chapter``, for prose that names a chapter by its
folder (``{attnlib-chapter}`the chapter on speed <10_efficient>``` in MyST): a link
to the chapter's page, or the text alone while the chapter has no tutorial.
"""

from __future__ import annotations

import ast
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

# Sphinx and docutils are imported where they are used: the page generators run
# without them (tests/browser/test_front_page.py calls them directly).
try:
    from sphinx.util import logging as sphinx_logging

    logger = sphinx_logging.getLogger(__name__)
except ImportError:
    logger = logging.getLogger(__name__)

CHAPTER_DIR = re.compile(r"^(\d+)_\w+$")
HEADER_NAMES = ("GALLERY_HEADER.rst", "README.rst", "README.txt")
UNDERLINE = re.compile(r"^([=\-~^\"'`#*+])\1{2,}\s*$")

# The feature figure: the first of these that exists. Each is (tutorial, the start of
# the figure's title, the figure number to use if no title matches). Matching on the
# title (sphinx-gallery writes it into the image's alt text) keeps the choice stable
# when figures are added before it; if none of them exists, the first figure found.
FEATURE = [
    ("08_gpt/02_induction_heads", "The induction circuit", 3),
    ("06_interpretability/01_attention_heatmaps", "", 1),
    ("01_foundations/01_why_attention", "", 1),
]
FEATURE_CAPTION = {  # used only for a figure found by its title; else its alt text
    "08_gpt/02_induction_heads": (
        "Induction heads in a two-layer GPT trained on a CPU while this site was built. "
        "Left, a first-layer head looks at the previous token; middle, a second-layer "
        "head looks at the token that *followed* the current one the last time it "
        "appeared, which is how the model copies a repeated sequence; right, the same "
        "head once the first layer's heads are knocked out: the copying pattern is gone."
    ),
}

# Suggested paths: tutorials as "chapter/stem", in reading order. A missing one is
# left out (with a message in the build log); "everything" is the whole gallery.
PATHS = [
    (
        "An hour",
        "What attention computes and why it exists, how heads divide the work, "
        "and what a trained model's heads do.",
        [
            "01_foundations/01_why_attention",
            "01_foundations/03_scaled_dot_product",
            "02_attention_types/07_multi_head",
            "06_interpretability/05_interactive_explorer",
        ],
    ),
    (
        "A weekend",
        "The Transformer built, trained and decoded; what its attention shows and "
        "what it does not; a real BERT and a GPT trained here.",
        [
            "01_foundations/01_why_attention",
            "01_foundations/02_soft_lookup",
            "01_foundations/03_scaled_dot_product",
            "02_attention_types/01_additive_attention",
            "02_attention_types/07_multi_head",
            "03_transformer/01_positional_encodings",
            "03_transformer/02_masks",
            "03_transformer/03_building_blocks",
            "03_transformer/05_decoding",
            "05_translation/02_transformer_translation",
            "06_interpretability/04_is_attention_explanation",
            "07_bert/01_what_bert_looks_at",
            "08_gpt/02_induction_heads",
            "10_efficient/01_online_softmax_to_tiles",
            "11_exercises/01_attention",
        ],
    ),
]

# What a reader can do at the end, by chapter (a chapter not listed here has no line;
# a line whose chapter is absent is left out).
OUTCOMES = {
    "01_foundations": "write scaled dot-product attention from its formula and check it "
    "against PyTorch's, and say what problem it solved",
    "02_attention_types": "implement additive, multiplicative, local and multi-head "
    "attention, and compare them fairly on one task",
    "03_transformer": "build a Transformer from its blocks, train it, and decode with "
    "greedy search, beam search, sampling and a key/value cache",
    "04_pipeline": "take a text project from raw data to a validated, evaluated classifier",
    "05_translation": "train a translation model and check what its attention learned "
    "against the true word alignment",
    "06_interpretability": "read attention maps critically: rollout and flow, and tests of "
    "whether attention explains a prediction",
    "07_bert": "load a pre-trained BERT offline, measure its heads, move its weights into "
    "your own encoder and fine-tune it on a CPU",
    "08_gpt": "train a small GPT and find the induction heads that let it copy",
    "09_vision": "train a Vision Transformer and test its attention maps against a known "
    "ground truth",
    "10_efficient": "make attention fit long sequences: online softmax and tiling, "
    "sliding windows, linear attention and shared key/value heads, measured",
    "11_exercises": "write attention yourself and have a checker name your mistake",
}


@dataclass
class Tutorial:
    chapter: str
    stem: str
    title: str

    @property
    def doc(self) -> str:
        return f"/auto_gallery/{self.chapter}/{self.stem}"

    @property
    def key(self) -> str:
        return f"{self.chapter}/{self.stem}"


@dataclass
class Chapter:
    folder: str
    number: int
    title: str
    blurb: str
    tutorials: list[Tutorial] = field(default_factory=list)
    thumbnail: str | None = None  # path under the source dir, "/auto_gallery/..."
    thumbnail_alt: str = ""

    @property
    def doc(self) -> str:
        return f"/auto_gallery/{self.folder}/index"


def read_header(folder: Path) -> tuple[str, str]:
    """(title, blurb) of a chapter from its header file; the folder's name if none."""
    for name in HEADER_NAMES:
        path = folder / name
        if path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            for i in range(1, len(lines)):
                if UNDERLINE.match(lines[i]) and lines[i - 1].strip():
                    blurb = "\n".join(lines[i + 1 :]).strip()
                    return lines[i - 1].strip(), blurb
    match = CHAPTER_DIR.match(folder.name)
    words = folder.name.split("_", 1)[-1].replace("_", " ")
    return f"{int(match.group(1))}. {words.capitalize()}", ""


def tutorial_title(script: Path) -> str:
    """The first line of the script's docstring (the page title), or its file name."""
    try:
        doc = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8")))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        doc = None
    return doc.strip().splitlines()[0].strip() if doc and doc.strip() else script.stem


def discover(gallery: Path, srcdir: Path, ignore: str = r"__init__\.py|^_") -> list[Chapter]:
    """The chapters of the gallery, in folder order, with their tutorials and thumbnail."""
    chapters = []
    if not gallery.is_dir():
        return chapters
    for folder in sorted(p for p in gallery.iterdir() if p.is_dir()):
        match = CHAPTER_DIR.match(folder.name)
        scripts = sorted(s for s in folder.glob("*.py") if not re.search(ignore, s.name))
        if not match or not scripts:
            continue
        title, blurb = read_header(folder)
        chapter = Chapter(folder.name, int(match.group(1)), title, blurb)
        chapter.tutorials = [Tutorial(folder.name, s.stem, tutorial_title(s)) for s in scripts]
        chapter.thumbnail, chapter.thumbnail_alt = thumbnail(chapter, srcdir)
        chapters.append(chapter)
    return chapters


def thumbnail(chapter: Chapter, srcdir: Path) -> tuple[str | None, str]:
    """(path, alt text) of a chapter's thumbnail: that of its first tutorial that drew a
    figure; else sphinx-gallery's placeholder of its first tutorial; else none."""
    images = srcdir / "auto_gallery" / chapter.folder / "images"
    placeholder = None
    for t in chapter.tutorials:
        thumb = images / "thumb" / f"sphx_glr_{t.stem}_thumb.png"
        if not thumb.is_file():
            continue
        path = "/" + thumb.relative_to(srcdir).as_posix()
        if any(images.glob(f"sphx_glr_{t.stem}_[0-9][0-9][0-9].png")):
            return path, f"A figure from the tutorial “{t.title}”"
        placeholder = placeholder or path
    if placeholder:
        return placeholder, f"{chapter.title}: no figure in this build (a placeholder image)"
    return None, ""


def feature_figure(
    chapters: list[Chapter], srcdir: Path
) -> tuple[str, str, Tutorial, bool] | None:
    """(image path, alt text, tutorial, found by its title) of the feature figure, chosen
    by FEATURE's rule."""
    tutorials = {t.key: t for c in chapters for t in c.tutorials}

    def images(t: Tutorial) -> list[tuple[str, str]]:
        """(image, alt) of each figure, from the page sphinx-gallery generated."""
        page = srcdir / "auto_gallery" / t.chapter / f"{t.stem}.rst"
        if not page.is_file():
            return []
        found = re.findall(
            r"^\.\. image-sg:: (\S+)\n\s+:alt: (.*)$", page.read_text("utf-8"), re.M
        )
        return [(img, alt) for img, alt in found if (srcdir / img.lstrip("/")).is_file()]

    for key, title_start, number in FEATURE:
        if key not in tutorials:
            continue
        figures = images(tutorials[key])
        by_title = [f for f in figures if title_start and f[1].startswith(title_start)]
        chosen = by_title or figures[number - 1 : number]
        if chosen:
            return (*chosen[0], tutorials[key], bool(by_title))
    for t in tutorials.values():
        figures = images(t)
        if figures:
            return (*figures[0], t, False)
    return None


def indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line if line.strip() else "" for line in text.splitlines())


HEAD = ".. This file is generated by docs/sphinxext/frontpage.py; do not edit."


def grid(columns: str, css_class: str) -> list[str]:
    return [f".. grid:: {columns}", "   :gutter: 3", f"   :class-container: {css_class}", ""]


def render_figure(chapters: list[Chapter], srcdir: Path) -> str:
    """The feature figure with its caption (an empty file when no tutorial has a figure)."""
    out = [HEAD, ""]
    feature = feature_figure(chapters, srcdir)
    if feature:
        image, alt, tut, by_title = feature
        # The written caption describes the figure found by its title, and no other.
        caption = FEATURE_CAPTION[tut.key] if by_title and tut.key in FEATURE_CAPTION else alt
        out += [
            f".. figure:: {image}",
            f"   :alt: {alt}",
            "   :class: attnlib-figure",
            "   :figclass: attnlib-feature",
            "",
            indent(caption, "   "),
            f"   From :doc:`{tut.doc}`.",
            "",
        ]
    return "\n".join(out) + "\n"


def render_paths(chapters: list[Chapter]) -> str:
    """The suggested paths as three cards, one above the other: an hour, a weekend,
    everything (the lists of tutorials flow into columns: frontpage.css)."""
    tutorials = {t.key: t for c in chapters for t in c.tutorials}
    out = [HEAD, "", *grid("1", "attnlib-paths")]
    for name, blurb, keys in PATHS:
        present = [tutorials[k] for k in keys if k in tutorials]
        missing = [k for k in keys if k not in tutorials]
        if missing:
            logger.info("frontpage: path %r leaves out missing tutorials %s", name, missing)
        out += [f"   .. grid-item-card:: {name}", "      :class-card: attnlib-path", ""]
        out += [indent(blurb, "      "), ""]
        out += [f"      #. :doc:`{t.doc}`" for t in present] + [""]
    first = f" Its first page: :doc:`{chapters[0].tutorials[0].doc}`." if chapters else ""
    out += [
        "   .. grid-item-card:: Everything",
        "      :class-card: attnlib-path",
        "",
        f"      All {len(tutorials)} tutorials in {len(chapters)} chapters, in order: each",
        "      builds on the ones before it. Read the :doc:`theory </theory/index>` first,",
        "      then the :doc:`tutorials </auto_gallery/index>`, and close with",
        f"      :doc:`where to go next </next>`.{first}",
        "",
        "      Each tutorial is a script you can download and run on a laptop CPU, as a",
        "      ``.py`` file or a Jupyter notebook.",
        "",
    ]
    return "\n".join(out) + "\n"


def render_chapters(chapters: list[Chapter]) -> str:
    """One card per chapter: thumbnail, title, blurb, number of tutorials; links to it."""
    out = [HEAD, "", *grid("1 2 2 3", "attnlib-chapters")]
    for c in chapters:
        n = len(c.tutorials)
        out += [f"   .. grid-item-card:: {c.title}"]
        if c.thumbnail:
            out += [
                f"      :img-top: {c.thumbnail}",
                f"      :img-alt: {c.thumbnail_alt}",
                "      :class-img-top: attnlib-chapter-thumb",
            ]
        else:
            logger.info("frontpage: chapter %s has no thumbnail (never executed?)", c.folder)
        out += [
            f"      :link: {c.doc}",
            "      :link-type: doc",
            f"      :link-alt: {c.title}",
            "      :class-card: attnlib-chapter"
            + ("" if c.thumbnail else " attnlib-chapter-nothumb"),
            f"      :footer: {n} tutorial{'s' if n != 1 else ''}",
            "",
            indent(c.blurb or "(This chapter's introduction is not written yet.)", "      "),
            "",
        ]
    return "\n".join(out) + "\n"


def render_outcomes(chapters: list[Chapter]) -> str:
    """What a reader can do at the end, one line per chapter that has one."""
    lines = [
        f"- {OUTCOMES[c.folder]} (:doc:`chapter {c.number} <{c.doc}>`);"
        for c in chapters
        if c.folder in OUTCOMES
    ]
    if lines:
        lines[-1] = lines[-1][:-1] + "."
    return "\n".join([HEAD, "", *lines]) + "\n"


def render_course_map(chapters: list[Chapter]) -> str:
    """The reST of the closing page's chapter-by-chapter summary."""
    out = [HEAD, ""]
    for c in chapters:
        out += [
            ".. container:: attnlib-course-chapter",
            "",
            f"   :doc:`{c.title} <{c.doc}>`",
            "",
            indent(c.blurb or "(This chapter's introduction is not written yet.)", "   "),
            "",
        ]
        out += [f"   - :doc:`{t.doc}`" for t in c.tutorials] + [""]
    return "\n".join(out) + "\n"


def write_if_changed(path: Path, text: str) -> None:
    """Write ``text`` only when it differs, so that an unchanged page is not rebuilt."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def _gallery_dir(app) -> Path:
    conf = getattr(app.config, "sphinx_gallery_conf", None) or {}
    examples = conf.get("examples_dirs", "../gallery")
    if isinstance(examples, (list, tuple)):
        examples = examples[0]
    return (Path(app.srcdir) / examples).resolve()


def _chapters(app) -> list[Chapter]:
    conf = getattr(app.config, "sphinx_gallery_conf", None) or {}
    ignore = conf.get("ignore_pattern", r"__init__\.py|^_")
    return discover(_gallery_dir(app), Path(app.srcdir), ignore)


def generate(app) -> None:
    """builder-inited: write the front page's and the closing page's parts."""
    srcdir = Path(app.srcdir)
    chapters = _chapters(app)
    app.env.attnlib_chapters = {c.folder: c.title for c in chapters}
    out = srcdir / "_generated"
    write_if_changed(out / "front-figure.rst", render_figure(chapters, srcdir))
    write_if_changed(out / "front-paths.rst", render_paths(chapters))
    write_if_changed(out / "front-chapters.rst", render_chapters(chapters))
    write_if_changed(out / "front-outcomes.rst", render_outcomes(chapters))
    write_if_changed(out / "course-map.rst", render_course_map(chapters))


def chapter_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    """``attnlib-chapter``: a link to a chapter by its folder, ``{attnlib-chapter}`text
    <10_efficient>``` (or ``{attnlib-chapter}`10_efficient``` for the chapter's title).

    A chapter without tutorials in this build (absent, or a header only) is not linked:
    the text stays, in plain type, so that prose may name a chapter still being written.
    """
    from docutils import nodes
    from sphinx import addnodes

    env = inliner.document.settings.env
    match = re.fullmatch(r"\s*(.*?)\s*<\s*(\S+)\s*>\s*", text, re.S)
    label, folder = (match.group(1), match.group(2)) if match else (None, text.strip())
    titles = getattr(env, "attnlib_chapters", None)
    if titles is None:  # not set by generate(): read the default gallery folder
        found = discover(Path(env.srcdir) / ".." / "gallery", Path(env.srcdir))
        titles = env.attnlib_chapters = {c.folder: c.title for c in found}
    if folder not in titles:
        logger.info("frontpage: chapter %s has no tutorials in this build: not linked", folder)
        number = folder.split("_", 1)[0]
        fallback = f"chapter {int(number)}" if number.isdigit() else folder
        return [nodes.inline(rawtext, label or fallback)], []
    ref = addnodes.pending_xref(
        rawtext,
        refdomain="std",
        reftype="doc",
        reftarget=f"/auto_gallery/{folder}/index",
        refdoc=env.docname,
        refexplicit=True,
        refwarn=True,
    )
    ref += nodes.inline(rawtext, label or titles[folder])
    return [ref], []


def setup(app):
    # After sphinx-gallery's generate_gallery_rst (builder-inited, default priority 500),
    # so that the tutorial pages and their thumbnails exist.
    app.connect("builder-inited", generate, priority=600)
    app.add_role("attnlib-chapter", chapter_role)
    app.add_css_file("frontpage.css")
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
