"""What the deployment form offers, taken from the installed plugins and the playbook's schema.

The services are the ``kind="service"`` sections the loaded plugins declare (the five built-in
ones and any third party's), with their descriptions and what they need; the help texts are the
descriptions of the fields of the tables' pydantic models — what ``fedi-run schema`` prints for
them, taken from the models rather than read back out of that schema. Both are computed once
per process.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fedi_run.engine.model.sections import ConfigSection


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


FORM_TABLES = ("deployment", "initial_user", "acme")
"""The playbook tables the form has fields of (``acme`` when a plugin declares it)."""


def _descriptions(sections: Sequence[ConfigSection]) -> dict[str, str]:
    """``table.key`` (the key as the playbook spells it: a field's alias, if it has one) → the
    description of that field of the table's model, for the :data:`FORM_TABLES` there are
    (fields without one have no help text)."""
    from fedi_run.engine.model.playbook import DeploymentSection, InitialUserSection

    models = {"deployment": DeploymentSection, "initial_user": InitialUserSection}
    models.update((s.name, s.model) for s in sections if s.kind == "table")
    return {
        f"{table}.{field.alias or key}": field.description
        for table in FORM_TABLES
        if table in models
        for key, field in models[table].model_fields.items()
        if field.description
    }


@functools.lru_cache(maxsize=1)
def catalog() -> Catalog:
    """The catalog of the plugins installed in this environment (computed once)."""
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
        _descriptions(sections),
    )
