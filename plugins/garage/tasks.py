"""The garage plugin's service section and tasks (see the package's docstring)."""

from __future__ import annotations

import secrets as random

from fedi_run.engine.api import (
    Call,
    ConfigSection,
    Directory,
    File,
    Playbook,
    Secret,
    ServiceConfig,
    Task,
    absent_task,
    hookimpl,
    secrets_dir,
    secrets_root_actions,
)
from fedi_run.plugins import acme
from fedi_run.plugins.garage.keys import copy_key, key_dir, s3_dir


class GarageConfig(ServiceConfig):
    """``[services.garage]``: only ``enable`` and ``host``; it is enabled by any app."""


@hookimpl
def fedi_run_config_sections():
    return [
        ConfigSection(
            "garage",
            GarageConfig,
            description="Garage, the S3 object store.",
            units=("garage.service",),
        )
    ]


def garage_key_id() -> str:
    """A Garage access key id: ``GK`` and 24 hex digits (12 random bytes)."""
    return "GK" + random.token_hex(12)


@hookimpl
def fedi_run_secret_generators():
    return {"garage-key-id": garage_key_id}


@hookimpl
def fedi_run_tasks(playbook: Playbook):
    if not playbook.is_enabled("garage"):
        return absent_task(playbook, "garage", "no service needs it")
    host = playbook.service_host("garage")
    directory = secrets_dir(playbook, "garage")
    tasks = [
        Task(
            id="garage.secrets",
            host=host,
            requires=acme.ready(playbook, host),
            tags=("garage", "secrets"),
            description="Garage's RPC secret and admin token",
            actions=(
                *secrets_root_actions(playbook, "garage"),
                Secret(f"{directory}/rpc-secret", "hex32"),
                Secret(f"{directory}/admin-token", "base64-32"),
            ),
        )
    ]
    for app in playbook.users_of("garage"):
        keys = key_dir(playbook, app)
        if playbook.is_enabled(app):
            tasks.append(
                Task(
                    id=f"garage.key.{app}",
                    host=host,
                    requires=("garage.secrets",),
                    tags=("garage", "s3", app),
                    description=f"the S3 access key and bucket of {app}",
                    actions=(
                        Directory(f"{directory}/keys", mode=0o700),
                        Directory(keys, mode=0o700),
                        Secret(f"{keys}/key-id", "garage-key-id"),
                        Secret(f"{keys}/secret", "hex32"),
                        File(f"{keys}/bucket", f"{app}\n", mode=0o400),
                    ),
                    undo=(
                        Directory(keys, present=False),
                        Directory(f"{directory}/keys", present=False, recursive=False),
                    ),
                )
            )
            continue
        # The key of a disabled app goes only where this deployment made it (its state says
        # where), and is no longer there once removed: a host it never touched is not touched.
        had = playbook.placed_on(f"garage.key.{app}", removed_by=f"garage.drop-key.{app}")
        if had is not None and had in playbook.hosts:
            removal = (Directory(keys, present=False),)
            tasks.append(
                Task(
                    id=f"garage.drop-key.{app}",
                    host=had,
                    requires=("garage.secrets",) if had == host else (),
                    tags=("garage", "s3", app, "cleanup"),
                    description=f"remove the S3 key of {app}, which is disabled",
                    actions=removal,
                    undo=removal,
                )
            )
    return tasks


def s3_task(playbook: Playbook, app: str) -> Task:
    """``<app>.s3`` on the app's host: the key files of the S3 key ``garage.key.<app>`` made
    for it (``key-id``, ``secret``), in :func:`~fedi_run.plugins.garage.keys.s3_dir`; for an
    app plugin whose section ``needs`` garage."""
    to = s3_dir(playbook, app)
    return Task(
        id=f"{app}.s3",
        host=playbook.service_host(app),
        requires=(f"garage.key.{app}", f"{app}.secrets"),
        tags=(app, "s3", "garage"),
        description=f"{app}'s Garage S3 key files, copied from the garage host",
        actions=(
            Call(copy_key, (("app", app), ("to", to)), secrets=(f"{to}/key-id", f"{to}/secret")),
        ),
        undo=(Directory(to, present=False),),
    )


def s3_files(playbook: Playbook, app: str) -> dict[str, str]:
    """Name → path on the app's host of the S3 key files :func:`s3_task` places."""
    to = s3_dir(playbook, app)
    return {"s3-key-id": f"{to}/key-id", "s3-secret": f"{to}/secret"}
