"""The house rules, read from the source: which part of the engine may import which, that the
engine never names a built-in plugin, and that plugins use only the public plugin API."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

ENGINE = ROOT / "engine"
PLUGINS = ROOT / "plugins"
AKKOMA = ROOT / "examples" / "akkoma-plugin" / "fedi_run_akkoma"
SUBPACKAGES = ("model", "plugin", "planning", "execute", "report", "nixops", "cli", "lab")
PUBLIC_API = "fedi_run.engine.api"
BUILT_INS = ("acme", "garage", "mastodon", "peertube", "pixelfed")


def module_name(path: Path) -> str:
    """``engine/planning/graph.py`` → ``fedi_run.engine.planning.graph``."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    top = {"engine": "fedi_run.engine", "plugins": "fedi_run.plugins", "panel": "fedi_run.panel"}
    return ".".join([top[parts[0]], *parts[1:]])


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (inside functions and TYPE_CHECKING too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def sources(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "build" not in p.parts)


def part_of(module: str) -> str | None:
    """The engine sub-package ``module`` belongs to (``None``: a top-level engine module)."""
    parts = module.split(".")
    if parts[:2] != ["fedi_run", "engine"] or len(parts) < 3:
        return None
    return parts[2] if parts[2] in SUBPACKAGES else None


def violations(importer_parts: set[str], forbidden: set[str]) -> list[str]:
    found = []
    for path in sources(ENGINE):
        if part_of(module_name(path)) not in importer_parts:
            continue
        for imported in imports_of(path):
            if imported.startswith("fedi_run.") and part_of(imported) in forbidden:
                found.append(f"{path.relative_to(ROOT)} imports {imported}")
    return sorted(found)


def test_the_engine_folders_follow_the_flow():
    folders = {p.name for p in ENGINE.iterdir() if (p / "__init__.py").exists()}
    assert set(SUBPACKAGES) <= folders
    top_level = {p.stem for p in ENGINE.glob("*.py")} - {"__init__"}
    assert len(top_level) <= 8, f"only the few modules that tie the parts together: {top_level}"


def test_model_and_planning_never_import_execution_or_reporting():
    assert violations({"model", "planning"}, {"execute", "report", "cli", "nixops"}) == []


def test_model_imports_no_other_part():
    assert violations({"model"}, {"planning", "plugin", "execute", "report", "nixops", "cli"}) == []


def test_only_the_cli_imports_the_panel():
    importers = []
    for folder in (ENGINE, PLUGINS):
        for path in sources(folder):
            if part_of(module_name(path)) == "cli":
                continue
            if any(m.startswith("fedi_run.panel") for m in imports_of(path)):
                importers.append(str(path.relative_to(ROOT)))
    assert importers == []


def test_the_rule_check_can_fail(tmp_path, monkeypatch):
    """A negative control: a planning module importing the executor is found."""
    bad = ENGINE / "planning" / "_architecture_probe.py"
    bad.write_text("from fedi_run.engine.execute.perform import perform\n")
    try:
        found = violations({"planning"}, {"execute"})
    finally:
        bad.unlink()
    assert "engine/planning/_architecture_probe.py imports fedi_run.engine.execute.perform" in found


def built_in_names(path: Path) -> list[str]:
    """Lines of code (not comments, not docstrings) in ``path`` that name a built-in plugin."""
    tree = ast.parse(path.read_text())
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) in docstrings:
                continue
            if re.search(r"\b({})\b".format("|".join(BUILT_INS)), node.value):
                hits.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value[:60]!r}")
        elif isinstance(node, ast.Name | ast.Attribute):
            name = node.id if isinstance(node, ast.Name) else node.attr
            if any(re.search(rf"(^|_){b}(_|$)", name) for b in BUILT_INS):
                hits.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    return hits


# The lab is a tool of its own, not the engine's flow: its hosts are named by the operator
# (the quickstart names them after the services), and its Pebble is an ACME server by nature.
ENGINE_CODE = [p for p in sources(ENGINE) if "lab" not in p.relative_to(ENGINE).parts]


@pytest.mark.parametrize("path", ENGINE_CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_engine_names_no_built_in_plugin(path):
    assert built_in_names(path) == []


def test_the_name_check_can_fail(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text('"""Mentions garage in a docstring, which is fine."""\nX = "acme.reach"\n')
    probe_root = tmp_path
    hits = [h for h in _names_under(probe, probe_root)]
    assert hits == ["probe.py:2: 'acme.reach'"]


def _names_under(path: Path, root: Path) -> list[str]:
    global ROOT
    saved, ROOT = ROOT, root
    try:
        return built_in_names(path)
    finally:
        ROOT = saved


def engine_imports(path: Path) -> set[str]:
    return {m for m in imports_of(path) if m.startswith("fedi_run.engine")}


PLUGIN_CODE = [*sources(PLUGINS), *sources(AKKOMA)]


@pytest.mark.parametrize("path", PLUGIN_CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_plugins_import_only_the_public_api_from_the_engine(path):
    outside = {m for m in engine_imports(path) if not m.startswith(PUBLIC_API)}
    assert outside == set(), f"{path.relative_to(ROOT)} imports {sorted(outside)}"


def test_the_third_party_example_imports_no_built_in_plugin():
    for path in sources(AKKOMA):
        assert not {m for m in imports_of(path) if m.startswith("fedi_run.plugins")}, path


def test_the_public_api_lists_what_it_offers():
    from fedi_run.engine import api

    assert api.__all__ == sorted(api.__all__)
    for name in api.__all__:
        assert hasattr(api, name), name
    guide = (ROOT / "docs" / "plugins.md").read_text()
    undocumented = [name for name in api.__all__ if f"`{name}`" not in guide]
    assert undocumented == [], "docs/plugins.md names every public name"
