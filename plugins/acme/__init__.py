"""The acme plugin: certificates from an ACME server (Let's Encrypt, or Pebble in tests).

Owns the top-level ``[acme]`` table. On the deployer, the ACME account is registered first, so
a wrong server or e-mail fails before anything else (``account.register``). Then, on each host
that runs a service: trust the CA in ``ca_file`` when one is given (test CAs,
``trust.place_ca``), then check that the host reaches the ACME directory (``reach.check``).

Teardown, in reverse: the CA file is removed and the host's trust store rebuilt; the reach check
has nothing to undo. The ACME account is kept (its key stays in the deployer's state): it is the
operator's identity at the CA, deactivating it cannot be undone, and the next deployment reuses
it. ``account.unregister`` deactivates it for an operator who asks.
"""

from __future__ import annotations

from pydantic import Field

from fedi_run.engine.model.playbook import Email, FilePath, HttpsUrl, Playbook, Section
from fedi_run.engine.model.sections import ConfigSection
from fedi_run.engine.planning.operations import Call, Command, File
from fedi_run.engine.planning.tasks import Task, per_host_id
from fedi_run.engine.plugin.hookspecs import hookimpl

LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
CA_PATH = "/usr/local/share/ca-certificates/fedi-run-acme.crt"
CA_LINK = "/etc/ssl/certs/fedi-run-acme.pem"
"""The link update-ca-certificates makes for CA_PATH (``trust.trust_link(CA_PATH)``)."""


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
    return [ConfigSection("acme", AcmeSection, kind="table", description="The ACME server.")]


def service_hosts(playbook: Playbook) -> list[str]:
    """The hosts that run an enabled service, each once."""
    return sorted({playbook.service_host(name) for name in playbook.enabled})


@hookimpl
def fedi_run_tasks(playbook: Playbook):
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
            actions=(Call("fedi_run.plugins.acme.account:register", ()),),
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
                    actions=(Call("fedi_run.plugins.acme.trust:place_ca", (("to", CA_PATH),)),),
                    undo=(
                        File(CA_PATH, present=False),
                        Command("update-ca-certificates --fresh", unless=f"[ ! -L {CA_LINK} ]"),
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
                actions=(Call("fedi_run.plugins.acme.reach:check", ()),),
                undo=(),
            )
        )
    return tasks


from fedi_run.plugins.acme.nix import fedi_run_nix_modules  # noqa: E402,F401 - the plugin's part of the NixOS configuration
