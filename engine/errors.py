"""The one error hierarchy of fedi-run.

Every error the engine raises on purpose derives from :class:`FediRunError`. The CLI prints its
``str()`` (one paragraph, or one line per problem) and exits with its ``exit_status`` — never a
traceback. Anything else that escapes is a bug.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class FediRunError(Exception):
    """Base of all deliberate fedi-run errors.

    ``exit_status`` is what the CLI exits with: 2 for bad input, which is the default.
    """

    exit_status: int = 2


class UsageError(FediRunError):
    """Bad input on the command line or in the environment (exit status 2)."""


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

    Carries every :class:`Problem` found, not just the first, so one run shows them all.
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
    """A plugin could not be loaded, clashes with another, or broke its hook contract."""


class GraphError(FediRunError):
    """The task graph is invalid: unknown dependency, duplicate id, unknown host or a cycle.

    Like :class:`PlaybookError`, it carries every problem found (as strings naming the task),
    and names the playbook the tasks came from when it is known.
    """

    def __init__(self, problems: list[str] | tuple[str, ...], source: Path | None = None):
        self.problems = tuple(problems)
        self.source = source
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
    unknown task."""


class LabError(FediRunError):
    """The lab cannot start, stop or find its hosts (missing root, packages, or state)."""
