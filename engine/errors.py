"""The one error hierarchy of fedi-run: every exception class of the engine, the plugins and
the panel is defined here, grouped by the part of the flow that raises it.

Every error the engine raises on purpose derives from :class:`FediRunError`. The CLI prints its
``str()`` (one paragraph, or one line per problem) and exits with its ``exit_status`` — never a
traceback. Anything else that escapes is a bug. The internal signals (raised and caught inside
one part, never reaching the CLI) are FediRunErrors too, with the exit status of the error they
become, should one ever escape. ``tests/test_errors.py`` keeps every exception class here.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fedi_run.engine.report.events import OutputCut

PREFIX = "error: "
"""How the text of an error that ends a command starts."""


class FediRunError(Exception):
    """Base of all deliberate fedi-run errors.

    ``exit_status`` is what the CLI exits with: 2 for bad input, which is the default.
    ``str()`` is the text as raised — starting with ``error: `` for an error that ends a
    command, bare for one reported as a task's message; ``message`` is that text without the
    ``error: ``, for a page or a form that shows it in its own words.
    """

    exit_status: int = 2

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = str(message).removeprefix(PREFIX)


class UsageError(FediRunError):
    """Bad input on the command line or in the environment (exit status 2)."""


# --- loading the project: playbook, inventories, plugins, the task graph, the selection ---


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the user's input.

    ``file`` is the file the offending value came from, ``key`` its dotted key path
    (``services.mastodon.host``; empty for the whole file) and ``message`` says what was found
    and what was expected.
    """

    file: Path | None
    key: str
    message: str

    def __str__(self) -> str:
        where = str(self.file) if self.file else "<command line>"
        if self.key:
            where = f"{where}: {self.key}"
        return f"{where}: {self.message}"


class PlaybookError(FediRunError):
    """The playbook, an inventory or a configuration file is invalid.

    Carries every :class:`Problem` found, not just the first, so one run shows them all
    (exit status 2).
    """

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]):
        self.problems = tuple(problems)
        super().__init__(self._render())

    def _render(self) -> str:
        if len(self.problems) == 1:
            return f"error: {self.problems[0]}"
        lines = [f"error: {len(self.problems)} problems found:"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


class PluginError(FediRunError):
    """A plugin could not be loaded, clashes with another, or broke its hook contract (exit
    status 2)."""


class GraphError(FediRunError):
    """The task graph is invalid: unknown dependency, duplicate id, unknown host or a cycle.

    Like :class:`PlaybookError`, it carries every problem found (as strings naming the task),
    and names the playbook the tasks came from when it is known (exit status 2). ``about``
    holds, for each problem in turn, the tasks it is about (the task whose ``requires`` names
    an unknown task, or every task of a cycle) and the problem's text without them: what the
    project turns into a :class:`Problem` keyed to an operator's ``[tasks.<name>]``.
    """

    def __init__(
        self,
        problems: list[str] | tuple[str, ...],
        source: Path | None = None,
        about: Sequence[tuple[tuple[str, ...], str]] = (),
    ):
        self.problems = tuple(problems)
        self.source = source
        self.about = tuple(about) or tuple(((), p) for p in self.problems)
        where = f"{source}: " if source else ""
        if len(self.problems) == 1:
            text = f"error: {where}invalid task graph: {self.problems[0]}"
        else:
            text = "\n".join(
                [f"error: {where}invalid task graph, {len(self.problems)} problems:"]
                + [f"  - {p}" for p in self.problems]
            )
        super().__init__(text)


class SelectionError(FediRunError):
    """A selection flag (``--only``, ``--tags``, ``--from``, ...) matches nothing or names an
    unknown task (exit status 2)."""


class DependenciesNotDone(SelectionError):
    """A partial run leaves out tasks its selected tasks need, and the deployment's state does
    not record them as done (in a teardown: as undone), found before any host is contacted
    (exit status 2). ``tasks`` names them."""

    def __init__(self, message: str, tasks: Sequence[str] = ()):
        super().__init__(message)
        self.tasks = tuple(tasks)


class NothingToResume(FediRunError):
    """``--resume`` after a run that left nothing to do: not an error, the work is done (exit
    status 0, so that a CI loop retrying with ``--resume`` stops)."""

    exit_status = 0


# --- before the run: the deployer's tools, the state database and its lock ----------------


class MissingTool(FediRunError):
    """A program the run needs is not installed on the deployer (``nixops4``), found before
    any host is touched (exit status 2)."""


STATE_ELSEWHERE = "pass --state FILE to keep the run state elsewhere"
"""The way out every :class:`StateError` about the state's place offers."""


class StateError(FediRunError):
    """The state database (or the run's output log directory beside it) cannot be created,
    opened, read or written (exit status 2)."""

    @classmethod
    def cannot(cls, what: str, path: Path, error: BaseException, hint: str = "") -> StateError:
        """``error: cannot <what> <path>: <reason>; <hint>``."""
        reason = getattr(error, "strerror", None) or str(error)
        hint = hint or f"make {path.parent} a writable directory, or {STATE_ELSEWHERE}"
        return cls(f"error: cannot {what} {path}: {reason}; {hint}")


class StateLockLost(StateError):
    """The PostgreSQL state's connection broke during the run, and the deployment's lock (an
    advisory lock of that connection) with it: the run stopped — nothing new started, running
    tasks got their grace period — rather than go on unlocked (exit status 1)."""

    exit_status = 1


class RunNotFound(FediRunError):
    """``show-run`` (or ``StateStore.get_run``) names a run that is not there (exit status
    2)."""


class NoPreviousRun(FediRunError):
    """``--resume`` with no previous run of the deployment recorded (exit status 2)."""


class LockHeld(FediRunError):
    """Another run of the deployment holds its lock (exit status 3). ``deployment``,
    ``lock_path`` (the lock file, or the PostgreSQL state's advisory lock), and the holder's
    ``pid``, ``started_at`` and ``command`` (its command line; None when unknown) say which."""

    exit_status = 3

    def __init__(self, deployment: str, lock_path: Path | str, holder: dict):
        self.deployment, self.lock_path = deployment, lock_path
        self.pid: int | None = holder.get("pid")
        self.started_at: float | None = holder.get("started_at")
        command = holder.get("command")
        self.command: str | None = (
            " ".join(str(part) for part in command) if isinstance(command, list) else None
        )
        who = f"pid {self.pid}" if self.pid else "another process"
        if holder.get("host") and holder["host"] != socket.gethostname():
            who += f" on {holder['host']}"
        if holder.get("user"):
            who += f" as {holder['user']}"
        if self.started_at:
            started = time.localtime(self.started_at)
            who += f", started {time.strftime('%Y-%m-%d %H:%M:%S', started)}"
        if self.command:
            who += f", command line: {self.command[:300]}"
        super().__init__(
            f"error: another run of deployment '{deployment}' is in progress ({who}): it holds "
            f"the lock {lock_path}; wait for it to end (or stop it), then try again"
        )


class DomainChanged(FediRunError):
    """The playbook's ``[deployment] domain`` differs from the one the deployment was last
    applied at, and ``--change-domain`` was not given: nothing is run (exit status 2)."""

    def __init__(self, deployment: str, applied: str, domain: str, run_id: int):
        self.applied, self.domain = applied, domain
        super().__init__(
            f"error: deployment '{deployment}' was applied at the domain {applied} (run "
            f"{run_id}), and the playbook now says {domain}. The identities of a federated "
            f"service belong to its domain (accounts are @user@{applied} to the rest of the "
            "network, and remote servers keep that name and its keys): they cannot follow it "
            f"to {domain}. If the new domain is a typo, put {applied} back. To change it on "
            "purpose, run again with --change-domain (a new instance at the new domain, "
            "the old identities lost to the network). Nothing was changed on any host."
        )


class NotConfirmed(UsageError):
    """A teardown was not confirmed: no terminal to type the deployment's name on and no
    ``--yes``, or the name typed was not the deployment's. Nothing is changed (exit status
    2)."""


class SecretUnknown(UsageError):
    """``--rotate-secrets NAME`` or ``--restore-secret NAME=FILE`` names no secret the
    selected tasks place (or several, where one is needed), or the backup file cannot be read
    (exit status 2)."""


# --- reaching the hosts: connections, host keys, commands on channels ---------------------


class HostUnreachable(FediRunError):
    """A host could not be connected to (after the connection's retries), or dropped the
    connection: its remaining tasks are ``unreachable`` and the run exits 1; on its own (``fedi-run
    verify``) exit status 1 too.

    ``lost`` is True when an open connection broke while a command ran (its sshd died, the
    network broke, it stopped answering; ``HostConnection.run`` raises it so): the one case the
    scheduler retries a task for, once, on a fresh connection. False: no connection was made.
    """

    exit_status = 1

    def __init__(self, message: str = "", *, lost: bool = False) -> None:
        super().__init__(message)
        self.lost = lost


class HostKeyRejected(HostUnreachable):
    """The host's key is unknown or does not match the pinned or recorded one: nothing runs
    there, and connecting is not retried (exit status 1)."""


class NewHostKey(FediRunError):
    """An internal signal: the engine's missing-host-key policy refuses a key, raising this
    from inside paramiko's connect — ``key`` is what the host presented, ``recorded`` the keys
    of other types already recorded for it (a changed key). ``HostConnection`` turns it into
    :class:`HostKeyRejected` at once (exit status 1, were it ever to escape)."""

    exit_status = 1

    def __init__(self, key: Any, recorded: list):
        super().__init__("host key not accepted")
        self.key = key
        self.recorded = recorded


class CommandTimedOut(FediRunError):
    """A command ran longer than its task's timeout: the task fails (exit status 1)."""

    exit_status = 1


class ChannelTimeout(FediRunError):
    """An internal signal: a command on a channel did not end within its timeout (its channel
    was closed). Raised by ``run_on_channel``; ``HostConnection.run`` turns it into
    :class:`CommandTimedOut` (exit status 1, were it ever to escape)."""

    exit_status = 1


class ConnectionLost(FediRunError):
    """An internal signal: the connection closed while a command ran on one of its channels
    (the host's sshd died, the network broke). Raised by ``run_on_channel``;
    ``HostConnection.run`` turns it, like paramiko's own errors of a broken connection, into a
    :class:`HostUnreachable` that is ``lost`` (exit status 1, were it ever to escape)."""

    exit_status = 1


# --- carrying out a task: operations, secrets, plugin functions ---------------------------


class ActionFailed(FediRunError):
    """An operation of a task failed: the one error a plugin's ``Call`` function raises, as
    ``ActionFailed("one line naming what failed")`` (the text already masked). The scheduler
    reports it as the task's failure, so the run exits 1; were one to escape to the command
    line, its exit status is 1 too, that of a failed run.

    ``changes`` (what the task changed before failing), ``output`` (its output's tail),
    ``output_cut`` (how that tail was cut, None: not cut), ``command`` (the whole command that
    failed) and ``stdout`` / ``stderr`` (the tails of the output's two streams, when told
    apart) are empty here; the engine's own :class:`OperationFailed` carries them.
    """

    exit_status = 1
    changes: Sequence[str] = ()
    output: str = ""
    output_cut: OutputCut | None = None
    command: str = ""
    stdout: str = ""
    stderr: str = ""


class OperationFailed(ActionFailed):
    """One of the engine's own operations of a task failed (its script, a local command):
    ``message`` says which and why; ``changes``, ``output`` and ``output_cut`` are filled in
    by ``perform`` as the failure passes through it (exit status 1)."""

    def __init__(
        self,
        message: str,
        changes: list[str],
        output: str,
        output_cut: OutputCut | None = None,
        command: str = "",
    ):
        super().__init__(message)
        self.changes = changes
        self.output = output
        self.output_cut = output_cut
        self.command = command


class SecretMissing(FediRunError):
    """A secret this deployment placed on a host in an earlier run is missing or empty
    there: that host's tasks are not run — a new value would silently replace the one every
    user of the service depends on — and the run exits 1 (exit status 1). ``host`` and
    ``paths`` say which."""

    exit_status = 1

    def __init__(self, message: str, host: str, paths: Sequence[str]):
        super().__init__(message)
        self.host, self.paths = host, tuple(paths)


class UnknownGenerator(FediRunError):
    """A task asks for a secret generator that does not exist: that task fails (exit status
    2, were it to escape)."""


# --- the lab ---------------------------------------------------------------------------------


class LabError(FediRunError):
    """The lab cannot start, stop or find its hosts (missing root, packages, or state; exit
    status 2)."""


# --- the web panel ---------------------------------------------------------------------------

PANEL_INSTALL = "pip install 'fedi-run[panel]'"
"""How to install the panel's optional dependencies."""


class PanelError(FediRunError):
    """Base of the panel's deliberate errors: it cannot be configured, served, or given an
    operator (exit status 2)."""


class DjangoMissing(PanelError):
    """``fedi-run panel`` was run where Django is not installed (exit status 2)."""

    def __init__(self, reason: str = ""):
        detail = f" ({reason})" if reason else ""
        super().__init__(
            "error: the web panel needs Django, which is not installed here"
            f"{detail}. The panel is an optional part of fedi-run, so the command line stays "
            f"light: install it with `{PANEL_INSTALL}` (or `pip install -e '.[panel]'` in a "
            "clone), then run `fedi-run panel createuser NAME` and `fedi-run panel serve`."
        )


class DataDirError(PanelError):
    """The panel's data directory cannot be created or used (exit status 2)."""


class DeploymentBusy(PanelError):
    """A run of this deployment is already in progress in this panel (exit status 3, as
    :class:`LockHeld`); ``run_pk`` names that run."""

    exit_status = 3

    def __init__(self, deployment: str, run_pk: int):
        self.run_pk = run_pk
        super().__init__(
            f"{deployment} is already being deployed (run {run_pk} is in progress); wait for "
            "it to end, then try again"
        )


class SecretUnreadable(PanelError):
    """A secret the panel sealed in its database cannot be unsealed by this process: it was
    given another secret key than the process that sealed it (exit status 2)."""

    def __init__(self, what: str):
        self.what = what
        super().__init__(
            f"error: {what} cannot be unsealed with this process's secret key: the panel's "
            "database was written by panel processes given another one. Every web and worker "
            "process of one panel must be given the same secret key: set "
            "FEDI_RUN_PANEL_SECRET_KEY (50 characters or more) to the same value for each, or "
            "give them the same data directory's secret-key file (docs/panel.md)"
        )
