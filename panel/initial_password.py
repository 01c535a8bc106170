"""The initial user's password of a deployment: typed once in its form, kept sealed in the
database (:mod:`fedi_run.panel.sealing`), unsealed by the process that needs it — the worker
carrying out a run (which writes it to a 0600 file for the run only,
:func:`fedi_run.panel.deployment_files.password_written`) and the web process masking a run's
output.

Contract: :func:`set_password` seals and stores it (replacing it only when called: the form's
password field was filled in); :func:`password_of` gives it back ("" when the deployment has
none), raising :class:`~fedi_run.engine.errors.SecretUnreadable` when it was sealed under
another key. A deployment from before the password was sealed has it in its 0600 file in the
data directory: the first process to read it seals it into the database and removes the file.
"""

from __future__ import annotations

from fedi_run.panel import paths, sealing, site
from fedi_run.panel.models import Deployment


def set_password(deployment: Deployment, password: str) -> None:
    """Seal ``password`` as the deployment's initial user's (saved at once)."""
    deployment.initial_password_sealed = sealing.seal(password)
    Deployment.objects.filter(pk=deployment.pk).update(
        initial_password_sealed=deployment.initial_password_sealed
    )


def password_of(deployment: Deployment) -> str:
    """The deployment's initial user's password ("" when it has none)."""
    if deployment.initial_password_sealed:
        return sealing.unseal(
            deployment.initial_password_sealed,
            f"the initial user's password of the deployment {deployment.name!r}",
        )
    legacy = paths.deployment_dir(site.current().data_dir, deployment.key) / paths.PASSWORD_FILE
    try:
        password = legacy.read_text().rstrip("\n")
    except OSError:
        return ""
    if password:
        set_password(deployment, password)
    legacy.unlink(missing_ok=True)
    return password


def secrets_of(deployment: Deployment) -> tuple[str, ...]:
    """What a page masks in the deployment's output: its initial user's password, if it can be
    read here (a page is still shown when it cannot; the worker masked the output already)."""
    from fedi_run.engine.errors import SecretUnreadable

    try:
        password = password_of(deployment)
    except SecretUnreadable:
        return ()
    return (password,) if password else ()
