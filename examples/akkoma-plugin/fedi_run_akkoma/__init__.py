"""fedi-run-akkoma: Akkoma (a Fediverse microblogging server) as a fedi-run service plugin.

What it contributes:

* ``[services.akkoma]``: ``enable``, ``host``, and its own ``instance_name`` and
  ``registrations_open``; it needs Garage (uploads), which fedi-run then switches on and which
  makes it an S3 key;
* tasks: Akkoma's secrets, S3 key files, initial user and DNS check (the Fediversity app
  pattern fedi-run's own plugins use), and its instance settings rendered from a template;
* its NixOS module, referring to the secrets by path only.
"""

from __future__ import annotations

from pydantic import Field

from fedi_run.engine.model.playbook import Playbook, ServiceConfig
from fedi_run.engine.model.sections import ConfigSection
from fedi_run.engine.nixops.nix import NixModule, render_template
from fedi_run.engine.planning.operations import Directory, Template
from fedi_run.engine.planning.tasks import Task
from fedi_run.engine.plugin.hookspecs import hookimpl
from fedi_run.plugins.fediversity import SecretSpec, app_tasks, s3_dir, secrets_dir

__version__ = "0.1.0"
NAME = "akkoma"
SECRETS = (SecretSpec("secret-key-base", "hex64"), SecretSpec("signing-salt", "alnum32"))
SETTINGS = "/var/lib/akkoma-fedi-run/settings.json"


class AkkomaConfig(ServiceConfig):
    """``[services.akkoma]``."""

    instance_name: str = Field(
        "Akkoma", min_length=1, max_length=80, description="The instance's name."
    )
    registrations_open: bool = Field(False, description="Whether anyone may sign up.")


@hookimpl
def fedi_run_config_sections():
    return [
        ConfigSection(NAME, AkkomaConfig, needs=("garage",), description="Akkoma, microblogging.")
    ]


@hookimpl
def fedi_run_tasks(playbook: Playbook):
    tasks = app_tasks(playbook, NAME, SECRETS)
    if not playbook.is_enabled(NAME):
        return tasks
    config = playbook.services[NAME]
    settings = Task(
        id="akkoma.settings",
        host=playbook.service_host(NAME),
        requires=("akkoma.secrets",),
        tags=(NAME, "config"),
        description="Akkoma's instance settings",
        actions=(
            Directory("/var/lib/akkoma-fedi-run", mode=0o755),
            Template(
                SETTINGS,
                "settings.json.j2",
                package="fedi_run_akkoma",
                context=(
                    ("instance_name", config.instance_name),
                    ("registrations_open", config.registrations_open),
                    ("domain", playbook.service_domain(NAME)),
                ),
                mode=0o644,
            ),
        ),
    )
    return [*tasks, settings]


@hookimpl
def fedi_run_nix_modules(playbook: Playbook, host: str):
    if playbook.service_host(NAME) != host or host not in playbook.hosts:
        return []
    text = render_template(
        "fedi_run_akkoma",
        "akkoma.nix.j2",
        enable=playbook.is_enabled(NAME),
        domain=playbook.service_domain(NAME),
        secret_key_base_file=f"{secrets_dir(NAME)}/secret-key-base",
        signing_salt_file=f"{secrets_dir(NAME)}/signing-salt",
        s3_key_id_file=f"{s3_dir(NAME)}/key-id",
        s3_secret_file=f"{s3_dir(NAME)}/secret",
        settings_file=SETTINGS,
    )
    return [NixModule(NAME, text)]
