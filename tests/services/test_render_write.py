"""Writing the rendered NixOps4 deployment: atomic, idempotent, private, and removing only the
files fedi-run wrote itself; the render task that carries it."""

from __future__ import annotations

import json
import os
import stat

import pytest
from render_helpers import example_copy, load, nix_instantiate

from fedi_run.engine.execute.perform import Context
from fedi_run.engine.nixops.render import MANIFEST, RENDER_ID, render_deployment, render_task, write
from fedi_run.engine.report.masking import Masker


def context(check: bool = False) -> Context:
    return Context(connection=None, masker=Masker(), check=check)


def test_write_is_atomic_idempotent_private_and_removes_only_its_own_stale_files(tmp_path):
    directory = tmp_path / ".fedi-run" / "demo"
    files = (
        ("flake.nix", "{ }\n"),
        ("data.nix", "{ a = 1; }\n"),
        ("hosts/web.nix", "{ ... }: { }\n"),
        ("hosts/web/app.nix", "{ ... }: { }\n"),
    )

    assert write(context(check=True), str(directory), files) == [p for p, _ in files]
    assert not directory.exists()
    assert write(context(), str(directory), files) == [p for p, _ in files]
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
    ]
    assert (directory / "hosts" / "web" / "app.nix").exists()
    assert write(context(), str(directory), smaller) == [
        "data.nix",
        "hosts/db.nix",
        "removed hosts/web.nix",
        "removed hosts/web/app.nix",
    ]
    assert not (directory / "hosts" / "web.nix").exists()
    assert (directory / "hosts" / "web" / "mine.nix").read_text() == "operator's"
    assert (directory / "flake.lock").exists()
    assert json.loads((directory / MANIFEST).read_text()) == sorted(p for p, _ in smaller)
    assert write(context(), str(directory), smaller) == []

    from fedi_run.engine.execute.perform import ActionFailed

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
    assert action.function == undo.function == "fedi_run.engine.nixops.render:write"
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
