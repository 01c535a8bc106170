"""Ownership without the lab: each deployment's own paths, the history that says where it placed
what, clean-up only there, destructive steps marked, reserved names refused, and each
deployment's kept originals (the compiled scripts, run by a real local shell).

The lab scenarios are in tests/security/test_ownership.py and
tests/panel/test_panel_ownership.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess

import pytest
from helpers import EXAMPLES, record_runs

from fedi_run.engine.api import absent_task, secrets_dir
from fedi_run.engine.errors import PlaybookError
from fedi_run.engine.execute import scripts
from fedi_run.engine.project import load_project
from fedi_run.engine.report.display import ProgressDisplay
from fedi_run.engine.report.events import RunFinished, RunStarted, Status, TaskFinished
from fedi_run.engine.report.jsonlines import JsonLinesSink


def fediversity(tmp_path, *disabled: str):
    text = (EXAMPLES / "fediversity.toml").read_text()
    for service in disabled:
        text = text.replace(f"[services.{service}]\nenable = true", f"[services.{service}]")
    path = tmp_path / "fediversity.toml"
    path.write_text(text)
    return path


# --- paths and history --------------------------------------------------------------------------


def test_every_secret_path_is_the_deployments_own(tmp_path):
    project = load_project(fediversity(tmp_path))
    assert secrets_dir(project.playbook, "mastodon") == (
        "/var/lib/fedi-run/fediversity/secrets/mastodon"
    )
    assert secrets_dir("another", "mastodon") == "/var/lib/fedi-run/another/secrets/mastodon"
    paths = {
        path
        for task in project.graph.tasks.values()
        for op in task.actions
        for path in [getattr(op, "path", None), *getattr(op, "secrets", ())]
        if path and path.startswith("/var/lib/fedi-run")
    }
    assert paths and all(
        p == "/var/lib/fedi-run" or p.startswith("/var/lib/fedi-run/fediversity") for p in paths
    )
    ca = {t.actions[0].kwargs for t in project.graph.tasks.values() if t.family == "acme.trust"}
    assert not ca  # no ca_file in the example; with one, the CA file is the deployment's own


def test_a_service_never_placed_is_never_cleaned_up(tmp_path):
    project = load_project(fediversity(tmp_path, "mastodon", "peertube", "pixelfed"))
    assert project.playbook.history == {}
    assert absent_task(project.playbook, "mastodon", "off") == []
    hosts = {task.host for task in project.graph.tasks.values()}
    assert hosts == {None}  # only the rendering: no host is touched


def test_the_history_is_this_deployments_and_leaves_out_check_runs(tmp_path):
    path = fediversity(tmp_path, "peertube")
    state = tmp_path / ".fedi-run" / "state.db"
    record_runs(state, "fediversity", [("peertube.secrets", "pixelfed")], check=True)
    record_runs(state, "other", [("peertube.secrets", "peertube")])
    assert "peertube.secrets" not in load_project(path).playbook.history
    record_runs(state, "fediversity", [("peertube.secrets", "pixelfed")], status="failed")
    playbook = load_project(path).playbook
    trace = playbook.history["peertube.secrets"]
    assert (trace.host, trace.kind, trace.done) == ("pixelfed", "run", False)
    assert playbook.previously_on("peertube") == "pixelfed"  # it started: it may have placed some
    record_runs(state, "fediversity", [("peertube.secrets", "pixelfed")], kind="teardown")
    assert load_project(path).playbook.previously_on("peertube") is None  # undone


def test_a_service_that_moved_keeps_its_secrets_where_they_were(tmp_path):
    """The legacy layout: a deployment that had the service on this host moves its old,
    shared directory into its own once, so its secrets are not generated anew."""
    path = fediversity(tmp_path)
    commands = [
        op
        for op in load_project(path).graph.tasks["mastodon.secrets"].actions
        if type(op).__name__ == "Command"
    ]
    assert commands == []  # never ran here: nothing to adopt
    record_runs(
        tmp_path / ".fedi-run" / "state.db", "fediversity", [("mastodon.secrets", "mastodon")]
    )
    [move] = [
        op
        for op in load_project(path).graph.tasks["mastodon.secrets"].actions
        if type(op).__name__ == "Command"
    ]
    assert move.run == (
        "mv -T /var/lib/fedi-run/secrets/mastodon /var/lib/fedi-run/fediversity/secrets/mastodon"
    )
    assert move.creates == "/var/lib/fedi-run/fediversity/secrets/mastodon"


# --- destructive steps -------------------------------------------------------------------------


def test_the_plan_marks_every_destructive_step(tmp_path):
    path = fediversity(tmp_path, "peertube")
    record_runs(
        tmp_path / ".fedi-run" / "state.db",
        "fediversity",
        [("peertube.secrets", "peertube"), ("garage.key.peertube", "garage")],
    )
    plan = load_project(path).plan()
    text = plan.render()
    marked = [
        line.split()[1]
        for line in text.splitlines()
        if line.startswith("! ") and not line.startswith("! destructive")
    ]
    assert sorted(marked) == ["garage.drop-key.peertube", "peertube.absent"]
    assert "! destructive: 2 task(s) remove data" in text
    assert (
        "  peertube.absent @peertube: removes /var/lib/fedi-run/fediversity/secrets/peertube"
        in text
    )
    tasks = {t["id"]: t for t in plan.to_json()["tasks"]}
    assert tasks["peertube.absent"]["destructive"] is True
    assert tasks["peertube.absent"]["removes"] == ["/var/lib/fedi-run/fediversity/secrets/peertube"]
    assert tasks["mastodon.secrets"]["destructive"] is False
    assert {t for t, v in tasks.items() if v["destructive"]} == set(marked)


def test_a_teardown_marks_what_its_undo_removes(tmp_path):
    graph = load_project(fediversity(tmp_path)).graph
    assert not graph.tasks["mastodon.secrets"].is_destructive()
    assert graph.tasks["mastodon.secrets"].is_destructive(teardown=True)
    assert "/var/lib/fedi-run/fediversity/secrets/mastodon/secret-key-base" in graph.tasks[
        "mastodon.secrets"
    ].removes(teardown=True)


def _run(sink, check: bool, status: Status = Status.CHANGED):
    sink.handle(
        RunStarted(
            1, "d", "run", ("a.absent", "a.dns"), ("web", "local"), check, 0.0, (), ("a.absent",)
        )
    )
    sink.handle(TaskFinished(1, "a.absent", "web", status, 0.1, changes=("removed directory x",)))
    sink.handle(TaskFinished(1, "a.dns", "local", Status.OK, 0.1))
    sink.handle(RunFinished(1, 0, 0.2, False, {}))
    sink.close()


@pytest.mark.parametrize("check", [True, False])
def test_check_and_the_recap_mark_a_destructive_step(check):
    stream = io.StringIO()
    _run(ProgressDisplay(stream, live=False, color=False), check)
    lines = stream.getvalue().splitlines()
    note = "would remove data" if check else "removed data"
    [line] = [line for line in lines if line.startswith(("would change", "changed"))]
    assert "a.absent" in line
    assert line.endswith(f"! destructive: {note}")
    assert f"! destructive: 1 task(s) {note}:" in lines
    assert "  a.absent @web" in lines
    assert not [line for line in lines if "a.dns" in line and "destructive" in line]


def test_nothing_is_marked_when_a_destructive_step_had_nothing_to_remove():
    stream = io.StringIO()
    _run(ProgressDisplay(stream, live=False, color=False), True, Status.OK)
    assert "destructive" not in stream.getvalue()


def test_json_lines_mark_a_destructive_step():
    stream = io.StringIO()
    _run(JsonLinesSink(stream), True)
    finished = {
        r["id"]: r
        for r in map(json.loads, stream.getvalue().splitlines())
        if "status" in r and "id" in r
    }
    assert finished["a.absent"]["destructive"] is True and "destructive" not in finished["a.dns"]


# --- reserved names ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["acme", "ACME", "logs", "Logs", "locks", "secrets", "originals"])
def test_a_deployment_named_after_fedi_runs_own_folders_is_refused(tmp_path, name):
    path = tmp_path / "p.toml"
    path.write_text(f'[deployment]\nname = "{name}"\ndomain = "example.org"\n')
    with pytest.raises(PlaybookError) as raised:
        load_project(path)
    [problem] = raised.value.problems
    assert problem.key == "deployment.name" and "is reserved" in problem.message
    assert "another name" in problem.message


@pytest.mark.parametrize("name", ["local", "acme-test", "my_logs", "fediversity"])
def test_other_deployment_names_are_fine(tmp_path, name):
    path = tmp_path / "p.toml"
    path.write_text(f'[deployment]\nname = "{name}"\ndomain = "example.org"\n')
    assert load_project(path).playbook.name == name


# --- each deployment's originals ------------------------------------------------------------------


def _sh(parts):
    script = scripts.compile_script([parts], False, "web")
    done = subprocess.run(["sh", "-c", script.text], input=script.payload, capture_output=True)
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.decode().splitlines() if line.startswith(script.marker)]


class Host:
    """A file two deployments manage, under a root of its own (as /var/lib/fedi-run)."""

    def __init__(self, tmp_path, existing: bytes | None):
        self.root = tmp_path / "fedi-run"
        self.file = tmp_path / "motd"
        if existing is not None:
            self.file.write_bytes(existing)

    def write(self, deployment: str, content: bytes) -> None:
        originals = f"{self.root}/{deployment}/originals"
        _sh([scripts.file_part("0.0", str(self.file), content, 0o644, None, "f", originals)])

    def restore(self, deployment: str, content: bytes) -> list[str]:
        return _sh(
            [
                scripts.restore_part(
                    "0.0",
                    str(self.file),
                    f"{self.root}/{deployment}/originals",
                    digest=hashlib.sha256(content).hexdigest(),
                    shared_root=str(self.root),
                )
            ]
        )

    def content(self) -> bytes | None:
        return self.file.read_bytes() if self.file.exists() else None

    def kept(self) -> list[str]:
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file())


@pytest.mark.parametrize("existing", [b"the operator's\n", None], ids=["existed", "new"])
@pytest.mark.parametrize("order", [("two", "one"), ("one", "two")], ids=["lifo", "fifo"])
def test_each_deployment_keeps_its_own_original(tmp_path, existing, order):
    host = Host(tmp_path, existing)
    contents = {"one": b"one\n", "two": b"two\n"}
    host.write("one", contents["one"])
    host.write("two", contents["two"])
    assert host.content() == b"two\n"
    assert len(host.kept()) == (2 if existing else 1)  # one's original, and two's (one's file)
    first, second = order
    report = host.restore(first, contents[first])
    if first == "one":  # two changed it since: the file stays two's, two gets one's original
        assert host.content() == b"two\n"
        assert "deployment two changed it since" in report[-1]
    else:
        assert host.content() == b"one\n"
    host.restore(second, contents[second])
    assert host.content() == existing
    assert host.kept() == [] and not host.root.exists()


def test_an_original_kept_before_each_deployment_had_its_own_is_put_back(tmp_path):
    host = Host(tmp_path, b"one's, written by an earlier version\n")
    legacy = tmp_path / "legacy"
    (legacy / str(host.file.parent).lstrip("/")).mkdir(parents=True)
    (legacy / str(host.file).lstrip("/")).write_bytes(b"the operator's\n")
    originals = f"{host.root}/one/originals"
    _sh(
        [
            scripts.file_part(
                "0.0", str(host.file), b"one's, now\n", 0o644, None, "f", originals, str(legacy)
            )
        ]
    )
    assert host.kept() == []  # the earlier version's original is still the one to put back
    _sh([scripts.restore_part("0.0", str(host.file), originals, str(legacy))])
    assert host.content() == b"the operator's\n"
    assert not any(p.is_file() for p in legacy.rglob("*"))
