"""The mastodon plugin: Mastodon at ``mastodon.<domain>``.

On its host before the apply: the secret key base, a VAPID key pair (P-256), the Active Record
encryption keys, and its Garage S3 key files.
"""

from __future__ import annotations

from fedi_run.engine.hookspecs import hookimpl
from fedi_run.engine.playbook import Playbook, ServiceConfig
from fedi_run.engine.sections import ConfigSection
from fedi_run.plugins.fediversity import SecretSpec, app_tasks

SECRETS = (
    SecretSpec("secret-key-base", "hex64"),
    SecretSpec("vapid-private-key", "vapid-p256-private"),
    SecretSpec("vapid-public-key", "vapid-p256-public"),
    SecretSpec("ar-deterministic-key", "alnum32"),
    SecretSpec("ar-key-derivation-salt", "alnum32"),
    SecretSpec("ar-primary-key", "alnum32"),
)


class MastodonConfig(ServiceConfig):
    """``[services.mastodon]``: ``enable`` and ``host``."""


@hookimpl
def fedi_run_config_sections():
    return [ConfigSection("mastodon", MastodonConfig, needs=("garage",), description="Mastodon, microblogging.")]


@hookimpl
def fedi_run_tasks(playbook: Playbook):
    return app_tasks(playbook, "mastodon", SECRETS)
