"""The deployment directory's commit when a run changed nothing: one git process (``git
status``), not three, with the same outcome as the full add / diff / commit in every case
that is not "nothing changed" (issue 15: no subprocesses on the fast path that do nothing)."""

from __future__ import annotations

import os
import subprocess

import pytest

from fedi_run.engine.errors import ActionFailed
from fedi_run.engine.nixops import repository

FILES = {"flake.nix": "{ }\n", "data.nix": "{ a = 1; }\n"}


@pytest.fixture
def git_calls(tmp_path, monkeypatch):
    """The git subcommands run from now on: a logging ``git`` first on PATH runs the real
    one."""
    real = subprocess.run(["sh", "-c", "command -v git"], capture_output=True, text=True)
    shim_dir = tmp_path / "bin"
    shim_dir.mkdir()
    log = tmp_path / "git.log"
    shim = shim_dir / "git"
    shim.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do case "$a" in -c) skip=1;; *) if [ -z "$skip" ]; then '
        f'echo "$a" >> {log}; break; fi; skip=;; esac; done\n'
        f'exec {real.stdout.strip()} "$@"\n'
    )
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim_dir}{os.pathsep}{os.environ['PATH']}")

    def calls() -> list[str]:
        found = log.read_text().split() if log.exists() else []
        log.unlink(missing_ok=True)
        return found

    return calls


def deployment(tmp_path):
    directory = tmp_path / "demo"
    directory.mkdir()
    for name, text in FILES.items():
        (directory / name).write_text(text)
    return directory


def commit(directory):
    return repository.commit(directory, list(FILES), [], "fedi-run: test")


def test_nothing_changed_costs_one_git_status(tmp_path, git_calls):
    directory = deployment(tmp_path)
    first = commit(directory)
    assert [step.split()[:2] for step in first] == [["git", "init"], ["git", "commit"]]
    git_calls()
    assert commit(directory) == []
    assert git_calls() == ["status"]


def test_a_changed_file_is_committed(tmp_path, git_calls):
    directory = deployment(tmp_path)
    commit(directory)
    (directory / "data.nix").write_text("{ a = 2; }\n")
    git_calls()
    done = commit(directory)
    assert len(done) == 1 and done[0].startswith("git commit ")
    assert "commit" in git_calls()
    assert commit(directory) == []


def test_an_operator_file_beside_is_neither_added_nor_a_change(tmp_path, git_calls):
    directory = deployment(tmp_path)
    commit(directory)
    (directory / "notes.txt").write_text("mine\n")
    assert commit(directory) == []
    listed = repository.git(directory, "ls-files").stdout.split()
    assert listed == sorted(FILES)


def test_something_staged_besides_is_committed_as_before(tmp_path, git_calls):
    directory = deployment(tmp_path)
    commit(directory)
    (directory / "extra.nix").write_text("{ }\n")
    repository.git(directory, "add", "extra.nix")
    done = commit(directory)
    assert len(done) == 1 and done[0].startswith("git commit ")


def test_a_wanted_file_that_git_ignores_still_fails_loudly(tmp_path, git_calls):
    directory = tmp_path / "demo"
    directory.mkdir()
    (directory / "flake.nix").write_text("{ }\n")
    repository.commit(directory, ["flake.nix"], [], "fedi-run: test")
    (directory / ".git" / "info").mkdir(exist_ok=True)
    (directory / ".git" / "info" / "exclude").write_text("data.nix\n")
    (directory / "data.nix").write_text("{ }\n")
    with pytest.raises(ActionFailed, match="git add"):
        repository.commit(directory, ["flake.nix", "data.nix"], [], "fedi-run: test")
