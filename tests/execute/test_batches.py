"""Batches on the fake pool (a real local ``sh``): whatever a task holds, it succeeds or fails
on its own, whatever it is batched with; a batch of any size runs; and a batch is still ONE
round trip (the benchmark's property: the fake counts the calls)."""

from __future__ import annotations

import pytest
from fakes.harness import command, file, out_path, run_tasks
from fakes.pool import FakePool

from fedi_run.engine.execute.scheduler import BATCH_LIMIT
from fedi_run.engine.planning.operations import Command, Directory, File
from fedi_run.engine.planning.tasks import Task
from fedi_run.engine.report.events import Status

CHANGED, FAILED = Status.CHANGED, Status.FAILED


@pytest.fixture
def pool():
    return FakePool()


def lines(root, task_id: str) -> list[str]:
    path = out_path(root, task_id)
    return path.read_text().splitlines() if path.exists() else []


# what a task's own shell code may hold --------------------------------------------------------

BROKEN = {
    "syntax-error": "if then fi",
    "unterminated-quote": 'echo "never closed',
    "closes-the-segment": ") ; echo escaped >&2 ; (",
    "unterminated-here-doc": "cat <<EOF\nnever ended",
    "unmatched-brace": "{ echo open",
    "case-without-esac": "case x in x) echo x ;;",
}


@pytest.mark.parametrize("run", BROKEN.values(), ids=BROKEN.keys())
def test_a_task_s_broken_shell_code_is_its_own_failure_in_a_batch(tmp_path, pool, run):
    """Three files, a task whose ``run`` is broken shell and a good command are ready at once
    on h1: ONE round trip; the broken task is failed (or, for what sh accepts, done) on its
    own — the others are done, their files written, the good command's output its own."""
    tasks = [
        *(file(f"tasks.f{i}", "h1", tmp_path, f"{i}\n") for i in range(3)),
        command("tasks.broken", "h1", tmp_path, run),
        command("tasks.good", "h1", tmp_path, "echo fine"),
        file("tasks.last", "h1", tmp_path),
    ]
    out = run_tasks(tasks, pool)
    assert len(out.calls) == 1  # still one round trip
    finished = out.finished()
    for task_id in ("tasks.f0", "tasks.f1", "tasks.f2", "tasks.good", "tasks.last"):
        assert finished[task_id].status == CHANGED, (task_id, finished[task_id].message)
    assert [out_path(tmp_path, f"tasks.f{i}").read_text() for i in range(3)] == [
        "0\n",
        "1\n",
        "2\n",
    ]
    assert out_path(tmp_path, "tasks.last").read_text() == "tasks.last\n"
    assert finished["tasks.good"].output == "fine\n"
    assert lines(tmp_path, "tasks.good") == ["ran"]
    broken = finished["tasks.broken"]
    if run.startswith("cat <<EOF"):  # sh runs a here-document that ends with the file
        assert broken.status == CHANGED
    else:
        assert broken.status == FAILED
        assert broken.message.endswith("exited with status 2"), broken.message
        assert "escaped" not in broken.output  # nothing of it ran outside its own shell
    assert "escaped" not in "".join(f.output for f in finished.values())


def test_a_broken_unless_guard_is_its_own_task_s_business(tmp_path, pool):
    """A guard that is not valid shell does not succeed, so its command runs (as an
    ``unless`` that fails); the task batched with it is not disturbed."""
    guarded = out_path(tmp_path, "tasks.guarded")
    tasks = [
        Task("tasks.guarded", "h1", actions=(Command(f"echo ran >> {guarded}", unless="if ("),)),
        file("tasks.f", "h1", tmp_path),
    ]
    out = run_tasks(tasks, pool)
    assert len(out.calls) == 1
    assert out.statuses == {"tasks.guarded": CHANGED, "tasks.f": CHANGED}
    assert guarded.read_text() == "ran\n"


def test_a_task_s_command_does_not_see_the_script_s_own_names(tmp_path, pool):
    """The script's helpers and variables (its marker, its private directory) are not the
    command's: a command printing or calling them changes nothing of the report."""
    tasks = [
        command("tasks.nosy", "h1", tmp_path, 'echo "[$M][$d][$k]"; done_ 0.0 1; fail 0.0 x; true'),
        file("tasks.f", "h1", tmp_path),
    ]
    out = run_tasks(tasks, pool)
    assert out.statuses == {"tasks.nosy": CHANGED, "tasks.f": CHANGED}
    assert out.finished()["tasks.nosy"].output.startswith("[][][]\n")


# size ----------------------------------------------------------------------------------------


def deep_directory(root, depth: int = 15):
    """A directory some 3,000 characters below ``root``."""
    path = root
    for level in range(depth):
        path = path / (f"{level:02}" + "d" * 198)
    path.mkdir(parents=True)
    return path


@pytest.mark.parametrize("forks", [1, 10])
def test_a_batch_of_64_files_with_long_paths_runs_in_one_round_trip(tmp_path, pool, forks):
    """64 file tasks whose paths are 3,000 characters long: some 200 KB of script, more than
    the kernel takes as one argument. They run, all in ONE round trip, and converge."""
    deep = deep_directory(tmp_path)
    paths = [deep / (f"{i:02}-" + "f" * 200) for i in range(BATCH_LIMIT)]
    assert len(str(paths[0])) > 3000
    tasks = [
        Task(f"tasks.f{i:02}", "h1", actions=(File(str(path), f"{i}\n", mode=0o640),))
        for i, path in enumerate(paths)
    ]
    out = run_tasks(tasks, pool, forks=forks)
    assert out.statuses == dict.fromkeys(out.order, CHANGED), set(out.finished().values())
    assert len(out.calls) == 1
    assert len(out.calls[0].command) + len(out.calls[0].input or b"") > 131072
    assert [p.read_text() for p in paths] == [f"{i}\n" for i in range(BATCH_LIMIT)]
    again = run_tasks(tasks, pool, forks=forks)
    assert again.statuses == dict.fromkeys(out.order, Status.OK)
    assert len(again.calls) == 1


def test_one_task_with_a_command_bigger_than_the_argument_limit(tmp_path, pool):
    """A single ``run`` of 300 KB (a generated script) runs; its directory and file too."""
    marker = out_path(tmp_path, "tasks.big")
    big = "".join(f": line {i} {'x' * 90}\n" for i in range(3000)) + f"echo done > {marker}\n"
    assert len(big) > 300_000
    task = Task(
        "tasks.big",
        "h1",
        actions=(
            Directory(str(tmp_path / "d")),
            Command(big),
            File(str(tmp_path / "d" / "f"), "x\n"),
        ),
    )
    out = run_tasks([task], pool)
    assert out.statuses == {"tasks.big": CHANGED}, out.message("tasks.big")
    assert marker.read_text() == "done\n" and len(out.calls) == 1


def test_a_batch_is_one_round_trip_and_a_lone_task_too(tmp_path, pool):
    """The benchmark's shape — a directory, K files, a guarded command per host — costs one
    round trip per batch: the directory, then the K files and the command together."""
    need = {"requires": ("tasks.dir",)}
    marker = tmp_path / "marker"
    tasks = [
        Task("tasks.dir", "h1", actions=(Directory(str(tmp_path / "srv")),)),
        *(
            Task(
                f"tasks.f{i:02}", "h1", actions=(File(str(tmp_path / "srv" / f"{i}"), "x"),), **need
            )
            for i in range(20)
        ),
        Task("tasks.cmd", "h1", actions=(Command(f"touch {marker}", creates=str(marker)),), **need),
    ]
    first = run_tasks(tasks, pool)
    assert set(first.statuses.values()) == {CHANGED}
    assert len(first.calls) == 2
    second = run_tasks(tasks, pool)
    assert set(second.statuses.values()) == {Status.OK}
    assert len(second.calls) == 2
