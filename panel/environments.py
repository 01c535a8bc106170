"""Environments as inventories the engine reads: rendered from the staff's rows, checked by the
engine's own loader, imported from an inventory file, and where a deployment's services go.

:func:`render_inventory` writes an environment's hosts (:class:`HostRow` values) as the TOML
``fedi-run -i`` reads, followed by its other tables (``[acme]``…, kept as text);
:func:`check_inventory` loads that text with the engine exactly as a run will (with an empty
playbook), so an environment is refused for the very problems the command line reports, each
keyed by the row and field it belongs to. :func:`import_inventory` reads an inventory (such as
``fedi-run lab inventory`` prints) into rows and the other tables' text, after the same check.
:func:`materialize` writes an environment's inventory file in a process's data directory from
its rows, when it needs it (the rows are the truth; the file a copy).
:func:`placement` puts each service a deployment runs (its own and those they need) on the
first host of the environment that may carry it.
"""

from __future__ import annotations

import tempfile
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fedi_run.panel.playbooks import NON_FIELD, toml_string

HOST_FIELDS = ("address", "port", "user", "host_key", "identity", "nixos")
"""The ``[hosts.<name>]`` keys an environment's host row holds (the engine's HostSection)."""

INVENTORY_FILE = "inventory.toml"


@dataclass(frozen=True)
class HostRow:
    """One host of an environment: ``[hosts.<name>]`` and the services it may carry."""

    name: str
    address: str
    port: int = 22
    user: str = "root"
    host_key: str = ""
    identity: str = ""
    nixos: str = ""
    services: tuple[str, ...] = ()

    @classmethod
    def of(cls, host) -> HostRow:
        """The row of an :class:`~fedi_run.panel.models.EnvironmentHost` (or alike)."""
        return cls(
            host.name,
            host.address,
            int(host.port),
            host.user,
            host.host_key,
            host.identity,
            host.nixos,
            tuple(host.services),
        )


@dataclass(frozen=True)
class InventoryProblem:
    """A problem of an environment's inventory: the host it is about (None: not a host's),
    the field (``address``… or ``__all__``) and the engine's message."""

    host: str | None
    field: str
    message: str


@dataclass(frozen=True)
class Imported:
    """An inventory file read into host rows and the text of its other tables."""

    hosts: tuple[HostRow, ...]
    extra: str = ""
    problems: tuple[InventoryProblem, ...] = field(default=())


def render_inventory(hosts: Sequence[HostRow], extra: str = "") -> str:
    """The inventory TOML of ``hosts`` (empty values left out: the engine's defaults apply),
    then ``extra``."""
    lines = ["# Written by the fedi-run panel from an environment's hosts; edits are overwritten."]
    for host in hosts:
        lines += ["", f"[hosts.{toml_string(host.name)}]"]
        lines.append(f"address = {toml_string(host.address)}")
        lines.append(f"port = {int(host.port)}")
        lines.append(f"user = {toml_string(host.user)}")
        for key in ("host_key", "identity", "nixos"):
            value = getattr(host, key)
            if value:
                lines.append(f"{key} = {toml_string(value)}")
    if extra.strip():
        lines += ["", extra.strip()]
    return "\n".join(lines) + "\n"


_CHECK_PLAYBOOK = '[deployment]\nname = "environment-check"\ndomain = "environment-check.example"\n'


def check_inventory(text: str, workdir: Path) -> list[InventoryProblem]:
    """Load ``text`` as an inventory with the engine (``load_project``, a playbook without
    services) from a temporary directory under ``workdir``; every problem, with the host and
    field it is about. Empty: valid."""
    from fedi_run.engine.errors import FediRunError, PlaybookError
    from fedi_run.engine.project import load_project

    with tempfile.TemporaryDirectory(prefix="environment-", dir=workdir) as directory:
        playbook = Path(directory) / "playbook.toml"
        inventory = Path(directory) / INVENTORY_FILE
        playbook.write_text(_CHECK_PLAYBOOK)
        inventory.write_text(text)
        try:
            load_project(playbook, [inventory], apply=False)
        except PlaybookError as error:
            return [_problem(p) for p in error.problems]
        except FediRunError as error:
            return [InventoryProblem(None, NON_FIELD, error.message)]
    return []


def _problem(problem) -> InventoryProblem:
    """An engine :class:`~fedi_run.engine.errors.Problem` keyed ``hosts.<name>.<field>`` as the
    host and field it is about."""
    key = problem.key or ""
    message = f"{key}: {problem.message}" if key else problem.message
    parts = key.split(".")
    if parts[0] == "hosts" and len(parts) >= 2:
        where = parts[2] if len(parts) > 2 and parts[2] in HOST_FIELDS else NON_FIELD
        return InventoryProblem(parts[1].strip('"'), where, message)
    return InventoryProblem(None, NON_FIELD, message)


def import_inventory(text: str, workdir: Path, known: Iterable[str]) -> Imported:
    """``text`` (an inventory file's) as host rows and the text of its other tables, once the
    engine's loader accepts it. A host named as a ``known`` service may carry that service
    (the lab's hosts: ``garage``, ``mastodon``…); the others carry none until staff tick them."""
    problems = check_inventory(text, workdir)
    if problems:
        return Imported((), "", tuple(problems))
    data = tomllib.loads(text)
    known = set(known)
    rows = []
    for name, table in (data.get("hosts") or {}).items():
        values = {key: table[key] for key in HOST_FIELDS if key in table}
        rows.append(
            HostRow(
                name=str(name),
                address=str(values.get("address", "")),
                port=int(values.get("port", 22)),
                user=str(values.get("user", "root")),
                host_key=str(values.get("host_key", "")),
                identity=str(values.get("identity", "")),
                nixos=str(values.get("nixos", "")),
                services=(name,) if name in known else (),
            )
        )
    extra = {key: value for key, value in data.items() if key != "hosts"}
    return Imported(tuple(rows), _tables(extra))


def _tables(data: Mapping) -> str:
    """Top-level tables of scalars (``[acme]``…) as TOML text; values as the engine read them."""
    blocks = []
    for table, values in data.items():
        if isinstance(values, Mapping):
            body = [f"{key} = {_value(value)}" for key, value in values.items()]
            blocks.append("\n".join([f"[{table}]", *body]))
    return "\n\n".join(blocks)


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, Mapping):
        return (
            "{" + ", ".join(f"{toml_string(str(k))} = {_value(v)}" for k, v in value.items()) + "}"
        )
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return toml_string(str(value))


def inventory_path(data_dir: Path, key: str) -> Path:
    """``<data dir>/environments/<key>/inventory.toml``, its directory created 0700."""
    from fedi_run.panel import paths

    paths.private_dir(Path(data_dir) / "environments")
    return paths.private_dir(Path(data_dir) / "environments" / key) / INVENTORY_FILE


def inventory_text(environment) -> str:
    """The inventory TOML of an :class:`~fedi_run.panel.models.Environment`'s rows."""
    return render_inventory(rows_of(environment), environment.extra)


def materialize(data_dir: Path, environment) -> Path:
    """The environment's inventory file in ``data_dir``, (re)written (0600) from its rows when
    it is missing or differs: every process writes its own from the database."""
    from fedi_run.panel import paths

    path = inventory_path(data_dir, environment.key)
    text = inventory_text(environment)
    try:
        if path.read_text() == text:
            return path
    except OSError:
        pass
    return paths.write_private(path, text)


def needed(services: Iterable[str], needs: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
    """``services`` and every service they need, transitively, in a stable order."""
    found: list[str] = []
    pending = list(services)
    while pending:
        service = pending.pop(0)
        if service not in found:
            found.append(service)
            pending.extend(needs.get(service, ()))
    return tuple(found)


def placement(hosts: Sequence[HostRow], services: Iterable[str]) -> dict[str, str]:
    """Each of ``services`` → the first of ``hosts`` that may carry it (absent: none may)."""
    placed = {}
    for service in services:
        for host in hosts:
            if service in host.services:
                placed[service] = host.name
                break
    return placed


def rows_of(environment) -> tuple[HostRow, ...]:
    """The host rows of an :class:`~fedi_run.panel.models.Environment` (none: no rows)."""
    if environment is None:
        return ()
    return tuple(HostRow.of(host) for host in environment.hosts.all())


def placement_of(deployment) -> dict[str, str]:
    """Where each service ``deployment`` runs goes (its own and those they need), in its
    environment; empty for a deployment without one (its services on their own-name hosts)."""
    from fedi_run.panel.catalog import catalog

    if deployment.environment_id is None:
        return {}
    needs = {s.name: s.needs for s in catalog().services}
    return placement(rows_of(deployment.environment), needed(deployment.services, needs))


def hosts_used(deployment) -> dict[str, str]:
    """The hosts ``deployment``'s services run on, name → ``user@address:port``, in the
    environment's order: only those — the others are never touched."""
    from fedi_run.panel.catalog import catalog

    needs = {s.name: s.needs for s in catalog().services}
    services = needed(deployment.services, needs)
    if deployment.environment_id is None:  # an older deployment: its own inventory file
        from fedi_run.panel.playbooks import hosts_of

        return {n: w for n, w in hosts_of(deployment.inventory).items() if n in services}
    rows = rows_of(deployment.environment)
    used = set(placement(rows, services).values())
    return {row.name: f"{row.user}@{row.address}:{row.port}" for row in rows if row.name in used}
