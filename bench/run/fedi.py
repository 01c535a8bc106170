"""fedi-run itself over the workload: ``fedi-run run bench.toml -i INVENTORY --no-apply --json``.

Generated per lab: ``bench.toml`` with the operator's own tasks only — ``tasks.dir``
(``directory``, mode 0755), ``tasks.f1`` … ``tasks.fK`` (``file``, mode 0644, content a
template with ``{{ host.name }}``, requiring ``tasks.dir``) and ``tasks.marker`` (``run =
"touch …"`` with ``creates``), each with ``hosts = [every host]``. The hosts come from the
lab's inventory (``-i``); the playbook has no ``[hosts]``. ``--forks N``: fedi-run runs one
task per host at a time, so N forks run every host in parallel.

State is kept beside the playbook (``.fedi-run/``); :meth:`FediRun.reset` deletes it before
each repetition, so a repetition's first run starts from nothing and its second run sees the
first run's state, as an operator's would. Changes are the ``changed`` counts of the last
JSON line (``run_finished``'s ``recap``: host → status → count); its ``duration`` (the
engine's own time, from the run's start to its end) is kept too: the rest of the wall time
is start-up (interpreter, imports, loading the playbook) and exit.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .timing import Invocation, Tool, executable, timed, version_of
from .workload import COMMAND, DIRECTORY, MARKER


def toml_string(value: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's for what the workload holds)."""
    return json.dumps(value, ensure_ascii=False)


def playbook(workload) -> str:
    """bench.toml for ``workload``."""
    hosts = "[" + ", ".join(toml_string(h) for h in workload.hosts) + "]"
    out = [
        "[deployment]",
        'name = "bench"',
        'domain = "bench.example.org"',
        "",
        "[tasks.dir]",
        f"hosts = {hosts}",
        f'directory = {{ path = {toml_string(DIRECTORY)}, mode = "0755" }}',
        "",
    ]
    for i in workload.indices():
        content = toml_string(workload.content_template(i, "{{ host.name }}"))
        out += [
            f"[tasks.f{i}]",
            f"hosts = {hosts}",
            (
                f"file = {{ path = {toml_string(workload.path(i))}, "
                f'content = {content}, mode = "0644" }}'
            ),
            'requires = ["tasks.dir"]',
            "",
        ]
    out += [
        "[tasks.marker]",
        f"hosts = {hosts}",
        f"run = {toml_string(COMMAND)}",
        f"creates = {toml_string(MARKER)}",
        'requires = ["tasks.dir"]',
        "",
        "[run]",
        f"forks = {len(workload.hosts)}",
        "",
    ]
    return "\n".join(out)


def recap_changes(output: str, hosts: set[str]) -> tuple[int | None, dict]:
    """(changed on ``hosts``, the ``run_finished`` record) from ``--json`` output; changed is
    None unless the run finished with exit status 0 and nothing failed, was skipped or
    unreachable. Only the lab hosts count: the engine's own step on the deployer ("local":
    rendering the NixOps4 deployment, written afresh after each reset) is no workload change."""
    for line in reversed(output.strip().splitlines()):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == "run_finished":
            recap = {h: c for h, c in (record.get("recap") or {}).items() if h in hosts}
            bad = sum(
                counts.get(s, 0)
                for counts in recap.values()
                for s in ("failed", "skipped", "unreachable")
            )
            if record.get("exit_status") != 0 or bad:
                return None, record
            return sum(counts.get("changed", 0) for counts in recap.values()), record
    return None, {}


def source_dir() -> Path:
    """The directory holding fedi-run's ``engine/`` and ``plugins/`` (the repository, for an
    editable install)."""
    import fedi_run.engine

    return Path(fedi_run.engine.__file__).resolve().parent.parent


def source_fingerprint() -> str:
    """A short hash of every ``.py`` file of fedi-run's engine and plugins."""
    import hashlib

    digest = hashlib.sha256()
    root = source_dir()
    for path in sorted(p for d in ("engine", "plugins") for p in (root / d).rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def git_state() -> str:
    """``git <short hash>`` and whether engine/ or plugins/ differ from it, if in a checkout."""
    import subprocess

    root = source_dir()
    head = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    if head.returncode != 0:
        return "not a git checkout"
    dirty = subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain", "--", "engine", "plugins"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"git {head.stdout.strip()}" + (", engine/plugins modified" if dirty else ", clean")


class FediRun(Tool):
    name = "fedi-run"
    label = "fedi-run"
    command_note = '`run = "touch marker"` with `creates = marker`'

    def version(self) -> str:
        version = version_of([executable("fedi-run"), "--version"])
        return f"{version} ({git_state()}, sources {source_fingerprint()})"

    def fingerprint(self) -> str:
        return source_fingerprint()

    def prepare(self, lab, workload, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "bench.toml").write_text(playbook(workload))
        self.hosts = set(workload.hosts)
        self.argv = [
            executable("fedi-run"),
            "run",
            "bench.toml",
            "-i",
            str(lab.inventory_path),
            "--no-apply",
            "--json",
            "--forks",
            str(len(workload.hosts)),
        ]
        self.count = 0

    def reset(self) -> None:
        shutil.rmtree(self.workdir / ".fedi-run", ignore_errors=True)

    def invoke(self, phase: str) -> Invocation:
        self.count += 1
        run = timed(self.argv, cwd=self.workdir, log=self.workdir / f"{self.count:02d}-{phase}.log")
        changed, record = recap_changes(run.output, self.hosts)
        return Invocation(
            run.seconds, run.returncode, run.output, run.log, changed, record.get("duration")
        )


def command_latency(lab, host: str, runs: int) -> dict:
    """Median milliseconds of ``true`` over fedi-run's own open connection to ``host``
    (:class:`fedi_run.engine.execute.connection.HostConnection`, in this process), or why not."""
    import statistics
    import time

    try:
        from fedi_run.engine.execute.connection import HostConnection, HostKeyPolicy
        from fedi_run.engine.model.playbook import HostSection

        info = lab.hosts[host]
        section = HostSection(
            address=info.address,
            port=info.port,
            user=info.user,
            host_key=info.host_key,
            identity=str(lab.identity),
        )
        conn = HostConnection(host, section, HostKeyPolicy(known_hosts=lab.known_hosts_path))
    except Exception as error:  # noqa: BLE001 - fedi-run's API may not be there yet
        return {"error": f"{type(error).__name__}: {error}"}
    try:
        conn.run("true")  # connect
        samples = []
        for _ in range(runs):
            start = time.perf_counter()
            result = conn.run("true")
            samples.append(time.perf_counter() - start)
            if result.exit_status != 0:
                return {"error": f"`true` exited {result.exit_status}"}
        return {"runs": runs, "ms": statistics.median(samples) * 1000}
    except Exception as error:  # noqa: BLE001
        return {"error": f"{type(error).__name__}: {error}"}
    finally:
        conn.close()
