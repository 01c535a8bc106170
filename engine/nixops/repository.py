"""The deployment directory as its own git repository, so that Nix can read it.

A flake in a git working tree is read through git: Nix sees only the files git tracks, and it
takes the nearest ``.git`` above the flake as the tree. ``.fedi-run/`` is git-ignored in the
operator's checkout, so there the rendered files would be invisible; in no checkout at all
they would be read as a plain path. Making ``.fedi-run/<name>/`` a repository of its own, whose
rendered files fedi-run commits after writing them, gives Nix the same tree in both layouts:
Nix's search for a ``.git`` stops at the deployment's own.

:func:`commit` is called by :func:`~fedi_run.engine.nixops.render.write`: ``git init`` when the
directory is not a repository yet, ``git add -A`` of the files fedi-run wrote (and
``flake.lock``, which nixops4 writes beside them, so the locked revisions are kept with the
deployment), ``git rm --cached`` of the files it removed, and a commit by a fixed author
(:data:`AUTHOR`) only when the staged tree differs from ``HEAD`` — when a run changed nothing,
one ``git status`` says so and no other git runs. Nothing is ever pushed, and no
file the operator placed in the directory is ever added. git runs with the directory as its
work tree and ``.git`` as its repository, whatever the environment says, with no hooks, and
under umask 077: the repository is as private as the deployment directory (0700, files 0600 or
stricter).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

from fedi_run.engine.errors import ActionFailed

AUTHOR = ("fedi-run", "fedi-run@localhost")
"""The name and e-mail of every commit fedi-run makes in a deployment directory."""
LOCK_FILE = "flake.lock"
TIMEOUT = 60.0


def _environment(directory: Path) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    environment.update(
        {
            "GIT_DIR": str(directory / ".git"),
            "GIT_WORK_TREE": str(directory),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "LC_ALL": "C",
        }
    )
    return environment


def git(directory: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``git args`` on the repository of ``directory``; :class:`ActionFailed` naming the
    command and git's message when it fails (with ``check``) or cannot run."""
    argv = [
        "git",
        "-c",
        f"user.name={AUTHOR[0]}",
        "-c",
        f"user.email={AUTHOR[1]}",
        "-c",
        "commit.gpgSign=false",
        "-c",
        "core.hooksPath=/dev/null",
        "-c",
        "init.defaultBranch=main",
        *args,
    ]
    try:
        done = subprocess.run(
            argv,
            cwd=directory,
            env=_environment(directory),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
            umask=0o077,  # the repository is as private as the files: directories 0700
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        reason = getattr(error, "strerror", None) or error
        raise ActionFailed(f"cannot run `git {args[0]}` in {directory}: {reason}") from None
    if check and done.returncode != 0:
        message = (done.stderr or done.stdout).strip().splitlines()
        raise ActionFailed(
            f"`git {' '.join(args[:2])}` failed in {directory}: "
            + (message[-1] if message else f"exit status {done.returncode}")
        )
    return done


def is_repository(directory: Path) -> bool:
    """Whether ``directory`` is a repository of its own (it holds ``.git``)."""
    return (directory / ".git").exists()


def pending(directory: Path, paths: Iterable[str], removed: Iterable[str]) -> bool:
    """Whether committing ``paths`` (and untracking ``removed``) would change ``HEAD``; read
    only (for ``--check``)."""
    if not is_repository(directory):
        return True
    if git(directory, "rev-parse", "--verify", "-q", "HEAD", check=False).returncode != 0:
        return True
    wanted = sorted(set(paths) | _lock(directory))
    status = git(
        directory,
        "--no-optional-locks",
        "status",
        "--porcelain",
        "--untracked-files=all",
        "--",
        *wanted,
    )
    if status.stdout.strip():
        return True
    gone = sorted(removed)
    if not gone:
        return False
    tracked = git(directory, "ls-files", "--", *gone)
    return bool(tracked.stdout.strip())


def _lock(directory: Path) -> set[str]:
    return {LOCK_FILE} if (directory / LOCK_FILE).is_file() else set()


def commit(
    directory: Path, paths: Iterable[str], removed: Iterable[str], message: str
) -> list[str]:
    """Commit ``paths`` (relative to ``directory``, each present) and ``flake.lock`` when
    present, untrack ``removed``; what was done: ``["git init", "git commit <hash>"]``, or
    fewer, or nothing when ``HEAD`` already holds exactly these files."""
    done: list[str] = []
    gone = sorted(removed)
    wanted = sorted(p for p in set(paths) | _lock(directory) if (directory / p).exists())
    if not gone and wanted and _committed(directory, wanted):
        return done  # one git process, not three, when a run changed nothing
    if not is_repository(directory):
        git(directory, "init", "-q", "--template=")  # no sample hooks, no description
        done.append("git init")
    if gone:
        git(directory, "rm", "-q", "--cached", "--ignore-unmatch", "--", *gone)
    if wanted:
        git(directory, "add", "-A", "--", *wanted)
    has_head = git(directory, "rev-parse", "--verify", "-q", "HEAD", check=False).returncode == 0
    if has_head and git(directory, "diff", "--cached", "--quiet", check=False).returncode == 0:
        return done
    git(directory, "commit", "-q", "--no-verify", "--allow-empty", "-m", message)
    head = git(directory, "rev-parse", "--short", "HEAD").stdout.strip()
    done.append(f"git commit {head}")
    return done


def _committed(directory: Path, wanted: list[str]) -> bool:
    """Whether ``HEAD`` holds exactly the work tree's ``wanted`` files and the index has
    nothing else staged: ``git status`` lists no entry but files git does not track that are
    not ``wanted`` (the operator's). An ignored, staged, modified or untracked wanted file, or
    no ``HEAD`` yet (every file then untracked), means no."""
    if not is_repository(directory):
        return False
    status = git(
        directory, "status", "--porcelain", "-z", "--untracked-files=all", "--ignored", check=False
    )
    if status.returncode != 0:
        return False
    keep = set(wanted)
    for entry in status.stdout.split("\0"):
        if entry and (not entry.startswith("?? ") or entry[3:] in keep):
            return False
    return True
