"""What the Fediversity apps (Mastodon, PeerTube, Pixelfed) have in common, for their plugins.

Every enabled app: its secrets on its host, its S3 key files (made by garage's key task for it),
the initial user as a file, a DNS check of ``<app>.<domain>``, and — when the playbook has an
``[acme]`` table — all of it after its host trusts and reaches the ACME server. A disabled app
whose host is known gets one task that removes what an earlier run placed there, so switching
a service off and running again cleans it up.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from pathlib import Path

from fedi_run.engine.execute.perform import ActionFailed, CallResult, Context, place_secret_files
from fedi_run.engine.model.playbook import Playbook
from fedi_run.engine.planning.operations import Call, Directory, File, Operation, Secret, undo_of
from fedi_run.engine.planning.tasks import Task, per_host_id

SECRETS_ROOT = "/var/lib/fedi-run/secrets"
"""The one root-owned directory (0700) that holds every secret fedi-run places on a host."""


def secrets_dir(service: str) -> str:
    """The directory holding ``service``'s secret files on its host."""
    return f"{SECRETS_ROOT}/{service}"


def s3_dir(app: str) -> str:
    """Where ``app``'s S3 key files (``key-id``, ``secret``) are on the app's host."""
    return f"{secrets_dir(app)}/s3"


def initial_user_file(app: str) -> str:
    """The initial user's file (JSON: username, displayName, email, password) for ``app``."""
    return f"{secrets_dir(app)}/initial-user"


@dataclass(frozen=True)
class SecretSpec:
    """One secret file of a service: its file name and the generator that makes it."""

    name: str
    generate: str

    def operation(self, service: str) -> Secret:
        return Secret(f"{secrets_dir(service)}/{self.name}", self.generate)


def acme_ready(playbook: Playbook, host: str) -> tuple[str, ...]:
    """The ACME task a service on ``host`` waits for, when the playbook has an [acme] table."""
    if playbook.section("acme") is None:
        return ()
    return (per_host_id("acme.reach", host),)


def secrets_root_actions(service: str) -> list[Operation]:
    """The secrets root and the service's own directory, both 0700."""
    return [
        Directory("/var/lib/fedi-run", mode=0o755),
        Directory(SECRETS_ROOT, mode=0o700),
        Directory(secrets_dir(service), mode=0o700),
    ]


def absent_task(playbook: Playbook, service: str, why: str) -> list[Task]:
    """For a disabled ``service`` whose host is known: remove its secrets directory."""
    host = playbook.service_host(service)
    if host not in playbook.hosts:
        return []
    return [
        Task(
            id=f"{service}.absent",
            host=host,
            tags=(service, "cleanup"),
            description=f"remove {service}'s secrets and key files ({why})",
            actions=(Directory(secrets_dir(service), present=False),),
            undo=(),
        )
    ]


def app_tasks(
    playbook: Playbook,
    app: str,
    secrets: tuple[SecretSpec, ...],
    extra: tuple[Operation, ...] = (),
    extra_files: tuple[str, ...] = (),
) -> list[Task]:
    """The tasks of the Fediversity app ``app``. ``extra`` operations run after its secrets
    are placed; ``extra_files`` are the files they place (a :class:`Call` has no undo of its
    own), removed by the teardown before the directories are."""
    if not playbook.is_enabled(app):
        return absent_task(playbook, app, f"{app} is disabled")
    host = playbook.service_host(app)
    ready = acme_ready(playbook, host)
    actions = [*secrets_root_actions(app), *(spec.operation(app) for spec in secrets), *extra]
    derived = (undo_of(op) for op in reversed(actions))
    undo = (
        *(File(path, present=False) for path in extra_files),
        *(op for op in derived if op is not None),
    )
    tasks = [
        Task(
            id=f"{app}.secrets",
            host=host,
            requires=ready,
            tags=(app, "secrets"),
            description=f"{app}'s secrets, generated once, mode 0400 under {secrets_dir(app)}",
            actions=tuple(actions),
            undo=undo,
        ),
        Task(
            id=f"{app}.s3",
            host=host,
            requires=(f"garage.key.{app}", f"{app}.secrets"),
            tags=(app, "s3", "garage"),
            description=f"{app}'s Garage S3 key files, copied from the garage host",
            actions=(
                Call(
                    "fedi_run.plugins.garage.keys:copy_key",
                    (("app", app), ("to", s3_dir(app))),
                    secrets=(f"{s3_dir(app)}/key-id", f"{s3_dir(app)}/secret"),
                ),
            ),
            undo=(Directory(s3_dir(app), present=False),),
        ),
        Task(
            id=f"{app}.dns",
            host=None,
            tags=(app, "dns"),
            description=f"check that {playbook.service_domain(app)} resolves to {host}'s address",
            actions=(Call("fedi_run.plugins.fediversity:check_dns", (("service", app),)),),
            undo=(),
        ),
    ]
    if playbook.initial_user is not None:
        tasks.append(
            Task(
                id=f"{app}.initial-user",
                host=host,
                requires=(f"{app}.secrets",),
                tags=(app, "initial-user"),
                description=(
                    f"the initial user {playbook.initial_user.username!r} as a file for {app}"
                ),
                actions=(
                    Call(
                        "fedi_run.plugins.fediversity:place_initial_user",
                        (("service", app), ("to", initial_user_file(app))),
                        secrets=(initial_user_file(app),),
                    ),
                ),
                undo=(File(initial_user_file(app), present=False),),
            )
        )
    return tasks


def place_initial_user(context: Context, service: str, to: str) -> list[str]:
    """Write the initial user — with the password read from the deployer's ``password_file``
    — as JSON at ``to`` on the service's host (mode 0400)."""
    user = context.playbook.initial_user
    try:
        password = Path(user.password_file).read_text().rstrip("\n")
    except OSError as error:
        raise ActionFailed(
            f"cannot read initial_user.password_file {user.password_file}: "
            f"{error.strerror or error}"
        ) from None
    context.masker.add(password)
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


def app_secret_files(
    playbook: Playbook,
    app: str,
    secrets: tuple[SecretSpec, ...],
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """Name → path on the host of every secret file the app's tasks place: its generated
    secrets, ``extra`` ones, its S3 key files and the initial user — what its Nix module names."""
    files = {spec.name: f"{secrets_dir(app)}/{spec.name}" for spec in secrets}
    files.update(extra or {})
    files["s3-key-id"] = f"{s3_dir(app)}/key-id"
    files["s3-secret"] = f"{s3_dir(app)}/secret"
    if playbook.initial_user is not None:
        files["initial-user"] = initial_user_file(app)
    return files
