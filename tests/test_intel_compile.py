# SPDX-License-Identifier: Apache-2.0
"""The Intel compile gate's CPU-side parts: reading captured compiler output,
its checks and report, and recording the launchers' XPU launches. Compiling
itself needs triton-xpu and ocloc; CI runs that as `python -m
vllm_xpu_hybrid.intel_compile` in its own environment (.ci/run)."""

from __future__ import annotations

import dataclasses
import lzma
import os
import re

import pytest

from vllm_xpu_hybrid import intel_compile
from vllm_xpu_hybrid.intel_compile import TARGETS, Row
from vllm_xpu_hybrid.intel_compile_cases import FAMILY_CASES

DATA = os.path.join(os.path.dirname(__file__), "data", "intel_compile")


def _unpacked_dump(folder: str, tmp_path) -> str:
    """A captured IGC dump folder (tests/data/intel_compile/FOLDER) with its
    listings decompressed, as ocloc leaves it."""
    for name in os.listdir(os.path.join(DATA, folder)):
        if name.endswith(".xz"):
            with lzma.open(os.path.join(DATA, folder, name)) as src:
                (tmp_path / name[:-3]).write_bytes(src.read())
    return str(tmp_path)


def _ocloc_spill_grfs(folder: str) -> int:
    """ocloc's own summary of the kernel it built: "spilled around N" (GRFs)."""
    with open(os.path.join(DATA, folder, "ocloc.log")) as f:
        found = re.search(r"spilled around (\d+)", f.read())
    return int(found.group(1)) if found else 0


def test_dump_at_128_grf_reads_the_retried_kernel(tmp_path):
    # IGC spilled, retried, and dumped both attempts; the binary holds the
    # retry, whose spill ocloc reports (in 64-byte PVC registers).
    stats = intel_compile.read_dump(_unpacked_dump("pvc_128grf", tmp_path))
    assert stats.num_grf == 128
    assert stats.spill_bytes == 6208 == _ocloc_spill_grfs("pvc_128grf") * 64
    assert stats.dpas == 8
    assert stats.simd == 16
    assert "SPILL" in stats.register_allocator


def test_dump_at_256_grf_has_no_spill(tmp_path):
    stats = intel_compile.read_dump(_unpacked_dump("pvc_256grf", tmp_path))
    assert (stats.num_grf, stats.spill_bytes, stats.dpas, stats.simd) == (256, 0, 8, 16)
    assert _ocloc_spill_grfs("pvc_256grf") == 0


def test_final_listing_is_the_last_attempt():
    first = "/d/OCL_asm1f_simd16_entry_0001.asm"
    retry = "/d/OCL_asm1f_1_simd16_entry_0001.asm"
    assert intel_compile.final_asm([retry, first, "/d/OCL_asm1f_codegen.ll"]) == retry
    assert intel_compile.final_asm([first]) == first
    with pytest.raises(ValueError, match="no IGC assembly listing"):
        intel_compile.final_asm(["/d/OCL_asm1f_optimized.ll"])


def test_listing_without_register_header_is_an_error():
    with pytest.raises(ValueError, match="numGRF"):
        intel_compile.parse_igc_asm("//.kernel k\n", "k_simd16_entry_0001.asm")


def test_dots_laid_out_for_xmx_are_counted_per_target():
    with open(os.path.join(DATA, "tile_product_pvc.ttgir")) as f:
        assert intel_compile.count_dots(f.read()) == (1, 1)
    with open(os.path.join(DATA, "tile_product_dg2.ttgir")) as f:
        assert intel_compile.count_dots(f.read()) == (1, 0)


def _row(**changes) -> Row:
    """A DG2 row of the SSD scan kernel as the gate reports it, with changes."""
    row = Row(target="dg2", family="ssd", kernel="_ssd_chunk_scan_kernel",
              configuration="CHUNK=256 BLOCK_M=64 num_warps=16", used_by=["Mamba2-2.7B"],
              built=True, grf_mode="large", num_grf=256, spill_bytes=0, dpas=0, dots=2,
              xmx_dots=0, slm_bytes=9216, simd=32)
    return dataclasses.replace(row, **changes)


def test_rows_within_limits_pass():
    assert intel_compile.row_errors(_row()) == []
    assert intel_compile.row_errors(_row(target="pvc", slm_bytes=TARGETS["pvc"].slm_bytes)) == []


def test_gate_fails_naming_a_kernel_that_needs_more_slm_than_the_target_has(monkeypatch, capsys, tmp_path):
    over = TARGETS["dg2"].slm_bytes + 1024
    rows = [_row(target="pvc", slm_bytes=over), _row(slm_bytes=over)]
    monkeypatch.setattr(intel_compile, "_check_environment", lambda: None)
    monkeypatch.setattr(intel_compile, "plan", lambda families: ([], []))
    monkeypatch.setattr(intel_compile, "compile_units", lambda units, targets, jobs: rows)
    monkeypatch.setattr(intel_compile, "compiler_versions", lambda: {"ocloc": "test"})
    report = tmp_path / "report.md"

    status = intel_compile.main(["--family", "ssd", "--markdown", str(report)])

    assert status == 1
    errors = [line for line in capsys.readouterr().out.splitlines() if line.startswith("ERROR:")]
    # PVC has 128 KiB: that row passes; DG2 has 64 KiB: it fails, named.
    assert errors == [
        (f"ERROR: ssd._ssd_chunk_scan_kernel [CHUNK=256 BLOCK_M=64 num_warps=16] on dg2: needs {over} "
         f"bytes of shared local memory, the target has {TARGETS['dg2'].slm_bytes}")
    ]
    assert errors[0][len("ERROR: "):] in report.read_text()


def test_gate_fails_naming_a_kernel_that_does_not_compile(monkeypatch, capsys):
    broken = _row(target="pvc", built=False, num_grf=None, spill_bytes=None, dpas=None,
                  error="Triton: RuntimeError: LLVM ERROR: Unsupported dpas type found")
    monkeypatch.setattr(intel_compile, "_check_environment", lambda: None)
    monkeypatch.setattr(intel_compile, "plan", lambda families: ([], []))
    monkeypatch.setattr(intel_compile, "compile_units", lambda units, targets, jobs: [_row(), broken])
    monkeypatch.setattr(intel_compile, "compiler_versions", dict)

    assert intel_compile.main(["--family", "ssd"]) == 1
    out = capsys.readouterr().out
    assert ("ERROR: ssd._ssd_chunk_scan_kernel [CHUNK=256 BLOCK_M=64 num_warps=16] on pvc: does not "
            "compile: Triton: RuntimeError: LLVM ERROR: Unsupported dpas type found") in out


@pytest.mark.parametrize("family", sorted(FAMILY_CASES))
def test_cases_launch_every_kernel_with_the_xpu_configuration(family):
    recorded, errors = intel_compile.record_family(family)
    assert errors == []
    module = intel_compile.ops_modules()[family]
    xpu = module.LAUNCH_CONFIGS["xpu"]
    launches = [launch for label in recorded for launch in recorded[label]]
    assert launches and "meta" not in module.LAUNCH_CONFIGS
    # Every launch takes its warps and GRF mode from the xpu entry.
    warps = set(_values(xpu, "num_warps"))
    grf_modes = set(_values(xpu, "grf_mode")) | {None}
    for launch in launches:
        assert launch.options.get("num_warps") in warps, launch.configuration()
        assert launch.options.get("grf_mode") in grf_modes, launch.configuration()


def _values(config, key):
    """Every value of ``key`` in a nested launch table (num_warps may be a
    table by width)."""
    if isinstance(config, dict):
        for name, value in config.items():
            if name == key:
                yield from (value.values() if isinstance(value, dict) else [value])
            else:
                yield from _values(value, key)


def test_every_ops_module_with_kernels_has_compile_cases():
    with_kernels = {name for name, module in intel_compile.ops_modules().items()
                    if intel_compile.kernels_of(module)}
    assert with_kernels == set(FAMILY_CASES)
