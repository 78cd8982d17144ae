"""Sessions that build the site and run the tests.

``nox -s docs``       build the site into docs/_build/html (warnings are errors)
``nox -s docs -- PATTERN``   execute only the tutorials whose path matches PATTERN
``nox -s docs-live``  rebuild on change and serve with live reload
``nox -s tests``      run pytest (arguments after ``--`` go to pytest)
``nox -s lint``       ruff check, ruff format --check, Biome on the explorer's JS and CSS
``nox -s gallery-matrix``  run every tutorial as a plain script on seeds 0-2 x 1, 2 threads
``nox -s bench``      time attnlib's MultiHeadAttention against PyTorch's (ratios)

Every session installs pinned versions from ``constraints.txt``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nox

ROOT = Path(__file__).parent
CONSTRAINTS = ("-c", str(ROOT / "constraints.txt"))
BUILD_DIR = ROOT / "docs" / "_build" / "html"
SPHINX_FLAGS = ("-W", "--keep-going", "-n", "-b", "html")

CACHE_ENV = "ATTNLIB_CACHE_DIR"

nox.options.sessions = ["lint", "docs", "tests"]
nox.options.reuse_existing_virtualenvs = True


def _install(session: nox.Session, *extras: str) -> None:
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install(*CONSTRAINTS, "-e", spec)


def _cache_dir() -> str:
    """Where trained models are cached: $ATTNLIB_CACHE_DIR, else docs/_build/cache
    (created here: a fresh checkout builds from nothing)."""
    path = Path(os.environ.get(CACHE_ENV) or ROOT / "docs" / "_build" / "cache")
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


#: axe-core, the accessibility engine of the browser tests (tests/browser/test_a11y.py).
AXE_VERSION = "4.14.1"


def _npm_package(session: nox.Session, folder: str, package: str, version: str) -> Path:
    """The ``node_modules`` folder holding npm ``package`` at ``version``, installed into the
    session's ``folder`` unless that version is there (so a reused session runs offline)."""
    prefix = Path(session.virtualenv.location) / folder
    manifest = prefix / "node_modules" / package / "package.json"
    installed = json.loads(manifest.read_text())["version"] if manifest.is_file() else None
    if installed != version:
        session.run(
            "npm",
            "install",
            "--prefix",
            str(prefix),
            "--no-save",
            "--no-package-lock",
            "--no-audit",
            "--no-fund",
            f"{package}@{version}",
            external=True,
        )
    return prefix / "node_modules"


def _axe(session: nox.Session) -> str:
    """axe-core's axe.min.js, installed with npm into the session's folder."""
    node_modules = _npm_package(session, "axe", "axe-core", AXE_VERSION)
    return str(node_modules / "axe-core" / "axe.min.js")


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """Run the test suite; browser tests run when the site has been built.

    The accessibility tests need axe-core, installed here from npm (needs ``npm``; where it
    is missing, they skip, or fail with ``ATTNLIB_REQUIRE_BROWSER=1``).
    """
    _install(session, "test")
    env = {CACHE_ENV: _cache_dir()}  # the browser tests compare the site with the build's models
    if shutil.which("npm"):
        env["ATTNLIB_AXE_JS"] = _axe(session)
    session.run("pytest", *session.posargs, env=env)


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """Build the HTML site, executing every gallery tutorial.

    A positional argument restricts execution to the tutorials whose path
    matches it (a regular expression), for fast iteration while writing one;
    the other tutorials are rendered from their last run, or without output.
    """
    _install(session, "docs")
    env = {"PYTHONHASHSEED": "0", CACHE_ENV: _cache_dir()}
    if session.posargs:
        env["ATTNLIB_GALLERY_PATTERN"] = session.posargs[0]
    session.run("sphinx-build", *SPHINX_FLAGS, "docs", str(BUILD_DIR), env=env)
    session.log(f"The site is at {BUILD_DIR / 'index.html'}")
    session.log(f"Serve it with: python -m http.server -d {BUILD_DIR} 8000")


@nox.session(name="docs-live", python="3.11")
def docs_live(session: nox.Session) -> None:
    """Serve the site and rebuild it when a source file changes."""
    _install(session, "docs")
    session.install(*CONSTRAINTS, "sphinx-autobuild")
    env = {}
    if session.posargs:
        env["ATTNLIB_GALLERY_PATTERN"] = session.posargs[0]
    session.run(
        "sphinx-autobuild",
        "-b",
        "html",
        "--watch",
        "attnlib",
        "--watch",
        "gallery",
        "--ignore",
        "*/auto_gallery/*",
        "--ignore",
        "*/generated/*",
        "docs",
        str(BUILD_DIR),
        env=env,
    )


@nox.session(name="gallery-matrix", python="3.11")
def gallery_matrix(session: nox.Session) -> None:
    """Run every tutorial as a reader runs a download, on several seeds and thread counts.

    Arguments after ``--`` go to ``docs/sphinxext/gallery_matrix.py``: a
    pattern limits the tutorials; ``--seeds 1 --threads 2`` picks
    configurations; ``--publish`` merges the results into the table that the
    page "How the claims are checked" shows.
    """
    _install(session, "docs")
    session.run("python", str(ROOT / "docs" / "sphinxext" / "gallery_matrix.py"), *session.posargs)


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Time attnlib's MultiHeadAttention against torch.nn.MultiheadAttention, as ratios
    measured in one run (arguments after ``--`` go to ``python -m attnlib.bench``)."""
    _install(session)
    session.run("python", "-m", "attnlib.bench", *session.posargs)


@nox.session(name="bench-attention", python="3.11")
def bench_attention(session: nox.Session) -> None:
    """Time and peak memory of attention against the length: naive, SDPA (math and
    default), tiled, band-only window, linear, and the KV cache of MHA/GQA/MQA (issue 14).

    One process per configuration, one thread by default; writes
    benchmarks/results/attention_cost.{json,md,png} and exits 1 if one of the issue's
    targets fails (arguments after ``--`` go to benchmarks/attention_cost.py, e.g.
    ``--no-check`` or ``--threads 2``).
    """
    _install(session)  # matplotlib (the plot) is one of attnlib's dependencies
    session.run(
        "python", str(ROOT / "benchmarks" / "attention_cost.py"), *session.posargs,
        env={"OMP_NUM_THREADS": "1"},
    )  # fmt: skip


#: Biome, the formatter and linter of the explorer's JavaScript and CSS (biome.jsonc).
BIOME_VERSION = "2.6.8"


def _biome(session: nox.Session) -> str:
    """Biome, installed with npm into the session's folder."""
    node_modules = _npm_package(session, "biome", "@biomejs/biome", BIOME_VERSION)
    return str(node_modules / ".bin" / "biome")


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """Check style and formatting: ruff for Python, Biome for the JavaScript and CSS.

    Biome (``@biomejs/biome``, version ``BIOME_VERSION``, configured by biome.jsonc)
    checks formatting and its recommended lint rules, writing nothing; it needs node and
    npm. To apply its formatting and safe fixes: ``.nox/lint/biome/node_modules/.bin/biome
    check --write``.
    """
    session.install(*CONSTRAINTS, "ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run(_biome(session), "ci", "--colors=off", external=True)


if os.environ.get("CI"):
    # CI always starts from a clean checkout; never reuse a stale environment.
    nox.options.reuse_existing_virtualenvs = False
