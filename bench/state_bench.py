"""Benchmark: recording one run of 336 tasks in the state database.

Run:  python bench/state_bench.py [--repeat N] [--tasks N]

Each repetition records one run into the same database (so it grows, as a deployment's does):
``begin_run``, then RunStarted, per task TaskStarted + OutputChunk + TaskFinished (every 20th
task failed, with 10 KiB of output), then RunFinished — exactly what the executor feeds the
store. Prints the medians; it measures, it does not assert (the goal, "a few ms in total", is
read off the output, not enforced by a timed test).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from fedi_run.engine.report.events import (
    OutputChunk,
    RunFinished,
    RunStarted,
    Status,
    TaskFinished,
    TaskStarted,
)
from fedi_run.engine.report.state import StateStore

HOSTS = ("garage", "mastodon", "peertube", "pixelfed")


def record_one_run(store: StateStore, count: int) -> tuple[float, float]:
    """Record a run of ``count`` tasks; return (begin_run seconds, events seconds)."""
    tasks = tuple(f"svc{i % 7}.step{i}@{HOSTS[i % 4]}" for i in range(count))
    hosts = tuple(HOSTS[i % 4] for i in range(count))
    t0 = time.perf_counter()
    run_id = store.begin_run("bench", "run", tasks, hosts, False, ["fedi-run", "pb.toml"])
    t1 = time.perf_counter()
    store.handle(RunStarted(run_id, "bench", "run", tasks, hosts, False, time.time()))
    for i, (task, host) in enumerate(zip(tasks, hosts)):
        failed = i % 20 == 19
        store.handle(TaskStarted(run_id, task, host, time.time()))
        store.handle(OutputChunk(run_id, task, host, "stdout", "some output\n"))
        store.handle(
            TaskFinished(
                run_id,
                task,
                host,
                Status.FAILED if failed else Status.CHANGED,
                0.01,
                message="exit status 1" if failed else "",
                changes=("wrote /etc/motd",),
                output=("x" * 10_240) if failed else "some output\n",
                at=time.time(),
            )
        )
    store.handle(RunFinished(run_id, 1, 1.0, False))
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--tasks", type=int, default=336)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ".fedi-run" / "state.db"
        t0 = time.perf_counter()
        store = StateStore.open(path)
        opened = time.perf_counter() - t0
        begins, events = zip(*(record_one_run(store, args.tasks) for _ in range(args.repeat)))
        t0 = time.perf_counter()
        history = store.runs("bench", limit=50)
        read = time.perf_counter() - t0
        store.close()
    ms = 1000
    per_event = statistics.median(events) / (args.tasks * 3 + 2) * 1e6
    print(f"state database, {args.tasks}-task run, median of {args.repeat}:")
    print(f"  open (new database)          {opened * ms:8.2f} ms")
    print(f"  begin_run                    {statistics.median(begins) * ms:8.2f} ms")
    print(
        f"  all events of the run        {statistics.median(events) * ms:8.2f} ms"
        f"  ({per_event:.1f} µs per event, {args.tasks + 1} commits)"
    )
    print(
        f"  total per run                "
        f"{statistics.median(b + e for b, e in zip(begins, events)) * ms:8.2f} ms"
    )
    print(f"  runs(limit=50), {len(history)} runs read   {read * ms:8.2f} ms")


if __name__ == "__main__":
    main()
