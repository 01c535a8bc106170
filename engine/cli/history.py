"""``fedi-run history`` and ``fedi-run show-run``: the run state database, read back.

The main CLI mounts both commands (``cli.add_command(history)``, ``cli.add_command(show_run)``).
Only click, the standard library and ``engine.cli.params`` are imported here at module level, so
``fedi-run --help`` stays fast; :mod:`fedi_run.engine.report.state` is imported when a command
runs. The state is an SQLite file or a ``postgresql://`` URL (``--state``). The deployment name
comes from the playbook's ``[deployment] name``, read with tomllib alone (no plugins loaded).
Deliberate errors are :class:`~fedi_run.engine.errors.FediRunError`\\ s (exit status 2), which
the main CLI group prints without a traceback.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from fedi_run.engine.cli.defaults import ReadsRunTableOnly
from fedi_run.engine.cli.params import STATE_HELP, StateParam, default_option

OUTCOMES = ("ok", "changed", "failed", "skipped", "unreachable")
PLAYBOOK = click.argument("playbook", type=click.Path(dir_okay=False, path_type=Path))
STATE = default_option("--state", "state_file", type=StateParam(), help=STATE_HELP)
JSON = default_option(
    "--json/--no-json", "as_json", default=False, help="Print JSON instead of text."
)


def deployment_name(playbook: Path) -> str:
    """The playbook's ``[deployment] name``; PlaybookError (exit 2) naming the file if none."""
    import tomllib

    from fedi_run.engine.errors import PlaybookError, Problem

    try:
        with open(playbook, "rb") as file:
            data = tomllib.load(file)
    except OSError as error:
        raise PlaybookError([Problem(playbook, "", f"cannot read it: {error.strerror}")]) from None
    except tomllib.TOMLDecodeError as error:
        raise PlaybookError([Problem(playbook, "", f"not valid TOML: {error}")]) from None
    except UnicodeDecodeError as error:
        message = f"not valid UTF-8 (byte {error.start}); expected a UTF-8 TOML file"
        raise PlaybookError([Problem(playbook, "", message)]) from None
    except RecursionError:
        raise PlaybookError([Problem(playbook, "", "not valid TOML: nested too deeply")]) from None
    section = data.get("deployment")
    name = section.get("name") if isinstance(section, dict) else None
    if not isinstance(name, str) or not name:
        raise PlaybookError(
            [
                Problem(
                    playbook,
                    "deployment.name",
                    "missing; expected the deployment's name, such as 'fediversity'",
                )
            ]
        )
    return name


def _state(playbook: Path, state_file: Path | str | None):
    """The state ``--state`` names (default: beside the playbook), and whether it exists (a
    PostgreSQL state is opened to see; an SQLite file that is not there is not created)."""
    from fedi_run.engine.report.state_location import locate_state

    location = locate_state(state_file, playbook)
    return location, location.postgresql or location.path.exists()


@click.command(
    cls=ReadsRunTableOnly,
    epilog="""
\b
Examples:
  fedi-run history site.toml
  fedi-run history site.toml --limit 5 --json
  fedi-run history site.toml --state /var/lib/fedi-run/site.db
""",
)
@PLAYBOOK
@STATE
@JSON
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Show at most this many runs.",
)
def history(playbook: Path, state_file: Path | str | None, as_json: bool, limit: int) -> None:
    """List the runs of PLAYBOOK's deployment, newest first."""
    import json

    from fedi_run.engine.report.state import StateStore

    name = deployment_name(playbook)
    path, exists = _state(playbook, state_file)
    runs = []
    if exists:
        with StateStore.open(path) as store:
            runs = store.runs(name, limit=limit)
    if as_json:
        click.echo(json.dumps([_run_json(run) for run in runs], indent=2))
    elif not runs:
        click.echo(f"no runs of deployment '{name}' recorded in {path}")
    else:
        click.echo(f"runs of deployment '{name}' in {path}, newest first:")
        rows = [
            (
                "ID",
                "KIND",
                "STARTED",
                "DURATION",
                "RESULT",
                *(o.upper() for o in OUTCOMES),
                "NOT RUN",
            )
        ]
        for run in runs:
            totals = run.totals
            not_run = sum(n for outcome, n in totals.items() if outcome not in OUTCOMES)
            rows.append(
                (
                    str(run.id),
                    _kind(run),
                    _local(run.started_at),
                    _seconds(run.duration),
                    _result(run),
                    *(str(totals.get(o, 0)) for o in OUTCOMES),
                    str(not_run),
                )
            )
        _table(rows)


@click.command(
    "show-run",
    cls=ReadsRunTableOnly,
    epilog="""
\b
Examples:
  fedi-run show-run site.toml 12         run 12, task by task (ids: fedi-run history)
  fedi-run show-run site.toml 12 --json | jq '.tasks[] | select(.outcome == "failed")'
""",
)
@PLAYBOOK
@click.argument("run_id", metavar="ID", type=int)
@STATE
@JSON
def show_run(playbook: Path, run_id: int, state_file: Path | str | None, as_json: bool) -> None:
    """Show run ID of PLAYBOOK's deployment: each task in order, then a recap per host."""
    import json

    from fedi_run.engine.errors import RunNotFound
    from fedi_run.engine.report.state import StateStore

    name = deployment_name(playbook)
    path, exists = _state(playbook, state_file)
    if not exists:
        raise RunNotFound(
            f"error: no run {run_id} in {path} (there is no state database "
            "there yet); `fedi-run history PLAYBOOK` lists the runs"
        )
    with StateStore.open(path) as store:
        run = store.get_run(run_id)
        latest = store.last_run(run.deployment, run.kind, check=run.check)
    if run.deployment != name:
        raise RunNotFound(
            f"error: run {run_id} in {path} is of deployment '{run.deployment}', "
            f"not '{name}' (the deployment of {playbook})"
        )
    local = path.local_directory(playbook)  # where the run's output logs are
    if as_json:
        click.echo(json.dumps(_run_json(run, tasks=True, state_dir=local), indent=2))
        return
    click.echo(
        f"run {run.id} of deployment '{run.deployment}': {_kind(run)}, started "
        f"{_local(run.started_at)}, took {_seconds(run.duration)}, {_result(run)}"
    )
    click.echo(f"command: {' '.join(run.argv)}")
    if run.selection:
        click.echo(f"selection: {run.selection}")
    from fedi_run.engine.report.output_log import log_directory, log_path

    logs = log_directory(local, run.id)
    if logs.is_dir():
        click.echo(f"output log: {logs}/")
    rows = [("#", "TASK", "HOST", "STATUS", "DURATION")]
    notes: dict[int, list[str]] = {}
    for number, task in enumerate(run.tasks, 1):
        rows.append((str(number), task.task_id, task.host, task.outcome, _seconds(task.duration)))
        notes[number] = [*task.message.splitlines(), *(f"~ {c}" for c in task.changes)]
        if task.output_tail:
            notes[number] += [
                "output (end):",
                *(f"  {line}" for line in task.output_tail.splitlines()),
            ]
        log = log_path(local, run.id, task.task_id)
        if log.is_file():
            notes[number].append(f"whole output: {log}")
    _table(rows, notes)
    click.echo("recap:")
    _table(
        [
            (host, *(f"{outcome}={count}" for outcome, count in _ordered(counts)))
            for host, counts in run.recap.items()
        ]
    )
    _failures(run, resumable=latest is not None and latest.id == run.id)


def _failures(run: Any, resumable: bool) -> None:
    """The failures of ``run`` as the run's display listed them, and — when ``resumable``
    (it is its deployment's latest run of its kind, which ``--resume`` continues) — the
    ``--resume`` command (``engine.report.recap.failures_text``)."""
    from fedi_run.engine.report.recap import Failure, failures_text, plain

    failures = [
        Failure(task.task_id, task.host, task.outcome, plain(task.message).strip().split("\n")[0])
        for task in run.tasks
        if task.outcome in ("failed", "unreachable")
    ]
    stopped = run.interrupted or not run.finished
    for line in failures_text(failures, run.argv if resumable else (), stopped):
        click.echo("".join(text for text, _ in line))


def _ordered(counts: dict[str, int]) -> list[tuple[str, int]]:
    """Every usual outcome (zero included), then 'did not finish' / 'never ran' if any."""
    extra = [(k, v) for k, v in counts.items() if k not in OUTCOMES]
    return [(o, counts.get(o, 0)) for o in OUTCOMES] + extra


def _table(rows: list[tuple[str, ...]], notes: dict[int, list[str]] | None = None) -> None:
    """Print ``rows`` in left-aligned columns, indented; ``notes[i]`` lines under row i."""
    columns = max(len(row) for row in rows)
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(columns)]
    for index, row in enumerate(rows):
        click.echo("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        for line in (notes or {}).get(index, ()):
            click.echo(" " * (6 + widths[0]) + line)


def _kind(run: Any) -> str:
    return f"{run.kind} (check)" if run.check else run.kind


def _result(run: Any) -> str:
    if run.exit_status is None:
        return "did not finish"
    return f"exit {run.exit_status}" + (" (interrupted)" if run.interrupted else "")


def _local(timestamp: float | None) -> str:
    """Local time, ``2025-05-01 14:03:07``."""
    return (
        "-" if timestamp is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))
    )


def _seconds(duration: float | None) -> str:
    """``0.42s``, ``12.3s``, ``4m07s``, ``1h02m``."""
    if duration is None:
        return "-"
    if duration < 10:
        return f"{duration:.2f}s"
    if duration < 60:
        return f"{duration:.1f}s"
    minutes, seconds = divmod(round(duration), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def _iso(timestamp: float | None) -> str | None:
    from datetime import datetime

    return None if timestamp is None else datetime.fromtimestamp(timestamp).astimezone().isoformat()


def _run_json(run: Any, tasks: bool = False, state_dir: Path | None = None) -> dict[str, Any]:
    """A run as JSON: times in ISO 8601 with the local offset, durations in seconds; with
    ``state_dir``, each task's ``output_log`` (the file with its whole output, or null)."""
    data: dict[str, Any] = {
        "id": run.id,
        "deployment": run.deployment,
        "kind": run.kind,
        "check": run.check,
        "argv": list(run.argv),
        "selection": run.selection,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "duration": run.duration,
        "exit_status": run.exit_status,
        "interrupted": run.interrupted,
        "deployer": run.deployer,
        "finished": run.finished,
        "totals": run.totals,
        "recap": {h: dict(c) for h, c in run.recap.items()},
    }
    if tasks:
        data["tasks"] = [
            {
                "task_id": t.task_id,
                "host": t.host,
                "position": t.position,
                "status": t.status.value if t.status else None,
                "outcome": t.outcome,
                "duration": t.duration,
                "message": t.message,
                "changes": list(t.changes),
                "started_at": _iso(t.started_at),
                "finished_at": _iso(t.finished_at),
                "output_tail": t.output_tail,
                **({"output_log": _log_file(state_dir, run.id, t.task_id)} if state_dir else {}),
            }
            for t in run.tasks
        ]
    return data


def _log_file(state_dir: Path, run_id: int, task_id: str) -> str | None:
    from fedi_run.engine.report.output_log import log_path

    log = log_path(state_dir, run_id, task_id)
    return str(log) if log.is_file() else None
