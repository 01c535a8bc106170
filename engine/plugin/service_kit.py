"""Building blocks for service plugins: what every service that runs on a host has in common.

A service's secrets live in one directory of its own on its host, which belongs to one
deployment (:func:`secrets_dir`: ``/var/lib/fedi-run/<deployment>/secrets/<service>``, under
the deployment's root-owned :func:`secrets_root`, 0700); :func:`secret_tasks` makes the task
that generates them once; :func:`absent_task` removes them again when the service is switched
off — on the host where this deployment placed them, as its state says
(``Playbook.previously_on``), and nowhere else. The initial user (``[initial_user]``) is
handed to a service as a JSON file (:func:`initial_user_task`), and :func:`dns_task` checks
that ``<service>.<domain>`` resolves to the service's host. None of this knows any particular
service.
"""

from __future__ import annotations

import json
import shlex
import socket
from dataclasses import dataclass
from pathlib import Path

from fedi_run.engine.errors import ActionFailed
from fedi_run.engine.execute.context import CallResult, Context
from fedi_run.engine.execute.secret_files import place_secret_files
from fedi_run.engine.model import layout
from fedi_run.engine.model.playbook import Playbook
from fedi_run.engine.planning.operations import (
    Call,
    Command,
    Directory,
    File,
    Operation,
    Secret,
    undo_of,
)
from fedi_run.engine.planning.tasks import Task

HOST_ROOT = layout.HOST_ROOT
"""``/var/lib/fedi-run``: one directory per deployment on a host (0755), each holding all that
fedi-run places there for that deployment."""


def _deployment(owner: Playbook | str) -> str:
    return owner.name if isinstance(owner, Playbook) else owner


def secrets_root(owner: Playbook | str) -> str:
    """``/var/lib/fedi-run/<deployment>/secrets``: the root-owned directory (0700) holding
    every secret the deployment (a :class:`Playbook`, or its name) places on a host."""
    return layout.secrets_root(_deployment(owner))


def secrets_dir(owner: Playbook | str, service: str) -> str:
    """The directory holding ``service``'s secret files on its host, for the deployment
    ``owner`` (a :class:`Playbook`, or its name)."""
    return f"{secrets_root(owner)}/{service}"


def initial_user_file(owner: Playbook | str, service: str) -> str:
    """The initial user's file (JSON: username, displayName, email, password) for ``service``."""
    return f"{secrets_dir(owner, service)}/initial-user"


@dataclass(frozen=True)
class SecretSpec:
    """One secret file of a service: its file name, the generator that makes it, and what
    generating it anew breaks (``--rotate-secrets`` warns with it; empty: whatever used it)."""

    name: str
    generate: str
    breaks: str = ""

    def operation(self, owner: Playbook | str, service: str) -> Secret:
        """The :class:`Secret` placing this file in ``service``'s secrets directory."""
        return Secret(
            f"{secrets_dir(owner, service)}/{self.name}", self.generate, breaks=self.breaks
        )


def secrets_root_actions(playbook: Playbook, service: str) -> list[Operation]:
    """The deployment's directory (0755), its secrets root and the service's own directory
    (0700). When this deployment placed ``service`` on this host before secrets were kept per
    deployment (``/var/lib/fedi-run/secrets/<service>``), that directory is moved to its
    place first, so its secrets are kept rather than generated anew."""
    directory = secrets_dir(playbook, service)
    actions: list[Operation] = [
        Directory(HOST_ROOT, mode=0o755),
        Directory(layout.deployment_root(playbook.name), mode=0o755),
        Directory(secrets_root(playbook), mode=0o700),
    ]
    if playbook.previously_on(service) == playbook.service_host(service):
        legacy = shlex.quote(f"{layout.LEGACY_SECRETS}/{service}")
        actions.append(
            Command(
                f"mv -T {legacy} {shlex.quote(directory)}",
                creates=directory,
                unless=f"[ ! -d {legacy} ] || [ -L {legacy} ]",
            )
        )
    return [*actions, Directory(directory, mode=0o700)]


def secret_tasks(
    playbook: Playbook,
    service: str,
    secrets: tuple[SecretSpec, ...],
    requires: tuple[str, ...] = (),
    extra: tuple[Operation, ...] = (),
    extra_files: tuple[str, ...] = (),
) -> Task:
    """``<service>.secrets`` on the service's host: its directory and ``secrets``, generated
    once. ``extra`` operations run after them; ``extra_files`` are the files they place (a
    :class:`Call` has no undo of its own), removed by the teardown before the directories."""
    actions = [
        *secrets_root_actions(playbook, service),
        *(spec.operation(playbook, service) for spec in secrets),
    ]
    actions += extra
    derived = (undo_of(op) for op in reversed(actions))
    undo = (
        *(File(path, present=False) for path in extra_files),
        *(op for op in derived if op is not None),
    )
    return Task(
        id=f"{service}.secrets",
        host=playbook.service_host(service),
        requires=requires,
        tags=(service, "secrets"),
        description=(
            f"{service}'s secrets, generated once, mode 0400 under {secrets_dir(playbook, service)}"
        ),
        actions=tuple(actions),
        undo=undo,
    )


def absent_task(playbook: Playbook, service: str, why: str) -> list[Task]:
    """For a disabled ``service`` that this deployment placed on a host in an earlier run
    (``playbook.previously_on(service)``, from the state) — and only then, and only on that
    host: ``<service>.absent``, which removes the deployment's secrets directory of the
    service there (a teardown does too). Nothing for a service this deployment never ran, or
    already cleaned up, or whose host is no longer in the playbook: a host the deployment did
    not touch is never touched, whatever it is called."""
    host = playbook.previously_on(service)
    if host is None or host not in playbook.hosts:
        return []
    removal = (Directory(secrets_dir(playbook, service), present=False),)
    return [
        Task(
            id=f"{service}.absent",
            host=host,
            tags=(service, "cleanup"),
            description=f"remove {service}'s secrets and key files ({why})",
            actions=removal,
            undo=removal,
        )
    ]


def initial_user_task(playbook: Playbook, service: str) -> list[Task]:
    """``<service>.initial-user``: the initial user as a file for ``service`` (nothing when the
    playbook has no ``[initial_user]``). It reads ``initial_user.password_file``."""
    if playbook.initial_user is None:
        return []
    path = initial_user_file(playbook, service)
    return [
        Task(
            id=f"{service}.initial-user",
            host=playbook.service_host(service),
            requires=(f"{service}.secrets",),
            tags=(service, "initial-user"),
            description=(
                f"the initial user {playbook.initial_user.username!r} as a file for {service}"
            ),
            actions=(
                Call(place_initial_user, (("service", service), ("to", path)), secrets=(path,)),
            ),
            undo=(File(path, present=False),),
            reads=("initial_user.password_file",),
        )
    ]


def place_initial_user(context: Context, service: str, to: str) -> list[str]:
    """Write the initial user — with the password read from the deployer's ``password_file``
    — as JSON at ``to`` on the service's host (mode 0400)."""
    user = context.playbook.initial_user
    try:
        password = Path(user.password_file).read_text(encoding="utf-8").rstrip("\n")
    except (OSError, UnicodeDecodeError) as error:  # preflight checked both; it changed since
        reason = getattr(error, "strerror", None) or (
            "not valid UTF-8" if isinstance(error, UnicodeDecodeError) else str(error)
        )
        raise ActionFailed(
            f"cannot read initial_user.password_file {user.password_file}: {reason}"
        ) from None
    context.masker.add_forms(password)  # also as the JSON document below spells it
    document = json.dumps(
        {
            "username": user.username,
            "displayName": user.display_name,
            "email": user.email,
            "password": password,
        }
    )
    assert context.connection is not None
    return place_secret_files(context, context.connection, {to: document})


def dns_task(playbook: Playbook, service: str) -> Task:
    """``<service>.dns`` on the deployer: ``<service>.<domain>`` resolves to its host."""
    return Task(
        id=f"{service}.dns",
        host=None,
        tags=(service, "dns"),
        description=(
            f"check that {playbook.service_domain(service)} resolves to "
            f"{playbook.service_host(service)}'s address"
        ),
        actions=(Call(check_dns, (("service", service),)),),
        undo=(),
    )


def _addresses(name: str) -> set[str]:
    try:
        return {info[4][0] for info in socket.getaddrinfo(name, None)}
    except (socket.gaierror, UnicodeError):
        return set()


def check_dns(context: Context, service: str) -> CallResult:
    """``<service>.<domain>`` resolves to its host's address; else a warning, or — with
    ``[run] dns = "error"`` — a failure. ``dns = "off"`` skips the check."""
    playbook = context.playbook
    mode = playbook.run.dns
    if mode == "off":
        return CallResult()
    domain = playbook.service_domain(service)
    host = playbook.service_host(service)
    expected = _addresses(playbook.hosts[host].address)
    found = _addresses(domain)
    if found and expected & found:
        return CallResult()
    problem = (
        f"{domain} resolves to {', '.join(sorted(found)) or 'nothing'}, not to {host}'s address "
        f"{playbook.hosts[host].address}; certificates for it cannot be issued until it does"
    )
    if mode == "error":
        raise ActionFailed(problem)
    return CallResult(warnings=(problem,))
