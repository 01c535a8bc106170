"""What the Fediversity apps (Mastodon, PeerTube, Pixelfed) have in common, for their plugins.

Every app: its secrets on its host, its S3 key files (made by garage's key task for it), the
initial user as a file, a DNS check of ``<app>.<domain>``, and — when the playbook has an
``[acme]`` table — all of it after its host trusts and reaches the ACME server.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedi_run.engine.operations import Call, Directory, Operation, Secret
from fedi_run.engine.playbook import Playbook
from fedi_run.engine.tasks import Task, per_host_id

SECRETS_ROOT = "/var/lib/fedi-run/secrets"
"""The one root-owned directory (0700) that holds every secret fedi-run places on a host."""


def secrets_dir(service: str) -> str:
    """The directory holding ``service``'s secret files on its host."""
    return f"{SECRETS_ROOT}/{service}"


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


def app_tasks(playbook: Playbook, app: str, secrets: tuple[SecretSpec, ...]) -> list[Task]:
    """The tasks of the Fediversity app ``app`` (nothing when it is disabled)."""
    if not playbook.is_enabled(app):
        return []
    host = playbook.service_host(app)
    ready = acme_ready(playbook, host)
    actions: list[Operation] = [Directory(SECRETS_ROOT, mode=0o700), Directory(secrets_dir(app), mode=0o700)]
    actions += [spec.operation(app) for spec in secrets]
    tasks = [
        Task(
            id=f"{app}.secrets",
            host=host,
            requires=ready,
            tags=(app, "secrets"),
            description=f"{app}'s secrets, generated once, mode 0400 under {secrets_dir(app)}",
            actions=tuple(actions),
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
                    (("app", app), ("to", f"{secrets_dir(app)}/s3")),
                ),
            ),
        ),
        Task(
            id=f"{app}.dns",
            host=None,
            requires=(),
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
                description=f"the initial user {playbook.initial_user.username!r} as a file for {app}",
                actions=(
                    Call(
                        "fedi_run.plugins.fediversity:place_initial_user",
                        (("service", app), ("to", f"{secrets_dir(app)}/initial-user")),
                    ),
                ),
            )
        )
    return tasks
