"""Keeping secrets out of every output: the display, -v output, JSON events, JUnit, the state
file and error messages.

The executor registers each secret value with a :class:`Masker` the moment it exists (generated
or read), and passes every text it emits through :meth:`Masker.mask`. Sinks receive masked
events only.
"""

from __future__ import annotations

import re
import threading

MASK = "********"
MIN_LENGTH = 6
"""Shorter values are not masked: they would mask ordinary words, and no generated secret is
that short."""


class Masker:
    """A thread-safe set of secret values and the replacement of each in a text."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._longest = 0
        self._lock = threading.Lock()

    def add(self, value: str | bytes) -> None:
        """Mask ``value`` (and each of its lines, for multi-line secrets) from now on."""
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        parts = {text.strip(), *(line.strip() for line in text.splitlines())}
        with self._lock:
            before = len(self._values)
            self._values.update(p for p in parts if len(p) >= MIN_LENGTH)
            if len(self._values) != before:
                ordered = sorted(self._values, key=len, reverse=True)
                self._longest = len(ordered[0])
                self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def mask(self, text: str) -> str:
        """``text`` with every known secret replaced by ``********``."""
        pattern = self._pattern
        if pattern is None or not text:
            return text
        return pattern.sub(MASK, text)

    def safe_cut(self, text: str) -> int:
        """Where a stream's ``text`` may be cut so that masking ``text[:cut]`` now and the rest
        with the next chunk misses no secret: no secret straddles the cut, and the rest is too
        short to hold the start of one that continues in the next chunk."""
        pattern, longest = self._pattern, self._longest
        if pattern is None or longest <= 1:
            return len(text)
        cut = len(text) - (longest - 1)
        if cut <= 0:
            return 0
        for match in pattern.finditer(text, max(0, cut - longest)):
            if match.start() >= cut:
                break
            if match.end() > cut:
                return match.start()
        return cut

    def __len__(self) -> int:
        return len(self._values)
