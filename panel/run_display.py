"""How the panel shows a run: its result (a label and a *tone*, the colour it is drawn in), its
number, and what the operator can do next when it could not run.

Contract:

* :func:`shown` maps a run's state to a :class:`Shown`. The tones are CSS classes of
  ``panel.css``: ``ok`` (green: done), ``failed`` (red: a task failed, or the run could not
  run), ``interrupted`` (amber: stopped, exit 130), ``broken`` (grey: broken off, its worker
  or panel died while it ran), ``running`` (blue) and ``queued`` (grey, waiting for a worker).
  The same mapping is used for the Run rows (History, the deployments list, the deployment
  page) and for the run page's JSON (``tone``), so a result has one colour everywhere;
* :func:`number` is what a run is called: the engine's history id (``fedi-run history``
  lists the same numbers), ``queued`` while it has none yet, ``—`` when the engine never
  recorded it (it could not run);
* :func:`advice` rewords the engine's command-line advice in a could-not-run message for the
  panel: a flag the panel has a form switch for is replaced by that switch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

OK, FAILED, INTERRUPTED, BROKEN, RUNNING, QUEUED = (
    "ok",
    "failed",
    "interrupted",
    "broken",
    "running",
    "queued",
)
TONES = (OK, FAILED, INTERRUPTED, BROKEN, RUNNING, QUEUED)
RESUMABLE = (FAILED, INTERRUPTED, BROKEN)
"""Tones of a run that left work to do: its page offers Resume."""
BROKEN_STATES = ("broken", "broken off", "broken_off")
ORPHAN_PREFIX = "error: the panel stopped while this run was in progress"
"""How a run whose panel process died is recorded (``runs.recover_orphans``): broken off."""
NO_NUMBER = "—"


@dataclass(frozen=True)
class Shown:
    """A run's result as the pages show it: ``label`` in the colour of ``tone``."""

    label: str
    tone: str


def shown(state: str, exit_status: int | None, error: str = "") -> Shown:
    """The result of a run in ``state`` (a ``Run.state``, or the progress JSON's ``state``)."""
    if state in BROKEN_STATES or (error or "").startswith(ORPHAN_PREFIX):
        return Shown("broken off", BROKEN)
    if state == QUEUED:
        return Shown("queued", QUEUED)
    if error:
        return Shown("could not run", FAILED)
    if state in ("running", "storing") or exit_status is None:
        return Shown("running", RUNNING)
    if exit_status == 0:
        return Shown("done", OK)
    if exit_status == 130:
        return Shown("interrupted", INTERRUPTED)
    return Shown(f"failed (exit {exit_status})", FAILED)


def shown_run(run) -> Shown:
    """:func:`shown` of a ``Run`` row."""
    return shown(run.state, run.exit_status, run.error)


def number(engine_run_id: int | None, state: str) -> str:
    """The run's number: the engine's history id; ``queued`` while a run in progress has none
    yet; ``—`` for a run the engine never recorded."""
    if engine_run_id is not None:
        return str(engine_run_id)
    if state in ("running", "storing", QUEUED):
        return QUEUED
    return NO_NUMBER


_NO_APPLY = re.compile(r",? or pass --no-apply to (?P<what>[^.]*)\.")


def advice(error: str) -> str | None:
    """What to do in the panel about a could-not-run ``error``, as plain text (None: nothing
    panel-specific to say); the page links it to the deployment's form."""
    if "--no-apply" in error or "nixops4 is not on PATH" in error:
        return (
            "To prepare the hosts and render the deployment without applying it, switch off "
            "“End with nixops4 apply” in the deployment's settings, then deploy again."
        )
    return None


def panel_wording(error: str) -> str:
    """``error`` with the command-line advice the panel has its own switch for taken out
    (:func:`advice` says it the panel's way)."""
    return _NO_APPLY.sub(".", error)


def page_fields(data: dict) -> dict:
    """What the run page shows of a run's progress ``data`` besides the data itself:
    ``tone`` and ``label`` (:func:`shown`), ``number`` (:func:`number`), ``error_text`` (the
    could-not-run message in the panel's wording) and ``advice`` ("" when none)."""
    result = shown(data.get("state", ""), data.get("exit_status"), data.get("error") or "")
    error = data.get("error") or ""
    return {
        "tone": result.tone,
        "label": result.label,
        "number": number(data.get("engine_run_id"), data.get("state", "")),
        "error_text": panel_wording(error),
        "advice": (advice(error) or "") if error else "",
    }
