"""What the deployment form offers, taken from the installed plugins and the playbook's schema.

The services are the ``kind="service"`` sections the loaded plugins declare (the five built-in
ones and any third party's), with their descriptions and what they need; the help texts are the
descriptions of the playbook's JSON Schema (:func:`fedi_run.engine.model.schema.json_schema`),
so the form says what ``fedi-run schema`` says. Both are computed once per process.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ServiceChoice:
    """One service the form has a switch for."""

    name: str
    description: str
    needs: tuple[str, ...]
    needed_by: tuple[str, ...]

    @property
    def label(self) -> str:
        """``Mastodon, microblogging.`` or the bare name."""
        return self.description or self.name


@dataclass(frozen=True)
class Catalog:
    """The services, whether the acme plugin's ``[acme]`` table exists, and help texts by
    dotted playbook key (``deployment.domain``, ``initial_user.email``, ``acme.email``)."""

    services: tuple[ServiceChoice, ...]
    acme: bool
    help: dict[str, str]

    def service_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.services)


def _descriptions(schema: dict[str, Any]) -> dict[str, str]:
    """``table.key`` → description, for the tables the form shows."""
    definitions = schema.get("$defs", {})

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        for option in node.get("anyOf", ()):  # X | None
            if "$ref" in option:
                node = option
        if "$ref" in node:
            return definitions.get(node["$ref"].rsplit("/", 1)[-1], {})
        return node

    found: dict[str, str] = {}
    for table in ("deployment", "initial_user", "acme"):
        node = schema.get("properties", {}).get(table)
        if node is None:
            continue
        for key, field in resolve(node).get("properties", {}).items():
            if field.get("description"):
                found[f"{table}.{key}"] = field["description"]
    return found


@functools.lru_cache(maxsize=1)
def catalog() -> Catalog:
    """The catalog of the plugins installed in this environment (computed once)."""
    from fedi_run.engine.model.schema import json_schema
    from fedi_run.engine.plugin.manager import Plugins
    from fedi_run.engine.project import config_sections

    sections = config_sections(Plugins.load(()))
    services = [s for s in sections if s.kind == "service"]
    choices = tuple(
        ServiceChoice(
            s.name,
            s.description,
            tuple(s.needs),
            tuple(sorted(o.name for o in services if s.name in o.needs)),
        )
        for s in sorted(services, key=lambda s: (bool(s.needs) is False, s.name))
    )
    return Catalog(
        choices,
        any(s.name == "acme" and s.kind == "table" for s in sections),
        _descriptions(json_schema(sections)),
    )
