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
    VARS_DESCRIPTION,
    DeploymentSection,
    HostSection,
    InitialUserSection,
    RunSection,
    Section,
    UserTaskSection,
    Vars,
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
        deployment=(
            DeploymentSection,
            Field(description="What the deployment is called and where its services live."),
        ),
        hosts=(
            dict[str, HostSection],
            Field(
                default_factory=dict,
                description="Target hosts by name (lowercase letters, digits and '-'), reached "
                "over SSH.",
            ),
        ),
        services=(
            services_model,
            Field(
                default_factory=services_model,
                description="The services to deploy, one table per service.",
            ),
        ),
        initial_user=(
            InitialUserSection | None,
            Field(
                None,
                description="The first account, created on every enabled service (absent: none).",
            ),
        ),
        tasks=(
            dict[str, UserTaskSection],
            Field(
                default_factory=dict,
                description="The operator's own tasks by name; each does one thing: run, file, "
                "directory or fetch.",
            ),
        ),
        run=(
            RunSection,
            Field(default_factory=RunSection, description="Defaults for how tasks run."),
        ),
        vars=(
            Vars,
            Field(
                default_factory=dict,
                description=VARS_DESCRIPTION,
                examples=[{"motd_text": "Welcome", "admins": ["alice", "bob"]}],
            ),
        ),
        **tables,
    )


def json_schema(sections: Sequence[ConfigSection]) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``playbook.toml``."""
    schema = playbook_model(sections).model_json_schema()
    name_pattern = {"pattern": "^[a-z][a-z0-9-]{0,62}$"}
    for key in ("hosts", "tasks"):
        schema["properties"][key]["propertyNames"] = name_pattern
    variable_names = {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}
    schema["properties"]["vars"]["propertyNames"] = variable_names
    env = schema["$defs"]["UserTaskSection"]["properties"]["env"]
    for option in env.get("anyOf", [env]):
        if option.get("type") == "object":
            option["propertyNames"] = variable_names
    return {"$schema": SCHEMA_DIALECT, **schema, "title": "fedi-run playbook"}
