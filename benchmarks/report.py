"""The markdown report: machine, settings, one table of figures with targets, then details."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

from benchmarks.common import Outcome, Settings

PACKAGES = (
    "quant-batch",
    "prefect",
    "duckdb",
    "pyarrow",
    "numpy",
    "requests",
    "orjson",
    "quantcdn-client",
    "uvicorn",
    "faiss-cpu",
)


def machine() -> dict[str, str]:
    info = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(len(os.sched_getaffinity(0))),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        mem = Path("/proc/meminfo").read_text().split("\n")[0].split()[1]
        info["RAM"] = f"{int(mem) / 2**20:.1f} GiB"
        cpu = [line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")]
        info["CPU"] = cpu[0].split(":", 1)[1].strip() if cpu else "?"
    except OSError:
        pass
    try:
        info["commit"] = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                cwd=Path(__file__).parent,
                check=True,
            ).stdout.strip()
            + " (working tree may differ)"
        )
    except (OSError, subprocess.CalledProcessError):
        pass
    for pkg in PACKAGES:
        try:
            info[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            info[pkg] = "not installed"
    return info


def _value(v: float, unit: str) -> str:
    if unit in ("chunks", "texts", "calls") or (v == int(v) and abs(v) >= 100):
        text = f"{int(v):,}"
    elif abs(v) >= 100:
        text = f"{v:,.0f}"
    elif abs(v) >= 1:
        text = f"{v:.2f}"
    else:
        text = f"{v:.3f}" if abs(v) >= 0.01 else f"{v:.4f}"
    return f"{text} {unit}".strip()


def _result(ok: bool | None) -> str:
    return "" if ok is None else ("pass" if ok else "**MISS**")


def _doc(scenario: str) -> str:
    """The scenario module's docstring: what was measured and how."""
    import importlib

    from benchmarks.__main__ import SCENARIOS

    module = importlib.import_module(SCENARIOS[scenario].split(":")[0])
    return (module.__doc__ or "").strip()


def render(settings: Settings, outcomes: list[Outcome], failures: dict[str, str], total_wall: float) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Run: `python -m benchmarks` (default: about 18 minutes on a 2-core box, a third of it building the 1M-vector search set and a third the memory diagnostics), "
        "`--quick` (smoke test), `--scenarios embed,sdk`, `--n 20000`, `--search-n 200000`, `--keep`; "
        "see `python -m benchmarks --help`.",
        "",
        "Written by `python -m benchmarks" + (" --quick" if settings.quick else "") + "`; every figure below is "
        "from that run. The emulator runs in its own process at a fixed latency; each scenario runs in a fresh "
        "Python process.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in machine().items()]
    lines += ["", "## Settings", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in asdict(settings).items()]
    lines += [
        f"| total benchmark wall | {total_wall:.0f} s |",
        "",
        "## Figures",
        "",
        "| scenario | figure | value | target | result | note |",
        "|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        for f in o.figures:
            lines.append(
                f"| {o.scenario} | {f.name} | {_value(f.value, f.unit)} | {f.target} | {_result(f.ok)} | "
                f"{f.note.replace('|', '/')} |"
            )
    for name, err in failures.items():
        lines.append(f"| {name} | scenario failed | | | **ERROR** | {err.splitlines()[-1][:200] if err else ''} |")
    missed = [(o.scenario, f) for o in outcomes for f in o.figures if f.ok is False]
    lines += ["", "## Targets missed", ""]
    lines += [f"- {sc}: {f.name} = {_value(f.value, f.unit)} (target {f.target})" for sc, f in missed] or ["None."]
    lines += ["", "## Details", ""]
    for o in outcomes:
        lines += [f"### {o.scenario}: {o.title}", "", _doc(o.scenario), "", f"Scenario wall {o.wall_s:.1f} s.", ""]
        lines += [f"- {n}" for n in o.notes]
        for title, text in o.profiles.items():
            lines += ["", f"Profile: {title}", "", "```", text, "```"]
        lines.append("")
    for name, err in failures.items():
        lines += [f"### {name}: failed", "", "```", err[-3000:], "```", ""]
    return "\n".join(lines).rstrip() + "\n"
