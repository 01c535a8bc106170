#!/usr/bin/env python3
"""fedi-run's fixed start-up cost beside a tuned Fabric script, on one lab host, side by side.

Run as root (the lab needs it)::

    python bench/startup_bench.py [--repeat 15] [--out bench/results/startup_bench.md] [--keep]

Starts a lab of one host (``h1``) in a temporary directory and writes a one-task playbook
(``[tasks.noop]``, ``run = "true"`` on h1). Then, R rounds, each running every command below
once in both bytecode cases (the order rotated from round to round), timed as the wall time of
the whole subprocess (``time.monotonic`` around :func:`subprocess.run`: interpreter start,
imports, the work, exit):

* ``python -c pass`` — the interpreter's own start, the floor of any Python tool;
* ``fedi-run --help`` — the CLI with no command run;
* ``fedi-run plan one.toml -i INVENTORY --no-apply`` — load, validate and plan; no host;
* the Fabric script (``bench/startup/fabric_true.py``): import fabric, connect with the same
  key and pinned host key, TCP_NODELAY, run ``true``, exit — what a hand-tuned script pays;
* ``fedi-run one.toml -i INVENTORY --no-apply`` — the run an operator types (progress display
  on stderr, not a terminal), and the same with ``--json``.

The fixed cost is fedi-run's run minus the Fabric script: both open one connection to the same
host and run one ``true`` over it, so what is left is what fedi-run does besides (imports,
loading and validating the playbook, planning, the state database, the local render step of
the NixOps4 deployment that every run ends with, reporting). The goal (issue 15): under 0.3 s.

"Before the first byte to the host": the same two programs run again under
``bench/startup/first_connect.py``, which wraps ``socket.socket.connect`` and writes
``time.monotonic()`` (CLOCK_MONOTONIC, one clock for all processes) when the program first
connects to h1's address and port — the instant the TCP SYN leaves. The harness reads the clock
just before it starts the process; the difference is start-up until the first byte, measured
the same way for both programs, without strace or the program's own reports.

Bytecode: the environment may set PYTHONDONTWRITEBYTECODE, and an editable install (``pip
install -e``) compiles nothing, so fedi-run's own ~19k lines are compiled at every start unless
``compileall`` ran (.ci/install and ./quickstart run it; ``pip install .`` does it itself). Both
cases are measured, with ``PYTHONPYCACHEPREFIX`` (Python reads and writes bytecode only under
that directory then, never the tree's ``__pycache__``): one prefix holds the bytecode of every
module the commands import (filled by untimed warm-up runs and ``compileall`` of engine/,
plugins/ and panel/), the other a copy of it without fedi-run's sources — the editable install
without ``compileall``: the interpreter's and the libraries' bytecode exists (pip compiled it),
fedi-run's does not. PYTHONDONTWRITEBYTECODE=1 during the measurements, so neither changes;
the first prefix is compiled again (untimed) before each round, in case the sources changed.
The lab is always brought down, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run.fedi import git_state, source_dir, source_fingerprint  # noqa: E402
from run.session import in_work_directory, report_header  # noqa: E402
from run.timing import executable  # noqa: E402

DEFAULT_OUT = HERE / "results" / "startup_bench.md"
FABRIC_SCRIPT = HERE / "startup" / "fabric_true.py"
FIRST_CONNECT = HERE / "startup" / "first_connect.py"
GOAL = 0.3  # seconds: fedi-run's run minus the Fabric script's
CASES = ("bytecode", "no-bytecode")
CASE_LABELS = {
    "bytecode": "with bytecode (compileall / pip install .)",
    "no-bytecode": "without fedi-run's bytecode (editable, not compiled)",
}
PLAYBOOK = """\
[deployment]
name = "startup"
domain = "startup.example.org"

[tasks.noop]
hosts = ["h1"]
run = "true"
"""


@dataclass(frozen=True)
class Command:
    """One thing measured: its key, its label in the table, its argv, and, for the programs
    run under ``first_connect.py``, that they are (their figure is start-until-first-byte)."""

    key: str
    label: str
    argv: list[str]
    first_byte: bool = False


@dataclass
class Samples:
    """Seconds per command and case."""

    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def add(self, case: str, key: str, seconds: float) -> None:
        self.values.setdefault(case, {}).setdefault(key, []).append(seconds)

    def median(self, case: str, key: str) -> float | None:
        samples = self.values.get(case, {}).get(key)
        return statistics.median(samples) if samples else None


def commands(lab, workdir: Path) -> list[Command]:
    host = lab.hosts["h1"]
    fedi = executable("fedi-run")
    inventory = str(lab.inventory_path)
    fabric = [
        str(FABRIC_SCRIPT),
        host.address,
        str(host.port),
        host.user,
        str(lab.identity),
        str(lab.known_hosts_path),
    ]
    run = ["one.toml", "-i", inventory, "--no-apply"]
    log = str(workdir / "first-connect.log")
    wrap = [sys.executable, str(FIRST_CONNECT), log, host.address, str(host.port)]
    return [
        Command("pass", "`python -c pass`", [sys.executable, "-c", "pass"]),
        Command("help", "`fedi-run --help`", [fedi, "--help"]),
        Command("plan", "`fedi-run plan one.toml -i INV --no-apply`", [fedi, "plan", *run]),
        Command("fabric", "Fabric script (connect, `true`, exit)", [sys.executable, *fabric]),
        Command("fedi", "`fedi-run one.toml -i INV --no-apply`", [fedi, *run]),
        Command(
            "fedi-json", "`fedi-run one.toml -i INV --no-apply --json`", [fedi, *run, "--json"]
        ),
        Command("fabric-first", "Fabric script", [*wrap, *fabric], first_byte=True),
        Command(
            "fedi-first",
            "`fedi-run one.toml …`",
            [*wrap, "-m", "fedi_run.engine.cli.main", *run],
            first_byte=True,
        ),
    ]


def environment(prefix: Path, write: bool) -> dict[str, str]:
    env = {**os.environ, "PYTHONPYCACHEPREFIX": str(prefix)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if not write:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def compile_sources(prefix: Path) -> None:
    """What the installer does: ``compileall`` over engine/, plugins/ and panel/."""
    root = source_dir()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "compileall",
            "-q",
            *(str(root / d) for d in ("engine", "plugins", "panel")),
        ],
        env=environment(prefix, write=True),
        check=True,
        stdout=subprocess.DEVNULL,
    )


def run_once(command: Command, env: dict[str, str], workdir: Path) -> tuple[float, float]:
    """(seconds, CPU seconds) of one run; raises RuntimeError if it failed. For a first-byte
    command, the seconds from just before the start to its first connect to the host. The
    CPU time is the process's own (user + system), which other work on the machine inflates
    less than the wall time."""
    log = workdir / "first-connect.log"
    log.unlink(missing_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.run(
        command.argv,
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if proc.returncode != 0:
        raise RuntimeError(
            f"{command.label} exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-2000:]}"
        )
    if command.key == "fedi-json":
        finished = json.loads(proc.stdout.strip().splitlines()[-1])
        if finished.get("event") != "run_finished" or finished["recap"]["h1"]["changed"] != 1:
            raise RuntimeError(f"{command.label}: unexpected outcome {finished}")
    if command.first_byte:
        lines = log.read_text().splitlines()
        if len(lines) < 2 or "no connection" in lines:
            raise RuntimeError(f"{command.label}: never connected to the host ({lines})")
        seconds = float(lines[0]) - start
    return seconds, cpu


def prepare_prefixes(cmds: list[Command], workdir: Path) -> dict[str, Path]:
    """The two bytecode prefixes: warm-up runs and compileall fill the first, the second is
    the first without fedi-run's sources."""
    full = workdir / "pyc-all"
    for command in cmds:
        run_once(command, environment(full, write=True), workdir)
    compile_sources(full)
    source_mirror = full / str(source_dir()).lstrip("/")
    if not source_mirror.is_dir():
        raise RuntimeError(f"no bytecode of fedi-run's sources under {source_mirror}")
    bare = workdir / "pyc-deps"
    shutil.copytree(full, bare)
    shutil.rmtree(bare / str(source_dir()).lstrip("/"))
    return {"bytecode": full, "no-bytecode": bare}


def benchmark(args, workdir: Path) -> tuple[Samples, dict]:
    from fedi_run.engine.lab import Lab

    meta = {"load_before": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    print(f"lab: starting 1 host in {workdir / 'lab'}", file=sys.stderr)
    lab = Lab.up(workdir / "lab", ["h1"], acme=False)
    samples = Samples()
    fingerprints = [source_fingerprint()]
    try:
        (workdir / "one.toml").write_text(PLAYBOOK)
        cmds = commands(lab, workdir)
        meta["commands"] = [(c.key, c.label, c.first_byte) for c in cmds]
        prefixes = prepare_prefixes(cmds, workdir)
        for rnd in range(args.repeat):
            compile_sources(prefixes["bytecode"])
            shift = rnd % len(cmds)
            for command in cmds[shift:] + cmds[:shift]:
                for case in CASES if rnd % 2 == 0 else reversed(CASES):
                    env = environment(prefixes[case], write=False)
                    seconds, cpu = run_once(command, env, workdir)
                    samples.add(case, command.key, seconds)
                    samples.add(case, f"{command.key}:cpu", cpu)
            fingerprint = source_fingerprint()
            if fingerprint not in fingerprints:
                fingerprints.append(fingerprint)
            print(
                f"  round {rnd + 1}/{args.repeat}: fedi-run "
                + ", ".join(f"{case} {samples.values[case]['fedi'][-1]:.2f} s" for case in CASES)
                + f"; Fabric {samples.values['bytecode']['fabric'][-1]:.2f} s",
                file=sys.stderr,
            )
    finally:
        lab.down()
        print("lab: down", file=sys.stderr)
    meta["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    meta["fingerprints"] = fingerprints
    return samples, meta


def ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1000:.0f} ms"


def markdown(meta: dict, samples: Samples, cmds: list[tuple[str, str, bool]]) -> str:
    m = meta["machine"]
    med = samples.median
    out = [
        "# fedi-run start-up: one task on one host, beside a tuned Fabric script",
        "",
        f"{meta['date']} — {m['nproc']} cores ({m['cpu']}), Linux {m['kernel']}, Python "
        f"{m['python']}; load average {meta['load_before']} before, {meta['load_after']} "
        f"after. Medians over R = {meta['repeat']} rounds, interleaved. {meta['version']}.",
        "",
        f"`{meta['argv'].strip()}`",
        "",
        "Wall time of the whole process:",
        "",
        "| command | " + " | ".join(CASE_LABELS[c] for c in CASES) + " |",
        "|---|" + "---:|" * len(CASES),
    ]
    for key, label, first_byte in cmds:
        if not first_byte:
            out.append(f"| {label} | " + " | ".join(ms(med(c, key)) for c in CASES) + " |")
    diff = {c: med(c, "fedi") - med(c, "fabric") for c in CASES}
    out.append(
        "| **fixed cost: fedi-run run − Fabric script** | "
        + " | ".join(f"**{ms(diff[c])}**" for c in CASES)
        + " |"
    )
    out.append(
        "| fedi-run run ÷ Fabric script | "
        + " | ".join(f"{med(c, 'fedi') / med(c, 'fabric'):.2f}×" for c in CASES)
        + " |"
    )
    out += [
        "",
        "From the start of the process to its first byte to the host (`first_connect.py`):",
        "",
        "| program | " + " | ".join(CASE_LABELS[c] for c in CASES) + " |",
        "|---|" + "---:|" * len(CASES),
    ]
    for key, label, first_byte in cmds:
        if first_byte:
            out.append(f"| {label} | " + " | ".join(ms(med(c, key)) for c in CASES) + " |")
    out.append(
        "| fedi-run − Fabric script | "
        + " | ".join(ms(med(c, "fedi-first") - med(c, "fabric-first")) for c in CASES)
        + " |"
    )
    out += [
        "",
        "CPU time (user + system) of the same processes — what other work on the machine "
        "inflates less than the wall time (the host's sshd is not in it):",
        "",
        "| command | " + " | ".join(CASE_LABELS[c] for c in CASES) + " |",
        "|---|" + "---:|" * len(CASES),
    ]
    for key, label, first_byte in cmds:
        if not first_byte:
            out.append(f"| {label} | " + " | ".join(ms(med(c, f"{key}:cpu")) for c in CASES) + " |")
    out.append(
        "| fedi-run run − Fabric script | "
        + " | ".join(ms(med(c, "fedi:cpu") - med(c, "fabric:cpu")) for c in CASES)
        + " |"
    )
    out += ["", f"Goal (issue 15): fixed cost under {GOAL * 1000:.0f} ms:", ""]
    for c in CASES:
        verdict = "met" if diff[c] < GOAL else "NOT met"
        out.append(f"- {CASE_LABELS[c]}: {ms(diff[c])} — {verdict}.")
    if len(meta["fingerprints"]) > 1:
        out += ["", f"Warning: fedi-run's sources changed during the run: {meta['fingerprints']}."]
    out += ["", "## Every sample (ms)", ""]
    for c in CASES:
        for key, label, first_byte in cmds:
            values = samples.values.get(c, {}).get(key, [])
            what = f"{label}, start to first byte" if first_byte else label
            out.append(f"- {c}, {what}: " + ", ".join(f"{v * 1000:.0f}" for v in values))
    out += ["", "## What was measured", ""]
    out += [f"- {line}" for line in NOTES]
    return "\n".join(out) + "\n"


NOTES = [
    "Each command runs as a subprocess (stdin /dev/null, output captured), timed from just "
    "before its start to its exit; `fedi-run` is the console script beside the interpreter "
    "(no pyenv shim).",
    'The playbook has one task (`run = "true"` on h1); fedi-run also runs its local render '
    "step of the NixOps4 deployment, as every run does (`--no-apply` leaves out only the "
    "apply). Its state (.fedi-run/ beside the playbook) is kept between runs, as an "
    "operator's is.",
    "The Fabric script pins the host key, reads no SSH config and sets TCP_NODELAY; both "
    "programs log in with the lab's ed25519 key.",
    "Bytecode cases via PYTHONPYCACHEPREFIX (see the script's docstring): 'with bytecode' is "
    "an install that compiled fedi-run (pip install ., or .ci/install and ./quickstart, which "
    "run compileall); 'without' is an editable install that did not: every start compiles "
    "fedi-run's modules it imports. The interpreter's and the libraries' bytecode exists in "
    "both.",
    "The lab host's sshd runs on the same machine and shares the cores; other work may run "
    "beside (the load average is in the header), so compare figures within one run.",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=15, metavar="R", help="rounds (default 15)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the Markdown report")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    found = in_work_directory(
        "fedi-run-startup-", args.keep, lambda workdir: benchmark(args, workdir), "the lab is down"
    )
    if found is None:
        return 130
    samples, meta = found
    meta.update(
        {
            **report_header("startup_bench.py", argv),
            "repeat": args.repeat,
            "version": f"fedi-run {git_state()}, sources {meta['fingerprints'][0]}",
        }
    )
    text = markdown(meta, samples, meta["commands"])
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(
        json.dumps({"meta": meta, "samples": samples.values}, indent=1) + "\n"
    )
    print(f"written: {args.out} and {args.out.with_suffix('.json')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
