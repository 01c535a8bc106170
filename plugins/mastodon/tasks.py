"""The mastodon plugin's service section and tasks (see the package's docstring)."""

from __future__ import annotations

from pydantic import Field

from fedi_run.engine.api import (
    Call,
    ConfigSection,
    Email,
    Playbook,
    SecretSpec,
    ServiceConfig,
    hookimpl,
    secrets_dir,
)
from fedi_run.plugins.fediversity import app_tasks
from fedi_run.plugins.mastodon.vapid import ensure

ENCRYPTION = (
    "one of Active Record's encryption keys: the encrypted columns (two-factor secrets, "
    "among others) can no longer be read, so users with two-factor login cannot log in "
    "(Mastodon's release notes: these keys must never change)"
)
SECRETS = (
    SecretSpec(
        "secret-key-base", "hex64", "it signs sessions and cookies: every user is logged out"
    ),
    SecretSpec(
        "otp-secret", "hex64", "two-factor secrets made with it no longer verify (2FA logins)"
    ),
    SecretSpec("ar-deterministic-key", "alnum32", ENCRYPTION),
    SecretSpec("ar-key-derivation-salt", "alnum32", ENCRYPTION),
    SecretSpec("ar-primary-key", "alnum32", ENCRYPTION),
)
VAPID_BREAKS = "Web Push: every browser's push subscription stops working"


def vapid_files(playbook: Playbook) -> tuple[str, str]:
    """The paths on the host of the deployment's VAPID private and public key files."""
    directory = secrets_dir(playbook, "mastodon")
    return f"{directory}/vapid-private-key", f"{directory}/vapid-public-key"


class MastodonConfig(ServiceConfig):
    """``[services.mastodon]``: ``enable`` and ``host``, the streaming processes and the SMTP
    server Mastodon sends its mail through (by default a local Postfix on the host)."""

    streaming_processes: int = Field(
        1,
        ge=1,
        le=64,
        description="Mastodon streaming (Node.js) processes; upstream advises one per CPU core "
        "beyond the first. One suits a small host.",
    )
    smtp_host: str = Field(
        "127.0.0.1",
        min_length=1,
        max_length=253,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="SMTP server for Mastodon's mail. 127.0.0.1 (the default) runs a local "
        "Postfix on the host (nixpkgs' services.mastodon.smtp.createLocally).",
    )
    smtp_port: int = Field(25, ge=1, le=65535, description="SMTP port.")
    smtp_from: Email | None = Field(
        None, description="The From address of Mastodon's mail; notifications@<domain> if unset."
    )


@hookimpl
def fedi_run_config_sections():
    return [
        ConfigSection(
            "mastodon",
            MastodonConfig,
            needs=("garage",),
            description="Mastodon, microblogging.",
            units=("mastodon-web.service",),
            configuration_key="mastodon",
        )
    ]


@hookimpl
def fedi_run_tasks(playbook: Playbook):
    private, public = vapid_files(playbook)
    vapid = Call(
        ensure,
        (("private", private), ("public", public)),
        secrets=(private, public),
        generates=(private,),  # the public key is derived from it
        breaks=VAPID_BREAKS,
    )
    return app_tasks(playbook, "mastodon", SECRETS, extra=(vapid,), extra_files=(private, public))
