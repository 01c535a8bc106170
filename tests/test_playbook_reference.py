"""docs/playbook.md is generated from `fedi-run schema` and kept in step with it; every key of
the schema — the engine's and every plugin's, at any depth — has a description."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from click.testing import CliRunner

from fedi_run.engine.cli.main import cli

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "playbook_reference.py"
PAGE = ROOT / "docs" / "playbook.md"
AKKOMA = ROOT / "examples" / "akkoma-plugin" / "fedi_run_akkoma"


def _reference():
    spec = importlib.util.spec_from_file_location("playbook_reference", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _schema(*args: str) -> dict:
    result = CliRunner().invoke(cli, ["schema", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def undescribed(schema: dict) -> list[str]:
    """Every property (at the top, in every definition, in nested objects and their items)
    without a description, as ``where.key``."""
    missing = []

    def walk(node, where: str) -> None:
        if isinstance(node, dict):
            for name, prop in (node.get("properties") or {}).items():
                if not isinstance(prop, dict) or not prop.get("description", "").strip():
                    missing.append(f"{where}.{name}")
                walk(prop, f"{where}.{name}")
            for key in ("items", "additionalProperties"):
                if isinstance(node.get(key), dict):
                    walk(node[key], f"{where}[{key}]")
            for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
                for index, option in enumerate(node.get(key) or ()):
                    walk(option, f"{where}[{key}{index}]")
        elif isinstance(node, list):
            for item in node:
                walk(item, where)

    walk({"properties": schema["properties"]}, "playbook")
    for name, definition in schema.get("$defs", {}).items():
        walk(definition, f"$defs.{name}")
    return missing


def test_the_page_is_what_the_script_makes_of_the_schema():
    reference = _reference()
    assert PAGE.read_text() == reference.render(reference.schema()), (
        "docs/playbook.md is out of date: run python3 scripts/playbook_reference.py"
    )


def test_every_key_of_the_schema_has_a_description():
    assert undescribed(_schema()) == []


def test_a_third_party_plugins_tables_are_described_too(monkeypatch):
    from fedi_run.engine.model.schema import json_schema
    from fedi_run.engine.plugin.manager import Plugins
    from fedi_run.engine.project import config_sections

    monkeypatch.syspath_prepend(str(AKKOMA.parent))
    module = importlib.import_module(AKKOMA.name)
    own = list(module.fedi_run_config_sections())
    sections = [*config_sections(Plugins.load(disabled=("akkoma",))), *own]
    schema = json_schema(sections)
    assert "akkoma" in schema["$defs"]["Services"]["properties"]
    assert undescribed(schema) == []


def test_the_walk_finds_a_key_without_a_description():
    schema = {
        "properties": {"a": {"$ref": "#/$defs/A", "description": "A."}},
        "$defs": {
            "A": {
                "properties": {
                    "b": {"type": "string", "description": "B."},
                    "c": {"type": "object", "properties": {"d": {"type": "string"}}},
                }
            }
        },
    }
    assert undescribed(schema) == ["$defs.A.c", "$defs.A.c.d"]


def test_every_table_and_key_is_on_the_page_with_its_type_default_and_example():
    reference = _reference()
    schema = reference.schema()
    page = reference.render(schema)
    tasks = schema["$defs"]["UserTaskSection"]["properties"]
    for key in ("env", "when", "changed_when", "run", "file", "directory", "fetch"):
        assert f"* **`{key}`** — " in page.split("## `[tasks.<name>]`")[1]
    assert "* **`port`** — integer, default `22`." in page
    assert "* **`address`** — string, *required*." in page
    assert 'Example: `owner = "www-data:www-data"`' in page
    assert "Example: `changed_when = \"{{ 'updated' in result.stdout }}\"`" in page
    for heading in ("[deployment]", "[hosts.<name>]", "[tasks.<name>].file", "[vars]", "[run]"):
        assert f"## `{heading}`" in page
    for name in ("acme", "services.mastodon", "services.garage"):
        assert f"## `[{name}]`" in page
    for description in (p["description"] for p in tasks.values()):
        assert description in page
    assert "#:schema ./fedi-run.schema.json" in page
    assert "evenBetterToml.schema.associations" in page


def test_examples_are_toml():
    import tomllib

    reference = _reference()
    for value in ({"a": [1, "x"], "b-c": {"d": True}}, 'it\'s "q"\n', 1.5, ["x"]):
        assert tomllib.loads(f"k = {reference.toml_value(value)}")["k"] == (
            value if not isinstance(value, float) else 1.5
        )
