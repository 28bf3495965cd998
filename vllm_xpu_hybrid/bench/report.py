# SPDX-License-Identifier: Apache-2.0
"""The benchmark's report: JSON (everything), a Markdown table and a PNG
chart of the plugin's speed-up over each peer, all from one report dict, so
``--from-json`` renders the same files from a saved run on any machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vllm_xpu_hybrid.bench.registry import RESOURCES

JSON_NAME, MARKDOWN_NAME, CHART_NAME = "results.json", "results.md", "speedup.png"


def _fmt_rate(row: dict[str, Any], resource: str | None) -> str:
    if not resource or resource not in row["rates"]:
        resource = next(iter(row["rates"]), None)
    if resource is None:
        return ""
    return f"{row['rates'][resource]:.1f} {RESOURCES[resource]}"


def _fmt_roofline(row: dict[str, Any]) -> str:
    roof = row.get("roofline")
    if not roof:
        return "n/a"
    return f"{100 * roof['fraction']:.0f}% ({roof['resource']})"


def _header_lines(report: dict[str, Any]) -> list[str]:
    versions = "".join(f"; {k} {v}" for k, v in report.get("versions", {}).items())
    peaks = report.get("peaks", {})
    flop_peak = (f"{peaks['flops']:.0f} TFLOP/s" if peaks.get("flops")
                 else "no FLOP peak (device not in the table; give --peak-tflops)")
    exp_peak = (f"{peaks['exps']:.0f} Gexp/s" if peaks.get("exps")
                else "no exp peak (device not in the table)")
    resumed = report.get("resumed_from")
    lines = [
        (f"Device: {report.get('device_name')} ({report.get('device')}){versions}; "
         f"{report.get('date')}; shapes preset `{report.get('shapes')}`; references on "
         f"{report.get('reference_device')}."),
        "",
        (f"Roofline: bytes over the copy bandwidth measured in this run "
         f"({report.get('copy_gbps', 0):.0f} GB/s, read + write), FLOPs over {flop_peak}, "
         f"exponentials over {exp_peak}; the roofline column is the largest of these "
         "fractions, with its resource. Device times: median and 20th-80th percentile of "
         "repetitions that each start after a cache flush. Host µs/call: one eager call's wall "
         "time with the device idle. Same-size copy: a device copy moving the case's bytes "
         "(at most the roofline copy's), as a fraction of the copy bandwidth: what moving "
         "those bytes alone reaches at that size. Plugin speed-up: the peer's median over "
         "the plugin's (> 1: the plugin is faster)."),
    ]
    if resumed:
        lines += ["", f"Resumed: {resumed['cases']} cases kept from the run of {resumed['date']}."]
    return lines


def markdown(report: dict[str, Any], chart: str | None = None) -> str:
    """The Markdown report: header (with the chart image file, if any),
    results table, what did not run and why, and the counting rules."""
    columns = ("family", "case", "models", "implementation", "median µs", "p20–p80 µs",
               "host µs/call", "rate", "roofline", "same-size copy", "plugin speed-up")
    lines = ["# Kernel benchmark", "", *([f"![speed-up]({chart})", ""] if chart else []),
             *_header_lines(report), "",
             "| " + " | ".join(columns) + " |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for case in report["cases"]:
        copy = case.get("same_size_copy_gbps")
        copy_cell = f"{100 * copy / report['copy_gbps']:.0f}%" if copy else ""
        for row in case["results"]:
            roof = row.get("roofline")
            speedup = row.get("plugin_speedup")
            lines.append(
                f"| {case['family']} | {case['label']} | {', '.join(case['models'])} | {row['impl']} "
                f"| {row['median_us']:.1f} | {row['p20_us']:.1f}–{row['p80_us']:.1f} "
                f"| {row['host_us']:.1f} | {_fmt_rate(row, roof and roof['resource'])} "
                f"| {_fmt_roofline(row)} | {copy_cell} "
                f"| {'' if speedup is None else f'{speedup:.2f}×'} |"
            )

    not_run = []
    for name, family in report["families"].items():
        if family["status"] == "skipped":
            not_run.append(f"- family `{name}` ({family['cases']} cases) skipped: {family['reason']}")
    for case in report["cases"]:
        if case["status"] != "timed":
            not_run.append(f"- `{case['family']}` {case['label']}: {case['status']}: {case['reason']}")
    # One line per (family, peer, kind of reason), with the first case's details.
    peer_reasons: dict[tuple[str, str, str], list] = {}
    for case in report["cases"]:
        for peer, reason in case["peers_skipped"].items():
            key = (case["family"], peer, reason.split(" (")[0])
            peer_reasons.setdefault(key, [0, f"{case['label']}: {reason}"])[0] += 1
    for (family, peer, _), (count, example) in peer_reasons.items():
        not_run.append(f"- `{family}` peer {peer} not timed in {count} case(s), e.g. {example}")
    lines += ["", "## Not run", "", *(not_run or ["Everything selected ran."])]

    lines += ["", "## Counting rules", ""]
    lines += [f"- `{name}`: {rule}" for name, rule in report["counting_rules"].items()]
    return "\n".join(lines) + "\n"


def speedups(report: dict[str, Any]) -> list[tuple[str, float]]:
    """(bar label, plugin speed-up) for every timed peer of every case."""
    bars = []
    for case in report["cases"]:
        for row in case["results"]:
            if row.get("plugin_speedup") is not None:
                bars.append((f"{case['family']} {case['label']} vs {row['impl']}",
                             row["plugin_speedup"]))
    return bars


def write_chart(report: dict[str, Any], path: Path) -> None:
    """A horizontal bar per (case, peer) from 1× to the plugin's speed-up, on
    a log scale: right and green where the plugin is faster, left and red
    where it is slower."""
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    bars = speedups(report)
    fig, ax = plt.subplots(figsize=(11, max(2.5, 0.22 * len(bars) + 1.2)))
    if bars:
        labels, values = zip(*bars)
        positions = list(range(len(bars)))
        ax.barh(positions, [v - 1 for v in values], left=1,
                color=["tab:green" if v >= 1 else "tab:red" for v in values])
        for y, v in zip(positions, values):
            ax.text(v, y, f" {v:.2f}× ", va="center", ha="left" if v >= 1 else "right", fontsize=6)
        ax.set_yticks(positions, labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xscale("log")
        low = min(math.log2(min(values)), 0.0) - 0.6
        high = max(math.log2(max(values)), 0.0) + 0.6
        ax.set_xlim(2 ** low, 2 ** high)
        ticks = [2.0 ** e for e in range(math.ceil(low), math.floor(high) + 1)]
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}×"))
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_xlabel("plugin speed-up (peer median time / plugin median time)")
    else:
        ax.text(0.5, 0.5, "no peer was timed", ha="center", va="center")
        ax.set_axis_off()
    ax.set_title(f"vllm-xpu-hybrid vs peers on {report.get('device_name')}", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")


def write_all(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write results.json, results.md and speedup.png into out_dir; returns
    the paths written. Without matplotlib the chart is left out and the
    Markdown says so."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / JSON_NAME, out_dir / MARKDOWN_NAME]
    write_json(report, paths[0])
    try:
        write_chart(report, out_dir / CHART_NAME)
    except ImportError:
        paths[1].write_text(markdown(report) + (
            "\nChart not written: matplotlib is not installed (`pip install "
            "'vllm-xpu-hybrid[bench]'`, or render it elsewhere with `vllm-xpu-hybrid bench "
            "--from-json results.json`).\n"))
        return paths
    paths[1].write_text(markdown(report, chart=CHART_NAME))
    return [*paths, out_dir / CHART_NAME]
