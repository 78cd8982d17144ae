"""The architecture of CONTRIBUTING.md holds: every module sits in one layer and imports only
from the layers below it; the module table names every module; no tool outside
attnlib.models tests for a concrete model class."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "attnlib"
GUIDE = ROOT / "CONTRIBUTING.md"

# the picture of CONTRIBUTING.md, bottom to top
LAYERS = [
    {"_checks", "report"},
    {"masks", "positional", "models", "tasks", "metrics", "plotting"}
    | {"data.text", "data.frames", "data.synthetic", "data.images"}
    | {"efficient.online", "efficient.window", "efficient.linear", "efficient.iosim"},
    {"functional", "data.datasets", "data"},
    {"attention", "efficient.flex"},
    {"transformer", "seq2seq", "capture"},
    {"decoding", "training", "bench", "bert", "vit", "interpret.circuits"}
    | {"efficient.measure", "efficient"},
    {"interpret.maps", "inference", "pretrained"},
    {"interpret.stats", "interpret.relevance", "interpret.explorer", "interpret.widgets"},
    {"interpret.plots", "interpret.faithfulness", "interpret"},
    {"exercises"},
]
LAYER = {module: i for i, layer in enumerate(LAYERS) for module in layer}


def modules() -> dict[str, Path]:
    """attnlib's modules by dotted name relative to the package (``""`` is attnlib itself)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path) -> set[str]:
    """The attnlib modules ``name`` imports (relative imports resolved)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    package = [p for p in package if p]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom) or node.level == 0:
            continue
        base = package[: len(package) - (node.level - 1)]
        if node.module:
            found.add(".".join([*base, *node.module.split(".")]))
        else:  # from . import x, y
            found.update(".".join([*base, alias.name]) for alias in node.names)
    known = modules()
    return {m for m in found if m in known and m != name}


def test_every_module_has_a_layer():
    missing = sorted(set(modules()) - set(LAYER) - {""})
    assert not missing, f"add these modules to LAYERS and to CONTRIBUTING.md: {missing}"


@pytest.mark.parametrize("name", sorted(set(modules()) - {""}))
def test_imports_point_down(name):
    """A module imports only from lower layers (a package may import its own modules)."""
    path = modules()[name]
    for target in imports(name, path):
        if target.startswith(name + "."):  # a package re-exporting its modules
            continue
        assert LAYER[target] < LAYER[name], (
            f"attnlib.{name} (layer {LAYER[name]}) imports attnlib.{target} "
            f"(layer {LAYER[target]}): see the picture in CONTRIBUTING.md"
        )


def test_the_guide_names_every_top_level_module():
    text = GUIDE.read_text()
    table = {m.group(1) for m in re.finditer(r"^\| `attnlib\.([\w.]+)` \|", text, re.M)}
    top = {name.split(".")[0] for name in modules() if name}
    assert top <= table, f"CONTRIBUTING.md's module table misses {sorted(top - table)}"
    assert table <= set(modules()), f"the table names modules that do not exist: {table}"
    for layer in LAYERS:
        for module in layer:
            assert module.split(".")[-1] in text, f"the picture misses {module}"


CONCRETE_MODELS = re.compile(r"isinstance\([^)]*\b(Seq2Seq|Seq2SeqTransformer|DecoderLM)\b")


def test_no_tool_tests_for_a_concrete_model_class():
    """Decoding, training, inference and interpretation use attnlib.models' families."""
    offenders = [
        f"{path.relative_to(ROOT)}:{i}"
        for path in PACKAGE.rglob("*.py")
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if CONCRETE_MODELS.search(line)
    ]
    assert not offenders, offenders


def _markdown_legend(text: str) -> dict[str, str]:
    rows = re.findall(r"^\s*\| (`[^|]+`) \| [^|]+ \| ([^|]+) \|$", text, re.M)
    return {code.replace("`", ""): meaning.strip() for code, meaning in rows}


def _docstring_legend(text: str) -> dict[str, str]:
    rows = re.findall(r"^(\S+(?:, \S+)*)\s+:math:`[^`]+`\s+(.+)$", text, re.M)
    return {code: meaning.strip() for code, meaning in rows}


def test_one_shape_legend():
    """The package docstring, the theory pages and CONTRIBUTING.md give the same legend."""
    import attnlib

    package = _docstring_legend(attnlib.__doc__)
    theory = _markdown_legend((ROOT / "docs" / "theory" / "index.md").read_text())
    guide = _markdown_legend(GUIDE.read_text())
    guide = {k: v for k, v in guide.items() if k in theory or k in package}  # legend rows only
    assert "Lq, Lk" in package and len(package) >= 10
    assert package == theory == guide
