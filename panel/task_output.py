"""One task of a run, as its row on the run page opens it: its state and its own output.

Contract: :func:`task_output` takes the run's progress data (``views._progress_data``: the
live run while it goes, the stored record after) and gives a :class:`TaskOutput`:

* while the run goes, the output is what the task printed so far, from the live data's output
  chunks of that task (``source="live"``);
* once it ended (or when the live data has none), the output is what the worker stored of the
  engine's own log of the task when the run ended (``stored``: the text, its whole size — the
  last :data:`TAIL_BYTES` bytes of ``<engine dir>/logs/<engine run id>/<task>.log``,
  :mod:`fedi_run.engine.report.output_log`, masked by the engine and the worker), under a note
  saying how much came before (``source="log"``); a task that printed nothing has none
  (``source="none"``). No web process reads a worker's files.

Whatever the source, the text is masked once more with the deployment's initial user's
password (as :class:`~fedi_run.panel.sink.PanelSink` masks the live output), so nothing the
page shows can hold it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fedi_run.engine.report.masking import Masker

TAIL_BYTES = 256 * 1024
"""The most of a task's log the page shows (its end)."""
MASK = "********"


@dataclass(frozen=True)
class TaskOutput:
    """A task of a run and what it printed."""

    id: str
    host: str
    status: str
    message: str
    changes: tuple[str, ...]
    duration: float | None
    text: str
    source: str  # "live", "log" or "none"

    def as_json(self) -> dict:
        return {
            "id": self.id,
            "host": self.host,
            "status": self.status,
            "message": self.message,
            "changes": list(self.changes),
            "duration": self.duration,
            "text": self.text,
            "source": self.source,
        }


def find_task(data: dict, task_id: str) -> dict | None:
    """The task ``task_id`` among the run's tasks (progress data), or None."""
    return next((t for t in data.get("tasks") or () if t.get("id") == task_id), None)


def task_output(
    data: dict,
    task_id: str,
    stored: tuple[str, int] | None,
    secrets: tuple[str, ...] = (),
) -> TaskOutput | None:
    """The task ``task_id`` of the run whose progress data is ``data`` (None: no such task).
    ``stored`` is the task's stored output (its text and the log's whole size; None: none),
    ``secrets`` masked in the text."""
    task = find_task(data, task_id)
    if task is None:
        return None
    text, source = "", "none"
    if not data.get("finished"):
        text = "".join(
            c["text"]
            for c in data.get("chunks") or ()
            if c.get("task") == task_id and c.get("stream") != "event"
        )
        source = "live" if text else "none"
    if not text and stored is not None and stored[0]:
        text, size = stored
        if size > TAIL_BYTES:
            text = f"[… {size - TAIL_BYTES} earlier bytes not kept]\n" + text
        source = "log"
    return TaskOutput(
        id=task_id,
        host=task.get("host") or "",
        status=task.get("status") or "",
        message=_mask(task.get("message") or "", secrets),
        changes=tuple(_mask(c, secrets) for c in task.get("changes") or ()),
        duration=task.get("duration"),
        text=_mask(text, secrets),
        source=source,
    )


def read_log(path: Path) -> tuple[str, int]:
    """The last :data:`TAIL_BYTES` of the log at ``path`` (decoded, never failing on a broken
    character) and the log's whole size; ``("", 0)`` when there is none."""
    try:
        with open(path, "rb") as log:
            size = log.seek(0, 2)
            log.seek(max(size - TAIL_BYTES, 0))
            tail = log.read()
    except OSError:  # no log: the task printed nothing (or the run's logs were removed)
        return "", 0
    return tail.decode("utf-8", errors="replace"), size


def _mask(text: str, secrets: tuple[str, ...]) -> str:
    secrets = tuple(s for s in secrets if len(s) >= 4)
    if not secrets or not text:
        return text
    masker = Masker()
    for secret in secrets:
        masker.add_forms(secret)
    text = masker.mask(text)
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
