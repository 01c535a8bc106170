"""Mastodon's part of the NixOps4 deployment: ``hosts/<host>/mastodon.nix``.

On Mastodon's host, a module that switches ``fediversity.mastodon`` on (or, for a teardown or a
disabled service, off) and names its secret files by their path on the host: the secret key
base, the VAPID key pair and the Active Record encryption keys (nixpkgs' ``services.mastodon``
``*File`` options), the S3 key files garage's key task made for it, and the initial user.
"""

from __future__ import annotations

from fedi_run.engine.model.playbook import Playbook
from fedi_run.engine.nixops.nix import service_modules
from fedi_run.engine.plugin.hookspecs import hookimpl

SERVICE = "mastodon"

NIXPKGS_OPTIONS = {
    "secret-key-base": "secretKeyBaseFile",
    "otp-secret": "otpSecretFile",
    "vapid-private-key": "vapidPrivateKeyFile",
    "vapid-public-key": "vapidPublicKeyFile",
    "ar-deterministic-key": "activeRecordEncryptionDeterministicKeyFile",
    "ar-key-derivation-salt": "activeRecordEncryptionKeyDerivationSaltFile",
    "ar-primary-key": "activeRecordEncryptionPrimaryKeyFile",
}
"""Each secret file (by name) → the nixpkgs ``services.mastodon`` option that names it. A
secret file of Mastodon's without an option here is an error when the module is rendered."""


def secret_files(playbook: Playbook) -> dict[str, str]:
    """Name → path on the host of every secret file an enabled mastodon reads (those its
    tasks place there)."""
    # imported here, not above: the package imports this module
    from fedi_run.plugins.fediversity import app_secret_files
    from fedi_run.plugins.mastodon import SECRETS, VAPID_PRIVATE, VAPID_PUBLIC

    return app_secret_files(
        playbook,
        SERVICE,
        SECRETS,
        extra={"vapid-private-key": VAPID_PRIVATE, "vapid-public-key": VAPID_PUBLIC},
    )


@hookimpl
def fedi_run_nix_modules(playbook: Playbook, host: str):
    return service_modules(
        playbook,
        host,
        SERVICE,
        "fedi_run.plugins.mastodon",
        secret_files,
        nixpkgs_options=NIXPKGS_OPTIONS,
    )
