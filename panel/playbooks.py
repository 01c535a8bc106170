"""A deployment's playbook: written from the form's values, checked by loading it with the engine.

:class:`DeploymentSpec` is the form's content as a value; :func:`render_playbook` writes it as
``playbook.toml`` text (hosts are not in it: they come from the deployment's inventory, passed
as ``-i`` would be); :func:`check` loads it exactly as a run will — the engine's own validation,
plugins and task graph — and returns each problem keyed by the form field it belongs to, so
errors appear beside their field.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fedi_run.engine.errors import FediRunError, GraphError, PlaybookError

NON_FIELD = "__all__"

_FIELD_OF_KEY = {
    "deployment.name": "name",
    "deployment.domain": "domain",
    "initial_user.username": "initial_username",
    "initial_user.display_name": "initial_display_name",
    "initial_user.email": "initial_email",
    "acme.email": "acme_email",
    "acme.accept_terms": "acme_accept_terms",
}


@dataclass(frozen=True)
class InitialUser:
    """The first account of every enabled service; its password stays in ``password_file``."""

    username: str
    display_name: str
    email: str
    password_file: Path


@dataclass(frozen=True)
class DeploymentSpec:
    """What a playbook is written from. ``services`` are the enabled ones among ``known``."""

    name: str
    domain: str
    services: tuple[str, ...]
    known: tuple[str, ...]
    initial_user: InitialUser
    acme_email: str = ""
    acme_accept_terms: bool = False
    acme: bool = True
    placement: tuple[tuple[str, str], ...] = ()
    """(service, host) pairs: each written as the service's ``host`` (the environment's host
    that carries it); a service left out runs on the host of its own name."""


@dataclass(frozen=True)
class FieldProblem:
    """One problem for the form: the field it belongs to (or ``__all__``) and the message."""

    field: str
    message: str


def toml_string(value: str) -> str:
    """``value`` as a TOML basic string (JSON's escapes are TOML's; DEL escaped too)."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def render_playbook(spec: DeploymentSpec) -> str:
    """The ``playbook.toml`` text of ``spec``."""
    lines = [
        "# Written by the fedi-run panel from the deployment's form; edits here are overwritten.",
        "# Hosts come from the deployment's environment (its inventory).",
        "",
        "[deployment]",
        f"name = {toml_string(spec.name)}",
        f"domain = {toml_string(spec.domain)}",
    ]
    placed = dict(spec.placement)
    for service in spec.known:
        lines += [
            "",
            f"[services.{service}]",
            f"enable = {'true' if service in spec.services else 'false'}",
        ]
        if service in placed:
            lines.append(f"host = {toml_string(placed[service])}")
    if spec.acme and (spec.acme_email or spec.acme_accept_terms):
        lines += ["", "[acme]"]
        if spec.acme_email:
            lines.append(f"email = {toml_string(spec.acme_email)}")
        lines.append(f"accept_terms = {'true' if spec.acme_accept_terms else 'false'}")
    user = spec.initial_user
    lines += [
        "",
        "[initial_user]",
        f"username = {toml_string(user.username)}",
        f"display_name = {toml_string(user.display_name)}",
        f"email = {toml_string(user.email)}",
        f"password_file = {toml_string(str(user.password_file))}",
    ]
    return "\n".join(lines) + "\n"


def field_of(problem, inventory: Path) -> str:
    """The form field a :class:`~fedi_run.engine.errors.Problem` belongs to."""
    if problem.file is not None and Path(problem.file) == inventory:
        return "inventory"
    for key, field in _FIELD_OF_KEY.items():
        if problem.key == key or problem.key.startswith(key + "."):
            return field
    if problem.key.startswith("services"):
        return "services"
    if problem.key.startswith(("hosts", "acme")):
        return "inventory"
    return NON_FIELD


def _message(problem) -> str:
    """The problem's message with its key, without the (temporary) playbook's path."""
    return f"{problem.key}: {problem.message}" if problem.key else problem.message


def check(spec: DeploymentSpec, inventory: Path, workdir: Path) -> list[FieldProblem]:
    """Load ``spec`` with ``inventory`` as a run would (plugins, validation, task graph) from a
    temporary playbook under ``workdir``; every problem, keyed by form field. Empty: valid."""
    from fedi_run.engine.project import load_project

    inventory = Path(inventory)
    with tempfile.TemporaryDirectory(prefix="check-", dir=workdir) as directory:
        playbook = Path(directory) / "playbook.toml"
        playbook.write_text(render_playbook(spec))
        try:
            load_project(playbook, [inventory], apply=False)
        except PlaybookError as error:
            return [FieldProblem(field_of(p, inventory), _message(p)) for p in error.problems]
        except GraphError as error:
            return [FieldProblem("services", str(p)) for p in error.problems]
        except FediRunError as error:
            return [FieldProblem(NON_FIELD, error.message)]
    return []


def hosts_of(inventory: Path) -> dict[str, str]:
    """The inventory's hosts, name → ``user@address:port``, read with tomllib alone (empty
    when the file cannot be read: the form's check reports why)."""
    import tomllib

    try:
        data = tomllib.loads(Path(inventory).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}
    hosts = data.get("hosts")
    if not isinstance(hosts, dict):
        return {}
    return {
        str(name): f"{h.get('user', 'root')}@{h.get('address', '?')}:{h.get('port', 22)}"
        for name, h in hosts.items()
        if isinstance(h, dict)
    }
