"""The acme plugin's playbook table and tasks (see the package's docstring)."""

from __future__ import annotations

import shlex

from pydantic import Field

from fedi_run.engine.api import (
    Call,
    Command,
    ConfigSection,
    Email,
    File,
    FilePath,
    HttpsUrl,
    Playbook,
    PlaybookError,
    Problem,
    Section,
    Task,
    hookimpl,
    per_host_id,
)
from fedi_run.plugins.acme.account import DIRECTORY_NAME, register
from fedi_run.plugins.acme.reach import check
from fedi_run.plugins.acme.trust import place_ca, trust_link

LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
CA_DIRECTORY = "/usr/local/share/ca-certificates"


def ca_path(playbook: Playbook) -> str:
    """Where a host keeps the deployment's trusted ACME CA: a file of the deployment's own
    (``fedi-run-<deployment>-acme.crt``), so that a teardown of one deployment never takes the
    CA another deployment on the host relies on."""
    return f"{CA_DIRECTORY}/fedi-run-{playbook.name}-acme.crt"


def ca_link(playbook: Playbook) -> str:
    """The link update-ca-certificates makes for :func:`ca_path` in /etc/ssl/certs."""
    return trust_link(ca_path(playbook))


class AcmeSection(Section):
    """``[acme]``: where certificates come from."""

    server: HttpsUrl = Field(LETS_ENCRYPT, description="The ACME directory URL.")
    email: Email | None = Field(None, description="The ACME account's contact address.")
    ca_file: FilePath | None = Field(
        None, description="An extra CA the hosts must trust to reach the server (test CAs)."
    )
    accept_terms: bool = Field(False, description="Agree to the ACME server's terms of service.")


@hookimpl
def fedi_run_config_sections():
    return [
        ConfigSection(
            "acme",
            AcmeSection,
            kind="table",
            description="The ACME server.",
            in_inventory=True,
            ca_file_field="ca_file",
        )
    ]


def ready(playbook: Playbook, host: str) -> tuple[str, ...]:
    """The acme task a service on ``host`` waits for — its host trusts and reaches the ACME
    server — when the playbook has an ``[acme]`` table; for other plugins' tasks."""
    if playbook.section("acme") is None:
        return ()
    return (per_host_id("acme.reach", host),)


def service_hosts(playbook: Playbook) -> list[str]:
    """The hosts that run an enabled service, each once."""
    return sorted({playbook.service_host(name) for name in playbook.enabled})


def check_deployment_name(playbook: Playbook) -> None:
    """The deployment is not called ``acme`` (in any case): the deployer keeps every
    deployment's ACME account key in ``.fedi-run/acme/``, where a deployment of that name
    would be rendered."""
    if playbook.name.lower() == DIRECTORY_NAME:
        raise PlaybookError(
            [
                Problem(
                    playbook.origin("deployment", "name"),
                    "deployment.name",
                    f"the name {playbook.name!r} is reserved: fedi-run keeps the ACME account "
                    f"keys in .fedi-run/{DIRECTORY_NAME}/, beside the deployments' renderings "
                    "(.fedi-run/<name>/); give the deployment another name",
                )
            ]
        )


@hookimpl
def fedi_run_tasks(playbook: Playbook):
    check_deployment_name(playbook)
    acme = playbook.section("acme")
    hosts = service_hosts(playbook)
    if acme is None or not hosts:
        return []
    tasks = [
        Task(
            id="acme.account",
            host=None,
            tags=("acme",),
            description=(
                f"register the ACME account {acme.email or '(no contact)'} at {acme.server}"
            ),
            actions=(Call(register, ()),),
            undo=(),
        )
    ]
    for host in hosts:
        reach_requires = ["acme.account"]
        if acme.ca_file:
            tasks.append(
                Task(
                    id=per_host_id("acme.trust", host),
                    host=host,
                    requires=("acme.account",),
                    tags=("acme", "trust"),
                    description=f"trust the ACME CA {acme.ca_file}",
                    actions=(Call(place_ca, (("to", ca_path(playbook)),)),),
                    undo=(
                        File(ca_path(playbook), present=False),
                        Command(
                            "update-ca-certificates --fresh",
                            unless=f"[ ! -L {shlex.quote(ca_link(playbook))} ]",
                        ),
                    ),
                )
            )
            reach_requires.append(per_host_id("acme.trust", host))
        tasks.append(
            Task(
                id=per_host_id("acme.reach", host),
                host=host,
                requires=tuple(reach_requires),
                tags=("acme", "check"),
                description=f"check that {host} reaches {acme.server}",
                actions=(Call(check, ()),),
                undo=(),
            )
        )
    return tasks
