#!/usr/bin/env python3
"""N deployments deployed at once through the panel's queue (1 and 2 workers), beside the
same N run from the command line at once (issue 16).

Run as root (the lab needs it), in the panel's environment (Django, psycopg, celery[redis],
requests; Debian's postgresql and redis-server)::

    python bench/panel_queue_bench.py [--deployments 2] [--repeat 3]
                                      [--out bench/results/panel_queue_bench.md] [--keep]

Starts, in a temporary directory and on loopback only: a lab with one pair of hosts per
deployment (``gK`` and ``pK``: no two deployments share a host), a PostgreSQL and a Redis of
its own (plain processes, :mod:`panel_queue.services`), one ``fedi-run panel serve`` and
``panel worker`` processes (:func:`fedi_run.panel.embedded.spawn`), all sharing one data
directory. Everything it started is ended by its pid at the end, also on an error or Ctrl-C.

The deployment: the panel writes Fediversity playbooks only (services switched on in a form,
no operator's tasks), so the quickstart's ``examples/basic.toml`` cannot be deployed through
it as such. The panel deployment of the same shape is the one used: pixelfed (and garage,
which it needs) on two hosts, ``--no-apply`` ("End with nixops4 apply" off) — 7 tasks, 6 on
the two hosts and the local render, where basic.toml has 5 (4 and the render). The command
line runs the very playbook the panel writes for it (``deployment_files.spec_of`` and
``render_playbook``), with an inventory of its own pair of hosts.

Measured, per deployment, in each batch of N started at once:

* **through the panel** — from just before the Deploy request (the POST of the deploy page's
  *Confirm: deploy* button, over HTTP with a logged-in session, as the browser sends it) to
  the first task event in the progress JSON (``…/runs/<pk>/progress``, the endpoint the run
  page polls): a task no longer *pending* — **what the browser would show** as the first
  task's state change; and to the run's end there (``finished``: the worker has stored its
  record). The bench polls every 50 ms (the page itself polls every 400 ms, so a browser
  shows each change up to 0.4 s later than these figures);
* **from the command line** — ``fedi-run playbook.toml -i INV --no-apply --json`` started as a
  process: from just before its start to the first ``task_started`` line read from its
  output, and to its exit. Both keep the engine's state the same way: a schema per deployment
  in the panel's PostgreSQL database (``--state postgresql://…?options=-csearch_path%3D…``).

Each repetition first clears the hosts (``/var/lib/fedi-run``) and uses new deployments (fresh
names and engine state), so every sample is a first deploy in which everything changes. Phase
1 runs with one worker, phase 2 with two; in each, one untimed warm-up batch per worker (a
worker imports the engine on its first run), then R rounds, each a command-line batch and a
panel batch in alternating order. Each panel row is compared with the command line's batches
of its own phase.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from panel_queue import services
from run.session import in_work_directory, report_header

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "panel_queue_bench.md"
GOAL = 1.2
POLL = 0.05
TIMEOUT = 300.0
OPERATOR = "bench-operator"
CSRF_COOKIE = "fedi_run_panel_csrf"  # panel/site.py CSRF_COOKIE_NAME
SERVICES = ["pixelfed"]  # and garage, which it needs: two hosts
HOST_ROLES = ("garage", "pixelfed")
FEDI = str(Path(sys.executable).with_name("fedi-run"))


@dataclass(frozen=True)
class Sample:
    """One deployment of one batch: seconds from its start to its first task event and to its
    end; ``batch`` the seconds from the batch's first start to its last end."""

    how: str  # "cli" or "panel"
    workers: int  # 0 for the command line
    phase: int
    round: int
    deployment: int
    first_event: float
    total: float
    batch: float
    worker: str = ""


# -- the panel's processes -----------------------------------------------------------------


class Panel:
    """The data directory, ``serve`` and the workers, sharing PostgreSQL and Redis."""

    def __init__(self, base: Path, database: str, broker: str):
        self.base, self.database, self.broker = base, database, broker
        self.data = base / "panel-data"
        self.env = {
            **os.environ,
            "FEDI_RUN_PANEL_DIR": str(self.data),
            "FEDI_RUN_PANEL_DATABASE": database,
            "FEDI_RUN_PANEL_BROKER": broker,
        }
        self.port = services.free_port()
        self.web: subprocess.Popen | None = None
        self.workers: list = []
        self._files: list = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def create_operator(self, password: str) -> None:
        secret = self.base / "operator.pass"
        secret.touch(mode=0o600)
        secret.write_text(password + "\n")
        done = subprocess.run(
            [sys.executable, "-m", "fedi_run.engine.cli.main", "panel", "createuser", OPERATOR]
            + ["--password-file", str(secret)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        secret.unlink()
        if done.returncode != 0:
            raise RuntimeError(f"panel createuser exited {done.returncode}:\n{done.stderr}")

    def serve(self) -> None:
        log = self.base / "serve.log"
        errors = open(log, "w")
        self._files.append(errors)
        self.web = subprocess.Popen(
            [sys.executable, "-m", "fedi_run.engine.cli.main", "panel", "serve"]
            + ["--port", str(self.port)],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
        deadline = time.monotonic() + 60
        while "serving http://" not in log.read_text():
            if self.web.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"panel serve did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)

    def add_worker(self) -> None:
        from fedi_run.panel import embedded

        log = self.base / f"worker-{len(self.workers)}.log"
        out = open(log, "w")
        self._files.append(out)
        worker = embedded.spawn(
            self.data,
            self.database,
            self.broker,
            env=self.env,
            stdout=out,
            stderr=out,
            lifeline=True,  # it ends with the benchmark, however that ends
        )
        self.workers.append(worker)
        deadline = time.monotonic() + 60
        while "taking runs from" not in log.read_text():
            if not worker.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"panel worker did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
        time.sleep(1.0)  # connected to the broker

    def close(self) -> None:
        try:
            if self.web is not None:
                services.end(self.web)
        finally:
            for worker in self.workers:
                worker.stop(30)
            for file in self._files:
                file.close()

    def tracebacks(self) -> str:
        logs = [self.base / "serve.log"] + [
            self.base / f"worker-{i}.log" for i in range(len(self.workers))
        ]
        return "\n".join(p.read_text()[-3000:] for p in logs if "Traceback" in p.read_text())


class Browser:
    """A logged-in HTTP session, as the operator's browser has (cookie, CSRF token)."""

    def __init__(self, url: str, password: str):
        import requests

        self.url = url
        self.http = requests.Session()
        self.http.get(f"{url}login/", timeout=30).raise_for_status()
        answer = self.http.post(
            f"{url}login/",
            data={
                "username": OPERATOR,
                "password": password,
                "csrfmiddlewaretoken": self.http.cookies[CSRF_COOKIE],
                "next": "/",
            },
            headers={"Referer": f"{url}login/"},
            allow_redirects=False,
            timeout=30,
        )
        if answer.status_code != 302:
            raise RuntimeError(f"logging in failed: HTTP {answer.status_code}")

    def deploy(self, deployment_pk: int) -> str:
        """POST Confirm: deploy; the run page's path it redirects to."""
        target = f"{self.url}deployments/{deployment_pk}/deploy/confirm/"
        answer = self.http.post(
            target,
            data={"csrfmiddlewaretoken": self.http.cookies[CSRF_COOKIE]},
            headers={"Referer": target},
            allow_redirects=False,
            timeout=60,
        )
        location = answer.headers.get("Location", "")
        if answer.status_code != 302 or "/runs/" not in location:
            raise RuntimeError(f"deploy of {deployment_pk}: HTTP {answer.status_code} {location}")
        return location

    def progress(self, run_path: str, after: int) -> dict:
        answer = self.http.get(
            f"{self.url.rstrip('/')}{run_path}progress", params={"after": after}, timeout=60
        )
        answer.raise_for_status()
        return answer.json()


# -- deployments ---------------------------------------------------------------------------


def inventory_of(lab_inventory: dict, k: int) -> str:
    """The inventory of deployment ``k``: the lab's hosts ``gK`` and ``pK`` as garage and
    pixelfed."""
    lines = [f"# deployment {k}: lab hosts g{k} and p{k}"]
    for role, lab_name in zip(HOST_ROLES, (f"g{k}", f"p{k}")):
        lines += ["", f"[hosts.{role}]"]
        for key, value in lab_inventory["hosts"][lab_name].items():
            lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def panel_deployments(inventories: list[Path], tag: str) -> list[int]:
    """New deployments of the operator (as the form saves them), one per inventory; pks."""
    from django.contrib.auth import get_user_model

    from fedi_run.panel import initial_password
    from fedi_run.panel.models import Deployment

    owner = get_user_model().objects.get(username=OPERATOR)
    made = []
    for k, inventory in enumerate(inventories, 1):
        name = f"{tag}-d{k}"
        deployment = Deployment.objects.create(
            owner=owner,
            name=name,
            domain=f"{name}.example.org",
            inventory=str(inventory),
            services=SERVICES,
            initial_username="admin",
            initial_display_name="Admin",
            initial_email="admin@example.org",
            apply=False,
        )
        initial_password.set_password(deployment, f"bench password {name}")
        made.append(deployment.pk)
    return made


def cli_playbooks(base: Path, inventories: list[Path], tag: str) -> list[Path]:
    """The playbooks the panel would write for the same deployments, each in a directory of
    its own (its engine state beside it)."""
    from fedi_run.panel.deployment_files import spec_of
    from fedi_run.panel.models import Deployment
    from fedi_run.panel.playbooks import render_playbook

    made = []
    for k, _ in enumerate(inventories, 1):
        name = f"{tag}-d{k}"
        directory = base / "cli" / name
        directory.mkdir(parents=True, mode=0o700)
        password = directory / "initial-user-password"
        password.touch(mode=0o600)
        password.write_text(f"bench password {name}\n")
        deployment = Deployment(
            name=name,
            domain=f"{name}.example.org",
            services=SERVICES,
            initial_username="admin",
            initial_display_name="Admin",
            initial_email="admin@example.org",
            apply=False,
        )
        playbook = directory / "playbook.toml"
        playbook.write_text(render_playbook(spec_of(deployment, password)))
        made.append(playbook)
    return made


def clear_hosts(lab) -> None:
    for host in lab.hosts:
        lab.run(host, "rm -rf /var/lib/fedi-run", check=True)


# -- one batch -----------------------------------------------------------------------------


def cli_schema(playbook: Path) -> str:
    """The PostgreSQL schema of a command-line deployment's engine state."""
    return "bench_cli_" + re.sub(r"\W", "_", playbook.parent.name.lower())


def run_cli(
    playbooks: list[Path], inventories: list[Path], database: str
) -> list[tuple[float, float, str]]:
    """N command-line runs at once; (first event, total, "") of each, in seconds. Each keeps
    its engine state where the panel keeps a deployment's: a schema of its own in the same
    PostgreSQL database (``database``)."""
    results: list = [None] * len(playbooks)
    errors: list[str] = []

    def one(i: int) -> None:
        start = time.monotonic()
        process = subprocess.Popen(
            [
                FEDI,
                str(playbooks[i]),
                "-i",
                str(inventories[i]),
                "--no-apply",
                "--json",
                "--state",
                f"{database}?options=-csearch_path%3D{cli_schema(playbooks[i])}",
            ],
            cwd=playbooks[i].parent,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        first, last = None, None
        for line in process.stdout:
            if first is None and '"task_started"' in line:
                first = time.monotonic() - start
            if line.strip():
                last = line
        stderr = process.stderr.read()
        status = process.wait()
        total = time.monotonic() - start
        outcome = json.loads(last) if last else {}
        if status != 0 or outcome.get("event") != "run_finished" or first is None:
            errors.append(f"{playbooks[i]}: exit {status}: {stderr[-1500:]}")
            return
        results[i] = (first, total, "")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(playbooks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError("a command-line run failed: " + "; ".join(errors))
    return results


def run_panel(browsers: list[Browser], pks: list[int]) -> list[tuple[float, float, str]]:
    """N deploys at once through the panel, each followed on its progress JSON."""
    results: list = [None] * len(pks)
    errors: list[str] = []
    go = threading.Barrier(len(pks))

    def one(i: int) -> None:
        try:
            go.wait()
            start = time.monotonic()
            run_path = browsers[i].deploy(pks[i])
            first, after = None, 0
            while True:
                data = browsers[i].progress(run_path, after)
                now = time.monotonic() - start
                after = data.get("next", after)
                if first is None and any(
                    t.get("status") not in (None, "pending") for t in data.get("tasks") or []
                ):
                    first = now
                if data["finished"]:
                    break
                if now > TIMEOUT:
                    raise RuntimeError(f"{run_path}: not done after {TIMEOUT:.0f} s")
                time.sleep(POLL)
            if data.get("state") != "finished" or data.get("exit_status") != 0:
                raise RuntimeError(
                    f"{run_path}: {data.get('state')}, exit {data.get('exit_status')}: "
                    f"{data.get('error', '')}"
                )
            if first is None:  # ended between two polls: its first event shows with the end
                first = now
            results[i] = (first, now, data.get("worker", ""))
        except Exception as error:  # noqa: BLE001 - reported by the batch
            errors.append(f"deployment {pks[i]}: {type(error).__name__}: {error}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(pks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError("a panel run failed: " + "; ".join(errors))
    return results


def batch_samples(how, workers, phase, rnd, results) -> list[Sample]:
    batch = max(total for _, total, _ in results)  # every start is within ms of the batch's
    return [
        Sample(how, workers, phase, rnd, k, first, total, batch, worker)
        for k, (first, total, worker) in enumerate(results, 1)
    ]


# -- the benchmark -------------------------------------------------------------------------


def benchmark(args, workdir: Path) -> tuple[list[Sample], dict]:
    import secrets

    from fedi_run.engine.lab import Lab

    meta = {"load_before": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    n = args.deployments
    hosts = [h for k in range(1, n + 1) for h in (f"g{k}", f"p{k}")]
    samples: list[Sample] = []
    print(f"lab: starting {len(hosts)} hosts in {workdir / 'lab'}", file=sys.stderr)
    lab = Lab.up(workdir / "lab", hosts, acme=False)
    try:
        lab_inventory = tomllib.loads(lab.inventory_path.read_text())
        inventories = []
        for k in range(1, n + 1):
            path = workdir / f"inventory-{k}.toml"
            path.write_text(inventory_of(lab_inventory, k))
            inventories.append(path)
        with services.postgres() as database, services.redis() as broker:
            panel = Panel(workdir, database, broker)
            try:
                from fedi_run.panel import site

                site.configure(panel.data, database=database, broker=broker)
                site.migrate()
                password = secrets.token_urlsafe(18)
                panel.create_operator(password)
                panel.serve()
                browsers = [Browser(panel.url, password) for _ in range(n)]
                for phase, workers in enumerate((1, 2), 1):
                    while len(panel.workers) < workers:
                        panel.add_worker()
                    for warm in range(workers):  # untimed: each worker imports the engine
                        clear_hosts(lab)
                        tag = f"warm{workers}-{warm}"
                        run_panel(browsers, panel_deployments(inventories, tag))
                        if phase == 1 and warm == 0:
                            run_cli(cli_playbooks(workdir, inventories, tag), inventories, database)
                    for rnd in range(1, args.repeat + 1):
                        order = ("cli", "panel") if rnd % 2 else ("panel", "cli")
                        for how in order:
                            clear_hosts(lab)
                            tag = f"{how}-w{workers}-r{rnd}"
                            if how == "cli":
                                playbooks = cli_playbooks(workdir, inventories, tag)
                                results = run_cli(playbooks, inventories, database)
                                made = batch_samples("cli", 0, phase, rnd, results)
                            else:
                                pks = panel_deployments(inventories, tag)
                                results = run_panel(browsers, pks)
                                made = batch_samples("panel", workers, phase, rnd, results)
                            samples += made
                            print(
                                f"  {workers} worker(s), round {rnd}, {how}: "
                                + ", ".join(f"{s.first_event:.2f}/{s.total:.2f} s" for s in made),
                                file=sys.stderr,
                            )
                problems = panel.tracebacks()
                if problems:
                    print(f"tracebacks in the panel's logs:\n{problems}", file=sys.stderr)
            finally:
                panel.close()
    finally:
        lab.down()
        print("lab: down", file=sys.stderr)
    meta["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return samples, meta


def median(values: list[float]) -> float:
    return statistics.median(values)


def rows_of(samples: list[Sample], n: int) -> list[dict]:
    """The table's rows, per worker count: the command line's batches of that phase (run
    interleaved with the panel's), then the panel's, its ratio to them."""
    rows = []
    for phase, workers in enumerate((1, 2), 1):
        cli = [s for s in samples if s.how == "cli" and s.phase == phase]
        panel = [s for s in samples if s.how == "panel" and s.workers == workers]
        if not cli or not panel:
            continue
        cli_total = median([s.total for s in cli])
        plural = "s" if workers > 1 else ""
        for label, chosen in (
            (f"CLI, N processes (beside {workers} worker{plural})", cli),
            (f"panel, {workers} worker{plural}", panel),
        ):
            total = median([s.total for s in chosen])
            rows.append(
                {
                    "label": label,
                    "how": chosen[0].how,
                    "workers": workers,
                    "n": n,
                    "first_event": median([s.first_event for s in chosen]),
                    "total": total,
                    "batch": median(list({s.round: s.batch for s in chosen}.values())),
                    "ratio": total / cli_total,
                    "samples": len(chosen),
                }
            )
    return rows


def markdown(meta: dict, samples: list[Sample]) -> str:
    m = meta["machine"]
    rows = rows_of(samples, meta["deployments"])
    out = [
        "# N deployments at once: through the panel's queue beside the command line",
        "",
        f"{meta['date']} — {m['nproc']} cores ({m['cpu']}), Linux {m['kernel']}, Python "
        f"{m['python']}; load average {meta['load_before']} before, {meta['load_after']} "
        f"after. N = {meta['deployments']} deployments at once, R = {meta['repeat']} rounds per "
        "worker count; medians.",
        "",
        f"`{meta['argv'].strip()}`",
        "",
        "| how | workers | N | first event (median) | total per deployment (median) "
        "| all N done (median) | ratio to the CLI's total |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        out.append(
            f"| {row['label']} | {row['workers']} | {row['n']} | "
            f"{row['first_event']:.2f} s | {row['total']:.2f} s | {row['batch']:.2f} s | "
            f"{row['ratio']:.2f}× |"
        )
    out += [
        "",
        f"Goal (issue 16): time per deployment through the queue within {GOAL}× of the CLI:",
        "",
    ]
    for row in (r for r in rows if r["how"] == "panel"):
        verdict = "met" if row["ratio"] <= GOAL else "NOT met"
        out.append(f"- {row['label']}: {row['ratio']:.2f}× — {verdict}.")
    out += ["", "## Every sample (first event / total, s)", ""]
    for row_how, phase in (("cli", 1), ("panel", 1), ("cli", 2), ("panel", 2)):
        chosen = [s for s in samples if s.how == row_how and s.phase == phase]
        if chosen:
            label = f"{'CLI' if row_how == 'cli' else 'panel'}, phase {phase} ({phase} worker(s))"
            out.append(
                f"- {label}: "
                + ", ".join(
                    f"p{s.phase}r{s.round}d{s.deployment} {s.first_event:.2f}/{s.total:.2f}"
                    for s in chosen
                )
            )
    out += ["", "## What was measured", ""]
    out += [f"- {line}" for line in NOTES]
    return "\n".join(out) + "\n"


NOTES = [
    "The deployment: pixelfed and garage on two lab hosts, --no-apply — the panel's deployment "
    "of the quickstart's size (examples/basic.toml: two hosts, 5 tasks; the panel writes only "
    "Fediversity playbooks, this one has 7 tasks). The CLI runs the very playbook the panel "
    "writes. No two deployments share a host.",
    "Panel: from just before the Deploy request (POST of Confirm: deploy, a logged-in HTTP "
    "session) to the first task no longer pending in the progress JSON the run page polls — "
    "what the browser would show — and to `finished` there (the run's record stored). Polled "
    "every 50 ms; the page polls every 400 ms, so a browser shows each up to 0.4 s later.",
    "CLI: `fedi-run playbook.toml -i INV --no-apply --json` as a process, from just before its "
    "start to the first task_started line read from its output, and to its exit (interpreter "
    "start and imports included; a worker has them done already).",
    "Both keep the engine's state alike: each deployment in a schema of its own in the panel's "
    "PostgreSQL database (the CLI with `--state postgresql://…?options=-csearch_path%3D…`), "
    "as the panel does with its database on PostgreSQL.",
    "A worker writes a run's progress every 0.3 s (panel/worker.py WATCH) and takes one run at "
    "a time: with fewer workers than deployments, the others wait in the queue, and their time "
    "counts from their Deploy request.",
    "All N are started at once (threads); 'all N done' is the batch's last end. Every sample is a "
    "first deploy (hosts cleared, new deployment names and engine state).",
    "Everything runs on one machine: PostgreSQL, Redis, the web process, the workers, the lab's "
    "sshd hosts and the CLI processes share its cores, with other work beside (the load average "
    "is in the header); CLI and panel batches alternate, so they see the same conditions, and "
    "each panel row is compared with the CLI batches of its own phase.",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--deployments", type=int, default=2, metavar="N", help="deployments at once (default 2)"
    )
    parser.add_argument("--repeat", type=int, default=3, metavar="R", help="rounds (default 3)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the Markdown report")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    if args.deployments < 1 or args.repeat < 1:
        parser.error("--deployments and --repeat must be at least 1")
    found = in_work_directory(
        "fedi-run-panel-queue-",
        args.keep,
        lambda workdir: benchmark(args, workdir),
        "everything started is stopped",
    )
    if found is None:
        return 130
    samples, meta = found
    meta.update(
        {
            **report_header("panel_queue_bench.py", argv),
            "deployments": args.deployments,
            "repeat": args.repeat,
        }
    )
    text = markdown(meta, samples)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(
        json.dumps(
            {
                "meta": meta,
                "rows": rows_of(samples, args.deployments),
                "samples": [asdict(s) for s in samples],
            },
            indent=1,
        )
        + "\n"
    )
    print(text)
    print(f"written: {args.out} and {args.out.with_suffix('.json')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
