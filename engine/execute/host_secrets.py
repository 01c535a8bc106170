"""The secrets already on each host, read once before its first task of the run.

Contract of :class:`HostSecrets`: before a host's first task, :meth:`~HostSecrets.prime` reads
the secrets already placed there — those the graph's tasks place, and those the state says this
deployment placed there earlier (a service switched off since) — in one round trip, and adds
each value to the masker (a JSON document's secret-named values too), so no output of the run
can show one. In a run (not a teardown), a secret this deployment placed there in an earlier
run and the selected tasks would place again (``SecretPlan.guarded``) must be there, not
empty: else the host is blocked and ``prime`` raises :class:`SecretMissing` for every one of
its tasks, naming the secret and the ways on (``engine.execute.secret_book``).
"""

from __future__ import annotations

import base64
import json
import shlex
import threading
import time
from collections.abc import Callable

from fedi_run.engine.errors import FediRunError
from fedi_run.engine.execute.connection import ConnectionPool
from fedi_run.engine.execute.secret_book import SecretPlan, missing_error
from fedi_run.engine.planning.graph import TaskGraph
from fedi_run.engine.planning.operations import Call, Secret
from fedi_run.engine.report.events import CommandSent, Event
from fedi_run.engine.report.masking import Masker


class HostSecrets:
    """The secrets of the run's hosts (see the module): learnt, checked, once per host."""

    def __init__(
        self,
        graph: TaskGraph,
        plan: SecretPlan,
        pool: ConnectionPool,
        masker: Masker,
        emit: Callable[[Event], None],
        run_id: int,
        timeout: float,
        kind: str,
    ):
        """``emit``: the run's (the script sent is a :class:`CommandSent`); ``timeout``: that
        of the script reading them; ``kind``: ``"run"`` checks the guarded secrets,
        ``"teardown"`` does not."""
        self._plan = plan
        self._pool, self._masker, self._emit = pool, masker, emit
        self._run_id, self._timeout, self._kind = run_id, timeout, kind
        self._secret_paths = _secret_paths(graph)
        for host, recorded in plan.recorded.items():
            known = set(self._secret_paths.get(host, ())) | set(recorded)
            self._secret_paths[host] = tuple(sorted(known))
        self._primed: set[str] = set()
        self._blocked: dict[str, FediRunError] = {}
        """host → why none of its tasks may run (a secret it placed is lost there)."""
        self._prime_lock = threading.Lock()

    def prime(self, host: str) -> None:
        """Learn the values of the secrets already on ``host`` (every secret any task of the
        deployment places there, and every one the state says it placed there), so that no
        output of this run can show one; and check that the guarded ones are there (else
        :class:`SecretMissing`, raised for every task of the host)."""
        with self._prime_lock:
            if host in self._blocked:
                raise self._blocked[host]
            if host in self._primed:
                return
            paths = self._secret_paths.get(host, ())
            found: dict[str, str] = {}
            if paths:
                quoted = " ".join(shlex.quote(p) for p in paths)
                # per path (by its index): "<i> s <base64>" there, "<i> e" empty, "<i> m" not
                # there — or "<i> u" when this user cannot tell (a directory it cannot search)
                script = (
                    f'i=0; for f in {quoted}; do if [ -s "$f" ]; then printf "%s s " $i; '
                    'base64 -w0 < "$f"; echo; elif [ -e "$f" ]; then echo "$i e"; '
                    'else a=${f%/*}; while [ -n "$a" ] && [ ! -e "$a" ]; do a=${a%/*}; done; '
                    'if [ -z "$a" ] || [ -x "$a" ]; then echo "$i m"; else echo "$i u"; fi; fi; '
                    "i=$((i+1)); done; true"
                )
                self._emit(
                    CommandSent(
                        self._run_id,
                        (),
                        host,
                        "read the secrets this deployment keeps on the host (to mask them): "
                        + ", ".join(paths),
                        time.time(),
                    )
                )
                result = self._pool[host].run(script, timeout=self._timeout)
                for line in result.stdout.decode("ascii", "replace").splitlines():
                    index, _, rest = line.partition(" ")
                    how, _, value = rest.partition(" ")
                    if not index.isdigit() or int(index) >= len(paths):
                        continue
                    found[paths[int(index)]] = how
                    if how == "s" and value:
                        try:
                            _learn(self._masker, base64.b64decode(value))
                        except ValueError:
                            continue
            guarded = self._plan.guarded.get(host, frozenset())
            lost = {
                path: "empty" if found.get(path) == "e" else "missing"
                for path in guarded
                if found.get(path) in ("e", "m")
            }
            if lost and self._kind == "run":
                self._blocked[host] = missing_error(host, lost, self._plan)
                raise self._blocked[host]
            self._primed.add(host)

    def blocked_note(self, host: str) -> str:
        """Why a task of ``host`` is not run, once its first task said it in full."""
        error = self._blocked[host]
        lost = ", ".join(self._plan.names.get(p, p) for p in getattr(error, "paths", ()))
        return f"not run: {host} has lost secrets this deployment placed there ({lost})"

    def blocked(self, host: str) -> bool:
        """Whether none of ``host``'s tasks may run (a secret placed there is lost)."""
        return host in self._blocked


SECRET_KEYS = ("pass", "secret", "token", "key")
"""A JSON document's string values under keys naming one of these are secrets on their own
(the initial user's password in its file)."""


def _learn(masker: Masker, value: bytes) -> None:
    """Mask ``value`` — and, when it is a JSON object, each of its secret-named string
    values, in every form (:meth:`Masker.add_forms`): a password inside a document."""
    masker.add(value)
    if not value.lstrip().startswith(b"{"):
        return
    try:
        document = json.loads(value)
    except ValueError:
        return
    if isinstance(document, dict):
        for key, item in document.items():
            if isinstance(item, str) and any(word in key.lower() for word in SECRET_KEYS):
                masker.add_forms(item)


def _secret_paths(graph: TaskGraph) -> dict[str, tuple[str, ...]]:
    """Per host, the paths of every secret the deployment's tasks place there: each
    :class:`Secret`'s, and those a :class:`Call` declares in its ``secrets``."""
    paths: dict[str, set[str]] = {}
    for task in graph.tasks.values():
        if task.host is None:
            continue
        for op in task.actions:
            if isinstance(op, Secret):
                paths.setdefault(task.host, set()).add(op.path)
            elif isinstance(op, Call) and op.secrets:
                paths.setdefault(task.host, set()).update(op.secrets)
    return {host: tuple(sorted(found)) for host, found in paths.items()}
