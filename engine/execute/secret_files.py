"""Secret files on a host, for the :class:`~fedi_run.engine.planning.operations.Call`
functions that move a secret (plugins reach them through ``fedi_run.engine.api``).

:func:`place_secret_files` makes files hold exact secret values, :func:`read_secret_files`
reads them back; either way the values travel on stdin or stdout, never on a command line,
and every value is added to the context's masker before it could reach any output.
"""

from __future__ import annotations

import base64
import shlex
from collections.abc import Sequence

from fedi_run.engine.execute import scripts
from fedi_run.engine.execute.connection import HostConnection
from fedi_run.engine.execute.context import Context
from fedi_run.engine.execute.script_runner import run_parts


def place_secret_files(
    context: Context, connection: HostConnection, files: dict[str, str], mode: int = 0o400
) -> list[str]:
    """Make each of ``files`` (path → secret value) exist on ``connection``'s host with that
    exact value and ``mode`` (its directory created 0700), in one round trip, values on stdin.
    The values are added to the masker first. Returns what changed (or would, in check mode)."""
    for value in files.values():
        context.masker.add(value)
    parts = [
        scripts.secret_part(
            f"0.{j}",
            path,
            value.encode(),
            mode,
            keep=False,
            summary=f"secret {path} (mode {scripts.mode_text(mode)})",
        )
        for j, (path, value) in enumerate(files.items())
    ]
    return run_parts(parts, context, connection)


def read_secret_files(
    context: Context, connection: HostConnection, paths: Sequence[str]
) -> dict[str, str]:
    """The content of each of ``paths`` that exists on the host (path → text, one round trip),
    each added to the masker before it is returned."""
    quoted = " ".join(shlex.quote(p) for p in paths)
    script = (
        f'for f in {quoted}; do if [ -f "$f" ]; then printf %s "$f" | base64 -w0; printf " "; '
        'base64 -w0 < "$f"; echo; fi; done; true'
    )
    result = connection.run(script, timeout=context.timeout)
    found = {}
    for line in result.stdout.decode().splitlines():
        name, _, value = line.partition(" ")
        text = base64.b64decode(value).decode("utf-8", "replace")
        context.masker.add(text)
        found[base64.b64decode(name).decode()] = text
    return found
