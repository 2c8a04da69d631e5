"""From run records to the report: medians over repeats, ratios to the baselines, targets, markdown.

Ratios are computed between servers of the same run (same machine, same minutes, same load
generator), which is what makes them meaningful on a noisy shared machine where absolute numbers
drift by tens of percent from one hour to the next.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["build", "main", "markdown", "ratios", "summarise", "targets"]

TIMED_METRICS = (
    "messages_per_s", "points_per_s", "p50_ms", "p99_ms", "p999_ms",
    "server_cpu", "client_cpu", "client_cpu_max", "peak_rss_mb", "machine_busy", "machine_steal",
    "other_cpu", "server_us_per_message",
)
ORDER = ("echo", "naive", "naive-session", "streamserve")
IDLE_METRICS = ("idle_rss_mb", "open_mb", "closed_mb", "growth_mb", "peak_rss_mb")

FLAT_MB = 16.0
"""Idle target: RSS after the last close may exceed RSS after the first close by at most this."""


def _us_per_message(record: dict[str, Any]) -> float | None:
    """Server CPU per message, in µs: what a message costs the server, whatever share of the
    machine it got. Steadier than msg/s on a shared machine, and independent of the clients."""
    rate, cpu = record.get("messages_per_s"), record.get("server_cpu")
    return cpu / rate * 1e6 if rate and cpu is not None else None


def _metric(record: dict[str, Any], name: str) -> float | None:
    if name == "server_us_per_message":
        return _us_per_message(record)
    value: float | None = record.get(name)
    return value


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarise(records: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{scenario: {server: medians}}`` over the repeats, with the spread of the main metric."""
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        grouped.setdefault((record["scenario"], record["server"]), []).append(record)
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for (scenario, server), runs in grouped.items():
        good = [r for r in runs if r.get("ok") and not r.get("skipped")]
        entry: dict[str, Any] = {
            "repeats": len(runs),
            "ok": len(good) == len(runs) and bool(runs),
            "skipped": next((r["skipped"] for r in runs if r.get("skipped")), None),
            "errors": [e for r in runs for e in r.get("errors", [])][:5],
            "sent": sum(r.get("sent", 0) for r in runs),
            "received": sum(r.get("received", 0) for r in runs),
        }
        if good and "idle_rss_mb" in good[0]:
            entry.update({m: _median(r[m] for r in good) for m in IDLE_METRICS})
            entry["streams"] = good[0]["streams"]
        elif good:
            entry.update({m: _median(_metric(r, m) for r in good) for m in TIMED_METRICS})
            rates = [r["messages_per_s"] for r in good]
            entry["messages_per_s_min"], entry["messages_per_s_max"] = min(rates), max(rates)
            entry["client_processes"] = good[0]["client_processes"]
        summary.setdefault(scenario, {})[server] = entry
    rank = {name: i for i, name in enumerate(ORDER)}
    return {
        scenario: dict(sorted(servers.items(), key=lambda item: rank.get(item[0], len(rank))))
        for scenario, servers in summary.items()
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


_RATIOS = {
    "vs_naive": ("messages_per_s", "naive"),
    "vs_echo": ("messages_per_s", "echo"),
    "p99_vs_naive": ("p99_ms", "naive"),
    "p99_vs_echo": ("p99_ms", "echo"),
    # Inverted (baseline over ours): how many times less CPU per message streamserve needs.
    "cpu_saving_vs_naive": ("server_us_per_message", "naive"),
    "cpu_saving_vs_echo": ("server_us_per_message", "echo"),
}


def ratios(records: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """streamserve over naive and over echo per timed scenario: msg/s and p99 latency.

    Each repeat's ratio pairs servers measured a few seconds apart, and the median of those is
    reported: on a machine whose background load drifts, that is steadier than a ratio of medians.
    """
    paired: dict[str, dict[int, dict[str, dict[str, Any]]]] = {}
    for r in records:
        if r.get("ok") and "messages_per_s" in r:
            paired.setdefault(r["scenario"], {}).setdefault(r["repeat"], {})[r["server"]] = r
    out: dict[str, dict[str, float | None]] = {}
    for scenario, repeats in paired.items():
        found: dict[str, list[float]] = {name: [] for name in _RATIOS}
        for servers in repeats.values():
            ours = servers.get("streamserve")
            if ours is None:
                continue
            for name, (metric, baseline) in _RATIOS.items():
                other = servers.get(baseline)
                if other is None:
                    continue
                value = _ratio(_metric(ours, metric), _metric(other, metric))
                if name.startswith("cpu_saving") and value:
                    value = 1 / value
                if value is not None:
                    found[name].append(value)
        if any(found.values()):
            out[scenario] = {name: _median(values) for name, values in found.items()}
    return out


def targets(
    summary: dict[str, dict[str, dict[str, Any]]], ratio: dict[str, dict[str, float | None]]
) -> list[dict[str, Any]]:
    """The targets of issue 4, each with what was measured and whether it is met (None: not run)."""
    found: list[dict[str, Any]] = []

    def add(name: str, goal: str, value: float | None, met: bool | None, unit: str = "") -> None:
        found.append({"target": name, "goal": goal, "measured": value, "unit": unit, "met": met})

    for scenario in ("concurrency", "throughput"):
        r = ratio.get(scenario, {})
        vs_naive, vs_echo = r.get("vs_naive"), r.get("vs_echo")
        add(f"{scenario}: messages/s vs naive", ">= 5x", vs_naive,
            None if vs_naive is None else vs_naive >= 5.0, "x")
        add(f"{scenario}: messages/s vs echo", ">= 0.8x", vs_echo,
            None if vs_echo is None else vs_echo >= 0.8, "x")
    p99 = ratio.get("latency", {}).get("p99_vs_naive")
    add("latency: p99 vs naive", "<= 1x", p99, None if p99 is None else p99 <= 1.0, "x")
    points = summary.get("chunked", {}).get("streamserve", {}).get("points_per_s")
    add("chunked: points/s", ">= 1,000,000", points, None if points is None else points >= 1e6)
    idle = summary.get("idle", {}).get("streamserve", {})
    open_mb, growth = idle.get("open_mb"), idle.get("growth_mb")
    streams = idle.get("streams", "the")
    add(f"idle: RSS of {streams} open streams above idle", "< 300 MB", open_mb,
        None if open_mb is None else open_mb < 300, "MB")
    add("idle: RSS flat after close (last vs first round)", f"<= {FLAT_MB:.0f} MB", growth,
        None if growth is None else growth <= FLAT_MB, "MB")
    return found


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.0f}"


def markdown(report: dict[str, Any]) -> str:
    """The whole report as markdown: context, timed table, idle table, ratios, targets."""
    summary, machine, versions = report["summary"], report["machine"], report["versions"]
    lines = [
        f"# streamserve benchmark, {report['started']}",
        "",
        f"`{report['command']}`: {report['options']['repeat']} repeat(s), medians shown; "
        f"{report['options']['duration']:g} s measured after {report['options']['warmup']:g} s "
        f"warm-up; {report['options']['clients']} client processes.",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores ({machine['usable_cores']} usable), "
        f"{machine['memory_gib']} GiB, Linux {machine['kernel']}, load average at start "
        f"{machine['load_average']}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        "",
        "| scenario | server | msg/s | points/s | p50 ms | p99 ms | p99.9 ms | server CPU | "
        "server µs CPU/msg | peak RSS MB | client CPU (max/proc) | machine busy (others) "
        "| msg/s range | sent = received |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for scenario, servers in summary.items():
        for server, s in servers.items():
            if "idle_rss_mb" in s:
                continue
            if s.get("skipped"):
                lines.append(f"| {scenario} | {server} | skipped: {s['skipped']} |" + " |" * 11)
                continue
            if "messages_per_s" not in s:
                lines.append(f"| {scenario} | {server} | failed: {'; '.join(s['errors'])[:200]} |"
                             + " |" * 11)
                continue
            lines.append(
                f"| {scenario} | {server} | {_fmt(s['messages_per_s'])} | {_fmt(s['points_per_s'])} "
                f"| {_ms(s['p50_ms'])} | {_ms(s['p99_ms'])} | {_ms(s['p999_ms'])} "
                f"| {_fmt(s['server_cpu'], 2)} | {_fmt(s['server_us_per_message'])} "
                f"| {_fmt(s['peak_rss_mb'])} "
                f"| {_fmt(s['client_cpu'], 2)} ({_fmt(s['client_cpu_max'], 2)}) "
                f"| {_fmt(s['machine_busy'], 2)} ({_fmt(s['other_cpu'], 2)}) "
                f"| {_fmt(s['messages_per_s_min'])} to {_fmt(s['messages_per_s_max'])} "
                f"| {'yes' if s['ok'] else 'NO'} ({s['received']:,}) |"
            )
    idle_rows = [
        (scenario, server, s)
        for scenario, servers in summary.items()
        for server, s in servers.items()
        if "idle_rss_mb" in s
    ]
    if idle_rows:
        lines += [
            "",
            "| scenario | server | streams | idle RSS MB | + open MB | + after close MB | "
            "growth over rounds MB | all answered |",
            "|---|---|---:|---:|---:|---:|---:|---|",
        ]
        for scenario, server, s in idle_rows:
            lines.append(
                f"| {scenario} | {server} | {s['streams']:,} | {_fmt(s['idle_rss_mb'])} "
                f"| {_fmt(s['open_mb'], 1)} | {_fmt(s['closed_mb'], 1)} | {_fmt(s['growth_mb'], 1)} "
                f"| {'yes' if s['ok'] else 'NO'} |"
            )
    if report["ratios"]:
        lines += [
            "",
            "| scenario | streamserve / naive msg/s | streamserve / echo msg/s | "
            "p99 streamserve / naive | p99 streamserve / echo | server CPU per msg: naive / "
            "streamserve | echo / streamserve |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for scenario, r in report["ratios"].items():
            lines.append(
                f"| {scenario} | {_fmt(r['vs_naive'], 2)} | {_fmt(r['vs_echo'], 2)} "
                f"| {_fmt(r['p99_vs_naive'], 2)} | {_fmt(r['p99_vs_echo'], 2)} "
                f"| {_fmt(r.get('cpu_saving_vs_naive'), 2)} | {_fmt(r.get('cpu_saving_vs_echo'), 2)} |"
            )
    lines += ["", "| target | goal | measured | met |", "|---|---|---:|---|"]
    for t in report["targets"]:
        value = t["measured"]
        shown = "-" if value is None else f"{value:,.2f}{t['unit']}" if t["unit"] == "x" else (
            f"{value:,.1f} {t['unit']}" if t["unit"] else f"{value:,.0f}")
        met = {True: "yes", False: "**no**", None: "not run"}[t["met"]]
        lines.append(f"| {t['target']} | {t['goal']} | {shown} | {met} |")
    lines += [
        "",
        "CPU in cores (CPU seconds per wall second, all threads); the machine has "
        f"{machine['cores']}, shared by the server and the client processes. Latency is per "
        "message, client-measured from send to answer. Machine busy: cores busy on the whole machine; "
        "others: the part neither the server nor the clients account for (other processes, "
        "interrupts, loopback TCP). Peak RSS is per scenario "
        "(VmHWM reset before each). msg/s range: lowest and highest of the repeats.",
        "",
    ]
    return "\n".join(lines)


def build(records: list[dict[str, Any]], **context: Any) -> dict[str, Any]:
    """The report of ``records``: ``context`` (started, command, options, machine, versions, ...),
    then summary, ratios, targets and the records themselves."""
    summary = summarise(records)
    ratio = ratios(records)
    return {
        **context,
        "summary": summary,
        "ratios": ratio,
        "targets": targets(summary, ratio),
        "runs": records,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.report A.json B.json``: one report over the repeats of several runs.

    Each run's repeats stay paired (a ratio never pairs servers from different runs); the medians
    are over every repeat of every run. Prints the markdown, or writes it with ``--out``.
    """
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=main.__doc__)
    parser.add_argument("runs", nargs="+", type=Path, help="JSON files written by benchmarks.run")
    parser.add_argument("--out", type=Path, help="write the markdown (and a .json beside) here")
    args = parser.parse_args(argv)
    loaded = [json.loads(path.read_text()) for path in args.runs]
    records = [
        {**record, "repeat": f"{index}:{record['repeat']}"}
        for index, run in enumerate(loaded)
        for record in run["runs"]
    ]
    first = loaded[0]
    options = {**first["options"], "repeat": sum(run["options"]["repeat"] for run in loaded)}
    merged = build(
        records,
        started=", ".join(run["started"] for run in loaded),
        command=" + ".join(run["command"] for run in loaded),
        options=options,
        scenarios=first["scenarios"],
        machine=first["machine"],
        versions=first["versions"],
        merged_from=[str(path) for path in args.runs],
    )
    text = markdown(merged)
    if args.out:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(merged, indent=2) + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
