"""A run's output log: the whole output of each task on the deployer, a bounded tail in memory.

Contract:

* :meth:`OutputLog.create` makes ``<state dir>/logs/<run id>/`` (directories 0700) when the run
  starts, before any host is touched; a directory that cannot be made is a
  :class:`~fedi_run.engine.errors.StateError` (exit status 2);
* :meth:`OutputLog.task` gives a task's :class:`TaskOutput`: everything the task prints goes
  through it, chunk by chunk. Its whole output, secrets masked, is appended to
  ``<task id>.log`` (0600, created on the first byte: a task that prints nothing has no file);
  only the last :data:`TAIL` characters are kept in memory: :meth:`TaskOutput.tail` is that
  tail and :meth:`TaskOutput.cut` the :class:`~fedi_run.engine.report.events.OutputCut` that
  says how much came before it and where the log is (None: not cut); :meth:`TaskOutput.text`
  is the tail under the note ``[… 49.9 MiB more in <log path>]`` when it was cut;
* masking holds back the last characters of a chunk that could be the beginning of a secret,
  so a secret split across two chunks is masked as well as a whole one;
* a log that cannot be written (disk full on the deployer) never fails the task: the tail is
  still reported, and the note says the log is incomplete;
* output that comes labelled with its stream (:meth:`TaskOutput.write_stream`: a command's
  stdout and stderr, told apart by its script) goes to the log and the tail as any other, in
  the order it came, and each stream also keeps a tail of its own (:meth:`TaskOutput.stream_tail`).
"""

from __future__ import annotations

import codecs
import os
import re
from pathlib import Path

from fedi_run.engine.report.events import OutputCut
from fedi_run.engine.report.masking import Masker
from fedi_run.engine.report.recap import TailBuffer, log_note

TAIL = 64 * 1024
"""Characters of a task's output kept in memory (what the display, events and JUnit get)."""
LOGS = "logs"
_UNSAFE = re.compile(r"[^A-Za-z0-9._@+=-]")


def log_directory(state_dir: Path, run_id: int) -> Path:
    """``<state dir>/logs/<run id>``."""
    return Path(state_dir) / LOGS / str(run_id)


def log_path(state_dir: Path, run_id: int, task_id: str) -> Path:
    """Where the whole output of ``task_id`` in run ``run_id`` is kept."""
    return log_directory(state_dir, run_id) / f"{_UNSAFE.sub('_', task_id)}.log"


class OutputLog:
    """The output log of one run (``directory`` None: no log, tails only)."""

    def __init__(self, directory: Path | None, masker: Masker):
        self.directory = directory
        self.masker = masker

    @classmethod
    def create(cls, state_dir: Path, run_id: int, masker: Masker) -> OutputLog:
        """Make the run's log directory (0700, and ``logs/`` too); StateError naming it if
        that fails."""
        from fedi_run.engine.errors import StateError

        directory = log_directory(state_dir, run_id)
        for new in (directory.parent, directory):
            try:
                os.mkdir(new, 0o700)
            except FileExistsError:
                pass
            except OSError as error:
                raise StateError.cannot("create the output log directory", new, error) from None
            try:
                os.chmod(new, 0o700)
            except OSError as error:
                raise StateError.cannot("use the output log directory", new, error) from None
        return cls(directory, masker)

    def file_of(self, task_id: str) -> Path | None:
        """The file holding the whole output of ``task_id`` so far; None when there is none
        (no log, or the task printed nothing)."""
        if self.directory is None:
            return None
        path = self.directory / f"{_UNSAFE.sub('_', task_id)}.log"
        return path if path.is_file() else None

    def task(self, task_id: str) -> TaskOutput:
        """A fresh :class:`TaskOutput` for ``task_id`` (appending to its log)."""
        path = (
            None if self.directory is None else self.directory / f"{_UNSAFE.sub('_', task_id)}.log"
        )
        return TaskOutput(path, self.masker)


class TaskOutput:
    """One task's output as it arrives: masked, appended to its log, its tail kept."""

    def __init__(self, path: Path | None, masker: Masker, limit: int = TAIL):
        self.path = path
        self.masker = masker
        self.limit = limit
        self.size = 0  # bytes received
        self.error: str | None = None
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._held = ""
        self._chars = 0  # characters passed on (masked)
        self._tail = TailBuffer(limit)
        self._file = None
        self._streams: dict[str, TaskOutput] = {}  # tails of the streams told apart
        self.failed_command = ""
        """The whole command (masked) whose failure ended this output, once the script's
        reader knows it (``engine.execute.script_runner``); empty: none did."""

    # -- input --------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Take a chunk of raw output."""
        if not data:
            return
        self.size += len(data)
        self._take(self._held + self._decoder.decode(data), final=False)

    def write_stream(self, stream: str, data: bytes) -> None:
        """Take a chunk of raw output known to come from ``stream`` (``"stdout"``,
        ``"stderr"``): as :meth:`write`, and also into that stream's own tail
        (:meth:`stream_tail`)."""
        self.write(data)
        part = self._streams.get(stream)
        if part is None:
            part = self._streams[stream] = TaskOutput(None, self.masker, self.limit)
        part.write(data)

    def stdout(self, data: bytes) -> None:
        """:meth:`write_stream` for ``"stdout"``."""
        self.write_stream("stdout", data)

    def stderr(self, data: bytes) -> None:
        """:meth:`write_stream` for ``"stderr"``."""
        self.write_stream("stderr", data)

    def write_text(self, text: str) -> None:
        """Take a piece of already decoded output (a local program's)."""
        if text:
            self.size += len(text.encode("utf-8", "replace"))
            self._take(self._held + text, final=False)

    def close(self) -> None:
        """The output is complete: flush what was held back, close the log (idempotent)."""
        rest = self._decoder.decode(b"", final=True)
        if self._held or rest:
            self._take(self._held + rest, final=True)
        if self._file is not None:
            try:
                self._file.close()
            except OSError as error:
                self._fail(error)
            self._file = None

    # -- output -------------------------------------------------------------------------------

    def text(self) -> str:
        """The kept tail (masked), under the note saying how much more the log holds
        (:func:`~fedi_run.engine.report.recap.log_note`) when the output was longer."""
        kept, cut = self._report()
        return kept if cut is None else f"{log_note(cut)}\n{kept}"

    def tail(self) -> str:
        """The output (masked): all of it, or, when it was longer than the tail, its last
        characters from a line boundary on."""
        return self._report()[0]

    def stream_tail(self, stream: str) -> str:
        """The tail (masked) of what came through :meth:`write_stream` from ``stream``; empty
        when nothing did (also when the streams were not told apart)."""
        part = self._streams.get(stream)
        return part.tail() if part is not None else ""

    def log_file(self) -> Path | None:
        """The file holding the whole output: None when nothing was written to it (no
        output, no log, or the log could not be written)."""
        self.close()
        if self.path is None or self.error is not None or not self.path.is_file():
            return None
        return self.path

    def cut(self) -> OutputCut | None:
        """How :meth:`tail` was cut from the output; None when it is the whole output."""
        return self._report()[1]

    def _report(self) -> tuple[str, OutputCut | None]:
        self.close()
        kept = self._tail.text()
        if len(kept) > self.limit:
            kept = kept[-self.limit :]
        if self._chars <= len(kept):
            return kept, None
        newline = kept.find("\n", 0, len(kept) - 1)
        if newline != -1:  # start at a line boundary
            kept = kept[newline + 1 :]
        more = max(0, self.size - len(kept.encode("utf-8", "replace")))
        kept_in = self.path if self.error is None else None
        return kept, OutputCut(more, kept_in, self.error or "")

    # -- internals ----------------------------------------------------------------------------

    def _take(self, text: str, final: bool) -> None:
        cut = len(text) if final else self.masker.safe_cut(text)
        self._held = text[cut:]
        if cut:
            masked = self.masker.mask(text[:cut])
            self._chars += len(masked)
            self._tail.add(masked)
            self._log(masked)

    def _log(self, text: str) -> None:
        if self.path is None or self.error is not None:
            return
        try:
            if self._file is None:
                descriptor = os.open(
                    self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600
                )
                self._file = os.fdopen(descriptor, "w", encoding="utf-8", errors="replace")
            self._file.write(text)
        except OSError as error:
            self._fail(error)

    def _fail(self, error: OSError) -> None:
        self.error = f"cannot write {self.path}: {error.strerror or error}"
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None
