"""Keeping secrets out of every output: the display, -v output, JSON events, JUnit, the state
file and error messages.

The executor registers each secret value with a :class:`Masker` the moment it exists (generated
or read), and passes every text it emits through :meth:`Masker.mask`. Sinks receive masked
events only.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import threading
import urllib.parse

MASK = "********"
MIN_LENGTH = 6
"""Shorter values are not masked: they would mask ordinary words, and no generated secret is
that short."""


def _base64_forms(data: bytes) -> set[str]:
    """The base64 text of ``data`` wherever it may stand in a longer base64 text: for each of
    the three offsets it may start at, the characters made of its bits only (standard and
    URL-safe alphabets)."""
    found = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + data).decode()
        first = -(-8 * offset // 6)  # the first character holding only bits of ``data``
        last = (8 * (offset + len(data))) // 6  # the first one holding bits after it
        found.add(encoded[first:last])
    return found | {form.replace("+", "-").replace("/", "_") for form in found}


def forms(value: str) -> set[str]:
    """``value`` and the forms it takes when a program prints it encoded: JSON-escaped (as
    in a JSON document, ASCII-only or not), base64 (at any offset of a longer base64 text),
    URL-encoded (path and form encodings) and shell-quoted."""
    found = {value}
    found.add(json.dumps(value)[1:-1])
    found.add(json.dumps(value, ensure_ascii=False)[1:-1])
    found |= _base64_forms(value.encode())
    found.add(urllib.parse.quote(value, safe=""))
    found.add(urllib.parse.quote(value))
    found.add(urllib.parse.quote_plus(value))
    found.add(shlex.quote(value))
    return found


class Masker:
    """A thread-safe set of secret values and the replacement of each in a text."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._longest = 0
        self._line_heads: tuple[str, ...] = ()
        """Each multi-line value's beginnings that end at one of its newlines."""
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
                self._line_heads = tuple(
                    {v[: i + 1] for v in ordered for i, c in enumerate(v) if c == "\n"}
                )

    def add_forms(self, value: str | bytes) -> None:
        """Mask ``value`` and every one of its :func:`forms` (a password an operator's task may
        print JSON-escaped, base64- or URL-encoded)."""
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        text = text.strip()
        for form in forms(text) if text else ():
            self.add(form)

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

    def line_cut(self, text: str) -> int:
        """Where a stream's ``text`` may be cut after its last complete line (0: none) so that
        masking ``text[:cut]`` now and the rest later misses no secret: right after its last
        newline — unless ``text[:cut]`` ends with the beginning of a multi-line secret, which
        may go on in the rest: then no later than :meth:`safe_cut` says."""
        cut = text.rfind("\n") + 1
        heads = self._line_heads
        if cut and heads and any(text.endswith(head, 0, cut) for head in heads):
            return min(cut, self.safe_cut(text))
        return cut

    def __len__(self) -> int:
        return len(self._values)
