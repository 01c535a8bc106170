"""Partial runs stay inside their filters (issue 15): ``--limit``, ``--tags``, ``--skip-tags``
and ``--from`` are boundaries — what the selected tasks need outside them is not run but must
be done in this deployment's real SQLite state — ``--only`` pulls in what its tasks need, never
across a boundary, ``--from`` takes what ``--only`` takes, a teardown needs its dependents
undone, and ``--resume`` after a clean run exits 0. The playbook is examples/basic.toml (hello
and cowsay) with its hosts on 127.0.0.1 port 1, where nothing listens: no test here contacts a
host, and one that tried would fail."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner
from helpers import EXAMPLES

from fedi_run.engine.cli.main import cli
from fedi_run.engine.errors import DependenciesNotDone, NothingToResume, SelectionError
from fedi_run.engine.execute.scheduler import ExecutionOptions
from fedi_run.engine.planning.selection import Selector
from fedi_run.engine.project import load_project
from fedi_run.engine.report.events import RunFinished, Status, TaskFinished, TaskStarted
from fedi_run.engine.report.readiness import state_of
from fedi_run.engine.report.state import StateStore
from fedi_run.engine.report.state_reads import read_last_outcomes
from fedi_run.engine.report.state_records import LastOutcome
from fedi_run.engine.run import RunRequest, _selection

HOST_TASKS = ("tasks.cowsay", "tasks.hello", "tasks.motd@cowsay", "tasks.motd@hello")
OK, CHANGED, FAILED, SKIPPED = Status.OK, Status.CHANGED, Status.FAILED, Status.SKIPPED


@pytest.fixture
def basic(tmp_path):
    """examples/basic.toml beside its own state, its hosts where nothing listens."""
    text = (EXAMPLES / "basic.toml").read_text()
    text = re.sub(r'address = "192\.0\.2\.\d+"', 'address = "127.0.0.1"\nport = 1', text)
    path = tmp_path / "basic.toml"
    path.write_text(text)
    return path


@pytest.fixture
def project(basic):
    return load_project(basic)


@pytest.fixture
def store(tmp_path):
    with StateStore.open(tmp_path / ".fedi-run" / "state.db") as opened:
        yield opened


def record(store, outcomes: dict[str, Status | None], kind="run", check=False) -> int:
    """A run of ``basic`` in which each task of ``outcomes`` ended so (None: it started and
    did not finish; skipped: it never started); returns its id."""
    tasks = tuple(outcomes)
    hosts = tuple(
        "local" if t.startswith("nixops4.") else t.split("@")[-1].removeprefix("tasks.")
        for t in tasks
    )
    run_id = store.begin_run("basic", kind, tasks, hosts, check, ["fedi-run"], "test")
    for task, host in zip(tasks, hosts):
        status = outcomes[task]
        if status is not SKIPPED:
            store.handle(TaskStarted(run_id, task, host, 1.0))
        if status is not None:
            store.handle(TaskFinished(run_id, task, host, status, 0.1))
    store.handle(RunFinished(run_id, 0, 1.0, False))
    return run_id


def all_done() -> dict[str, Status]:
    return dict.fromkeys((*HOST_TASKS, "nixops4.render", "nixops4.apply"), CHANGED)


def selection_of(project, store, kind="run", resume=False, **selector):
    request = RunRequest(
        options=ExecutionOptions(kind=kind), selector=Selector(**selector), resume=resume
    )
    return _selection(project, request, store)


# --- what each filter selects, and what it leaves outside -------------------------------------


def test_limit_is_a_hard_boundary_and_leaves_the_other_hosts_dependency_outside(project):
    selection = project.select(Selector(limit=("hello",)))
    assert selection.order == ("tasks.hello", "tasks.motd@hello")  # no cowsay, no local render
    assert dict(selection.outside) == {"tasks.cowsay": ("tasks.motd@hello",)}


def test_only_pulls_in_dependencies_but_never_across_limit(project):
    selection = project.select(Selector(only=("tasks.motd@hello",), limit=("hello",)))
    assert selection.order == ("tasks.hello", "tasks.motd@hello")
    assert selection.reasons["tasks.hello"] == "required by tasks.motd@hello"
    assert dict(selection.outside) == {"tasks.cowsay": ("tasks.motd@hello",)}
    alone = project.select(Selector(only=("tasks.motd@hello",)))  # no boundary: all it needs
    assert alone.order == ("tasks.cowsay", "tasks.hello", "tasks.motd@hello")
    assert dict(alone.outside) == {}


def test_tags_run_only_the_tagged_tasks(project):
    selection = project.select(Selector(tags=("motd",)))
    assert selection.order == ("tasks.motd@cowsay", "tasks.motd@hello")
    assert set(selection.outside) == {"tasks.cowsay", "tasks.hello"}
    skipped = project.select(Selector(skip_tags=("programs",), limit=("cowsay",)))
    assert skipped.order == ("tasks.motd@cowsay",)
    assert set(skipped.outside) == {"tasks.cowsay", "tasks.hello"}


def test_the_render_on_local_is_inside_limit_local_only(project):
    assert "nixops4.render" not in project.select(Selector(limit=("hello",)))
    local = project.select(Selector(limit=("local",)))
    assert local.order == ("nixops4.render", "nixops4.apply")
    assert set(local.outside) == {"tasks.motd@cowsay", "tasks.motd@hello"}


def test_from_takes_what_only_takes_and_does_not_run_what_comes_before(project):
    family = project.select(Selector(start="tasks.motd"))  # a family: its first member
    assert family.order == (
        "tasks.motd@cowsay",
        "tasks.motd@hello",
        "nixops4.render",
        "nixops4.apply",
    )
    assert set(family.outside) == {"tasks.cowsay", "tasks.hello"}  # not the whole graph
    glob = project.select(Selector(start="tasks.motd@*"))
    assert glob.order == family.order
    one = project.select(Selector(start="tasks.motd@hello"))
    assert one.order == ("tasks.motd@hello", "nixops4.render", "nixops4.apply")
    assert one.outside["tasks.motd@cowsay"] == ("nixops4.render",)
    with pytest.raises(SelectionError, match="--from 'tasks.mot' is not a task, a task family"):
        project.select(Selector(start="tasks.mot"))


def test_no_deps_takes_exactly_the_selection_and_checks_nothing(project):
    selection = project.select(Selector(limit=("hello",), with_dependencies=False))
    assert selection.order == ("tasks.hello", "tasks.motd@hello")
    assert dict(selection.outside) == {}


def test_a_teardown_needs_the_dependents_undone_first(project):
    pulled = project.select(Selector(only=("tasks.hello",)), "teardown")
    assert pulled.order == (
        "tasks.hello",
        "tasks.motd@cowsay",
        "tasks.motd@hello",
        "nixops4.render",
        "nixops4.apply",
    )
    assert pulled.reasons["tasks.motd@hello"] == "depends on tasks.hello"
    limited = project.select(Selector(limit=("hello",)), "teardown")
    assert limited.order == ("tasks.hello", "tasks.motd@hello")
    assert dict(limited.outside) == {
        "tasks.motd@cowsay": ("tasks.hello",),
        "nixops4.render": ("tasks.motd@hello",),
    }
    # --from counts in the teardown's order: apply, render, motd@hello, motd@cowsay, ...
    start = project.select(Selector(start="tasks.motd"), "teardown")
    assert set(start.order) == set(HOST_TASKS)
    assert dict(start.outside) == {"nixops4.render": ("tasks.motd@cowsay", "tasks.motd@hello")}


# --- what the state says is done ---------------------------------------------------------------


def test_last_outcomes_are_what_the_latest_run_or_teardown_that_touched_a_task_did(store):
    first = record(store, {"tasks.cowsay": CHANGED, "tasks.hello": FAILED, "tasks.motd@hello": OK})
    record(store, {"tasks.cowsay": FAILED}, check=True)  # a --check changes nothing
    second = record(store, {"tasks.cowsay": SKIPPED, "tasks.hello": None})  # skipped: untouched
    down = record(store, {"tasks.motd@hello": CHANGED}, kind="teardown")
    found = store.last_outcomes("basic", HOST_TASKS)
    assert found == {
        "tasks.cowsay": LastOutcome("tasks.cowsay", first, "run", CHANGED, "cowsay"),
        "tasks.hello": LastOutcome("tasks.hello", second, "run", None, "hello"),
        "tasks.motd@hello": LastOutcome("tasks.motd@hello", down, "teardown", CHANGED, "hello"),
    }
    assert read_last_outcomes(store.path, "basic", HOST_TASKS) == found  # read only, for plan
    assert store.last_outcomes("other", HOST_TASKS) == {}


@pytest.mark.parametrize(
    ("outcome", "kind", "expected"),
    [
        (None, "run", ("never run", False)),
        (LastOutcome("t.a", 3, "run", CHANGED), "run", ("done in run 3", True)),
        (LastOutcome("t.a", 3, "run", OK), "run", ("done in run 3", True)),
        (LastOutcome("t.a", 4, "run", FAILED), "run", ("failed in run 4", False)),
        (LastOutcome("t.a", 4, "run", None), "run", ("did not finish in run 4", False)),
        (
            LastOutcome("t.a", 5, "teardown", OK),
            "run",
            ("undone in run 5 (a teardown)", False),
        ),
        (None, "teardown", ("never run", True)),
        (
            LastOutcome("t.a", 5, "teardown", CHANGED),
            "teardown",
            ("undone in run 5 (a teardown)", True),
        ),
        (
            LastOutcome("t.a", 3, "run", CHANGED),
            "teardown",
            ("done in run 3, not undone since", False),
        ),
        (
            LastOutcome("t.a", 6, "teardown", FAILED),
            "teardown",
            ("failed in run 6 (a teardown)", False),
        ),
    ],
)
def test_the_state_of_a_needed_task(outcome, kind, expected):
    assert state_of(outcome, kind) == expected


# --- the run refuses, before any host, or goes on --------------------------------------------


def test_limit_refuses_naming_each_dependency_not_done(project, store):
    with pytest.raises(DependenciesNotDone) as caught:
        selection_of(project, store, limit=("hello",))
    error = caught.value
    assert error.exit_status == 2 and error.tasks == ("tasks.cowsay",)
    text = str(error)
    assert "\n" not in text and text.startswith("error: --limit hello leaves out 1 task(s)")
    assert "tasks.cowsay on cowsay (never run; needed by tasks.motd@hello)" in text
    assert "(--limit hello,cowsay)" in text and "--only tasks.cowsay" in text
    assert "no host was contacted" in text

    failed = record(store, {"tasks.cowsay": FAILED})
    with pytest.raises(DependenciesNotDone, match=f"failed in run {failed};"):
        selection_of(project, store, limit=("hello",))
    done = record(store, {"tasks.cowsay": CHANGED})
    selection, _ = selection_of(project, store, limit=("hello",))
    assert selection.order == ("tasks.hello", "tasks.motd@hello")
    down = record(store, {"tasks.cowsay": CHANGED}, kind="teardown")
    with pytest.raises(DependenciesNotDone, match=f"undone in run {down} \\(a teardown\\)"):
        selection_of(project, store, limit=("hello",))
    assert done < down


def test_tags_and_from_refuse_until_what_they_leave_out_is_done(project, store):
    with pytest.raises(DependenciesNotDone) as caught:
        selection_of(project, store, tags=("motd",))
    assert caught.value.tasks == ("tasks.cowsay", "tasks.hello")
    assert "needed by tasks.motd@cowsay and 1 more" in str(caught.value)
    record(store, {"tasks.cowsay": OK, "tasks.hello": CHANGED})
    assert selection_of(project, store, tags=("motd",))[0].order == (
        "tasks.motd@cowsay",
        "tasks.motd@hello",
    )
    with pytest.raises(DependenciesNotDone) as caught:
        selection_of(project, store, start="tasks.motd@hello")
    assert caught.value.tasks == ("tasks.motd@cowsay",)
    assert selection_of(project, store, start="tasks.motd@hello", with_dependencies=False)


def test_a_check_run_does_not_count_as_done(project, store):
    record(store, {"tasks.cowsay": CHANGED}, check=True)
    with pytest.raises(DependenciesNotDone, match="never run"):
        selection_of(project, store, limit=("hello",))


def test_a_limited_teardown_needs_the_dependents_elsewhere_undone(project, store):
    run_id = record(store, all_done())
    with pytest.raises(DependenciesNotDone) as caught:
        selection_of(project, store, kind="teardown", limit=("hello",))
    text = str(caught.value)
    assert caught.value.tasks == ("tasks.motd@cowsay", "nixops4.render")
    assert text.startswith("error: teardown --limit hello leaves out 2 task(s) that depend on")
    assert (
        f"tasks.motd@cowsay on cowsay (done in run {run_id}, not undone since; depends on" in text
    )
    assert "Nothing was undone" in text
    record(store, dict.fromkeys(("nixops4.apply", "nixops4.render"), CHANGED), kind="teardown")
    record(store, {"tasks.motd@cowsay": OK}, kind="teardown")
    selection, _ = selection_of(project, store, kind="teardown", limit=("hello",))
    assert selection.order == ("tasks.hello", "tasks.motd@hello")


def test_a_teardown_of_what_never_ran_needs_nothing(project, store):
    selection, _ = selection_of(project, store, kind="teardown", limit=("hello",))
    assert selection.order == ("tasks.hello", "tasks.motd@hello")


# --- --resume -------------------------------------------------------------------------------


def test_resume_after_a_clean_run_has_nothing_to_do_and_exits_0(project, store):
    record(store, all_done())
    with pytest.raises(NothingToResume, match="nothing to resume") as caught:
        selection_of(project, store, resume=True)
    assert caught.value.exit_status == 0
    with pytest.raises(NothingToResume):
        selection_of(project, store, resume=True, limit=("hello",))


def test_resume_narrowed_by_limit_checks_what_it_leaves_out(project, store):
    failed = record(
        store,
        {
            "tasks.cowsay": FAILED,
            "tasks.hello": CHANGED,
            "tasks.motd@cowsay": SKIPPED,
            "tasks.motd@hello": SKIPPED,
            "nixops4.render": SKIPPED,
        },
    )
    with pytest.raises(DependenciesNotDone) as caught:
        selection_of(project, store, resume=True, limit=("hello",))
    text = str(caught.value)
    assert text.startswith("error: --resume --limit hello leaves out")
    assert f"tasks.cowsay on cowsay (failed in run {failed}; needed by tasks.motd@hello)" in text
    selection, left_over = selection_of(project, store, resume=True, limit=("cowsay",))
    assert selection.order == ("tasks.cowsay", "tasks.motd@cowsay")
    assert dict(selection.outside) == {"tasks.hello": ("tasks.motd@cowsay",)}  # done in run 1
    assert left_over == ("tasks.motd@hello", "nixops4.render")


# --- the command line: plan shows the state, run refuses, resume exits 0 ----------------------


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_plan_shows_what_it_leaves_out_with_its_state_or_refuses(basic, store):
    refused = invoke("plan", basic, "--limit", "hello")
    assert refused.exit_code == 2
    assert "tasks.cowsay on cowsay (never run; needed by tasks.motd@hello)" in refused.stderr
    run_id = record(store, {"tasks.cowsay": CHANGED})
    shown = invoke("plan", basic, "--limit", "hello")
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert "not run, must be done already: 1 task(s) the selection needs and leaves out" in lines
    assert lines[-1].split() == [
        "tasks.cowsay",
        "cowsay",
        "done",
        "in",
        "run",
        f"{run_id};",
        "needed",
        "by",
        "tasks.motd@hello",
    ]
    data = json.loads(invoke("plan", basic, "--json", "--limit", "hello").stdout)
    assert [t["id"] for t in data["tasks"]] == ["tasks.hello", "tasks.motd@hello"]
    assert data["outside"] == [
        {
            "id": "tasks.cowsay",
            "host": "cowsay",
            "needed_by": ["tasks.motd@hello"],
            "state": f"done in run {run_id}",
            "done": True,
        }
    ]


def test_run_refuses_before_any_host_and_records_no_run(basic, store):
    result = invoke("run", basic, "--limit", "hello", "--json", "--connect-timeout", "1")
    assert result.exit_code == 2
    assert "tasks.cowsay on cowsay (never run" in result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert store.last_run("basic") is None


def test_resume_after_a_clean_run_exits_0_on_the_command_line(basic, store):
    record(store, all_done())
    result = invoke("run", basic, "--resume", "--json")
    assert result.exit_code == 0
    assert result.stderr.startswith("nothing to resume: the last run of 'basic' left nothing")
    assert result.stdout == ""


def test_a_dependency_whose_when_is_false_counts_as_done_outside_the_selection(basic, store):
    """A task skipped by ``when = false`` is done by its own definition (its dependents run as
    if it were): left outside ``--limit``, it is never asked of the state, and ``plan`` says
    why."""
    text = basic.read_text().replace("[tasks.cowsay]\n", "[tasks.cowsay]\nwhen = false\n", 1)
    basic.write_text(text)
    project = load_project(basic)
    selection, _ = selection_of(project, store, limit=("hello",))  # an empty state: no refusal
    assert selection.order == ("tasks.hello", "tasks.motd@hello")
    assert "tasks.cowsay" in selection.outside
    shown = project.plan(Selector(limit=("hello",)), store.path).render()
    assert "skipped (when: false)" in shown
