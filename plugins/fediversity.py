"""What the Fediversity apps (Mastodon, PeerTube, Pixelfed) have in common, for their plugins.

Every enabled app: its secrets on its host, its S3 key files (made by garage's key task for it),
the initial user as a file, a DNS check of ``<app>.<domain>``, and — when the playbook has an
``[acme]`` table — all of it after its host trusts and reaches the ACME server. A disabled app
that an earlier run of this deployment placed on a host gets one task that removes what that
run placed there (on that host only, found from the state), so switching a service off and
running again cleans it up. Built from the plugin API's service building
blocks and the garage and acme plugins' own functions for other plugins.
"""

from __future__ import annotations

from fedi_run.engine.api import (
    Operation,
    Playbook,
    SecretSpec,
    Task,
    absent_task,
    dns_task,
    initial_user_file,
    initial_user_task,
    secret_tasks,
    secrets_dir,
)
from fedi_run.plugins import acme, garage


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
    ready = acme.ready(playbook, playbook.service_host(app))
    return [
        secret_tasks(playbook, app, secrets, ready, extra, extra_files),
        garage.s3_task(playbook, app),
        dns_task(playbook, app),
        *initial_user_task(playbook, app),
    ]


RUNTIME_ROOT = "/run/fedi-run"
"""Where an app's root oneshots compose files from its secrets on the host (environment files
for systemd): ``/run/fedi-run/<app>/``, 0700 directories and 0400 files owned by root, on a
tmpfs, made again before the app starts on every boot."""


def runtime_file(app: str, name: str) -> str:
    """The path of ``app``'s composed file ``name`` under :data:`RUNTIME_ROOT`."""
    return f"{RUNTIME_ROOT}/{app}/{name}"


def app_secret_files(
    playbook: Playbook,
    app: str,
    secrets: tuple[SecretSpec, ...],
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """Name → path on the host of every secret file the app's tasks place: its generated
    secrets, ``extra`` ones, its S3 key files and the initial user — what its Nix module names."""
    files = {spec.name: f"{secrets_dir(playbook, app)}/{spec.name}" for spec in secrets}
    files.update(extra or {})
    files.update(garage.s3_files(playbook, app))
    if playbook.initial_user is not None:
        files["initial-user"] = initial_user_file(playbook, app)
    return files
