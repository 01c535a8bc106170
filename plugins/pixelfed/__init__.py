"""The pixelfed plugin: Pixelfed at ``pixelfed.<domain>``.

On its host before the apply: APP_KEY (``base64:`` and 32 random bytes) and its Garage S3 key
files.
"""

from __future__ import annotations

from fedi_run.engine.model.playbook import Playbook, ServiceConfig
from fedi_run.engine.model.sections import ConfigSection
from fedi_run.engine.plugin.hookspecs import hookimpl
from fedi_run.plugins.fediversity import SecretSpec, app_tasks

SECRETS = (SecretSpec("app-key", "laravel-app-key"),)


class PixelfedConfig(ServiceConfig):
    """``[services.pixelfed]``: ``enable`` and ``host``."""


@hookimpl
def fedi_run_config_sections():
    return [
        ConfigSection(
            "pixelfed", PixelfedConfig, needs=("garage",), description="Pixelfed, photos."
        )
    ]


@hookimpl
def fedi_run_tasks(playbook: Playbook):
    return app_tasks(playbook, "pixelfed", SECRETS)


from fedi_run.plugins.pixelfed.nix import fedi_run_nix_modules  # noqa: E402,F401 - the plugin's part of the NixOS configuration
