"""The executor without root or the lab: the real Scheduler, Masker, events, TaskGraph and
StateStore, on a fake connection pool (tests/fakes) that runs each compiled script with a local
``sh`` — on paths under tmp_path — and adds faults on top: lost connections, unreachable hosts,
timeouts, a stop in the middle of a task.

What is measured is what the fake recorded (which task's operations each call carried, when it
started and ended, on which connection), beside the events the scheduler emitted and what the
scripts left on disk."""

from __future__ import annotations

import threading

import pytest
from fakes.harness import (
    assert_no_overlap,
    assert_ran_after,
    command,
    directory,
    file,
    graph_of,
    out_path,
    run_tasks,
    token,
)
from fakes.pool import FakePool, answer, delay, lose, max_concurrency, notify, time_out

from fedi_run.engine.execute import scheduler as scheduler_module
from fedi_run.engine.execute.scheduler import BATCH_LIMIT
from fedi_run.engine.execute.stopping import ABORTED
from fedi_run.engine.planning.operations import Command, Secret
from fedi_run.engine.planning.tasks import Task
from fedi_run.engine.report.events import OutputChunk, Status, TaskFinished, TaskStarted
from fedi_run.engine.report.masking import MASK, Masker
from fedi_run.engine.report.state import StateStore

CHANGED, FAILED, SKIPPED, UNREACHABLE = (
    Status.CHANGED,
    Status.FAILED,
    Status.SKIPPED,
    Status.UNREACHABLE,
)


@pytest.fixture
def pool():
    return FakePool()


def lines(root, task_id: str) -> list[str]:
    """What the task's ``.out`` file holds (a command task: one ``ran`` per real run)."""
    path = out_path(root, task_id)
    return path.read_text().splitlines() if path.exists() else []


# order and parallelism ---------------------------------------------------------------------


def test_a_task_starts_only_after_its_dependencies_ended(tmp_path, pool):
    """A diamond over three hosts: a → (b, c) → d. Each call of a task starts after every call
    of its dependencies ended (the fake's clock); the two branches run side by side."""
    tasks = [
        command("tasks.a", "h1", tmp_path, "sleep 0.05"),
        command("tasks.b", "h2", tmp_path, "sleep 0.2", requires=("tasks.a",)),
        command("tasks.c", "h3", tmp_path, "sleep 0.2", requires=("tasks.a",)),
        command("tasks.d", "h1", tmp_path, requires=("tasks.b", "tasks.c")),
    ]
    out = run_tasks(tasks, pool)
    assert out.statuses == dict.fromkeys(out.order, CHANGED)
    edges = [(dep, t) for t in out.graph.tasks for dep in out.graph.dependencies(t)]
    assert len(edges) == 4
    for before, after in edges:
        assert_ran_after(out, before, after)
    assert max_concurrency(out.calls_for("tasks.b") + out.calls_for("tasks.c")) == 2
    assert out.started().index("tasks.d") == 3
    assert all(lines(tmp_path, t) == ["ran"] for t in out.order)  # each ran once
    with pytest.raises(AssertionError, match="started .* before tasks.d ended"):
        assert_ran_after(out, "tasks.d", "tasks.a")  # the check is real


def test_independent_hosts_run_in_parallel(tmp_path, pool):
    """Four hosts each sleep 0.3 s: the four calls run at once, on four threads."""
    tasks = [command(f"tasks.s{i}", f"h{i}", tmp_path, "sleep 0.3") for i in range(1, 5)]
    out = run_tasks(tasks, pool)
    assert set(out.statuses.values()) == {CHANGED}
    assert len(out.calls) == 4
    assert max_concurrency(out.calls) == 4
    assert len({call.thread for call in out.calls}) == 4
    assert out.seconds < 1.0  # not the sum (1.2 s)


def test_one_job_per_host_unless_the_tasks_share_it(tmp_path, pool):
    """Two separate jobs on h1 (each task has its own timeout, so each runs alone) never run at
    once; two tasks with ``shares_host`` on h2 do."""
    tasks = [
        command("tasks.x", "h1", tmp_path, "sleep 0.2", timeout=30),
        command("tasks.y", "h1", tmp_path, "sleep 0.2", timeout=30),
        command("tasks.p", "h2", tmp_path, "sleep 0.3", shares_host=True),
        command("tasks.q", "h2", tmp_path, "sleep 0.3", shares_host=True),
    ]
    out = run_tasks(tasks, pool)
    assert set(out.statuses.values()) == {CHANGED}
    on_h1, on_h2 = pool.calls_on("h1"), pool.calls_on("h2")
    assert [out.tasks_in(c) for c in on_h1] == [["tasks.x"], ["tasks.y"]]
    assert_no_overlap(on_h1)
    assert len(on_h2) == 2 and max_concurrency(on_h2) == 2
    with pytest.raises(AssertionError, match="overlap"):
        assert_no_overlap(on_h2)  # the check is real: shared tasks do overlap


@pytest.mark.parametrize("forks", [1, 2])
def test_forks_limits_the_jobs_at_once(tmp_path, pool, forks):
    tasks = [command(f"tasks.s{i}", f"h{i}", tmp_path, "sleep 0.1") for i in range(1, 6)]
    out = run_tasks(tasks, pool, forks=forks)
    assert set(out.statuses.values()) == {CHANGED}
    assert len(out.calls) == 5
    assert max_concurrency(out.calls) == forks
    assert len({call.thread for call in out.calls}) <= forks


# batching -----------------------------------------------------------------------------------


def test_ready_tasks_of_a_host_share_one_round_trip_but_fail_alone(tmp_path, pool):
    """After ``dir``, six tasks of h1 are ready at once: five files and a failing command go in
    ONE call, each reported on its own; the failure skips only what needs it. ``timed`` has a
    timeout of its own, so it runs alone, with exactly that timeout."""
    need_dir = {"requires": ("tasks.dir",)}
    tasks = [
        directory("tasks.dir", "h1", tmp_path),
        *(file(f"tasks.f{i}", "h1", tmp_path, f"{i}\n", **need_dir) for i in range(5)),
        command("tasks.bad", "h1", tmp_path, "echo broken >&2; exit 7", **need_dir),
        file("tasks.after", "h1", tmp_path, requires=("tasks.bad",)),
        file("tasks.timed", "h1", tmp_path, timeout=20, **need_dir),
    ]
    out = run_tasks(tasks, pool, timeout=5)
    batch = ["tasks.f0", "tasks.f1", "tasks.f2", "tasks.f3", "tasks.f4", "tasks.bad"]
    assert [sorted(out.tasks_in(c)) for c in pool.calls_on("h1")] == [
        ["tasks.dir"],
        sorted(batch),
        ["tasks.timed"],
    ]
    batch_call = pool.calls_on("h1")[1]
    assert batch_call.timeout == 6 * 5  # a batch gets the sum of its tasks' timeouts
    assert pool.calls_on("h1")[2].timeout == 20
    finished = out.finished()
    for i in range(5):
        path = out_path(tmp_path, f"tasks.f{i}")
        assert finished[f"tasks.f{i}"].status == CHANGED
        assert finished[f"tasks.f{i}"].changes == (f"file {path} (mode 644)",)
        assert path.read_text() == f"{i}\n"
    assert finished["tasks.bad"].status == FAILED
    assert finished["tasks.bad"].message.endswith("exited with status 7")
    assert finished["tasks.bad"].output == "broken\n"  # its own output, not its neighbours'
    assert finished["tasks.after"].status == SKIPPED
    assert finished["tasks.after"].message == "skipped: dependency tasks.bad failed"
    assert not out_path(tmp_path, "tasks.after").exists()
    assert finished["tasks.timed"].status == CHANGED
    starts = {e.task_id: e.at for e in out.events if isinstance(e, TaskStarted)}
    assert len({starts[t] for t in batch}) == 1


@pytest.mark.parametrize("limit", [None, 3], ids=["BATCH_LIMIT", "limit-3"])
def test_a_round_trip_carries_at_most_the_batch_limit(tmp_path, pool, monkeypatch, limit):
    if limit is not None:
        monkeypatch.setattr(scheduler_module, "BATCH_LIMIT", limit)
    size = BATCH_LIMIT if limit is None else limit
    count = 2 * size + 1
    tasks = [file(f"tasks.f{i:03}", "h1", tmp_path) for i in range(count)]
    out = run_tasks(tasks, pool)
    assert set(out.statuses.values()) == {CHANGED}
    assert [len(out.tasks_in(call)) for call in out.calls] == [size, size, 1]
    assert all(out_path(tmp_path, t).read_text() == f"{t}\n" for t in out.order)


# failures -----------------------------------------------------------------------------------


def test_a_failure_skips_its_dependents_transitively_and_other_branches_go_on(tmp_path, pool):
    tasks = [
        command("tasks.a", "h1", tmp_path, "echo no >&2; exit 4"),
        command("tasks.b", "h2", tmp_path, requires=("tasks.a",)),
        command("tasks.c", "h3", tmp_path, requires=("tasks.b",)),
        command("tasks.d", "h2", tmp_path, "sleep 0.1"),
        command("tasks.e", "h3", tmp_path, requires=("tasks.d",)),
    ]
    out = run_tasks(tasks, pool)
    assert out.statuses == {
        "tasks.a": FAILED,
        "tasks.b": SKIPPED,
        "tasks.c": SKIPPED,
        "tasks.d": CHANGED,
        "tasks.e": CHANGED,
    }
    assert out.message("tasks.a").endswith("exited with status 4")
    assert out.finished()["tasks.a"].output == "no\n"
    assert out.message("tasks.b") == "skipped: dependency tasks.a failed"
    assert out.message("tasks.c") == "skipped: tasks.b was not run"
    assert out.calls_for("tasks.b") == [] and out.calls_for("tasks.c") == []
    assert lines(tmp_path, "tasks.b") == [] and lines(tmp_path, "tasks.e") == ["ran"]


FAIL_FAST_TASKS = [
    ("tasks.bad", "h1", "exit 1", {}),
    ("tasks.slow", "h2", "sleep 0.4", {}),
    ("tasks.next", "h2", "true", {"requires": ("tasks.slow",)}),
    ("tasks.queued", "h1", "true", {"timeout": 30}),  # ready, but h1 is busy with bad
]


@pytest.mark.parametrize("fail_fast", [True, False])
def test_fail_fast_starts_nothing_after_the_first_failure(tmp_path, pool, fail_fast):
    """With fail_fast, what already runs (slow) finishes and nothing starts after bad failed;
    without it (the control), the same graph runs next and queued."""
    tasks = [command(i, h, tmp_path, run, **extra) for i, h, run, extra in FAIL_FAST_TASKS]
    out = run_tasks(tasks, pool, fail_fast=fail_fast)
    assert out.statuses["tasks.bad"] == FAILED
    assert out.statuses["tasks.slow"] == CHANGED
    if not fail_fast:
        assert out.statuses["tasks.next"] == out.statuses["tasks.queued"] == CHANGED
        return
    for task_id in ("tasks.next", "tasks.queued"):
        assert out.statuses[task_id] == SKIPPED
        assert out.message(task_id) == "skipped: --fail-fast after tasks.bad failed"
    [bad] = out.calls_for("tasks.bad")
    assert all(call.start <= bad.end for call in out.calls)
    assert len(out.calls) == 2


# hosts and connections ----------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["unreachable", "rejected"])
def test_an_unreachable_host_gives_up_its_tasks_and_the_others_finish(tmp_path, fault):
    """h2 cannot be connected to (after the connection's own retries) or refuses its key: its
    tasks are unreachable — asked once, not once per task —, what needs them is skipped, and h1
    finishes."""
    pool = FakePool(**{fault: ["h2"]})
    tasks = [
        file("tasks.x", "h2", tmp_path),
        file("tasks.y", "h2", tmp_path, requires=("tasks.x",)),
        file("tasks.z", "h2", tmp_path, timeout=30),
        file("tasks.w", "h1", tmp_path, requires=("tasks.x",)),
        command("tasks.v", "h1", tmp_path, "sleep 0.1"),
    ]
    out = run_tasks(tasks, pool)
    assert out.statuses == {
        "tasks.x": UNREACHABLE,
        "tasks.y": UNREACHABLE,
        "tasks.z": UNREACHABLE,
        "tasks.w": SKIPPED,
        "tasks.v": CHANGED,
    }
    expected = "cannot connect to h2" if fault == "unreachable" else "unknown host key"
    assert all(expected in out.message(t) for t in ("tasks.x", "tasks.y", "tasks.z"))
    assert out.message("tasks.w") == "skipped: dependency tasks.x unreachable"
    assert pool.connects["h2"] == 1 and len(pool.calls_on("h2")) == 1
    assert "tasks.z" not in out.started()  # given up without being tried


@pytest.mark.parametrize("batched", [False, True])
def test_a_lost_connection_is_retried_once_on_a_fresh_connection(tmp_path, pool, batched):
    """The connection breaks during a's (or a's batch's) call: the call is made again on a new
    connection of h1, once; the tasks are done, and what follows runs on that connection."""
    tasks = [file("tasks.a", "h1", tmp_path), file("tasks.b", "h1", tmp_path)]
    if not batched:
        tasks[1] = file("tasks.b", "h1", tmp_path, requires=("tasks.a",))
    pool.on(lose(), when=token("tasks.a"), times=1)
    out = run_tasks(tasks, pool)
    assert out.statuses == {"tasks.a": CHANGED, "tasks.b": CHANGED}
    calls = pool.calls_on("h1")
    assert [c.generation for c in calls] == [1, 2] if batched else [1, 2, 2]
    assert calls[0].raised.startswith("HostUnreachable: lost the connection to h1")
    assert all(not c.raised for c in calls[1:])
    assert len(out.calls_for("tasks.a")) == 2 and pool.connects["h1"] == 2
    assert out_path(tmp_path, "tasks.a").read_text() == "tasks.a\n"


def test_a_connection_lost_after_the_command_ran_runs_it_again(tmp_path, pool):
    """The retry is of the whole task (operations are idempotent): a command lost after it ran
    runs a second time."""
    pool.on(lose(after_running=True), when=token("tasks.a"), times=1)
    out = run_tasks([command("tasks.a", "h1", tmp_path)], pool)
    assert out.statuses == {"tasks.a": CHANGED}
    assert lines(tmp_path, "tasks.a") == ["ran", "ran"]


def test_a_connection_lost_twice_makes_the_host_unreachable(tmp_path, pool):
    pool.on(lose(), when=token("tasks.a"), times=2)
    tasks = [
        file("tasks.a", "h1", tmp_path),
        file("tasks.b", "h1", tmp_path, timeout=30),
        file("tasks.c", "h2", tmp_path),
    ]
    out = run_tasks(tasks, pool)
    assert out.statuses == {"tasks.a": UNREACHABLE, "tasks.b": UNREACHABLE, "tasks.c": CHANGED}
    assert out.message("tasks.a").startswith("lost the connection to h1")
    assert len(pool.calls_on("h1")) == 2  # retried once, not twice
    assert not out_path(tmp_path, "tasks.b").exists()


def test_a_task_past_its_timeout_fails_alone(tmp_path, pool):
    """slow's own timeout (0.3 s) reaches the connection; it fails, once, what needs it is
    skipped, and the other host's task finishes."""
    tasks = [
        command("tasks.slow", "h1", tmp_path, "sleep 5", timeout=0.3),
        command("tasks.after", "h1", tmp_path, requires=("tasks.slow",)),
        command("tasks.fine", "h2", tmp_path),
    ]
    out = run_tasks(tasks, pool)
    assert out.statuses == {"tasks.slow": FAILED, "tasks.after": SKIPPED, "tasks.fine": CHANGED}
    assert out.message("tasks.slow") == "timed out after 0.3 s on h1"
    [call] = out.calls_for("tasks.slow")
    assert call.timeout == 0.3 and call.raised.startswith("CommandTimedOut")
    assert out.seconds < 3
    assert lines(tmp_path, "tasks.slow") == ["ran"]


def test_a_batch_that_times_out_fails_every_task_in_it(tmp_path, pool):
    pool.on(time_out(), when=token("tasks.f1"))
    tasks = [file("tasks.f1", "h3", tmp_path), file("tasks.f2", "h3", tmp_path)]
    out = run_tasks(tasks, pool, timeout=5)
    assert out.statuses == {"tasks.f1": FAILED, "tasks.f2": FAILED}
    assert out.message("tasks.f2") == "timed out after 10 s on h3"
    assert len(out.calls) == 1


def test_a_script_that_dies_before_reporting_fails_its_task(tmp_path, pool):
    """The host answers without the script's report markers (the script died): the task
    fails saying so, it is not taken as done."""
    pool.on(answer(exit_status=137, stderr=b"Killed\n"), when=token("tasks.a"))
    out = run_tasks([file("tasks.a", "h1", tmp_path)], pool)
    assert out.statuses == {"tasks.a": FAILED}
    assert "the script stopped before it (exit status 137) Killed" in out.message("tasks.a")


# stopping -----------------------------------------------------------------------------------

STOP_TASKS = [
    ("tasks.long", "h1", "sleep 0.3", {}),
    ("tasks.waiting", "h1", "true", {"requires": ("tasks.long",)}),
    ("tasks.queued", "h1", "true", {"timeout": 30}),  # ready, but h1 is busy
    ("tasks.other", "h2", "true", {"requires": ("tasks.long",)}),
]


@pytest.mark.parametrize("how", ["stop()", "stop_when"])
def test_stop_lets_the_running_task_finish_and_skips_the_rest(tmp_path, pool, how):
    """Stopped as ``long`` starts (SIGINT calls stop(); the panel sets stop_when): long
    finishes within the grace period, nothing else starts, the rest is skipped."""
    tasks = [command(i, h, tmp_path, run, **extra) for i, h, run, extra in STOP_TASKS]
    stop_when = threading.Event()
    schedulers = []
    pool.on(
        notify(lambda: schedulers[0].stop() if how == "stop()" else stop_when.set()),
        when=token("tasks.long"),
    )
    out = run_tasks(tasks, pool, stop_when=stop_when, before_run=schedulers.append)
    assert out.scheduler.interrupted
    assert out.statuses["tasks.long"] == CHANGED
    for task_id in ("tasks.waiting", "tasks.queued", "tasks.other"):
        assert out.statuses[task_id] == SKIPPED
        assert out.message(task_id) == "skipped: interrupted"
    assert [out.tasks_in(c) for c in out.calls] == [["tasks.long"]]
    assert pool.closed_all == 0  # the grace period was enough


def test_a_task_outliving_the_grace_period_is_aborted_not_retried(tmp_path, pool):
    """grace 0.3 s: the connections are closed under ``long``, which fails "interrupted"
    (its host is not called unreachable, and it is not run again on a new connection)."""
    tasks = [
        command("tasks.long", "h1", tmp_path, "sleep 10"),
        command("tasks.next", "h1", tmp_path, requires=("tasks.long",)),
    ]
    schedulers = []
    pool.on(notify(lambda: schedulers[0].stop()), when=token("tasks.long"))
    out = run_tasks(tasks, pool, grace=0.3, before_run=schedulers.append)
    assert out.statuses == {"tasks.long": FAILED, "tasks.next": SKIPPED}
    assert out.message("tasks.long") == ABORTED
    assert out.message("tasks.next") == "skipped: interrupted"
    assert pool.closed_all == 1
    assert len(out.calls_for("tasks.long")) == 1 and lines(tmp_path, "tasks.long") == ["ran"]
    assert out.seconds < 5


# teardown -----------------------------------------------------------------------------------


def test_teardown_undoes_in_reverse_order(tmp_path, pool):
    """a → b → c placed their files; the teardown restores (here: removes) c first, then b,
    then a, each after the previous one ended."""
    tasks = [
        file("tasks.a", "h1", tmp_path),
        file("tasks.b", "h2", tmp_path, requires=("tasks.a",)),
        file("tasks.c", "h1", tmp_path, requires=("tasks.b",)),
    ]
    graph = graph_of(tasks)
    run_tasks(graph, pool)
    assert all(out_path(tmp_path, t).exists() for t in graph.tasks)
    out = run_tasks(graph, pool, kind="teardown")
    assert out.order == ("tasks.c", "tasks.b", "tasks.a")
    assert out.statuses == dict.fromkeys(out.order, CHANGED)
    assert [out.tasks_in(c) for c in out.calls] == [["tasks.c"], ["tasks.b"], ["tasks.a"]]
    assert_ran_after(out, "tasks.c", "tasks.b")
    assert_ran_after(out, "tasks.b", "tasks.a")
    assert not any(out_path(tmp_path, t).exists() for t in graph.tasks)
    with pytest.raises(AssertionError):
        assert_ran_after(out, "tasks.a", "tasks.c")


def test_a_failed_undo_skips_the_undo_of_what_it_depends_on(tmp_path, pool):
    tasks = [
        file("tasks.a", "h1", tmp_path),
        Task(
            "tasks.b",
            "h1",
            requires=("tasks.a",),
            undo=(Command(f"echo cannot >&2; exit 3 # {token('tasks.b')}"),),
        ),
    ]
    run_tasks(tasks, pool)
    out = run_tasks(tasks, pool, kind="teardown")
    assert out.statuses == {"tasks.b": FAILED, "tasks.a": SKIPPED}
    assert out.message("tasks.a") == "skipped: dependency tasks.b failed"
    assert out_path(tmp_path, "tasks.a").exists()


# resume -------------------------------------------------------------------------------------


def resume_order(store: StateStore, graph, kind: str = "run") -> tuple[str, ...]:
    """What ``run_project`` selects for ``--resume``: the last run's tasks that are not done,
    in the graph's order."""
    wanted = set(store.resume_tasks("fake", kind, check=False))
    return tuple(t for t in graph.order if t in wanted)


def test_resume_runs_only_what_failed_or_was_skipped(tmp_path, pool):
    go = tmp_path / "go"
    tasks = [
        file("tasks.first", "h1", tmp_path),
        command(
            "tasks.gate",
            "h1",
            tmp_path,
            f"test -e {go} || {{ echo no go >&2; exit 4; }}",
            requires=("tasks.first",),
        ),
        file("tasks.after", "h2", tmp_path, requires=("tasks.gate",)),
        file("tasks.later", "h2", tmp_path, requires=("tasks.after",)),
        file("tasks.other", "h3", tmp_path),
    ]
    graph = graph_of(tasks)
    with StateStore.open(tmp_path / "state" / "state.db") as store:
        first = run_tasks(graph, pool, store=store)
        assert first.statuses == {
            "tasks.first": CHANGED,
            "tasks.gate": FAILED,
            "tasks.after": SKIPPED,
            "tasks.later": SKIPPED,
            "tasks.other": CHANGED,
        }
        recorded = {t.task_id: t.status for t in store.last_run("fake").tasks}
        assert recorded == first.statuses
        assert resume_order(store, graph) == ("tasks.gate", "tasks.after", "tasks.later")

        go.touch()
        resumed = run_tasks(graph, pool, resume_order(store, graph), store=store)
        assert resumed.started() == ["tasks.gate", "tasks.after", "tasks.later"]
        assert set(resumed.statuses.values()) == {CHANGED}
        assert resume_order(store, graph) == ()  # nothing left
    # nothing done twice: one call per task, two for the gate (failed, then resumed)
    counts = {t: len(pool.calls_with(token(t))) for t in graph.tasks}
    assert counts == {
        "tasks.first": 1,
        "tasks.gate": 2,
        "tasks.after": 1,
        "tasks.later": 1,
        "tasks.other": 1,
    }
    assert lines(tmp_path, "tasks.gate") == ["ran", "ran"]


def test_resume_after_an_interrupted_run_runs_what_was_skipped_once(tmp_path, pool):
    tasks = [command(i, h, tmp_path, run, **extra) for i, h, run, extra in STOP_TASKS]
    graph = graph_of(tasks)
    schedulers = []
    pool.on(notify(lambda: schedulers[0].stop()), when=token("tasks.long"))
    with StateStore.open(tmp_path / "state.db") as store:
        stopped = run_tasks(graph, pool, store=store, before_run=schedulers.append)
        assert stopped.scheduler.interrupted
        assert store.last_run("fake").interrupted
        order = resume_order(store, graph)
        assert set(order) == {"tasks.waiting", "tasks.queued", "tasks.other"}
        resumed = run_tasks(graph, pool, order, store=store)
        assert set(resumed.statuses.values()) == {CHANGED}
    assert {t: lines(tmp_path, t) for t in graph.tasks} == dict.fromkeys(graph.tasks, ["ran"])


# masking ------------------------------------------------------------------------------------


def test_a_secret_already_on_the_host_is_masked_in_every_event(tmp_path):
    """Run 1 places a secret; run 2, with a new masker, first reads the secrets on the host
    (one call) and so masks the secret in a command's output — even with the secret's own task
    not selected. Without a task declaring that path (the control), the output shows it."""
    secret = out_path(tmp_path, "tasks.secret")
    tasks = [
        Task("tasks.secret", "h1", actions=(Secret(str(secret), "hex32"),)),
        command("tasks.show", "h1", tmp_path, f"cat {secret}", requires=("tasks.secret",)),
    ]
    graph = graph_of(tasks)
    first = run_tasks(graph, FakePool())
    assert first.statuses == {"tasks.secret": CHANGED, "tasks.show": CHANGED}
    value = secret.read_text()
    assert len(value) == 64 and oct(secret.stat().st_mode & 0o777) == "0o400"
    assert first.finished()["tasks.show"].output == MASK

    second_pool = FakePool()
    second = run_tasks(graph, second_pool, ("tasks.show",), masker=Masker())
    assert "base64 -w0" in second_pool.calls[0].command  # the priming read, first
    assert second.finished()["tasks.show"].output == MASK
    for run in (first, second):
        assert not any(value in repr(event) for event in run.events)
        chunks = [e for e in run.events if isinstance(e, OutputChunk)]
        assert all(value not in e.text for e in chunks)

    control = run_tasks([command("tasks.show", "h1", tmp_path, f"cat {secret}")], FakePool())
    assert control.finished()["tasks.show"].output == value


# the fake itself --------------------------------------------------------------------------


def test_the_fake_runs_the_script_for_real_and_records_each_call(tmp_path, pool):
    """A control for everything above: the file really is written by the shell; a delayed
    call's times say so; and ``finished`` events are TaskFinished values."""
    pool.on(delay(0.2), when=token("tasks.a"))
    out = run_tasks([file("tasks.a", "h1", tmp_path, "hello\n")], pool)
    [call] = out.calls
    assert call.end - call.start >= 0.2 and call.exit_status == 0 and call.input == b"hello\n"
    assert out_path(tmp_path, "tasks.a").read_text() == "hello\n"
    assert isinstance(out.finished()["tasks.a"], TaskFinished)
    again = run_tasks([file("tasks.a", "h1", tmp_path, "hello\n")], pool)
    assert again.statuses == {"tasks.a": Status.OK}  # the script compared, and left it
