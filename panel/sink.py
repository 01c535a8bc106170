"""The panel's event sink: a run's events, as the engine emits them, into a :class:`LiveRun`.

Events reach a sink already masked (see :mod:`fedi_run.engine.report.events`); the sink also masks
the values it is given (the initial user's password), so nothing the panel shows or stores can
hold them even if the engine's masking missed one.
"""

from __future__ import annotations

from collections.abc import Iterable

from fedi_run.engine.report.events import (
    Event,
    OutputChunk,
    RunFinished,
    RunStarted,
    TaskFinished,
    TaskStarted,
)
from fedi_run.engine.report.masking import Masker
from fedi_run.panel.live import LiveRun

MASK = "********"


class PanelSink:
    """An :class:`~fedi_run.engine.report.events.EventSink` writing into ``live``."""

    def __init__(self, live: LiveRun, secrets: Iterable[str] = ()):
        self.live = live
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)
        self._masker = Masker()
        for secret in self._secrets:  # in every form a task may print it (JSON-escaped, ...)
            self._masker.add_forms(secret)

    def mask(self, text: str) -> str:
        """``text`` with every secret given replaced by ``********`` — in each of its forms."""
        text = self._masker.mask(text)
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def handle(self, event: Event) -> None:
        live = self.live
        if isinstance(event, OutputChunk):
            live.output(event.task_id, event.stream, self.mask(event.text))
        elif isinstance(event, TaskStarted):
            live.task_started(event.task_id, event.host)
        elif isinstance(event, TaskFinished):
            live.task_finished(
                event.task_id,
                event.host,
                event.status.value,
                event.duration,
                self.mask(event.message),
                tuple(self.mask(c) for c in event.changes),
            )
        elif isinstance(event, RunStarted):
            live.started(event.run_id, event.tasks, event.hosts)
        elif isinstance(event, RunFinished):
            live.finish(
                event.exit_status, {h: dict(c) for h, c in event.recap.items()}, event.duration
            )

    def close(self) -> None:
        """Nothing to release: the run thread stores the live run when ``run_project`` returns."""
