"""What the engine says of a deployment without running it: its plan, and its services' health.

:func:`plan_of` is the engine's plan of a deploy (``fedi-run plan``: the tasks in the order
they run, on which host, the destructive ones marked with what they remove), from the
deployment's playbook and its environment's inventory. :func:`health_of` is ``fedi-run
verify`` (:mod:`fedi_run.engine.verify`): each enabled service's systemd units on its host and
``https://<service>.<domain>/``, as plain JSON values the deployment's page shows. Neither
changes anything on a host; a problem loading the deployment raises the engine's
:class:`~fedi_run.engine.errors.FediRunError`.
"""

from __future__ import annotations

from pathlib import Path

HEALTH_TIMEOUT = 5.0
"""Seconds for each step of a health check (SSH, HTTPS connection, answer)."""


def _project(playbook: Path, inventory: Path, apply: bool):
    from fedi_run.engine.project import load_project

    return load_project(playbook, [inventory], apply=apply)


def plan_of(playbook: Path, inventory: Path, state: Path | str | None, apply: bool) -> dict:
    """The deploy's plan as :meth:`Plan.to_json` gives it, plus ``text`` (``fedi-run plan``'s
    rendering), ``hosts`` (those its tasks run on) and ``destructive`` (those tasks). ``state``:
    the deployment's engine state (a path or a URL), None before its first run."""
    project = _project(playbook, inventory, apply)
    if isinstance(state, Path) and not state.exists():
        state = None
    plan = project.plan(state_path=state)
    found = plan.to_json()
    found["text"] = plan.render()
    found["hosts"] = sorted({task.host for task in plan.tasks})
    found["destructive"] = [task.id for task in plan.tasks if task.destructive]
    return found


def summary(result: dict) -> str:
    """One word or two for a service's health: ``ok``, ``not active``, ``unreachable``, or
    what its HTTPS endpoint answered."""
    if result.get("ok"):
        return "ok"
    units = [result["unit"], *result.get("other_units", [])]
    if any(u["state"] == "unreachable" for u in units):
        return "unreachable"
    if any(u["name"] is not None and not u["active"] for u in units):
        return "not active"
    https = result.get("https") or {}
    return {"refused": "https refused", "tls-error": "TLS error", "timeout": "timeout"}.get(
        https.get("status", ""), "failing"
    )


def unavailable(message: str) -> dict:
    """The one health result stored when the check could not run: ``problem`` says why."""
    return {"service": "", "ok": False, "problem": message}


def health_of(playbook: Path, inventory: Path, timeout: float = HEALTH_TIMEOUT) -> list[dict]:
    """``verify`` of every enabled service: its :meth:`ServiceResult.as_json`, with
    ``summary`` (:func:`summary`) and ``detail`` (``describe()``, the CLI's line)."""
    from fedi_run.engine.execute.connection import ConnectionPool, HostKeyPolicy
    from fedi_run.engine.verify import verify_project

    project = _project(playbook, inventory, apply=False)
    pool = ConnectionPool(project.playbook.hosts, HostKeyPolicy(connect_timeout=timeout), retries=0)
    try:
        results = verify_project(project, pool, timeout=timeout)
    finally:
        pool.close_all()
    found = []
    for result in results:
        data = result.as_json()
        data["summary"] = summary(data)
        data["detail"] = result.describe()
        data["url"] = (data.get("https") or {}).get("url") or ""
        found.append(data)
    return found
