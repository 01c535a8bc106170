"""The baseline: a hand-written, tuned Fabric loop doing the workload's commands.

Also a script, run as a subprocess so that interpreter start counts as for every other tool::

    python bench/run/fabric_loop.py loop SPEC.json      # the workload, once
    python bench/run/fabric_loop.py latency SPEC.json   # median cost of `true`, tuned and not

One thread per host, one ``fabric.Connection`` per host, tuned as DESIGN.md measured:
``TCP_NODELAY`` on the transport's socket, ``in_stream=False``, ``hide=True`` and
``Runner.input_sleep`` at 1 ms (invoke's wait loop polls at that period; the default is
10 ms). The host key is pinned (the lab's known_hosts, ``RejectPolicy``); no SSH config
files are read. Per host: one command for the directory, one per file, one for the guarded
command — each a check-then-write in one round trip that prints ``changed`` when it
changed something, so the second run does the same round trips as the first and reports
0 changes. The spec (written by :class:`FabricLoop`) holds hosts, key, known_hosts and the
file contents. The script prints one JSON line.
"""

from __future__ import annotations

import json
import shlex
import socket
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

if __package__:  # imported by run_bench.py; the script itself needs neither
    from .timing import Invocation, Tool, timed
    from .workload import DIRECTORY, MARKER
else:
    Tool = object
    DIRECTORY, MARKER = "/srv/bench", "/srv/bench/marker"

TUNED_INPUT_SLEEP = 0.001


# -- the script: runs with fabric only --------------------------------------------------


def commands(files: list[dict]) -> list[str]:
    """The loop's commands for one host: directory, each file, the guarded command."""
    out = [
        (
            f'[ -d {DIRECTORY} ] && [ "$(stat -c %a {DIRECTORY})" = 755 ] || '
            f"{{ mkdir -p {DIRECTORY} && chmod 0755 {DIRECTORY} && echo changed; }}"
        )
    ]
    for f in files:
        path, content = shlex.quote(f["path"]), shlex.quote(f["content"])
        out.append(
            f'[ "$(stat -c %a {path} 2>/dev/null)" = 644 ] '
            f"&& printf %s {content} | cmp -s - {path} || "
            f"{{ printf %s {content} > {path}.tmp && chmod 0644 {path}.tmp "
            f"&& mv {path}.tmp {path} && echo changed; }}"
        )
    out.append(f"[ -e {MARKER} ] || {{ touch {MARKER} && echo changed; }}")
    return out


def connect(spec: dict, host: dict, tuned: bool = True):
    """An open, pinned Fabric connection to ``host``; ``tuned`` sets TCP_NODELAY."""
    import paramiko
    from fabric import Config, Connection

    conn = Connection(
        host["address"],
        user=host["user"],
        port=host["port"],
        config=Config(ssh_config=paramiko.SSHConfig()),  # read no ~/.ssh/config
        connect_kwargs={
            "key_filename": spec["identity"],
            "look_for_keys": False,
            "allow_agent": False,
        },
    )
    conn.client.load_host_keys(spec["known_hosts"])
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    conn.open()
    if tuned:
        conn.client.get_transport().sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def run_host(spec: dict, host: dict) -> int:
    """The workload on one host over one connection; the number of changes."""
    conn = connect(spec, host)
    try:
        changed = 0
        for command in commands(host["files"]):
            result = conn.run(command, hide=True, in_stream=False, warn=True)
            if result.exited != 0:
                raise RuntimeError(
                    f"{host['name']}: `{command[:60]}...` exited {result.exited}: "
                    f"{result.stderr.strip()}"
                )
            changed += result.stdout.count("changed")
        return changed
    finally:
        conn.close()


def loop(spec: dict) -> dict:
    """The whole workload, one thread per host."""
    import invoke.runners

    invoke.runners.Runner.input_sleep = TUNED_INPUT_SLEEP
    with ThreadPoolExecutor(max_workers=len(spec["hosts"])) as pool:
        counts = list(pool.map(lambda h: run_host(spec, h), spec["hosts"]))
    return {
        "changed": sum(counts),
        "per_host": dict(zip((h["name"] for h in spec["hosts"]), counts)),
    }


def latency(spec: dict, runs: int) -> dict:
    """Median milliseconds of `true` over an open connection: default Fabric, then tuned."""
    import invoke.runners

    host = spec["hosts"][0]
    out = {"runs": runs, "host": host["name"]}
    for label, tuned in (("default", False), ("tuned", True)):
        invoke.runners.Runner.input_sleep = TUNED_INPUT_SLEEP if tuned else 0.01
        conn = connect(spec, host, tuned=tuned)
        try:
            kwargs = {"hide": True, "in_stream": False} if tuned else {"hide": True}
            conn.run("true", **kwargs)  # warm up
            samples = []
            for _ in range(runs):
                start = time.perf_counter()
                conn.run("true", **kwargs)
                samples.append(time.perf_counter() - start)
        finally:
            conn.close()
        out[f"{label}_ms"] = statistics.median(samples) * 1000
    return out


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("loop", "latency"):
        print(__doc__, file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[1]).read_text())
    result = (
        loop(spec) if argv[0] == "loop" else latency(spec, int(argv[2]) if len(argv) > 2 else 200)
    )
    print(json.dumps(result))
    return 0


# -- the runner: used by run_bench.py ----------------------------------------------------


class FabricLoop(Tool):
    """Runs this module as a script over the workload."""

    name = "fabric"
    label = "Fabric loop (baseline)"
    command_note = "`[ -e marker ] || touch marker`, one round trip"

    def version(self) -> str:
        import fabric
        import paramiko

        return f"fabric {fabric.__version__}, paramiko {paramiko.__version__}"

    def prepare(self, lab, workload, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.spec_path = workdir / "spec.json"
        hosts = [
            {
                "name": name,
                "address": info.address,
                "port": info.port,
                "user": info.user,
                "files": [
                    {"path": workload.path(i), "content": workload.content(name, i)}
                    for i in workload.indices()
                ],
            }
            for name, info in ((n, lab.hosts[n]) for n in workload.hosts)
        ]
        self.spec_path.write_text(
            json.dumps(
                {
                    "identity": str(lab.identity),
                    "known_hosts": str(lab.known_hosts_path),
                    "hosts": hosts,
                },
                indent=1,
            )
        )
        self.count = 0

    def invoke(self, phase: str) -> Invocation:
        self.count += 1
        run = timed(
            [sys.executable, __file__, "loop", str(self.spec_path)],
            cwd=self.workdir,
            log=self.workdir / f"{self.count:02d}-{phase}.log",
        )
        changed = None
        if run.returncode == 0:
            changed = json.loads(run.output.strip().splitlines()[-1])["changed"]
        return Invocation(run.seconds, run.returncode, run.output, run.log, changed)

    def latency(self, runs: int) -> dict:
        """The per-command figures (a subprocess, like the loop)."""
        run = timed(
            [sys.executable, __file__, "latency", str(self.spec_path), str(runs)],
            cwd=self.workdir,
            log=self.workdir / "latency.log",
        )
        if run.returncode != 0:
            raise RuntimeError(f"latency measurement failed:\n{run.tail()}")
        return json.loads(run.output.strip().splitlines()[-1])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
