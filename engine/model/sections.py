"""What a plugin says about its own table in the playbook."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fedi_run.engine.model.playbook import Section, ServiceConfig
from fedi_run.engine.model.validators import check_plain_name


@dataclass(frozen=True)
class ConfigSection:
    """A plugin's table in ``playbook.toml`` and the model that validates it.

    * ``kind="service"``: the table is ``[services.<name>]`` and ``model`` must subclass
      :class:`~fedi_run.engine.model.playbook.ServiceConfig` (it inherits ``enable`` and ``host``).
    * ``kind="table"``: a top-level table ``[<name>]`` (the acme plugin's ``[acme]``); absent
      from the playbook means ``None``.

    ``needs`` names services switched on whenever this one is (every app needs ``garage``).
    """

    name: str
    model: type[Section]
    kind: Literal["service", "table"] = "service"
    needs: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        check_plain_name(self.name)
        if self.kind == "service" and not issubclass(self.model, ServiceConfig):
            raise TypeError(f"section {self.name!r}: a service's model must subclass ServiceConfig")
        if not issubclass(self.model, Section):
            raise TypeError(f"section {self.name!r}: the model must subclass Section")
