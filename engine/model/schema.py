"""The whole playbook as one pydantic model, and its JSON Schema for editors.

The engine validates table by table (see ``engine.loading``) so that every problem is found
in one pass; this module assembles the same tables, including every plugin's, into one model
whose JSON Schema ``fedi-run schema`` prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field, create_model

from fedi_run.engine.model.playbook import (
    DeploymentSection,
    HostSection,
    InitialUserSection,
    RunSection,
    Section,
    UserTaskSection,
)
from fedi_run.engine.model.sections import ConfigSection

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def playbook_model(sections: Sequence[ConfigSection]) -> type[Section]:
    """One model of ``playbook.toml`` with the core tables and every plugin's."""
    services: dict[str, Any] = {
        s.name: (s.model, Field(default_factory=s.model, description=s.description or None))
        for s in sections
        if s.kind == "service"
    }
    services_model = create_model("Services", __base__=Section, **services)
    tables: dict[str, Any] = {
        s.name: (s.model | None, Field(None, description=s.description or None))
        for s in sections
        if s.kind == "table"
    }
    return create_model(
        "Playbook",
        __base__=Section,
        deployment=(DeploymentSection, ...),
        hosts=(
            dict[str, HostSection],
            Field(default_factory=dict, description="Target hosts by name."),
        ),
        services=(services_model, Field(default_factory=services_model)),
        initial_user=(InitialUserSection | None, None),
        tasks=(
            dict[str, UserTaskSection],
            Field(default_factory=dict, description="The operator's own tasks."),
        ),
        run=(RunSection, Field(default_factory=RunSection)),
        **tables,
    )


def json_schema(sections: Sequence[ConfigSection]) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``playbook.toml``."""
    schema = playbook_model(sections).model_json_schema()
    name_pattern = {"pattern": "^[a-z][a-z0-9-]{0,62}$"}
    for key in ("hosts", "tasks"):
        schema["properties"][key]["propertyNames"] = name_pattern
    return {"$schema": SCHEMA_DIALECT, **schema, "title": "fedi-run playbook"}
