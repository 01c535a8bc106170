"""PeerTube's part of the NixOps4 deployment: ``hosts/<host>/peertube.nix``.

On PeerTube's host, a module built on nixpkgs' own ``services.peertube``:

* ``localDomain = "peertube.<domain>"``, ``enableWebHttps`` on port 443, a local PostgreSQL
  and Redis, and ``configureNginx`` with the virtual host's ``enableACME`` and ``forceSSL``;
* ``secrets.secretsFile`` naming ``/run/credentials/peertube.service/secrets``: the unit (user
  ``peertube``) reads it, and systemd hands it a copy of fedi-run's root-only file with
  ``LoadCredential=``;
* object storage on Garage in ``settings.object_storage`` (path-style requests to
  ``https://garage.<domain>``, one bucket named ``peertube`` with a prefix per kind of file, no
  ACLs — Garage has none — and public files read at ``garage.<domain>/web/peertube``);
* ``serviceEnvironmentFile``: a root-only environment file (systemd reads it) composed on the
  host by a root oneshot before PeerTube starts — the S3 key pair (``AWS_ACCESS_KEY_ID``,
  ``AWS_SECRET_ACCESS_KEY``, which PeerTube's S3 client takes from the environment) and, with an
  ``[initial_user]``, ``PT_INITIAL_ROOT_PASSWORD`` from the initial-user file: PeerTube makes its
  administrator ``root`` with it (and ``settings.admin.email``) on its first start.

Switched off the module is ``services.peertube.enable = false`` and nothing else.
"""

from __future__ import annotations

from fedi_run.engine.api import Playbook, hookimpl, service_modules
from fedi_run.plugins.fediversity import app_secret_files, runtime_file
from fedi_run.plugins.garage.nix import s3_settings
from fedi_run.plugins.peertube.tasks import SECRETS

SERVICE = "peertube"
CREDENTIALS = "/run/credentials/peertube.service"
ENV_FILE = runtime_file(SERVICE, "env")
BUCKET_PREFIXES = {
    "web_videos": "web-videos/",
    "streaming_playlists": "streaming-playlists/",
    "user_exports": "user-exports/",
    "original_video_files": "original-video-files/",
}
"""PeerTube's kinds of object-storage files, each under its prefix in the one bucket."""


def secret_files(playbook: Playbook) -> dict[str, str]:
    """Name → path on the host of every secret file an enabled peertube reads (those its
    tasks place there)."""
    return app_secret_files(playbook, SERVICE, SECRETS)


def _context(playbook: Playbook) -> dict:
    files = secret_files(playbook)
    s3 = s3_settings(playbook, SERVICE)
    settings: dict = {
        "object_storage": {
            "enabled": True,
            "endpoint": s3["endpoint"],
            "region": s3["region"],
            "force_path_style": True,
            "upload_acl": {"public": None, "private": None},
            **{
                kind: {
                    "bucket_name": s3["bucket"],
                    "prefix": prefix,
                    # with path-style requests PeerTube appends /<bucket>/<key> to this
                    "base_url": s3["public_url"].removesuffix(f"/{s3['bucket']}"),
                }
                for kind, prefix in BUCKET_PREFIXES.items()
            },
        }
    }
    if playbook.initial_user is not None:
        settings["admin"] = {"email": playbook.initial_user.email}
    env_credentials = [f"s3-key-id:{files['s3-key-id']}", f"s3-secret:{files['s3-secret']}"]
    if "initial-user" in files:
        env_credentials.append(f"initial-user:{files['initial-user']}")
    return {
        "secrets_file": f"{CREDENTIALS}/secrets",
        "peertube_credentials": [f"secrets:{files['secrets']}"],
        "settings": settings,
        "env_file": ENV_FILE,
        "env_credentials": env_credentials,
    }


@hookimpl
def fedi_run_nix_modules(playbook: Playbook, host: str):
    return service_modules(
        playbook, host, SERVICE, "fedi_run.plugins.peertube", secret_files, **_context(playbook)
    )
