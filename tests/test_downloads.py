"""Downloads that run: a tutorial script and notebooks, against an installed attnlib wheel
(issue 16).

A reader downloads a tutorial's ``.py`` or ``.ipynb`` from the site and runs it on their
own machine, with attnlib installed from a wheel, not from this repository. These tests do
the same:

* the wheel is built from the project's files (copied out of the repository, so the build
  writes nothing here) and must carry every module and the files the tutorials need at run
  time (the explorer's JavaScript and CSS, ``py.typed``);
* it is installed, not editable, into a fresh virtual environment. The dependencies are not
  downloaded again: a ``.pth`` file gives the environment the site-packages of the one
  running the tests (pinned by constraints.txt); a path added that way has its own ``.pth``
  files ignored, so the editable install of attnlib there is invisible, and the tests
  assert that ``attnlib`` is imported from the wheel;
* a tutorial script, as the site offers it for download, runs in an empty folder outside the
  repository; a few of the site's notebooks execute in a Jupyter kernel (nbclient) started
  from that environment, in such a folder too.

The script comes from the built site (``ATTNLIB_SITE_DIR``, default docs/_build/html), else
from gallery/; the notebooks need the built site: without it that test skips, or fails where
``ATTNLIB_REQUIRE_BROWSER`` is set (CI).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = "01_foundations/02_soft_lookup"  # a short tutorial with figures and asserts
NOTEBOOKS = [
    "01_foundations/02_soft_lookup",
    "03_transformer/02_masks",
    "11_exercises/01_attention",
]
PACKAGE_DATA = ["attnlib/py.typed", "attnlib/interpret/static/explorer.js"]
PACKAGE_DATA += ["attnlib/interpret/static/explorer.css"]
PROJECT_FILES = ["pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "setup.cfg"]
TIMEOUT_S = 600
DONE = "all checks passed"


def unavailable(reason: str) -> None:
    """Skip, or fail where ``ATTNLIB_REQUIRE_BROWSER`` is set (as the browser tests do)."""
    if os.environ.get("ATTNLIB_REQUIRE_BROWSER", "") not in ("", "0"):
        pytest.fail(f"{reason} (ATTNLIB_REQUIRE_BROWSER is set)", pytrace=False)
    pytest.skip(reason)


def site_root() -> Path:
    return Path(os.environ.get("ATTNLIB_SITE_DIR", REPO / "docs" / "_build" / "html")).resolve()


def download(tutorial: str, suffix: str) -> Path | None:
    """The file that the built site's page of ``tutorial`` offers for download, or None."""
    page = site_root() / "auto_gallery" / f"{tutorial}.html"
    if not page.is_file():
        return None
    name = re.escape(Path(tutorial).name + suffix)
    links = re.findall(rf'href="([^"]*_downloads/[^"]*/{name})"', page.read_text("utf-8"))
    path = (page.parent / links[0]).resolve() if links else None
    return path if path is not None and path.is_file() else None


def reader_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment of a reader's run: nothing of the repository on the path, one thread,
    no display, and caches in ``tmp`` (not in the home folder)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(
        MPLBACKEND="Agg",
        OMP_NUM_THREADS="1",
        ATTNLIB_CACHE_DIR=str(tmp / "cache"),
        MPLCONFIGDIR=str(tmp / "mpl"),
        IPYTHONDIR=str(tmp / "ipython"),
        JUPYTER_RUNTIME_DIR=str(tmp / "jupyter-runtime"),
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(extra)
    return env


def run(*args, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=TIMEOUT_S, **kwargs
    )
    assert result.returncode == 0, (
        f"{' '.join(map(str, args))} exited with {result.returncode}:\n"
        f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """attnlib's wheel, built by pip from a copy of the project's files."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(
        REPO / "attnlib", source / "attnlib", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    for name in PROJECT_FILES:
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, source / name)
    # setuptools from this environment when it is recent enough (offline); else pip fetches it
    try:
        import setuptools

        offline = int(setuptools.__version__.split(".")[0]) >= 77
    except ImportError:
        offline = False
    isolation = ["--no-build-isolation"] if offline else []
    run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-w", tmp / "dist", source,
        cwd=tmp,
    )  # fmt: skip
    wheels = sorted((tmp / "dist").glob("attnlib-*.whl"))
    assert len(wheels) == 1, f"pip wheel made {wheels}"
    return wheels[0]


def test_wheel_carries_what_the_tutorials_import(wheel: Path) -> None:
    """Every module of the package, its type marker and the explorer's JavaScript and CSS."""
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {
        p.relative_to(REPO).as_posix()
        for p in (REPO / "attnlib").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    missing = sorted((modules | set(PACKAGE_DATA)) - names)
    assert not missing, f"{wheel.name} lacks {missing}"
    assert not any(n.startswith(("tests/", "gallery/", "docs/")) for n in names), sorted(names)


@pytest.fixture(scope="module")
def wheel_python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Python of a fresh virtual environment with the wheel installed (not editable)."""
    tmp = tmp_path_factory.mktemp("venv")
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    # this environment's pip installs into the new one; no index: nothing is downloaded
    run(
        sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
        wheel, cwd=tmp,
    )  # fmt: skip
    purelib = run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))")
    ours = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    # after the environment's own site-packages on sys.path: attnlib comes from the wheel
    Path(purelib.stdout.strip(), "_attnlib_test_dependencies.pth").write_text(
        "".join(f"{p}\n" for p in ours), encoding="utf-8"
    )
    return python


WHERE_PY = """\
import importlib.metadata as md, json, sys
import attnlib
from packaging.requirements import Requirement
unmet = []
for text in md.requires("attnlib") or []:
    req = Requirement(text)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    try:
        have = md.version(req.name)
    except md.PackageNotFoundError:
        have = None
    if have is None or not req.specifier.contains(have, prereleases=True):
        unmet.append(f"{req} (installed: {have})")
print(json.dumps({"file": attnlib.__file__, "version": md.version("attnlib"), "unmet": unmet,
                  "dist": str(md.distribution("attnlib")._path)}))
"""


def test_wheel_is_what_the_environment_imports(wheel_python: Path, tmp_path: Path) -> None:
    """In the fresh environment ``attnlib`` is the installed wheel, not the repository, and
    every dependency the wheel declares is installed in a version it accepts."""
    venv = wheel_python.parents[1]
    out = run(wheel_python, "-c", WHERE_PY, cwd=tmp_path, env=reader_env(tmp_path))
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(found["file"]).is_relative_to(venv), f"attnlib imported from {found['file']}"
    assert Path(found["dist"]).is_relative_to(venv), f"attnlib's metadata: {found['dist']}"
    assert not found["unmet"], f"unmet dependencies of the wheel: {found['unmet']}"


def test_downloaded_script_runs_against_the_wheel(wheel_python: Path, tmp_path: Path) -> None:
    """The tutorial script a reader downloads runs to its final checks in an empty folder."""
    script = download(SCRIPT, ".py") or REPO / "gallery" / f"{SCRIPT}.py"
    assert script.is_file(), f"no script {script}"
    folder = tmp_path / "reader"
    folder.mkdir()
    shutil.copy2(script, folder / script.name)
    out = run(wheel_python, script.name, cwd=folder, env=reader_env(tmp_path))
    assert DONE in out.stdout, f"{script.name} did not reach its checks:\n{out.stdout[-2000:]}"


def test_downloaded_notebooks_run_in_a_kernel(
    wheel_python: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sample of the site's notebooks executes in a Jupyter kernel of the fresh environment
    (nbclient), in an empty folder, without an error (their asserts included), importing
    attnlib from the wheel."""
    notebooks = {name: download(name, ".ipynb") for name in NOTEBOOKS}
    if not any(notebooks.values()):
        unavailable(f"no built site with notebooks at {site_root()} (run `nox -s docs`)")
    missing = [name for name, path in notebooks.items() if path is None]
    assert not missing, f"the built site offers no notebook for {missing}"
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("ipykernel")

    # a kernel spec that starts the fresh environment's Python
    kernels = tmp_path / "jupyter" / "kernels" / "attnlib-wheel"
    kernels.mkdir(parents=True)
    spec = {
        "argv": [str(wheel_python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "attnlib (installed wheel)",
        "language": "python",
    }
    (kernels / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    for key, value in reader_env(tmp_path, JUPYTER_PATH=str(tmp_path / "jupyter")).items():
        monkeypatch.setenv(key, value)
    for key in ("PYTHONPATH", "PYTHONHOME"):
        monkeypatch.delenv(key, raising=False)

    for name, path in notebooks.items():
        folder = tmp_path / "reader" / Path(name).name
        folder.mkdir(parents=True)
        notebook = nbformat.read(path, as_version=4)
        notebook.cells.append(nbformat.v4.new_code_cell(WHERE_PY))  # where attnlib came from
        client = nbclient.NotebookClient(
            notebook,
            timeout=TIMEOUT_S,
            iopub_timeout=120,  # a loaded machine may deliver the outputs late
            kernel_name="attnlib-wheel",
            resources={"metadata": {"path": str(folder)}},
        )
        client.execute()  # raises CellExecutionError, with the traceback, if a cell fails
        text = "".join(
            output.get("text", "")
            for cell in notebook.cells[:-1]
            for output in cell.get("outputs", [])
            if output.get("output_type") == "stream"
        )
        if any(DONE in cell.source for cell in notebook.cells[:-1]):
            assert DONE in text, f"{name}.ipynb did not reach its checks:\n{text[-2000:]}"
        last = "".join(o.get("text", "") for o in notebook.cells[-1].get("outputs", []))
        assert last.strip(), f"{name}.ipynb: no output from the cell that locates attnlib"
        found = json.loads(last.strip().splitlines()[-1])
        venv = wheel_python.parents[1]
        assert Path(found["file"]).is_relative_to(venv), f"the kernel's attnlib: {found['file']}"
