#!/usr/bin/env python3
"""fedi-run against ansible-playbook, pyinfra and a tuned Fabric loop, side by side.

Run as root (the lab needs it), with the bench extra installed (``pip install -e '.[bench]'``)::

    python bench/run_bench.py [--hosts 16] [--files 20] [--repeat 5] [--ansible-repeat 3]
                              [--tools fabric,fedi-run,pyinfra,ansible] [--ansible-strategy free]
                              [--out bench/results/run_bench.md]

Starts a lab of N hosts (h1 … hN) in a temporary directory and, for each repetition and
each tool: removes ``/srv/bench`` on every host, times the tool's first run of the workload
W(N, K) (everything changes) and its second run (nothing changes), each as the wall time of
the whole invocation (a subprocess: interpreter start included), and verifies the hosts after
each (every file's content and mode, read back with ``sha256sum``) and the changes each tool
reported (K + 2 per host on the first run, 0 on the second). Tools run interleaved, one
repetition at a time. Then prints the Markdown table of medians and ratios and writes it to
``--out`` (and the raw samples beside it, ``.json``). The lab is always brought down, also
on Ctrl-C. See bench/run/ for each tool's settings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run.ansible_play import AnsiblePlaybook
from run.fabric_loop import FabricLoop
from run.fedi import FediRun, command_latency
from run.pyinfra_deploy import Pyinfra
from run.report import ToolResult, markdown
from run.session import in_work_directory, report_header
from run.timing import Tool
from run.workload import Workload

TOOLS = ("fabric", "fedi-run", "pyinfra", "ansible")
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "run_bench.md"

NOTES = [
    (
        "Each time is the wall-clock time of one whole tool invocation, started as a subprocess: "
        "interpreter start, imports, parsing, SSH connection set-up to every host, the work, and "
        "teardown. Nothing is kept open between invocations: Ansible's ControlPersist masters are "
        "closed after each invocation (untimed), so every tool pays its own connections."
    ),
    (
        "First run: the hosts' /srv/bench was removed just before, so the directory, the K files "
        "and the command all change. Second run: right after, nothing changes."
    ),
    (
        "After every run the harness read every host back over its own SSH connection "
        "(`stat`, `sha256sum`): directory mode 0755, each file's content and mode 0644, the marker."
    ),
    (
        "Hosts are lab hosts (sshd in namespaces on 127.0.0.0/8, docs/lab.md) on the same machine "
        "as the tools: the tools' CPU and the hosts' sshd share the cores."
    ),
    (
        "fedi-run keeps state beside its playbook (.fedi-run/); it is deleted before each "
        "repetition's first run and kept for the second."
    ),
    (
        "The machine is shared: other work (and each tool's own load, Ansible's above all) runs "
        "beside the benchmark, so absolute times vary between runs (the load average is in the "
        "header); the tools are interleaved, one repetition at a time, so they see the same "
        "conditions, and the ratios within one run are the figures to compare."
    ),
    (
        "Ansible's strategy is `free` unless `--ansible-strategy` says otherwise: in a probe at "
        "W(16, 20) here (`--ansible-strategy linear,free --ansible-repeat 1`) free took 104.7 s / "
        "103.1 s and linear 112.3 s / 102.8 s (first / second run)."
    ),
    (
        "Before the repetitions, each tool but Ansible ran once untimed (a warm-up: byte-code "
        "compiled, files cached); Ansible's byte-code was compiled when pip installed it."
    ),
    (
        "The Fabric loop is the floor for a Python engine over SSH: one thread and one tuned "
        "Fabric connection per host (TCP_NODELAY, in_stream=False, Runner.input_sleep = 1 ms), "
        "one check-then-write command per file, so its second run makes the same round trips as "
        "its first."
    ),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, default=16, metavar="N", help="lab hosts (default 16)")
    parser.add_argument(
        "--files", type=int, default=20, metavar="K", help="files per host (default 20)"
    )
    parser.add_argument(
        "--repeat", type=int, default=5, metavar="R", help="repetitions (default 5)"
    )
    parser.add_argument(
        "--ansible-repeat",
        type=int,
        default=3,
        metavar="R",
        help="repetitions for Ansible, which is slow (default 3)",
    )
    parser.add_argument(
        "--tools", default=",".join(TOOLS), help=f"comma-separated, of {', '.join(TOOLS)}"
    )
    parser.add_argument(
        "--ansible-strategy",
        default="free",
        help="linear, free, or both as 'linear,free' (one row each); default free, "
        "the faster at W(16, 20) here (see bench/results/)",
    )
    parser.add_argument(
        "--latency-runs", type=int, default=200, help="runs of `true` per latency figure"
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="the Markdown report (default %(default)s)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work directory (logs, generated files)"
    )
    parser.add_argument(
        "--from-json",
        type=Path,
        metavar="FILE",
        help="measure nothing: render the report again from a run's .json",
    )
    args = parser.parse_args(argv)
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = set(args.tools) - set(TOOLS)
    if unknown or not args.tools:
        parser.error(f"unknown tools {sorted(unknown)}; expected some of {', '.join(TOOLS)}")
    if min(args.hosts, args.files, args.repeat, args.ansible_repeat) < 1:
        parser.error("--hosts, --files, --repeat and --ansible-repeat must be at least 1")
    return args


def make_tools(args) -> list[tuple[Tool, int]]:
    """The tools asked for, in table order, each with its number of repetitions."""
    tools: list[tuple[Tool, int]] = []
    for name in TOOLS:
        if name not in args.tools:
            continue
        if name == "fabric":
            tools.append((FabricLoop(), args.repeat))
        elif name == "fedi-run":
            tools.append((FediRun(), args.repeat))
        elif name == "pyinfra":
            tools.append((Pyinfra(), args.repeat))
        else:
            for strategy in args.ansible_strategy.split(","):
                tools.append((AnsiblePlaybook(strategy.strip()), args.ansible_repeat))
    return tools


def key_of(tool: Tool) -> str:
    return tool.name if tool.name != "ansible" else f"ansible-{tool.strategy}"


def one_repetition(lab, workload: Workload, tool: Tool, result: ToolResult) -> None:
    """Reset, first run, verify, second run, verify; raises RuntimeError on a wrong outcome."""
    workload.reset(lab)
    tool.reset()
    for phase, expected in (("first", workload.total_changes), ("second", 0)):
        fingerprint = tool.fingerprint()
        if fingerprint is not None and fingerprint not in result.fingerprints:
            result.fingerprints.append(fingerprint)
            if len(result.fingerprints) > 1:
                warning = (
                    f"its code changed during the run (now {fingerprint}; seen "
                    f"{', '.join(result.fingerprints[:-1])}): samples mix versions"
                )
                result.warnings.append(warning)
                print(f"  warning: {warning}", file=sys.stderr)
        try:
            run = tool.invoke(phase)
        finally:
            tool.cleanup()
        if run.returncode != 0:
            raise RuntimeError(
                f"{phase} run exited {run.returncode} (log {run.log}):\n{run.tail()}"
            )
        problems = workload.verify(lab)
        if problems:
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            raise RuntimeError(f"after the {phase} run: " + "; ".join(problems[:5]) + more)
        getattr(result, phase).append(run.seconds)
        getattr(result, f"changed_{phase}").append(run.changed)
        getattr(result, f"inner_{phase}").append(run.inner)
        if run.changed is None:
            warning = f"{phase} run: could not read the changes it reported (log {run.log.name})"
        elif run.changed != expected:
            warning = f"{phase} run: reported {run.changed} changes, expected {expected}"
        else:
            continue
        if phase == "second" and run.changed:
            raise RuntimeError(warning)
        if warning not in result.warnings:
            result.warnings.append(warning)
        print(f"  warning: {warning}", file=sys.stderr)


def warm_up(lab, workload: Workload, tools: list[Tool]) -> None:
    """One untimed run of each tool, so that no measurement pays for compiling byte-code."""
    for tool in tools:
        workload.reset(lab)
        tool.reset()
        try:
            run = tool.invoke("warm-up")
        finally:
            tool.cleanup()
        if run.returncode != 0:
            print(
                f"  {tool.label}: warm-up run exited {run.returncode}:\n{run.tail()}",
                file=sys.stderr,
            )


def benchmark(args, workdir: Path) -> tuple[list[ToolResult], dict | None, dict]:
    """Everything with the lab up; the lab is brought down before returning."""
    from fedi_run.engine.lab import Lab

    hosts = tuple(f"h{i}" for i in range(1, args.hosts + 1))
    workload = Workload(hosts, args.files)
    tools = make_tools(args)
    results = {
        key_of(t): ToolResult(key_of(t), t.label, t.version(), t.command_note, r) for t, r in tools
    }
    meta = {"load_before": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    print(f"lab: starting {args.hosts} hosts in {workdir / 'lab'}", file=sys.stderr)
    lab = Lab.up(workdir / "lab", hosts, acme=False)
    latency = None
    try:
        for tool, _ in tools:
            tool.prepare(lab, workload, workdir / key_of(tool))
        warm_up(lab, workload, [t for t, _ in tools if t.warm_up])
        for rep in range(max(r for _, r in tools)):
            for tool, repeat in tools:
                result = results[key_of(tool)]
                if rep >= repeat or result.error:
                    continue
                try:
                    one_repetition(lab, workload, tool, result)
                except RuntimeError as error:
                    result.error = str(error)
                    print(f"  {tool.label}: FAILED: {error}", file=sys.stderr)
                    continue
                print(
                    f"  {tool.label} #{rep + 1}: first {result.first[-1]:.2f} s, "
                    f"second {result.second[-1]:.2f} s",
                    file=sys.stderr,
                )
        fabric = next((t for t, _ in tools if t.name == "fabric"), None)
        if fabric is not None:
            latency = fabric.latency(args.latency_runs)
            if "fedi-run" in args.tools:
                latency["fedi"] = command_latency(lab, hosts[0], args.latency_runs)
    finally:
        try:
            for tool, _ in tools:
                tool.close()
        finally:
            lab.down()
            print("lab: down", file=sys.stderr)
    meta["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return list(results.values()), latency, meta


def write_report(out: Path, meta: dict, results: list[ToolResult], latency: dict | None) -> None:
    """Print the Markdown report and write it to ``out``, the samples to ``out``.json."""
    text = markdown(meta, results, latency, NOTES)
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(
        json.dumps(
            {"meta": meta, "latency": latency, "results": [r.as_dict() for r in results]}, indent=1
        )
        + "\n"
    )
    print(f"written: {out} and {out.with_suffix('.json')}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        data = json.loads(args.from_json.read_text())
        results = [ToolResult(**r) for r in data["results"]]
        write_report(args.out, data["meta"], results, data["latency"])
        return 0
    found = in_work_directory(
        "fedi-run-bench-", args.keep, lambda workdir: benchmark(args, workdir), "the lab is down"
    )
    if found is None:
        return 130
    results, latency, meta = found
    meta.update(
        {
            **report_header("run_bench.py", argv),
            "hosts": args.hosts,
            "files": args.files,
            "repeat": args.repeat,
            "ansible_repeat": args.ansible_repeat,
        }
    )
    write_report(args.out, meta, results, latency)
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
