"""The mastodon plugin: Mastodon at ``mastodon.<domain>``.

On its host before the apply: the secret key base, a VAPID key pair (real P-256 keys), the
Active Record encryption keys, and its Garage S3 key files.
"""

from __future__ import annotations

from fedi_run.engine.model.playbook import Playbook, ServiceConfig
from fedi_run.engine.model.sections import ConfigSection
from fedi_run.engine.planning.operations import Call
from fedi_run.engine.plugin.hookspecs import hookimpl
from fedi_run.plugins.fediversity import SecretSpec, app_tasks, secrets_dir

SECRETS = (
    SecretSpec("secret-key-base", "hex64"),
    SecretSpec("otp-secret", "hex64"),
    SecretSpec("ar-deterministic-key", "alnum32"),
    SecretSpec("ar-key-derivation-salt", "alnum32"),
    SecretSpec("ar-primary-key", "alnum32"),
)
VAPID_PRIVATE = f"{secrets_dir('mastodon')}/vapid-private-key"
VAPID_PUBLIC = f"{secrets_dir('mastodon')}/vapid-public-key"


class MastodonConfig(ServiceConfig):
    """``[services.mastodon]``: ``enable`` and ``host``."""


@hookimpl
def fedi_run_config_sections():
    return [
        ConfigSection(
            "mastodon", MastodonConfig, needs=("garage",), description="Mastodon, microblogging."
        )
    ]


@hookimpl
def fedi_run_tasks(playbook: Playbook):
    vapid = Call(
        "fedi_run.plugins.mastodon.vapid:ensure",
        (("private", VAPID_PRIVATE), ("public", VAPID_PUBLIC)),
        secrets=(VAPID_PRIVATE, VAPID_PUBLIC),
    )
    return app_tasks(
        playbook, "mastodon", SECRETS, extra=(vapid,), extra_files=(VAPID_PRIVATE, VAPID_PUBLIC)
    )


from fedi_run.plugins.mastodon.nix import fedi_run_nix_modules  # noqa: E402,F401 - the plugin's part of the NixOS configuration
