"""Mastodon's part of the NixOps4 deployment: ``hosts/<host>/mastodon.nix``.

On Mastodon's host, a module built on nixpkgs' own ``services.mastodon``:

* ``localDomain = "mastodon.<domain>"``, ``streamingProcesses`` (``[services.mastodon]
  streaming_processes``, 1 by default), ``smtp`` (``smtp_host``/``smtp_port``, by default a
  local Postfix on 127.0.0.1:25, ``fromAddress`` ``smtp_from`` or ``notifications@<domain>``),
  and ``configureNginx`` with the virtual host's ``enableACME`` and ``forceSSL``;
* every secret ``*File`` option — the secret key base, the VAPID key pair, the three Active
  Record encryption keys — naming ``/run/credentials/mastodon-init-dirs.service/<name>``: that
  unit (user ``mastodon``) reads them, and systemd hands it copies of fedi-run's root-only files
  with ``LoadCredential=``. No ``otpSecretFile`` (removed in Mastodon 4.4; the otp-secret file
  fedi-run still places is not rendered);
* S3 on Garage: the non-secret ``S3_*`` settings in ``extraConfig`` (path-style requests to
  ``https://garage.<domain>``, media read at ``garage.<domain>/web/mastodon``), the key pair in a
  root-only environment file composed on the host by a root oneshot from the S3 key files before
  Mastodon starts, handed over with ``extraEnvFiles`` (read by systemd itself);
* with an ``[initial_user]``: a oneshot after ``mastodon-init-db`` that creates the account with
  ``mastodon-tootctl accounts create <username> --email <email> --confirmed --approve --role
  Owner`` — username and e-mail read from the initial-user file at run time — and then sets the
  playbook's password through Mastodon's own model (``rails runner``, in ``mastodon-web``'s
  environment, the file on its stdin): tootctl only makes up random passwords.

Switched off the module is ``services.mastodon.enable = false`` and nothing else.
"""

from __future__ import annotations

from fedi_run.engine.api import Playbook, hookimpl, service_modules
from fedi_run.plugins.fediversity import app_secret_files, runtime_file
from fedi_run.plugins.garage.nix import s3_settings
from fedi_run.plugins.mastodon.tasks import SECRETS, vapid_files

SERVICE = "mastodon"

NIXPKGS_OPTIONS = {
    "secret-key-base": "secretKeyBaseFile",
    "vapid-private-key": "vapidPrivateKeyFile",
    "vapid-public-key": "vapidPublicKeyFile",
    "ar-deterministic-key": "activeRecordEncryptionDeterministicKeyFile",
    "ar-key-derivation-salt": "activeRecordEncryptionKeyDerivationSaltFile",
    "ar-primary-key": "activeRecordEncryptionPrimaryKeyFile",
}
"""Each secret file (by name) that nixpkgs' ``services.mastodon`` reads → the option naming it."""

NOT_RENDERED = ("otp-secret",)
"""Secret files fedi-run still places but no module reads: OTP_SECRET left Mastodon in 4.4, and
nixpkgs removed ``services.mastodon.otpSecretFile`` (a definition is a failed assertion)."""

INIT_DIRS_CREDENTIALS = "/run/credentials/mastodon-init-dirs.service"
S3_ENV = runtime_file(SERVICE, "s3.env")


def secret_files(playbook: Playbook) -> dict[str, str]:
    """Name → path on the host of every secret file an enabled mastodon reads (those its
    tasks place there, but the otp-secret)."""
    private, public = vapid_files(playbook)
    files = app_secret_files(
        playbook,
        SERVICE,
        SECRETS,
        extra={"vapid-private-key": private, "vapid-public-key": public},
    )
    return {name: path for name, path in files.items() if name not in NOT_RENDERED}


def _context(playbook: Playbook) -> dict:
    config = playbook.services[SERVICE]
    files = secret_files(playbook)
    s3 = s3_settings(playbook, SERVICE)
    return {
        "streaming_processes": config.streaming_processes,
        "smtp": {
            # nixpkgs runs a local Postfix only for this host (services.mastodon.smtp)
            "createLocally": config.smtp_host == "127.0.0.1",
            "host": config.smtp_host,
            "port": config.smtp_port,
            "fromAddress": config.smtp_from or f"notifications@{playbook.domain}",
        },
        "secret_options": {
            option: f"{INIT_DIRS_CREDENTIALS}/{name}" for name, option in NIXPKGS_OPTIONS.items()
        },
        "init_dirs_credentials": [f"{name}:{files[name]}" for name in NIXPKGS_OPTIONS],
        "s3_config": {
            "S3_ENABLED": "true",
            "S3_BUCKET": s3["bucket"],
            "S3_REGION": s3["region"],
            "S3_ENDPOINT": s3["endpoint"],
            "S3_HOSTNAME": s3["host"],
            "S3_PROTOCOL": "https",
            "S3_OVERRIDE_PATH_STYLE": "true",
            "S3_ALIAS_HOST": s3["public_url"].removeprefix("https://"),
        },
        "s3_env": S3_ENV,
        "s3_credentials": [f"s3-key-id:{files['s3-key-id']}", f"s3-secret:{files['s3-secret']}"],
        "initial_user_credentials": (
            [f"initial-user:{files['initial-user']}"] if "initial-user" in files else []
        ),
    }


@hookimpl
def fedi_run_nix_modules(playbook: Playbook, host: str):
    return service_modules(
        playbook, host, SERVICE, "fedi_run.plugins.mastodon", secret_files, **_context(playbook)
    )
