"""Writing the rendered NixOps4 deployment: atomic, idempotent, private, and removing only the
files fedi-run wrote itself; the render task that carries it."""

from __future__ import annotations

import json
import os
import stat

import pytest
from render_helpers import example_copy, load, nix_instantiate

from fedi_run.engine.execute.context import Context
from fedi_run.engine.nixops.render import MANIFEST, RENDER_ID, render_deployment, render_task, write
from fedi_run.engine.report.masking import Masker


def context(check: bool = False) -> Context:
    return Context(connection=None, masker=Masker(), check=check)


def git_steps(changes: list[str]) -> list[str]:
    """The git steps among ``changes``, without the commit's hash."""
    return [" ".join(c.split()[:2]) for c in changes if c.startswith("git ")]


def files_of(changes: list[str]) -> list[str]:
    """The file changes among ``changes``."""
    return [c for c in changes if not c.startswith("git ")]


def tracked(directory) -> list[str]:
    """What the deployment directory's own repository holds at HEAD."""
    import subprocess

    done = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", "HEAD"],
        cwd=directory,
        env={**os.environ, "GIT_DIR": str(directory / ".git")},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split()


def test_write_is_atomic_idempotent_private_and_removes_only_its_own_stale_files(tmp_path):
    directory = tmp_path / ".fedi-run" / "demo"
    files = (
        ("flake.nix", "{ }\n"),
        ("data.nix", "{ a = 1; }\n"),
        ("hosts/web.nix", "{ ... }: { }\n"),
        ("hosts/web/app.nix", "{ ... }: { }\n"),
    )

    assert write(context(check=True), str(directory), files) == [
        *(p for p, _ in files),
        "git init",
        "git commit",
    ]
    assert not directory.exists()
    first = write(context(), str(directory), files)
    assert files_of(first) == [p for p, _ in files]
    assert git_steps(first) == ["git init", "git commit"]
    assert tracked(directory) == sorted([MANIFEST, *(p for p, _ in files)])
    assert write(context(check=True), str(directory), files) == []
    assert write(context(), str(directory), files) == []
    for relative, text in files:
        assert (directory / relative).read_text() == text
        assert stat.S_IMODE((directory / relative).stat().st_mode) == 0o600
    for folder in (directory.parent, directory, directory / "hosts", directory / "hosts" / "web"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert not [p for p in directory.rglob("*.tmp")]

    (directory / "flake.lock").write_text("{}")  # nixops4's, never touched
    (directory / "hosts" / "web" / "mine.nix").write_text("operator's")  # not fedi-run's
    os.chmod(directory / "data.nix", 0o644)
    smaller = (
        ("flake.nix", "{ }\n"),
        ("data.nix", "{ a = 2; }\n"),
        ("hosts/db.nix", "{ ... }: { }\n"),
    )
    assert write(context(check=True), str(directory), smaller) == [
        "data.nix",
        "hosts/db.nix",
        "removed hosts/web.nix",
        "removed hosts/web/app.nix",
        "git commit",
    ]
    assert (directory / "hosts" / "web" / "app.nix").exists()
    second = write(context(), str(directory), smaller)
    assert files_of(second) == [
        "data.nix",
        "hosts/db.nix",
        "removed hosts/web.nix",
        "removed hosts/web/app.nix",
    ]
    assert git_steps(second) == ["git commit"]
    # flake.lock is kept and committed with the files; the operator's own file is not added
    assert tracked(directory) == sorted([MANIFEST, "flake.lock", *(p for p, _ in smaller)])
    assert not (directory / "hosts" / "web.nix").exists()
    assert (directory / "hosts" / "web" / "mine.nix").read_text() == "operator's"
    assert (directory / "flake.lock").exists()
    assert json.loads((directory / MANIFEST).read_text()) == sorted(p for p, _ in smaller)
    assert write(context(), str(directory), smaller) == []

    from fedi_run.engine.errors import ActionFailed

    with pytest.raises(ActionFailed, match="not a file fedi-run renders"):
        write(context(), str(directory), (("../escape.nix", "x"),))


def test_the_render_task_carries_both_renderings(tmp_path):
    project = load(example_copy(tmp_path))
    directory = tmp_path / ".fedi-run" / "fediversity"
    task = render_task(project.playbook, project.plugins, directory, requires=("mastodon.secrets",))

    assert (task.id, task.host, task.tags, task.requires) == (
        RENDER_ID,
        None,
        ("apply", "render"),
        ("mastodon.secrets",),
    )
    (action,), (undo,) = task.actions, task.undo
    assert action.name == undo.name == "fedi_run.engine.nixops.render:write"
    assert dict(action.kwargs)["directory"] == dict(undo.kwargs)["directory"] == str(directory)
    assert dict(dict(action.kwargs)["files"]) == render_deployment(
        project.playbook, project.plugins
    )
    assert dict(dict(undo.kwargs)["files"]) == render_deployment(
        project.playbook, project.plugins, switched_off=True
    )

    from fedi_run.engine.execute.perform import perform

    outcome = perform(task.actions, context())
    assert "flake.nix" in outcome.changes
    assert perform(task.actions, context()).changes == ()
    off = perform(task.undo, context())
    assert "data.nix" in off.changes and "hosts/mastodon/acme.nix" not in off.changes
    assert "removed hosts/mastodon/acme.nix" in off.changes
    assert "enable = false" in (directory / "hosts" / "mastodon" / "mastodon.nix").read_text()


def test_a_missing_nix_instantiate_is_a_loud_failure(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(AssertionError, match="nix-instantiate is not installed"):
        nix_instantiate("--version")
