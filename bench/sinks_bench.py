"""Benchmark: 10,000 events through each event sink — the progress display (plain, verbose,
live on a forced terminal), JSON lines and JUnit.

Run:  python bench/sinks_bench.py [--repeat N] [--events N]

Prints the median time per run and per event. It measures; it does not assert. The goal (from
the display brief): well under 0.5 s for 10,000 events, so a run's ~700 events a second never
wait on a sink. The live display draws on a thread of its own; its row includes ``close()``,
which waits for that thread and writes what is still queued.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from fedi_run.engine.report.display import ProgressDisplay
from fedi_run.engine.report.events import (
    OutputChunk,
    RunFinished,
    RunStarted,
    Status,
    TaskFinished,
    TaskStarted,
)
from fedi_run.engine.report.jsonlines import JsonLinesSink
from fedi_run.engine.report.junit import JUnitSink

HOSTS = 20
STATUSES = (
    Status.OK,
    Status.CHANGED,
    Status.OK,
    Status.CHANGED,
    Status.OK,
    Status.FAILED,
    Status.SKIPPED,
    Status.UNREACHABLE,
)


def synthetic_events(count: int = 10_000) -> list:
    """About ``count`` events: RunStarted, then per task TaskStarted, OutputChunk and
    TaskFinished (statuses mixed, ~100 characters of output), then RunFinished."""
    tasks = count // 3
    ids = tuple(f"svc{i % 7}.step{i}@h{i % HOSTS}" for i in range(tasks))
    hosts = tuple(f"h{i % HOSTS}" for i in range(tasks))
    events: list = [RunStarted(1, "bench", "run", ids, hosts, False, time.time())]
    for i, (task_id, host) in enumerate(zip(ids, hosts)):
        status = STATUSES[i % len(STATUSES)]
        output = f"step {i}: wrote /var/lib/bench/{i} ********\n" * 2
        events.append(TaskStarted(1, task_id, host, time.time()))
        events.append(OutputChunk(1, task_id, host, "stdout", output))
        events.append(
            TaskFinished(
                1,
                task_id,
                host,
                status,
                0.01,
                message="" if status in (Status.OK, Status.CHANGED) else f"{status}: reason",
                changes=("wrote /var/lib/bench",) if status is Status.CHANGED else (),
                output=output,
                at=time.time(),
            )
        )
    events.append(RunFinished(1, 1, 1.0, False))
    return events


def timed(make: Callable[[], object], events: list, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        sink = make()
        start = time.perf_counter()
        for event in events:
            sink.handle(event)
        sink.close()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--events", type=int, default=10_000)
    args = parser.parse_args()
    events = synthetic_events(args.events)
    directory = Path(tempfile.mkdtemp(prefix="sinks-bench-"))
    sinks: dict[str, Callable[[], object]] = {
        "display, plain": lambda: ProgressDisplay(io.StringIO(), live=False),
        "display, plain -v --diff": lambda: ProgressDisplay(
            io.StringIO(), live=False, verbose=True, diff=True
        ),
        "display, live (forced terminal)": lambda: ProgressDisplay(io.StringIO(), live=True),
        "display, live -v": lambda: ProgressDisplay(io.StringIO(), live=True, verbose=True),
        "json lines": lambda: JsonLinesSink(io.StringIO()),
        "junit": lambda: JUnitSink(directory / "junit.xml"),
    }
    print(f"{len(events):,} events, median of {args.repeat}")
    print(f"{'sink':34} {'per run':>10} {'per event':>10}")
    for name, make in sinks.items():
        median = statistics.median(timed(make, events, args.repeat))
        print(f"{name:34} {median * 1000:8.1f} ms {median / len(events) * 1e6:7.1f} µs")


if __name__ == "__main__":
    main()
