"""What a plugin says about its own table in the playbook."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from fedi_run.engine.model.playbook import Section, ServiceConfig
from fedi_run.engine.model.validators import check_plain_name

UNIT = re.compile(r"[A-Za-z0-9][A-Za-z0-9:_.@-]*\.[a-z]+")
"""A systemd unit name (``name.service``, ``name@instance.service``, ``name.socket``...)."""
JSON_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


@dataclass(frozen=True)
class ConfigSection:
    """A plugin's table in ``playbook.toml`` and the model that validates it.

    * ``kind="service"``: the table is ``[services.<name>]`` and ``model`` must subclass
      :class:`~fedi_run.engine.model.playbook.ServiceConfig` (it inherits ``enable`` and ``host``).
    * ``kind="table"``: a top-level table ``[<name>]`` (the acme plugin's ``[acme]``); absent
      from the playbook means ``None``.

    ``needs`` names services switched on whenever this one is (every app needs ``garage``).

    What else the engine does for the section, all declared here:

    * ``in_inventory`` (``kind="table"`` only): the table may also be given in an inventory
      (``-i FILE``), merged key by key over the playbook's, as ``[hosts.*]`` are (``[acme]``:
      each environment has its own ACME server);
    * ``units`` (``kind="service"`` only): the systemd units that run the service on its host,
      which ``fedi-run verify`` checks with ``systemctl is-active`` (none: not checked);
    * ``configuration_key`` (``kind="service"`` only): the key of a Fediversity
      ``configuration.json`` that switches the service: ``<key>.enable`` becomes
      ``services.<name>.enable``;
    * ``ca_file_field`` (``kind="table"`` only): the name of a field of ``model`` holding a CA
      certificate file; ``fedi-run verify`` checks the services' HTTPS certificates against
      it when the table sets it (``[acme] ca_file``), else against the system's CAs.
    """

    name: str
    model: type[Section]
    kind: Literal["service", "table"] = "service"
    needs: tuple[str, ...] = ()
    description: str = ""
    in_inventory: bool = False
    units: tuple[str, ...] = ()
    configuration_key: str | None = None
    ca_file_field: str | None = None

    def __post_init__(self) -> None:
        check_plain_name(self.name)
        if self.kind == "service" and not issubclass(self.model, ServiceConfig):
            raise TypeError(f"section {self.name!r}: a service's model must subclass ServiceConfig")
        if not issubclass(self.model, Section):
            raise TypeError(f"section {self.name!r}: the model must subclass Section")
        if self.kind == "service":
            for field in ("in_inventory", "ca_file_field"):
                if getattr(self, field):
                    raise TypeError(f"section {self.name!r}: {field} is for kind='table' only")
        else:
            for field in ("units", "configuration_key"):
                if getattr(self, field):
                    raise TypeError(f"section {self.name!r}: {field} is for kind='service' only")
        if not isinstance(self.units, str):
            object.__setattr__(self, "units", tuple(self.units))
        if isinstance(self.units, str) or not all(
            isinstance(unit, str) and UNIT.fullmatch(unit) for unit in self.units
        ):
            raise TypeError(
                f"section {self.name!r}: units must be a tuple of systemd unit names "
                f"(such as 'nginx.service'), not {self.units!r}"
            )
        if self.configuration_key is not None and not (
            isinstance(self.configuration_key, str) and JSON_KEY.fullmatch(self.configuration_key)
        ):
            raise TypeError(
                f"section {self.name!r}: configuration_key must be a JSON key of letters, digits, "
                f"'_' and '-', not {self.configuration_key!r}"
            )
        if self.ca_file_field is not None and self.ca_file_field not in self.model.model_fields:
            raise TypeError(
                f"section {self.name!r}: ca_file_field {self.ca_file_field!r} is not a field of "
                f"{self.model.__name__}"
            )
