"""Pixelfed's part of the NixOps4 deployment: ``hosts/<host>/pixelfed.nix``.

On Pixelfed's host, a module built on nixpkgs' own ``services.pixelfed``:

* ``domain = "pixelfed.<domain>"`` and ``nginx = { enableACME = true; forceSSL = true; }``
  (nixpkgs' virtual host for Pixelfed, with ACME and forced TLS);
* ``secretFile``: a root-only environment file composed on the host by a root oneshot before
  ``pixelfed-data-setup`` from fedi-run's files — ``APP_KEY`` and the S3 key pair
  (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``); nixpkgs' ``pixelfed-data-setup`` (user
  ``pixelfed``) loads it with ``LoadCredential=`` into Pixelfed's ``.env``;
* S3 on Garage in ``settings`` (``PF_ENABLE_CLOUD``, path-style requests to
  ``https://garage.<domain>``, media read at ``garage.<domain>/web/pixelfed``);
* with an ``[initial_user]``: a oneshot after ``pixelfed-data-setup``, as user ``pixelfed``
  with the initial-user file as its credential, that runs ``pixelfed-manage user:create`` with
  the values read from the file at run time. Pixelfed takes the password only as an option, so
  it is on that command line while it runs (visible in ``/proc`` to local users unless ``/proc``
  is mounted with ``hidepid``); run as ``pixelfed`` the wrapper calls no ``sudo``, which would log
  it.

Switched off the module is ``services.pixelfed.enable = false`` and nothing else.
"""

from __future__ import annotations

from fedi_run.engine.api import Playbook, hookimpl, service_modules
from fedi_run.plugins.fediversity import app_secret_files, runtime_file
from fedi_run.plugins.garage.nix import s3_settings
from fedi_run.plugins.pixelfed.tasks import SECRETS

SERVICE = "pixelfed"
SECRET_ENV = runtime_file(SERVICE, "secret.env")


def secret_files(playbook: Playbook) -> dict[str, str]:
    """Name → path on the host of every secret file an enabled pixelfed reads (those its
    tasks place there)."""
    return app_secret_files(playbook, SERVICE, SECRETS)


def _context(playbook: Playbook) -> dict:
    files = secret_files(playbook)
    s3 = s3_settings(playbook, SERVICE)
    return {
        "secret_env": SECRET_ENV,
        "settings": {
            "PF_ENABLE_CLOUD": True,
            "FILESYSTEM_CLOUD": "s3",
            "AWS_DEFAULT_REGION": s3["region"],
            "AWS_BUCKET": s3["bucket"],
            "AWS_URL": s3["public_url"],
            "AWS_ENDPOINT": s3["endpoint"],
            "AWS_USE_PATH_STYLE_ENDPOINT": True,
        },
        "env_credentials": [
            f"app-key:{files['app-key']}",
            f"s3-key-id:{files['s3-key-id']}",
            f"s3-secret:{files['s3-secret']}",
        ],
        "initial_user_credentials": (
            [f"initial-user:{files['initial-user']}"] if "initial-user" in files else []
        ),
    }


@hookimpl
def fedi_run_nix_modules(playbook: Playbook, host: str):
    return service_modules(
        playbook, host, SERVICE, "fedi_run.plugins.pixelfed", secret_files, **_context(playbook)
    )
