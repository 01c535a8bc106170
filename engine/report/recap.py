"""Summing up a run, for every sink: counts per host and status, the exit status, the recap
table, the bounded tail of a task's output, and the display lines of a finished task.

Everything here is a pure function of its arguments (or, for :class:`TailBuffer`, of what it
was given): no I/O, no clock, no global state.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from fedi_run.engine.report.events import OutputCut, Status, TaskFinished

STATUSES: tuple[str, ...] = tuple(s.value for s in Status)
"""The five status values, in recap column order: ok, changed, failed, skipped, unreachable."""

LOCAL = "local"
"""The deployer's own pseudo-host; always listed last."""

Recap = dict[str, dict[str, int]]
Segment = tuple[str, str]
"""A piece of a display line: ``(text, style)``, the style a rich style name or ``""``."""
Line = list[Segment]

STYLES = {
    "ok": "green",
    "changed": "yellow",
    "failed": "bold red",
    "skipped": "cyan",
    "unreachable": "magenta",
}


def empty_counts() -> dict[str, int]:
    """A fresh count per status value, all five present and zero."""
    return dict.fromkeys(STATUSES, 0)


def recap(finished: Iterable[TaskFinished]) -> Recap:
    """Each host's count per status value over ``finished``; every host seen has all five
    status values (zeros included). Hosts are keyed in :func:`host_order`."""
    counts: Recap = {}
    for event in finished:
        host_counts = counts.get(event.host)
        if host_counts is None:
            host_counts = counts[event.host] = empty_counts()
        host_counts[Status(event.status).value] += 1
    return {host: counts[host] for host in host_order(counts)}


def host_order(hosts: Iterable[str]) -> list[str]:
    """``hosts`` sorted by name, with ``local`` (the deployer) last."""
    return sorted(set(hosts), key=lambda h: (h == LOCAL, h))


def exit_status_for(recap: Mapping[str, Mapping[str, int]], interrupted: bool) -> int:
    """The process exit status of a run: 130 if interrupted; else 1 if any task failed or
    any host was unreachable; else 0. Skipped tasks alone do not fail a run: a task is
    skipped only because a dependency failed (counted already) or the run stopped (130)."""
    if interrupted:
        return 130
    for counts in recap.values():
        if counts.get("failed", 0) or counts.get("unreachable", 0):
            return 1
    return 0


def recap_rows(recap: Mapping[str, Mapping[str, int]]) -> list[tuple[str, str]]:
    """One ``(host, line)`` per host in :func:`host_order`, then ``("total", line)``; each
    line holds the host name and ``ok=`` … ``unreachable=`` columns, aligned across lines."""
    hosts = host_order(recap)
    totals = empty_counts()
    for host in hosts:
        for status in STATUSES:
            totals[status] += recap[host].get(status, 0)
    table = [(host, recap[host]) for host in hosts] + [("total", totals)]
    name_width = max(len(name) for name, _ in table)
    widths = {s: len(s) + 1 + max(len(str(c.get(s, 0))) for _, c in table) for s in STATUSES}
    rows = []
    for name, counts in table:
        cells = "  ".join(f"{s}={counts.get(s, 0)}".ljust(widths[s]) for s in STATUSES)
        rows.append((name, f"{name.ljust(name_width)} : {cells}".rstrip()))
    return rows


def render_recap(recap: Mapping[str, Mapping[str, int]], duration: float, check: bool) -> str:
    """The plain-text recap, like Ansible's PLAY RECAP: a header (noting, in --check, that
    ``changed`` means *would change*), one aligned line per host (sorted, ``local`` last),
    a totals line, and ``wall time 3.21 s``. No trailing newline, no escape codes."""
    return "\n".join(line for _, line in recap_lines(recap, duration, check))


def recap_lines(
    recap: Mapping[str, Mapping[str, int]], duration: float, check: bool
) -> list[tuple[str | None, str]]:
    """The lines of :func:`render_recap`, each with the host it is about (``"total"`` for
    the totals line, ``None`` for the others), for displays that colour them."""
    header = "RECAP (check mode: changed = would change)" if check else "RECAP"
    lines: list[tuple[str | None, str]] = [(None, header)]
    if recap:
        lines += recap_rows(recap)
    else:
        lines.append((None, "no tasks ran"))
    lines.append((None, f"wall time {format_wall_time(duration)}"))
    return lines


def format_wall_time(seconds: float) -> str:
    """``3.21 s``; from a minute on, also ``(2 min 5 s)``."""
    text = f"{seconds:.2f} s"
    if seconds >= 60:
        minutes, rest = divmod(round(seconds), 60)
        text += f" ({minutes} min {rest} s)"
    return text


def format_duration(seconds: float) -> str:
    """A task's duration: ``0.12s``, ``2m05s``."""
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s"


# --- bounded text ----------------------------------------------------------------------------

MAX_LINES = 200
MAX_CHARS = 64 * 1024

_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_CARRIAGE = re.compile(r"[^\n]*\r(?!\n|$)")


@dataclass(frozen=True)
class Clip:
    """Part of a longer text: ``text`` kept, and how many lines (a partial line counts as
    one) and characters of the original were cut."""

    text: str
    cut_lines: int = 0
    cut_chars: int = 0

    @property
    def truncated(self) -> bool:
        return self.cut_chars > 0


def tail(text: str, max_lines: int | None = MAX_LINES, max_chars: int = MAX_CHARS) -> Clip:
    """The end of ``text``: at most ``max_lines`` lines (``None``: no line limit) and at most
    ``max_chars`` characters, starting at a line boundary unless the last line alone is
    longer than ``max_chars``. Linear in ``max_chars`` plus one ``count`` over the cut part,
    so a 50 MB text costs a few milliseconds."""
    start = max(0, len(text) - max_chars)
    if start and text[start - 1] != "\n":
        newline = text.find("\n", start, len(text) - 1)
        if newline != -1:
            start = newline + 1
    if max_lines is not None:
        end = len(text) - 1 if text.endswith("\n") else len(text)
        position = end
        for _ in range(max_lines):
            position = text.rfind("\n", start, position)
            if position == -1:
                break
        else:
            start = position + 1
    if not start:
        return Clip(text)
    cut_lines = text.count("\n", 0, start) + (text[start - 1] != "\n")
    return Clip(text[start:], cut_lines, start)


def size_text(size: int) -> str:
    """``812 B``, ``63.9 KiB``, ``49.9 MiB``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024 or unit == "MiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def log_note(cut: OutputCut) -> str:
    """The line every sink shows above the tail of a cut output: ``[… 49.9 MiB more in
    <log>]``, or ``[… 1.9 KiB more not kept]`` (``not kept: <reason>`` when the log failed)."""
    if cut.log is not None:
        where = f"in {cut.log}"
    else:
        where = f"not kept: {cut.reason}" if cut.reason else "not kept"
    return f"[… {size_text(cut.dropped)} more {where}]"


def head(text: str, max_lines: int = MAX_LINES, max_chars: int = MAX_CHARS) -> Clip:
    """The beginning of ``text``: at most ``max_lines`` lines and ``max_chars`` characters."""
    end = min(len(text), max_chars)
    position = -1
    for _ in range(max_lines):
        position = text.find("\n", position + 1, end)
        if position == -1:
            break
    else:
        end = position + 1
    if end >= len(text):
        return Clip(text)
    rest = text[end:]
    return Clip(text[:end], rest.count("\n") + (not rest.endswith("\n")), len(rest))


class TailBuffer:
    """The bounded tail of a text that arrives in pieces (a running task's output): keeps at
    most about ``2 * max_chars`` characters, counting the lines it drops."""

    def __init__(self, max_chars: int = MAX_CHARS) -> None:
        self.max_chars = max_chars
        self._parts: list[str] = []
        self._size = 0
        self.cut_lines = 0

    def add(self, text: str) -> None:
        """Append ``text``, dropping the oldest characters beyond the bound."""
        self._parts.append(text)
        self._size += len(text)
        if self._size > 2 * self.max_chars:
            joined = "".join(self._parts)
            drop = len(joined) - self.max_chars
            self.cut_lines += joined.count("\n", 0, drop)
            self._parts, self._size = [joined[drop:]], self.max_chars

    def text(self) -> str:
        """What is kept (its first line may be partial; :func:`tail` drops it)."""
        return "".join(self._parts)


def plain(text: str) -> str:
    """``text`` safe to show on a terminal: ANSI escape sequences and control characters
    other than tab and newline removed; a line redrawn with carriage returns (progress bars)
    shows only its last state, as a terminal would."""
    if "\x1b" in text:
        text = _ANSI.sub("", text)
    if "\r" in text:
        text = _CARRIAGE.sub("", text.replace("\r\n", "\n"))
    return _CONTROL.sub("", text)


# --- display lines ---------------------------------------------------------------------------

CUT_NOTE = "… {lines:,} earlier lines cut (the run's log keeps the whole output)"
DESTRUCTIVE_NOTE = {False: "! destructive: removed data", True: "! destructive: would remove data"}
"""What marks a destructive task that changed (key: --check), on its line and in the recap."""
FAILED_TAIL = 20
"""Output lines shown under a failed task without -v."""
WIDTH = 100
"""Columns a failure's command is wrapped to when the display has no terminal width."""


def task_lines(
    event: TaskFinished,
    check: bool,
    verbose: bool,
    diff: bool,
    widths: tuple[int, int] = (24, 8),
    streamed: TailBuffer | None = None,
    destructive: bool = False,
    width: int = WIDTH,
) -> list[Line]:
    """The display lines of a finished task: ``changed  <id>  @<host>  0.12s`` (``would
    change`` in --check; for a ``destructive`` task that changed, :data:`DESTRUCTIVE_NOTE`
    after it, in bold red; the message's first line appended — why it failed, was skipped or
    unreachable, or a warning of a task that succeeded — its other lines below), then changes
    (``  - …``, changed tasks, ``verbose`` or ``check``), the diff (``diff``), and the output's
    tail (``verbose``: 200 lines; failed: 20), taken from ``streamed`` when the event has none,
    under a :data:`CUT_NOTE` when cut. A failed task's output is :func:`failure_lines`
    instead: its command whole, its streams labelled, its log. At most 200 lines / 64 KiB of
    each part; all text made :func:`plain`."""
    status = str(event.status)
    style = STYLES.get(status, "")
    label = "would change" if check and status == "changed" else status
    never_ran = status in ("skipped", "unreachable") and not event.duration
    duration = "" if never_ran else format_duration(event.duration)
    where = f" {event.task_id.ljust(widths[0])}  @{event.host.ljust(widths[1])}  {duration:>6}"
    line: Line = [(label.ljust(12 if check else 11), style), (where, "")]
    if destructive and status == "changed":
        line.append(("  " + DESTRUCTIVE_NOTE[check], "bold red"))
    message = plain(event.message).strip()  # for ok/changed: the task's warnings
    first, _, rest = message.partition("\n")
    if first:
        line.append(("  " + first, style))
    lines = [line] + _block(head(rest, FAILED_TAIL).text, style)
    if event.changes and status == "changed" and (verbose or check):
        lines += [[(f"  - {plain(change)}", "")] for change in event.changes[:MAX_LINES]]
        if len(event.changes) > MAX_LINES:
            lines.append([(f"  … {len(event.changes) - MAX_LINES} more changes", "dim")])
    if diff and event.diff:
        clip = head(event.diff)
        lines += [[(f"    {row}", _diff_style(row))] for row in plain(clip.text).splitlines()]
        if clip.truncated:
            lines.append([(f"    … {clip.cut_lines:,} more diff lines cut", "dim")])
    if status == "failed":
        lines += failure_lines(event, MAX_LINES if verbose else FAILED_TAIL, width, streamed)
    elif verbose:
        note = log_note(event.output_cut) if event.output_cut else ""
        output = event.output
        cut = 0
        if not output and streamed is not None:
            output, cut = streamed.text(), streamed.cut_lines
        clip = tail(output, MAX_LINES if verbose else FAILED_TAIL, MAX_CHARS)
        if note:
            lines.append([("    " + plain(note), "dim")])
        elif cut + clip.cut_lines:
            lines.append([("    " + CUT_NOTE.format(lines=cut + clip.cut_lines), "dim")])
        lines += _block(plain(clip.text), "")
    return lines


LABEL_INDENT, TEXT_INDENT = "    ", "      "


def failure_lines(
    event: TaskFinished,
    max_lines: int = FAILED_TAIL,
    width: int = WIDTH,
    streamed: TailBuffer | None = None,
) -> list[Line]:
    """What a failed task's line is followed by: ``command:`` and the failed command whole
    (:func:`wrap`, never cut; omitted when no command failed), the note of a cut output
    (:func:`log_note`), the output's tail of each stream under ``stdout:`` / ``stderr:`` —
    or, when the producer did not tell them apart, under ``output (stdout and stderr):`` —
    each at most ``max_lines`` lines (a ``… N earlier lines cut`` line above a cut one, unless
    the log note says it already), and ``log: <file>``, the task's whole output. Output from
    ``streamed`` when the event has none. All text made :func:`plain`."""
    lines: list[Line] = []
    if event.command:
        lines += [[(row, "")] for row in wrap("command: ", plain(event.command), width)]
    if event.output_cut:
        lines.append([(LABEL_INDENT + plain(log_note(event.output_cut)), "dim")])
    blocks = [("stdout", event.stdout, 0), ("stderr", event.stderr, 0)]
    if not event.stdout and not event.stderr:  # not told apart
        output, cut = event.output, 0
        if not output and streamed is not None:
            output, cut = streamed.text(), streamed.cut_lines
        blocks = [("output (stdout and stderr)", output, cut)]
    for name, text, cut in blocks:
        if not text:
            continue
        clip = tail(text, max_lines, MAX_CHARS)
        lines.append([(f"{LABEL_INDENT}{name}:", "bold")])
        if cut + clip.cut_lines and not event.output_cut:  # else the log note says it
            lines.append([(f"{TEXT_INDENT}… {cut + clip.cut_lines:,} earlier lines cut", "dim")])
        lines += [[(f"{TEXT_INDENT}{row}", "")] for row in plain(clip.text).splitlines()]
    if not any(text for _, text, _ in blocks):
        lines.append([(f"{LABEL_INDENT}no output", "dim")])
    if event.log is not None:
        lines.append([(f"{LABEL_INDENT}log: {plain(str(event.log))}", "")])
    return lines


def wrap(label: str, text: str, width: int = WIDTH, max_lines: int = MAX_LINES) -> list[str]:
    """``label`` and ``text`` as lines of at most ``width`` columns, indented by
    :data:`LABEL_INDENT`: each line of ``text`` starts after the label (the next ones under
    it), and goes on, when longer, on lines indented two more columns — broken between words
    only, so a word is never cut (one longer than the width stands alone on its line). At
    most ``max_lines`` lines of ``text``, then ``… N more lines``."""
    import textwrap

    first = LABEL_INDENT + label
    under = " " * len(first)
    rows = text.splitlines() or [""]
    shown, more = rows[:max_lines], len(rows) - max_lines
    wrapper = textwrap.TextWrapper(
        width=max(width, len(under) + 20),
        subsequent_indent=under + "  ",
        break_long_words=False,
        break_on_hyphens=False,
        replace_whitespace=False,
        expand_tabs=False,
    )
    lines = []
    for number, row in enumerate(shown):
        wrapper.initial_indent = first if number == 0 else under
        lines += wrapper.wrap(row) or [wrapper.initial_indent.rstrip()]
    if more > 0:
        lines.append(f"{under}… {more:,} more lines")
    return lines


@dataclass(frozen=True)
class Failure:
    """A task the recap lists as not done: its id, host, status and one-line reason."""

    task_id: str
    host: str
    status: str
    reason: str


def failure_of(event: TaskFinished) -> Failure | None:
    """The :class:`Failure` of a failed or unreachable task; None for any other."""
    status = str(event.status)
    if status not in ("failed", "unreachable"):
        return None
    reason = plain(event.message).strip().partition("\n")[0]
    return Failure(event.task_id, event.host, status, reason)


def resume_argv(argv: Iterable[str]) -> list[str]:
    """The command that continues a run started as ``fedi-run <argv>``: the same arguments
    with ``--resume`` added (before a ``--``, if any), unless they hold it already."""
    args = list(argv)
    if "--resume" in args[: args.index("--") if "--" in args else len(args)]:
        return ["fedi-run", *args]
    at = args.index("--") if "--" in args else len(args)
    return ["fedi-run", *args[:at], "--resume", *args[at:]]


def failures_text(
    failures: Iterable[Failure], argv: Iterable[str], interrupted: bool
) -> list[Line]:
    """The end of the recap when a task failed, a host was unreachable or the run was
    interrupted: ``Failures:`` and a line per failure (status, id, ``@host``, reason; ids
    and hosts aligned), then ``to continue: fedi-run … --resume`` (:func:`resume_argv`,
    shell-quoted; omitted when ``argv`` is unknown, empty). Nothing when none of these."""
    import shlex

    failures, argv = list(failures), tuple(argv)
    if not failures and not interrupted:
        return []
    lines: list[Line] = [[("", "")]]
    if failures:
        lines.append([(f"Failures ({len(failures)}):", "bold red")])
        id_width = min(max(len(f.task_id) for f in failures), 40)
        host_width = min(max(len(f.host) for f in failures), 16)
        for failure in failures:
            where = f"{failure.task_id.ljust(id_width)}  @{failure.host.ljust(host_width)}"
            text = f"  {failure.status.ljust(11)} {where}  {failure.reason}".rstrip()
            lines.append([(text, STYLES.get(failure.status, ""))])
    if argv:
        lines.append([(f"to continue: {shlex.join(resume_argv(argv))}", "bold")])
    return lines


def recap_text(
    recap: Mapping[str, Mapping[str, int]],
    duration: float,
    check: bool,
    interrupted: bool,
    destroyed: Iterable[str] = (),
) -> list[Line]:
    """:func:`render_recap` as display lines after a blank one (``interrupted`` first if
    so), each host's line green, yellow (changed) or red (failed or unreachable); then, in
    bold red, the destructive tasks that changed (``destroyed``: ``<id> @<host>``), if any."""
    full = {host: {**empty_counts(), **counts} for host, counts in recap.items()}
    lines: list[Line] = [[("", "")]]
    if interrupted:
        lines.append([("interrupted", "bold red")])
    for index, (host, text) in enumerate(recap_lines(full, duration, check)):
        counts = full.get(host or "", {})
        style = (
            "bold"
            if index == 0
            else ""
            if host in (None, "total")
            else "red"
            if counts["failed"] or counts["unreachable"]
            else "yellow"
            if counts["changed"]
            else "green"
        )
        lines.append([(text, style)])
    destroyed = list(destroyed)
    if destroyed:
        note = DESTRUCTIVE_NOTE[check].removeprefix("! destructive: ")
        lines.append([(f"! destructive: {len(destroyed)} task(s) {note}:", "bold red")])
        lines += [[(f"  {task}", "bold red")] for task in destroyed]
    return lines


def _block(text: str, style: str) -> list[Line]:
    return [[(f"    {row}", style)] for row in text.splitlines()]


def _diff_style(row: str) -> str:
    if row.startswith(("+++", "---")):
        return "bold"
    return {"+": "green", "-": "red", "@": "cyan"}.get(row[:1], "")


LEFT_IN_PLACE = "left in place: this task has no undo"
"""The message of a teardown's task that has nothing to undo: it is not run, and what it did
stays (a check, a command, a plugin's call without an undo of its own)."""


def left_in_place_line(tasks: list[str]) -> str:
    """The teardown recap's line listing the tasks ``tasks`` (``id @host``) left in place."""
    return f"left in place ({len(tasks)}, no undo): " + ", ".join(tasks)
