# SPDX-License-Identifier: Apache-2.0
"""Runs families case by case: build, check against the reference, time.

A case whose plugin output differs from the reference is reported wrong and
nothing of it is timed; a peer whose output differs is reported and not
timed. A timed case that moves bytes also times a device copy of as many
bytes (up to the roofline copy's), the most a kernel that only moved them
would reach at that size. Results go into one JSON-ready dict (see report.py), saved after
every case so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import datetime
import gc
import importlib.util
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from vllm_xpu_hybrid.bench.registry import (
    RESOURCES,
    BuildContext,
    Case,
    Family,
    describe_exception,
    outputs_differ,
    rate,
    roofline,
)
from vllm_xpu_hybrid.bench.shapes import ShapeSet
from vllm_xpu_hybrid.bench.timing import (
    COPY_BYTES,
    Timer,
    copy_bandwidth_gbps,
    gpu_module,
    summarise,
)

PLUGIN = "plugin"


def missing_module(module: str) -> bool:
    """True when ``module`` (dotted) cannot be found."""
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:
        return True


def family_skip_reason(family: Family) -> str | None:
    """Why a family cannot run at all, or None."""
    if missing_module(family.plugin_module):
        return f"{family.plugin_module} is not present (the plugin's kernel has not landed)"
    if family.build is None:
        return "the benchmark has no case builder for this family yet"
    return None


def _record(case: Case, status: str = "timed", reason: str | None = None) -> dict[str, Any]:
    return {"family": case.family, "label": case.label, "models": list(case.models),
            "params": case.params, "work": case.work.amounts(), "tolerance": case.tolerance,
            "status": status, "reason": reason, "results": [], "peers_skipped": {}}


def _timing(case: Case, impl: str, samples, peaks: dict[str, float | None]) -> dict[str, Any]:
    stats = summarise(samples.device_us)
    host = summarise(samples.host_us)
    row: dict[str, Any] = {
        "impl": impl,
        "median_us": stats["median"], "p20_us": stats["p20"], "p80_us": stats["p80"],
        "host_us": host["median"],
        "rates": {r: rate(a, stats["median"], r) for r, a in case.work.amounts().items()},
    }
    best = roofline(case.work, stats["median"], peaks)
    row["roofline"] = None if best is None else {"fraction": best[0], "resource": best[1]}
    return row


def _check_and_time(case: Case, family: Family, ctx: BuildContext, timer: Timer,
                    peaks: dict[str, float | None], record: dict[str, Any]) -> None:
    built = family.build(case, ctx)
    record["peers_skipped"].update(built.unavailable)
    want = built.reference()
    checked = []
    for impl in built.impls:
        try:
            got = impl.outputs()
        except Exception as exc:
            if impl.name == PLUGIN:
                raise
            record["peers_skipped"][impl.name] = f"failed: {describe_exception(exc)}"
            continue
        checked.append((impl, "; ".join(
            f"{key}: {problem}" for key in want
            if (problem := outputs_differ(got[key], want[key], case.tolerance)))))
    plugin_problems = next(problems for impl, problems in checked if impl.name == PLUGIN)
    if plugin_problems:
        # The peers' checks say whether the tolerance or the plugin is at fault.
        peers = "; ".join(f"{impl.name}: {problems or 'within tolerance'}"
                          for impl, problems in checked if impl.name != PLUGIN)
        record.update(status="wrong", reason=f"plugin output differs from the reference "
                      f"({plugin_problems}); not timed" + (f"; peers: {peers}" if peers else ""))
        return
    for impl, problems in checked:
        if problems:
            record["peers_skipped"][impl.name] = (f"output differs from the reference "
                                                  f"({problems}); not timed")
            continue
        measured = timer.measure(impl.name, impl.call)
        record["results"].append(_timing(case, impl.name, measured, peaks))
    if case.work.bytes:
        # What moving the case's bytes and nothing else reaches at this size.
        record["same_size_copy_gbps"] = copy_bandwidth_gbps(
            timer, ctx.device, min(int(case.work.bytes), COPY_BYTES))


def run_case(case: Case, family: Family, ctx: BuildContext, timer: Timer,
             peaks: dict[str, float | None]) -> dict[str, Any]:
    """Build, check and time one case; returns its JSON-ready record."""
    record = _record(case)
    try:
        _check_and_time(case, family, ctx, timer, peaks, record)
    except Exception as exc:  # one case's failure must not hide the other cases
        record.update(status="error", reason=describe_exception(exc), results=[],
                      traceback=traceback.format_exc()[-3000:])
    finally:
        # The case's tensors died with _check_and_time: give the memory back
        # before the next case allocates its own.
        gc.collect()
        if ctx.device != "cpu":
            gpu_module(ctx.device).empty_cache()
    plugin = next((r for r in record["results"] if r["impl"] == PLUGIN), None)
    for row in record["results"]:
        row["plugin_speedup"] = (row["median_us"] / plugin["median_us"]
                                 if plugin and row is not plugin else None)
    return record


def run(
    families: list[Family],
    shapes: ShapeSet,
    ctx: BuildContext,
    timer: Timer,
    header: dict[str, Any],
    peaks: dict[str, float | None],
    budget_s: float | None = None,
    save: Callable[[dict[str, Any]], None] | None = None,
    previous: dict[str, Any] | None = None,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> dict[str, Any]:
    """Run the families' cases in order and return the report dict.

    header: device, versions, copy bandwidth and the like, copied into the
    report. budget_s: cases not started within it are reported skipped.
    save: called with the report after every case and skipped family.
    previous: an earlier report; its cases that ran (timed, wrong or error)
    are kept instead of run again.
    """
    report: dict[str, Any] = {
        **header,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "peaks": peaks,
        "units": RESOURCES,
        "counting_rules": {},
        "families": {},
        "cases": [],
    }
    kept = {(c["family"], c["label"]): c for c in (previous or {}).get("cases", [])
            if c["status"] != "skipped"}
    if kept:
        report["resumed_from"] = {"date": previous.get("date"), "cases": len(kept)}
    started = time.monotonic()
    for family in families:
        report["counting_rules"][family.name] = family.counting_rule
        reason = family_skip_reason(family)
        cases = family.cases(shapes)
        entry = {"title": family.title, "status": "skipped" if reason else "run",
                 "reason": reason, "cases": len(cases), "seconds": 0.0}
        report["families"][family.name] = entry
        if reason:
            log(f"[bench] {family.name}: skipped: {reason}")
            cases = []
        family_start = time.monotonic()
        for case in cases:
            resumed = (case.family, case.label) in kept
            if resumed:
                record = kept[(case.family, case.label)]
            elif budget_s is not None and time.monotonic() - started > budget_s:
                record = _record(case, "skipped", f"time budget ({budget_s:.0f} s) spent")
            else:
                record = run_case(case, family, ctx, timer, peaks)
            report["cases"].append(record)
            entry["seconds"] = time.monotonic() - family_start
            if save:
                save(report)
            log(f"[bench] {case.name}: {record['status']}{' (kept)' if resumed else ''}"
                + (f" ({record['reason']})" if record["reason"] else "")
                + "".join(f" | {r['impl']} {r['median_us']:.1f} us" for r in record["results"]))
        if save and not cases:
            save(report)
    return report
