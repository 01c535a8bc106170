"""The operations a task is built from, as plain values.

An operation describes a desired state on a host ("this file with this content and mode", "this
secret exists") or a command to run; the executor compares it with the host's state and changes
only what differs, which is what makes ``changed``/``ok`` and ``--check`` honest. Each one has a
natural undo for teardown (see :func:`undo_of`). Operations hold no secret values: a
:class:`Secret` names a generator, and the value is made on the host side of the run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ChangedWhen:
    """Whether a command that succeeded changed something, decided from its result:
    ``judge(result)`` — ``result`` holding ``stdout`` and ``stderr`` (the tails of its output,
    masked) and ``exit_status`` — returns ``True`` or ``False``, or raises :class:`ValueError`
    with one line saying why it cannot tell. ``source``: what decides (a template), for
    reports."""

    source: str
    judge: Callable[[Mapping[str, object]], bool] = field(compare=False, repr=False)


@dataclass(frozen=True)
class Command:
    """Run ``run`` with ``sh`` on the host, with the environment variables ``env`` (name,
    value) — values handed over quoted in a file of their own, never in a command's text; the
    guard ``unless`` sees them too.

    Skipped (``ok``) when the path ``creates`` exists or the command ``unless`` succeeds;
    otherwise it runs and counts as ``changed`` — unless ``changed_when`` says otherwise:
    ``False`` (never changed), or a :class:`ChangedWhen` deciding from its result.
    """

    run: str
    creates: str | None = None
    unless: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    changed_when: bool | ChangedWhen | None = None


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
    this deployment first changed it (saved under ``/var/lib/fedi-run/<deployment>/originals``),
    or remove the file when there was none. ``digest``, the sha256 of the content the
    deployment wrote (hex; :func:`undo_of` fills it for a :class:`File`), lets it see that
    another deployment changed the file since: then the file stays, and that deployment's own
    teardown puts back the original."""

    path: str
    digest: str = field(default="", compare=False)


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
    breaks: str = ""
    """What generating it anew breaks (``--rotate-secrets`` warns with it): ``"every session:
    all users are logged out"``. Empty: whatever used the old value."""


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
    """Call the Python function ``function`` on the deployer as ``function(context, **kwargs)``;
    it returns whether it changed anything (see ``Context`` in the plugin API).

    ``function`` is the function itself, a module-level function of an importable module —
    never its name as a string — so a renamed or missing function fails when the plugin is
    imported, not in the middle of a run.

    ``secrets`` declares the paths, on the task's host, of the secret files the function
    places there (with ``place_secret_files``): like a :class:`Secret`'s path, a path the
    run's masker must know the value of before any output of that host is shown — also in a
    run where the call itself does not run.

    ``generates`` names those of ``secrets`` the function *makes* (a key pair it generates),
    rather than copies or derives from something kept elsewhere: like a :class:`Secret`, each
    is recorded once placed, a later run stops when it is lost, and ``--rotate-secrets`` /
    ``--restore-secret`` name it (the function then sees ``context.rotates(path)``, and a
    restored file already in place). ``breaks`` says what generating them anew breaks, as
    :attr:`Secret.breaks` does."""

    function: Callable[..., object]
    kwargs: tuple[tuple[str, object], ...] = ()
    secrets: tuple[str, ...] = ()
    generates: tuple[str, ...] = ()
    breaks: str = ""

    def __post_init__(self) -> None:
        if not callable(self.function):
            raise TypeError(
                f"Call({self.function!r}): expected the function itself, not "
                f"{type(self.function).__name__}; import it and pass it"
            )
        if "<" in getattr(self.function, "__qualname__", "<"):
            raise TypeError(
                f"Call({self.function!r}): expected a module-level function (a nested function "
                "or a lambda cannot be named in the run's record)"
            )
        stray = [path for path in self.generates if path not in self.secrets]
        if stray:
            raise TypeError(
                f"Call({self.name}): generates {stray} without declaring them in secrets"
            )

    @property
    def name(self) -> str:
        """``package.module:function``: how the call is named in reports."""
        return f"{self.function.__module__}:{self.function.__qualname__}"


Operation = Command | File | Restore | Directory | Template | Secret | Fetch | LocalCommand | Call


def undo_of(operation: Operation) -> Operation | None:
    """The operation that undoes ``operation`` in a teardown, or ``None`` when nothing to undo.

    A file or template is restored to what it was before fedi-run changed it (or removed, if
    fedi-run created it); secrets are removed, and directories when they are empty (others may
    share them); commands, fetches and calls have
    no natural undo (a task that needs one declares it).
    """
    if isinstance(operation, File) and operation.present:
        return Restore(operation.path, hashlib.sha256(operation.content.encode()).hexdigest())
    if isinstance(operation, Template):
        return Restore(operation.path)
    if isinstance(operation, Secret):
        return File(operation.path, present=False)
    if isinstance(operation, Directory) and operation.present:
        return Directory(operation.path, present=False, recursive=False)
    return None


def removed_by(operation: Operation) -> str | None:
    """The path ``operation`` removes, with what it holds — a :class:`File` or a
    :class:`Directory` with ``present=False`` (an empty directory's removal destroys nothing
    and is not one) — or ``None``. What makes a task destructive (``Task.is_destructive``)."""
    if isinstance(operation, File) and not operation.present:
        return operation.path
    if isinstance(operation, Directory) and not operation.present and operation.recursive:
        return operation.path
    return None
