"""The pixelfed plugin's service section and tasks (see the package's docstring)."""

from __future__ import annotations

import base64
import secrets as random

from fedi_run.engine.api import ConfigSection, Playbook, SecretSpec, ServiceConfig, hookimpl
from fedi_run.plugins.fediversity import app_tasks

SECRETS = (SecretSpec("app-key", "laravel-app-key"),)


class PixelfedConfig(ServiceConfig):
    """``[services.pixelfed]``: ``enable`` and ``host``."""


@hookimpl
def fedi_run_config_sections():
    return [
        ConfigSection(
            "pixelfed",
            PixelfedConfig,
            needs=("garage",),
            description="Pixelfed, photos.",
            units=("phpfpm-pixelfed.service",),
            configuration_key="pixelfed",
        )
    ]


def laravel_app_key() -> str:
    """A Laravel APP_KEY, as Pixelfed reads it: ``base64:`` and 32 random bytes in base64."""
    return "base64:" + base64.b64encode(random.token_bytes(32)).decode()


@hookimpl
def fedi_run_secret_generators():
    return {"laravel-app-key": laravel_app_key}


@hookimpl
def fedi_run_tasks(playbook: Playbook):
    return app_tasks(playbook, "pixelfed", SECRETS)
