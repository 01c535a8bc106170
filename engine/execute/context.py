"""What an operation — and the plugin function a :class:`Call` names — gets besides its own
values: the :class:`Context` of the task being performed, and the :class:`CallResult` such a
function may return.

The executor (``engine.execute.scheduler``) makes one context per job; :func:`~fedi_run.engine
.execute.perform.perform` hands it to every operation of the task. Plugins reach both names
through ``fedi_run.engine.api`` only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedi_run.engine.execute import secret_generators as secrets
from fedi_run.engine.execute.connection import HostConnection
from fedi_run.engine.report.masking import Masker
from fedi_run.engine.report.output_log import TaskOutput


def NO_OUTPUT(stream: str, text: str) -> None:  # noqa: N802 - a constant, as a default
    """The default ``Context.output``: nobody listens."""


@dataclass
class Context:
    """What operations — and the plugin functions that :class:`Call` names — get besides their
    own values.

    * ``connection``: the task's host (``None`` for a deployer-local task); ``pool[name]`` any
      other host's connection;
    * ``playbook`` and ``task``: what is being run;
    * ``check``: change nothing, only report what would change; ``diff``: also return diffs;
    * ``masker``: every secret a function reads or makes must be ``masker.add``-ed before it
      could reach any output;
    * ``output(stream, text)``: stream a long-running program's output (the executor masks
      it before any sink sees it); ``output_of(task_id)``: that of another task of the job (a
      batch's), None: only the context's task has one. The scripts the executor sends
      (``engine.execute.script_runner``) stream their output through them as it comes
      (``engine.report.live_lines``);
    * ``sent(text)``: told what each script the executor sends to the host does, one line
      per operation (a command's text, a file's path: never a content) — ``-vv`` shows it;
    * ``state_dir``: the deployer's private directory for this deployment's state (0700);
    * ``secret_generators``: name → generator of every :class:`Secret` the run may make — the
      engine's generic ones and the plugins' (``Project.secret_generators``);
    * ``rotates(path)``: whether the run generates the secret at ``path`` anew on purpose
      (``--rotate-secrets``: ``rotate_secrets`` all of them, ``rotate_paths`` those named);
      ``restore``: path → the value ``--restore-secret`` puts back (a restored file is in
      place before a :class:`Call` that ``generates`` it runs).

    A :class:`Call` function is ``function(context, **kwargs)`` and returns whether it changed
    something (``bool``) or the list of what it changed (empty: nothing); it raises
    :class:`ActionFailed` with a one-line message naming what failed.
    """

    connection: HostConnection | None
    masker: Masker
    check: bool = False
    diff: bool = False
    rotate_secrets: bool = False
    """``--rotate-secrets all``: every secret is generated anew."""
    timeout: float | None = None
    output: Callable[[str, str], None] = NO_OUTPUT
    output_of: Callable[[str], Callable[[str, str], None]] | None = None
    """task id → the ``output`` of that task of the job (None: only ``output``)."""
    sent: Callable[[str], None] = lambda text: None
    """Told what each script sent to the host does (``-vv``); see above."""
    playbook: Any = None
    task: Any = None
    pool: Any = None
    state_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    log: Any = None
    """The run's :class:`~fedi_run.engine.report.output_log.OutputLog` (None: tails only, no
    file)."""
    secret_generators: Mapping[str, Callable[[], str]] = field(
        default_factory=lambda: secrets.GENERIC
    )
    """The run's secret generators (default: only the engine's generic ones)."""
    rotate_paths: frozenset[str] = frozenset()
    """The secrets ``--rotate-secrets NAME`` generates anew."""
    restore: Mapping[str, str] = field(default_factory=dict, repr=False)
    """path → the value ``--restore-secret`` puts back (never shown)."""

    def rotates(self, path: str) -> bool:
        """Whether the secret at ``path`` is generated anew on purpose in this run."""
        return self.rotate_secrets or path in self.rotate_paths

    def task_output(self, task_id: str | None = None) -> TaskOutput:
        """A :class:`TaskOutput` for ``task_id`` (default: this context's task): the task's
        output goes through it — to the run's log whole, to the report as a bounded tail."""
        task_id = task_id or getattr(self.task, "id", None) or "task"
        if self.log is None:
            return TaskOutput(None, self.masker)
        return self.log.task(task_id)


@dataclass(frozen=True)
class CallResult:
    """What a :class:`Call` function may return instead of a bool or a list of changes."""

    changes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
