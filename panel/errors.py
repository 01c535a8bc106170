"""The panel's errors: :class:`~fedi_run.engine.errors.FediRunError` subclasses, so the CLI
prints them as one paragraph and exits with their status (2 unless said otherwise)."""

from __future__ import annotations

from fedi_run.engine.errors import FediRunError

INSTALL_HINT = "pip install 'fedi-run[panel]'"


class PanelError(FediRunError):
    """Base of the panel's deliberate errors (exit status 2)."""


class DjangoMissing(PanelError):
    """``fedi-run panel`` was run where Django is not installed (exit status 2)."""

    def __init__(self, reason: str = ""):
        detail = f" ({reason})" if reason else ""
        super().__init__(
            "error: the web panel needs Django, which is not installed here"
            f"{detail}. The panel is an optional part of fedi-run, so the command line stays "
            f"light: install it with `{INSTALL_HINT}` (or `pip install -e '.[panel]'` in a "
            "clone), then run `fedi-run panel createuser NAME` and `fedi-run panel serve`."
        )


class DataDirError(PanelError):
    """The panel's data directory cannot be created or used."""


class DeploymentBusy(PanelError):
    """A run of this deployment is already in progress in this panel (exit status 3, as
    the engine's ``LockHeld``)."""

    exit_status = 3

    def __init__(self, deployment: str, run_pk: int):
        self.run_pk = run_pk
        super().__init__(
            f"{deployment} is already being deployed (run {run_pk} is in progress); wait for "
            "it to end, then try again"
        )
