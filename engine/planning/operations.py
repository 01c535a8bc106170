"""The operations a task is built from, as plain values.

An operation describes a desired state on a host ("this file with this content and mode", "this
secret exists") or a command to run; the executor compares it with the host's state and changes
only what differs, which is what makes ``changed``/``ok`` and ``--check`` honest. Each one has a
natural undo for teardown (see :func:`undo_of`). Operations hold no secret values: a
:class:`Secret` names a generator, and the value is made on the host side of the run.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    """Run ``run`` with ``sh -c`` on the host.

    Skipped (``ok``) when the path ``creates`` exists or the command ``unless`` succeeds;
    otherwise it runs and counts as ``changed``.
    """

    run: str
    creates: str | None = None
    unless: str | None = None


@dataclass(frozen=True)
class File:
    """The file ``path`` exists with ``content``, ``mode`` and ``owner`` — or, with
    ``present=False``, does not exist."""

    path: str
    content: str = ""
    mode: int = 0o644
    owner: str | None = None
    present: bool = True


@dataclass(frozen=True)
class Restore:
    """Undo a :class:`File` or :class:`Template`: put back the file that was there before
    fedi-run first changed it (saved under ``/var/lib/fedi-run/originals``), or remove the file
    when there was none."""

    path: str


@dataclass(frozen=True)
class Directory:
    """The directory ``path`` exists with ``mode`` and ``owner`` — or, with ``present=False``,
    does not: removed with what it holds, or, with ``recursive=False``, only when empty."""

    path: str
    mode: int = 0o755
    owner: str | None = None
    present: bool = True
    recursive: bool = True


@dataclass(frozen=True)
class Template:
    """The file ``path`` holds the jinja2 template ``template`` (a name in the plugin's
    ``templates/`` folder) rendered with ``context`` (StrictUndefined)."""

    path: str
    template: str
    package: str
    context: tuple[tuple[str, object], ...] = ()
    mode: int = 0o644


@dataclass(frozen=True)
class Secret:
    """A secret made by the generator ``generate`` (see ``engine.secrets``) exists at ``path``
    with mode 0400 — generated on the first run, kept on later ones unless rotation is asked."""

    path: str
    generate: str
    mode: int = 0o400


@dataclass(frozen=True)
class Fetch:
    """Copy the host's file ``remote`` back to ``local`` on the deployer."""

    remote: str
    local: str


@dataclass(frozen=True)
class LocalCommand:
    """Run ``argv`` on the deployer (not on a host) in ``cwd``, streaming its output."""

    argv: tuple[str, ...]
    cwd: str | None = None


@dataclass(frozen=True)
class Call:
    """Call the Python function ``function`` (``"package.module:name"``) on the deployer with
    ``kwargs``; it returns whether it changed anything.

    ``secrets`` declares the paths, on the task's host, of the secret files the function
    places there (with ``place_secret_files``): like a :class:`Secret`'s path, a path the
    run's masker must know the value of before any output of that host is shown — also in a
    run where the call itself does not run."""

    function: str
    kwargs: tuple[tuple[str, object], ...] = ()
    secrets: tuple[str, ...] = ()


Operation = Command | File | Restore | Directory | Template | Secret | Fetch | LocalCommand | Call


def undo_of(operation: Operation) -> Operation | None:
    """The operation that undoes ``operation`` in a teardown, or ``None`` when nothing to undo.

    A file or template is restored to what it was before fedi-run changed it (or removed, if
    fedi-run created it); secrets are removed, and directories when they are empty (others may
    share them); commands, fetches and calls have
    no natural undo (a task that needs one declares it).
    """
    if isinstance(operation, File) and operation.present or isinstance(operation, Template):
        return Restore(operation.path)
    if isinstance(operation, Secret):
        return File(operation.path, present=False)
    if isinstance(operation, Directory) and operation.present:
        return Directory(operation.path, present=False, recursive=False)
    return None
