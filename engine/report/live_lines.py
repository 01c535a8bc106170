"""A running task's output as it comes, in lines, masked: what streams to the sinks.

Contract of :class:`LiveLines`:

* raw output goes in chunk by chunk (:meth:`~LiveLines.write` bytes, or
  :meth:`~LiveLines.write_text`); masked text comes out through ``emit``, in order, from the
  thread that wrote it or from a timer's;
* what comes out is whole lines, as soon as their newline arrives — except that an end which
  could be the beginning of a multi-line secret continuing in the next chunk waits for it
  (:meth:`Masker.line_cut <fedi_run.engine.report.masking.Masker.line_cut>`);
* the start of a line that waits longer than ``delay`` seconds for its end (a prompt, a
  progress bar) comes out then — but never its last characters that could be the beginning of
  a secret (:meth:`Masker.safe_cut <fedi_run.engine.report.masking.Masker.safe_cut>`): those
  come out with what follows them, or at :meth:`~LiveLines.close`. So a secret split across
  reads, at whatever offset, is masked as a whole one is;
* at most :data:`HELD` characters are held back; :meth:`~LiveLines.close` flushes what is left
  (masked as a whole) and stops the timer. Nothing is emitted after it.
"""

from __future__ import annotations

import codecs
import threading
from collections.abc import Callable

from fedi_run.engine.report.masking import Masker

DELAY = 0.25
"""Seconds the start of a line waits for its end before it is emitted alone (a task script's
reader holds a line's last newline back until more comes: it may begin a marker line)."""
HELD = 64 * 1024
"""Characters held back at most: beyond, what is safe to emit is emitted at once."""


class LiveLines:
    """One stream of one task (see the module docstring); thread-safe."""

    def __init__(self, masker: Masker, emit: Callable[[str], None], delay: float = DELAY):
        self._masker = masker
        self._emit = emit
        self._delay = delay
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._held = ""
        self._timer: threading.Timer | None = None
        self._closed = False
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        """Take a chunk of raw output (UTF-8; a character split across chunks is kept whole)."""
        if data:
            with self._lock:
                self._take(self._decoder.decode(data))

    def write_text(self, text: str) -> None:
        """Take a piece of already decoded output."""
        if text:
            with self._lock:
                self._take(text)

    def close(self) -> None:
        """The stream ended: emit what is held back (masked as a whole); idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            rest = self._held + self._decoder.decode(b"", final=True)
            self._held = ""
            self._send(rest)

    # -- internals (under the lock) ----------------------------------------------------------

    def _take(self, text: str) -> None:
        if self._closed:
            return
        text = self._held + text
        cut = self._masker.line_cut(text)
        if len(text) - cut > HELD:
            cut = max(cut, self._masker.safe_cut(text))
        self._held = text[cut:]
        self._send(text[:cut])
        if self._held and self._timer is None:
            self._timer = threading.Timer(self._delay, self._waited)
            self._timer.daemon = True
            self._timer.start()

    def _waited(self) -> None:
        """The timer: the start of a line waited long enough; emit what of it is safe."""
        with self._lock:
            self._timer = None
            if self._closed or not self._held:
                return
            cut = self._masker.safe_cut(self._held)
            text, self._held = self._held[:cut], self._held[cut:]
            self._send(text)

    def _send(self, text: str) -> None:
        if text:
            self._emit(self._masker.mask(text))
