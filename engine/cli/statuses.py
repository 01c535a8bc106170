"""The exit statuses of ``fedi-run``: every one it uses, and what each means (docs/cli.md)."""

from __future__ import annotations

OK = 0
FAILED = 1
USAGE = 2
LOCKED = 3
CHANGES = 4
INTERRUPTED = 130

EXIT_STATUSES = {
    OK: "Success; with --detailed-exitcode, also: nothing changed (with --check: nothing "
    "would change).",
    FAILED: "A task failed or a host was unreachable; verify: a service does not pass; "
    "lab status: a lab host is down; Ctrl-C at a prompt (Aborted!).",
    USAGE: "Bad input: the command line, an environment variable, the playbook ([run] "
    "included), an inventory, a plugin, a selection, a missing tool, an unconfirmed teardown, "
    "an unusable state database — found before any host is contacted; or a report that "
    "cannot be written after a run that succeeded.",
    LOCKED: "Another run of the deployment holds its lock (the panel: a run of it is in progress).",
    CHANGES: "--detailed-exitcode only: every task succeeded and some changed something "
    "(with --check: would change).",
    INTERRUPTED: "Interrupted (SIGINT, Ctrl-C, or SIGTERM): running tasks got their grace "
    "period, the rest is recorded as interrupted.",
}
"""Every exit status fedi-run's own commands end with (``fedi-run lab run`` passes on the
command's status instead)."""


def detailed(status: int, changed: bool) -> int:
    """A run's exit status under ``--detailed-exitcode``: :data:`CHANGES` instead of
    :data:`OK` when something changed (or would); any other status as it is."""
    return CHANGES if status == OK and changed else status
