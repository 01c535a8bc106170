"""The benchmark's results: medians, ratios, and the Markdown table (stdout and a file).

:class:`ToolResult` holds one tool's samples; :func:`markdown` renders the whole report:
a header (date, machine, versions, N, K, R), the table (rows = tools; first and second run
medians, the ratio to the Fabric loop, how many times faster fedi-run is), the per-command
latency line, the goals, every sample, and the notes that say what was measured.
"""

from __future__ import annotations

import os
import platform
import statistics
from dataclasses import dataclass, field
from pathlib import Path

BASELINE = "fabric"
FEDI = "fedi-run"
GOAL_RATIO = 1.5  # fedi-run within 1.5x of the Fabric loop, first and second run
GOAL_COMMAND_MS = 5.0  # per command over an open connection


@dataclass
class ToolResult:
    """One tool's measurements (seconds), what it reported changing, and any failure."""

    key: str
    label: str
    version: str
    command_note: str
    repeat: int
    first: list[float] = field(default_factory=list)
    second: list[float] = field(default_factory=list)
    changed_first: list[int | None] = field(default_factory=list)
    changed_second: list[int | None] = field(default_factory=list)
    inner_first: list[float | None] = field(default_factory=list)
    inner_second: list[float | None] = field(default_factory=list)
    error: str = ""
    warnings: list[str] = field(default_factory=list)
    fingerprints: list[str] = field(default_factory=list)  # distinct code versions seen

    def median(self, phase: str) -> float | None:
        samples = getattr(self, phase)
        return statistics.median(samples) if samples else None

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def machine() -> dict:
    """nproc, CPU model, kernel, Python and the load average (other work shares the cores)."""
    model = "unknown"
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    for line in cpuinfo.splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def seconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "—"
    r = a / b
    return f"{r:.2f}" if r < 10 else f"{r:.0f}"


def pair(result: ToolResult, other: ToolResult | None, times: bool = False) -> str:
    """ "first / second": ``result``'s median time divided by ``other``'s (with ``times``,
    written as "N×": ``other`` is N times faster than ``result``)."""
    if other is None or not other.first or not result.first:
        return "—"
    parts = []
    for phase in ("first", "second"):
        text = ratio(result.median(phase), other.median(phase))
        parts.append(text + "×" if times and text != "—" else text)
    return " / ".join(parts)


def markdown(meta: dict, results: list[ToolResult], latency: dict | None, notes: list[str]) -> str:
    """The whole report as Markdown. "fedi-run faster by" is the tool's median time divided
    by fedi-run's: above 1, fedi-run is that many times faster; below 1, slower."""
    by_key = {r.key: r for r in results}
    base, fedi = by_key.get(BASELINE), by_key.get(FEDI)
    m = meta["machine"]
    out = [
        f"# fedi-run benchmark: W({meta['hosts']}, {meta['files']})",
        "",
        f"{meta['date']} — {m['nproc']} cores ({m['cpu']}), Linux {m['kernel']}, "
        f"Python {m['python']}; "
        f"load average {meta['load_before']} before, {meta['load_after']} after. "
        f"N = {meta['hosts']} lab hosts (loopback), K = {meta['files']} files per host "
        "plus one command; "
        f"medians over R = {meta['repeat']} repetitions"
        + (
            f" (Ansible: {meta['ansible_repeat']})."
            if any(r.key.startswith("ansible") for r in results)
            else "."
        ),
        "",
        f"`{meta['argv'].strip()}`",
        "",
        (
            "| tool | first run | second run | ÷ Fabric loop (first / second) "
            "| fedi-run faster by (first / second) | runs |"
        ),
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if r.error and not r.first:
            out.append(f"| {r.label} | failed | failed | — | — | 0 |")
            continue
        faster = pair(r, fedi, times=True) if r.key not in (FEDI, BASELINE) else "—"
        out.append(
            f"| {r.label} | {seconds(r.median('first'))} | {seconds(r.median('second'))} | "
            f"{pair(r, base)} | {faster} | {len(r.first)} |"
        )
    out.append("")
    if latency:
        fedi_ms = latency.get("fedi", {})
        fedi_text = (
            f"fedi-run's own connection **{fedi_ms['ms']:.2f} ms**, "
            if "ms" in fedi_ms
            else f"fedi-run not measured ({fedi_ms.get('error', 'not asked')}), "
        )
        out.append(
            f"Per command over an open connection (`true`, median of {latency['runs']}): "
            f"{fedi_text}tuned Fabric **{latency['tuned_ms']:.2f} ms**, "
            f"default Fabric {latency['default_ms']:.2f} ms."
        )
        out.append("")
    out += goals(base, fedi, latency)
    out += ["", "## Versions", ""]
    out += [f"- {r.label}: {r.version}" for r in results]
    out += ["", "## Every sample (seconds)", ""]
    for r in results:
        line = (
            f"- {r.label}: first {', '.join(f'{s:.2f}' for s in r.first) or '—'}; "
            f"second {', '.join(f'{s:.2f}' for s in r.second) or '—'}; reported changes "
            f"first {r.changed_first}, second {r.changed_second}"
        )
        out.append(line)
        inner = [x for x in r.inner_first + r.inner_second if x is not None]
        if inner:
            out.append(
                f"  - its own run duration (the rest is start-up and exit): first "
                f"{', '.join(f'{x:.2f}' for x in r.inner_first if x is not None)}; second "
                f"{', '.join(f'{x:.2f}' for x in r.inner_second if x is not None)}"
            )
        out += [f"  - warning: {w}" for w in r.warnings]
        if r.error:
            out.append(f"  - **failed**: {r.error}")
    out += ["", "## What was measured", ""]
    out += [f"- {n}" for n in notes]
    out += [f"- The command, for {r.label}: {r.command_note}." for r in results]
    return "\n".join(out) + "\n"


def goals(base: ToolResult | None, fedi: ToolResult | None, latency: dict | None) -> list[str]:
    """The issue's goals, each met or not (or not measured)."""
    out = ["Goals (same run):", ""]
    if fedi is None or not fedi.first:
        why = f" ({fedi.error.splitlines()[0]})" if fedi is not None and fedi.error else ""
        out.append(f"- fedi-run within {GOAL_RATIO}× of the Fabric loop: not measured{why}.")
    elif base is None or not base.first:
        out.append("- fedi-run within 1.5× of the Fabric loop: no Fabric loop in this run.")
    else:
        for phase in ("first", "second"):
            r = fedi.median(phase) / base.median(phase)
            out.append(
                f"- fedi-run {phase} run within {GOAL_RATIO}× of the Fabric loop: "
                f"{r:.2f}× — {'met' if r <= GOAL_RATIO else 'NOT met'}."
            )
    fedi_ms = (latency or {}).get("fedi", {}).get("ms")
    if fedi_ms is not None:
        out.append(
            f"- Under {GOAL_COMMAND_MS:g} ms median per command over an open connection: "
            f"{fedi_ms:.2f} ms — {'met' if fedi_ms < GOAL_COMMAND_MS else 'NOT met'}."
        )
    elif latency:
        out.append(
            f"- Under {GOAL_COMMAND_MS:g} ms median per command over an open connection: "
            "fedi-run's connection not measured; the tuned Fabric floor is "
            f"{latency['tuned_ms']:.2f} ms."
        )
    return out
