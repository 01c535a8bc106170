"""The progress display: what an operator watches during ``fedi-run PLAYBOOK``.

Each finished task becomes one permanent line (``changed  mastodon.secrets  @mastodon  0.12s``,
its message on the same line when it failed, was skipped or unreachable), followed by the
blocks the options ask for: ``-v`` the task's output, ``--diff`` its diff, ``-v``/``--check``
its changes. A failed task shows its command whole, its output's streams labelled and its log
(:func:`~fedi_run.engine.report.recap.failure_lines`). The run ends with the recap
(:func:`~fedi_run.engine.report.recap.render_recap`), then, when a task failed, a host was
unreachable or the run was interrupted, the failures and the ``--resume`` command that continues
(:func:`~fedi_run.engine.report.recap.failures_text`).

On a terminal a live area (``rich``) under those lines shows the run as it goes: deployment,
kind and elapsed time, a progress bar, running/done/left, one line per host and the running
tasks. It is redrawn by a thread of its own about 8 times a second, never per event, so
:meth:`ProgressDisplay.handle` only updates counters and queues lines. Elsewhere (pipes, CI
logs) only the permanent lines are written, without escape codes unless ``color=True``.

Memory and output stay bounded whatever a task prints: at most the last 200 lines / 64 KiB of
its output are kept and shown, with a note saying how much was cut. Every text shown comes
from an event (so it is already masked) and is stripped of escape and control characters.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, TextIO

from fedi_run.engine.report.events import (
    CommandSent,
    ConnectionChanged,
    Event,
    OutputChunk,
    RunFinished,
    RunStarted,
    Status,
    StopRequested,
    TaskFinished,
    TaskStarted,
)
from fedi_run.engine.report.notices import stop_notice
from fedi_run.engine.report.recap import (
    LEFT_IN_PLACE,
    LOCAL,
    STATUSES,
    STYLES,
    WIDTH,
    Failure,
    Line,
    Recap,
    TailBuffer,
    empty_counts,
    failure_of,
    failures_text,
    format_duration,
    host_order,
    left_in_place_line,
    plain,
    recap_text,
    task_lines,
)

_SGR = {
    "green": "32",
    "yellow": "33",
    "bold red": "1;31",
    "cyan": "36",
    "magenta": "35",
    "dim": "2",
    "bold": "1",
    "red": "31",
}
REFRESH = 1 / 8  # seconds between redraws of the live area
LIVE_LINES, LIVE_LINE_CHARS = 200, 1000
"""Without a terminal, with ``-v``: a task's output lines printed as they come (then a note;
its tail follows its end as before), and the characters of each."""
SENT_LINES = 20  # lines of a command sent shown with -vv
MAX_HOSTS, MAX_RUNNING = 16, 10  # host and running-task lines in the live area
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


@dataclass(slots=True)
class _Running:
    """A task being run: its host, start (``time.monotonic()`` when its TaskStarted came)
    and latest line of output."""

    host: str
    at: float
    last: str = ""


class ProgressDisplay:
    """An :class:`~fedi_run.engine.report.events.EventSink` for people (see the module docstring).

    ``live`` defaults to whether ``stream`` is a terminal (and ``TERM`` is not ``dumb``);
    ``live=True`` on any stream forces terminal output. ``color`` defaults to rich's choice
    when live, and to a terminal without ``NO_COLOR`` otherwise. Needs ``rich`` when live.

    ``verbose`` (``-v`` 1, ``-vv`` 2): from 1, each task's output — as it comes, under the
    task in the live area (its latest line) or, without a terminal, line by line prefixed
    with the task's id (``  <id> | <line>``, ``  <id> (stderr) | <line>``; :data:`LIVE_LINES`
    at most per task, its tail then shown when it ends) — and its changes; from 2, also each
    command sent (``  → <ids> @<host>`` and its lines) and each connection event
    (``  ~ @<host> connecting …``). A stop's notice (:func:`~fedi_run.engine.report.notices.
    stop_notice`) is shown whatever the verbosity.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        verbose: int = 0,
        diff: bool = False,
        color: bool | None = None,
        live: bool | None = None,
    ) -> None:
        self._stream = stream if stream is not None else sys.stderr
        try:
            tty = bool(self._stream.isatty())
        except (AttributeError, ValueError, OSError):
            tty = False
        self.live = (tty and os.environ.get("TERM") != "dumb") if live is None else live
        self.color = (tty and "NO_COLOR" not in os.environ) if color is None else color
        self.verbose, self.diff = verbose, diff
        self._lock = threading.Lock()
        self._pending: list[Line] = []
        self._deployment, self._kind, self._check = "", "run", False
        self._started_at = time.monotonic()
        self._total = 0
        self._host_total: dict[str, int] = {}
        self._counts: Recap = {}
        self._running: dict[str, _Running] = {}
        self._chunks: dict[str, TailBuffer] = {}
        self._printed: dict[str, int] = {}  # output lines printed as they came, per task
        self._open: set[tuple[str, str]] = set()  # (task, stream) whose last line had no end
        self._id_width, self._host_width = 24, 8
        self._destructive: set[str] = set()
        self._left_in_place: list[str] = []
        self._destroyed: list[str] = []
        self._failures: list[Failure] = []
        self._argv: tuple[str, ...] = ()
        self._broken = self._closed = False
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._console: Any = None
        self._live: Any = None
        self.redraw_error: Exception | None = None
        if self.live:
            from rich.console import Console
            from rich.live import Live

            self._console = Console(
                file=self._stream,
                force_terminal=True,
                highlight=False,
                markup=False,
                emoji=False,
                color_system="auto" if color is None else "standard" if color else None,
            )
            self._live = Live(
                console=self._console,
                auto_refresh=False,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )

    # --- the EventSink protocol ---------------------------------------------------------

    def handle(self, event: Event) -> None:
        """Take one event: cheap (counters and queued lines); output is written at once when
        not live, by the redraw thread when live."""
        if self._closed:
            return
        if self._live is not None and self._ticker is None:
            self._start_live()
        with self._lock:
            lines = self._update(event)
            if lines and self._live is not None:
                self._pending += lines
                lines = []
        if isinstance(event, RunFinished):
            self._finish_live()
            recap = event.recap or self._counts
            lines += recap_text(
                recap, event.duration, self._check, event.interrupted, self._destroyed
            )
            if self._left_in_place:  # a teardown's tasks without an undo
                lines.append([(left_in_place_line(self._left_in_place), "cyan")])
            lines += failures_text(self._failures, self._argv, event.interrupted)
        if lines and self.live:
            self._print_live(lines)
        elif lines:
            self._write_plain(lines)

    def close(self) -> None:
        """Stop the live area (restoring the cursor) and write what is still queued. Safe to
        call more than once, and without a :class:`RunFinished` (an aborted run)."""
        if not self._closed:
            self._finish_live()
            self._closed = True
            self._write_plain([])

    # --- state and lines ----------------------------------------------------------------

    def _update(self, event: Event) -> list[Line]:
        """Apply ``event`` to the state (under the lock); the permanent lines it makes."""
        if isinstance(event, TaskFinished):
            self._running.pop(event.task_id, None)
            event = self._unless_printed(event)
            if self._kind == "teardown" and event.message.startswith(LEFT_IN_PLACE):
                self._left_in_place.append(f"{event.task_id} @{event.host}")
            self._counts.setdefault(event.host, empty_counts())[str(event.status)] += 1
            destructive = event.task_id in self._destructive
            if destructive and str(event.status) == "changed":
                self._destroyed.append(f"{event.task_id} @{event.host}")
            failure = failure_of(event)
            if failure is not None:
                self._failures.append(failure)
            return task_lines(
                event,
                self._check,
                self.verbose,
                self.diff,
                (self._id_width, self._host_width),
                self._chunks.pop(event.task_id, None),
                destructive,
                self._width() if failure is not None else WIDTH,
            )
        if isinstance(event, OutputChunk):
            running = self._running.get(event.task_id) if self._live is not None else None
            last = event.text[-400:].rstrip().rsplit("\n", 1)[-1] if running is not None else ""
            if running is not None and last:
                running.last = last[-200:]
            if self.verbose:
                self._chunks.setdefault(event.task_id, TailBuffer()).add(event.text)
                if self._live is None and not self.live:
                    return self._output_lines(event)
        elif isinstance(event, StopRequested):
            return [[(stop_notice(event), "yellow")]]
        elif isinstance(event, CommandSent):
            return self._sent_lines(event) if self.verbose >= 2 else []
        elif isinstance(event, ConnectionChanged):
            return self._connection_lines(event) if self.verbose >= 2 else []
        elif isinstance(event, TaskStarted):
            self._running[event.task_id] = _Running(event.host, time.monotonic())
        elif isinstance(event, RunStarted):
            self._deployment, self._kind, self._check = event.deployment, event.kind, event.check
            self._destructive = set(event.destructive)
            self._argv = tuple(event.argv)
            self._started_at = time.monotonic()
            self._total = len(event.tasks)
            for host in event.hosts:
                self._host_total[host] = self._host_total.get(host, 0) + 1
            self._id_width = min(max(map(len, event.tasks), default=24), 40)
            self._host_width = min(max(map(len, event.hosts), default=8), 16)
            check = " · check mode: nothing is changed" if event.check else ""
            hosts = len(set(event.hosts) - {LOCAL})
            title = f"{event.deployment} · {event.kind} · {self._total} tasks on {hosts} hosts"
            return [[(title + check, "bold")]]
        return []

    def _unless_printed(self, event: TaskFinished) -> TaskFinished:
        """``event`` without its output when all of it, exactly, was printed as it came
        (``-v`` without a terminal) and the task did not fail: it is not printed twice."""
        printed = self._printed.pop(event.task_id, None)
        if printed is None or printed > LIVE_LINES or event.status is Status.FAILED:
            return event
        streamed = self._chunks.get(event.task_id)
        if (
            streamed is None
            or streamed.cut_lines
            or event.output_cut is not None
            or streamed.text() != event.output
        ):
            return event
        del self._chunks[event.task_id]
        return replace(event, output="")

    def _output_lines(self, event: OutputChunk) -> list[Line]:
        """A chunk of output printed as it comes, a line per line, under the task's id."""
        printed = self._printed.get(event.task_id, 0)
        if printed > LIVE_LINES:
            return []
        label = f"  {event.task_id}" + (" (stderr)" if event.stream == "stderr" else "") + " | "
        lines: list[Line] = []
        key = (event.task_id, event.stream)
        rows = plain(event.text).split("\n")
        if key in self._open and rows[0] == "":  # the end of the line printed last
            rows = rows[1:]
        self._open.discard(key)
        if rows and rows[-1] == "":
            rows.pop()
        elif rows:
            self._open.add(key)  # a line's start, printed after a wait: its end may follow
        for text in rows:
            printed += 1
            if printed > LIVE_LINES:
                note = f"  {event.task_id} | … more output: its last lines follow when it ends"
                lines.append([(note, "dim")])
                break
            lines.append([(label, "dim"), (text[:LIVE_LINE_CHARS], "")])
        self._printed[event.task_id] = printed
        return lines

    def _sent_lines(self, event: CommandSent) -> list[Line]:
        """``-vv``: a command sent, under the tasks it is for and its host."""
        who = ", ".join(event.tasks) if event.tasks else "fedi-run"
        rows = plain(event.command).splitlines() or [""]
        lines: list[Line] = [[(f"  → {who} @{event.host}", "cyan")]]
        lines += [[(f"      {row[:LIVE_LINE_CHARS]}", "dim")] for row in rows[:SENT_LINES]]
        if len(rows) > SENT_LINES:
            lines.append([(f"      … {len(rows) - SENT_LINES} more lines", "dim")])
        return lines

    def _connection_lines(self, event: ConnectionChanged) -> list[Line]:
        """``-vv``: a connection event of a host."""
        attempt = f" (attempt {event.attempt})" if event.attempt else ""
        detail = f": {plain(event.detail)[:LIVE_LINE_CHARS]}" if event.detail else ""
        style = "red" if event.state in ("failed", "lost") else "dim"
        return [[(f"  ~ @{event.host} {event.state}{attempt}{detail}", style)]]

    def _width(self) -> int:
        """Columns to wrap a failure's command to: the terminal's, else :data:`WIDTH`."""
        if self._console is not None:
            return max(int(self._console.width), 40)
        try:
            if self._stream.isatty():
                return max(os.get_terminal_size(self._stream.fileno()).columns, 40)
        except (AttributeError, ValueError, OSError):
            pass
        return WIDTH

    # --- output -------------------------------------------------------------------------

    def _write_plain(self, lines: list[Line]) -> None:
        """Write ``lines`` (ANSI colours only if ``color``) and flush."""
        if self._broken:
            return
        if self.color:
            text = "".join(
                "".join(f"\x1b[{_SGR[s]}m{t}\x1b[0m" if s in _SGR else t for t, s in line) + "\n"
                for line in lines
            )
        else:
            text = "".join("".join(t for t, _ in line) + "\n" for line in lines)
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):
            self._broken = True

    def _print_live(self, lines: list[Line]) -> None:
        """Print ``lines`` through rich: above the live area while it is shown."""
        if not lines or self._broken:
            return
        try:
            self._console.print(_Lines(lines), end="", soft_wrap=True)
        except (OSError, ValueError):
            self._broken = True

    def _start_live(self) -> None:
        self._ticker = threading.Thread(target=self._redraw, name="fedi-run display", daemon=True)
        try:
            self._live.start()
        except (OSError, ValueError):
            self._broken = True
            return
        self._ticker.start()

    def _redraw(self) -> None:
        """The redraw thread: every REFRESH seconds, print the queued lines and redraw.
        Should drawing fail, it stops; the queued lines are written at the end."""
        while not self._stop.wait(REFRESH):
            try:
                with self._lock:
                    pending, self._pending = self._pending, []
                    view = self._view(time.monotonic())
                self._live.update(view, refresh=not pending)
                self._print_live(pending)
            except Exception as error:  # noqa: BLE001 - the display must never stop the run
                self.redraw_error = error
                return

    def _finish_live(self) -> None:
        """Stop the redraw thread and the live area, then write the queued lines."""
        if self._live is None:
            return
        self._stop.set()
        if self._ticker is not None and self._ticker.is_alive():
            self._ticker.join()
        live, self._live = self._live, None
        if self._ticker is not None:
            try:
                live.stop()
            except (OSError, ValueError):
                self._broken = True
        with self._lock:
            pending, self._pending = self._pending, []
        self._print_live(pending)

    def _view(self, now: float) -> Any:
        """The live area (under the lock): header, progress bar and counts, a line per host
        (its current task or idle/done, and its counts), and the running tasks."""
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        done = sum(sum(c.values()) for c in self._counts.values())
        running = len(self._running)
        check = " (check)" if self._check else ""
        rows: list[Any] = [
            Text(
                f"{self._deployment} · {self._kind}{check} · "
                f"{format_duration(now - self._started_at)}",
                "bold",
            )
        ]
        bar = Table.grid(padding=(0, 1))
        bar.add_row(
            ProgressBar(total=max(self._total, done, 1), completed=done, width=40),
            Text(
                f"{done}/{self._total}  running {running} · done {done} · "
                f"left {max(self._total - done - running, 0)}"
            ),
        )
        rows.append(bar)
        busy: dict[str, list[str]] = {}
        for task_id, task in self._running.items():
            busy.setdefault(task.host, []).append(task_id)
        hosts = host_order([*self._host_total, *self._counts, *busy])
        width = self._id_width + 4
        for host in hosts[:MAX_HOSTS]:
            counts, tasks = self._counts.get(host, {}), busy.get(host, [])
            finished, total = sum(counts.values()), self._host_total.get(host, 0)
            doing = (
                tasks[0] + (f" +{len(tasks) - 1}" if len(tasks) > 1 else "")
                if tasks
                else "done"
                if total and finished >= total
                else "idle"
            )
            line = Text(
                f"  {host.ljust(self._host_width)}  {doing[:width].ljust(width)}  "
                f"{finished}/{total}"
            )
            for status in STATUSES:
                if counts.get(status):
                    line.append(f"  {status} {counts[status]}", STYLES[status])
            rows.append(line)
        if len(hosts) > MAX_HOSTS:
            rows.append(Text(f"  … {len(hosts) - MAX_HOSTS} more hosts", "dim"))
        spin = SPINNER[int(now * 10) % len(SPINNER)]
        oldest = sorted(self._running.items(), key=lambda item: item[1].at)
        for task_id, task in oldest[:MAX_RUNNING]:
            line = Text(
                f"  {spin} {task_id.ljust(self._id_width)}  @{task.host}  "
                f"{format_duration(now - task.at)}"
            )
            if task.last and not self.verbose:
                line.append(f"  {plain(task.last)[:80]}", "dim")
            rows.append(line)
            if task.last and self.verbose:  # -v: its latest line, under it
                width = max(int(self._console.width) - 6, 20)
                rows.append(Text(f"      {plain(task.last)[:width]}", "dim"))
        if len(oldest) > MAX_RUNNING:
            rows.append(Text(f"  … {len(oldest) - MAX_RUNNING} more running", "dim"))
        return Group(*rows)


class _Lines:
    """Lines as rich segments, as they are: no markup, no wrapping (the terminal wraps), so
    printing thousands of lines costs little."""

    def __init__(self, lines: list[Line]) -> None:
        self.lines = lines

    def __rich_console__(self, console: Any, options: Any) -> Any:
        from rich.segment import Segment
        from rich.style import Style

        newline = Segment.line()
        for line in self.lines:
            for text, style in line:
                yield Segment(text, Style.parse(style) if style else None)
            yield newline
