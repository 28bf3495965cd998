# SPDX-License-Identifier: Apache-2.0
"""Intel compile gate: every Triton kernel of the plugin, compiled for Intel
GPUs without one, at the launch configurations its launchers pick on XPU.

``python -m vllm_xpu_hybrid.intel_compile [--target pvc|dg2|all] [--json]
[--markdown PATH] [--family NAME ...]``

Runs in an environment holding CPU torch, Intel's Triton backend
(``triton-xpu``) and this package's source, without vLLM (``ci/intel-compile-env.sh``
builds one). For each kernel family (a module of ``vllm_xpu_hybrid/ops/``):

1. The family's cases (:mod:`vllm_xpu_hybrid.intel_compile_cases`) call its
   launchers at real model shapes with ``meta`` tensors while the module's
   ``LAUNCH_CONFIGS["xpu"]`` entry stands for the ``meta`` device; each kernel
   launch is recorded instead of run. The launchers' own code picks the
   constexprs and options, so the gate compiles what XPU would launch.
2. Each distinct launch (Triton's own specialisation key) is compiled once per
   target by Triton's Intel backend, through the same ``JITFunction.run`` path
   a launch takes (``warmup=True``, target properties given here instead of
   queried from a device), down to SPIR-V.
3. ``ocloc`` (Intel's graphics compiler, IGC) turns the SPIR-V into native
   code for the target with the kernel's build flags; IGC's shader dump gives
   the register file size (``numGRF``), spill size and ``dpas`` (XMX)
   instructions. As Intel's runtime does (driver.c, ``loadBinary``), a kernel
   without a GRF mode that spills more than 1000 bytes is rebuilt with the
   256-register mode.

One row per target x kernel x configuration. Exit status 1, naming kernel and
configuration, when a kernel fails to compile, needs more shared local memory
(SLM) than the target has, or when a kernel of ``ops/`` is launched by no case.
This proves compilation, register pressure and XMX use for these targets, not
speed on them (see docs/intel-compile.md).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import datetime
import glob
import importlib
import inspect
import json
import multiprocessing
import os
import pkgutil
import platform
import queue
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# ---------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class IntelTarget:
    """An Intel GPU the gate compiles for.

    ``properties`` are what ``torch.xpu.get_device_capability`` reports on
    that GPU and Triton's Intel backend reads (sub-group sizes, XMX and 2D
    block IO support); ``slm_bytes`` is the shared local memory one
    work-group may use (CL_DEVICE_LOCAL_MEM_SIZE).
    """

    name: str
    product: str
    ocloc_device: str
    slm_bytes: int
    properties: dict


TARGETS: dict[str, IntelTarget] = {
    "pvc": IntelTarget(
        "pvc", "Intel Data Center GPU Max 1550 (PVC, Xe-HPC)", "pvc", 128 * 1024,
        {"name": "Intel(R) Data Center GPU Max 1550", "sub_group_sizes": [16, 32],
         "max_work_group_size": 1024, "max_num_sub_groups": 64, "has_fp64": True,
         "has_subgroup_matrix_multiply_accumulate": True,
         "has_subgroup_matrix_multiply_accumulate_tensor_float32": True,
         "has_subgroup_2d_block_io": True, "has_bfloat16_conversions": True},
    ),
    "dg2": IntelTarget(
        "dg2", "Intel Arc A770 (DG2, Xe-HPG)", "acm-g10", 64 * 1024,
        {"name": "Intel(R) Arc(TM) A770 Graphics", "sub_group_sizes": [8, 16, 32],
         "max_work_group_size": 1024, "max_num_sub_groups": 128, "has_fp64": False,
         "has_subgroup_matrix_multiply_accumulate": True,
         "has_subgroup_matrix_multiply_accumulate_tensor_float32": False,
         "has_subgroup_2d_block_io": False, "has_bfloat16_conversions": True},
    ),
}

# Intel's runtime (triton-xpu driver.c, loadBinary): a kernel built without a
# GRF mode flag that spills more than this many bytes is rebuilt in large GRF mode.
RUNTIME_LARGE_GRF_SPILL_BYTES = 1000
LARGE_GRF_FLAG = "-cl-intel-256-GRF-per-thread"
GRF_MODE_FLAGS = ("-cl-intel-128-GRF-per-thread", LARGE_GRF_FLAG, "-cl-intel-enable-auto-large-GRF-mode")
# One native compile takes seconds; a hang must not stall CI.
OCLOC_TIMEOUT_S = 600
# The launchers' device kind whose LAUNCH_CONFIGS entry the gate compiles.
DEVICE_KIND = "xpu"
# The triton-xpu release this gate drives (it calls JITFunction.run's compile path).
TRITON_XPU_VERSION = "3.3.0b1"

# ---------------------------------------------------------------------------
# Recording the launchers' kernel launches
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Launch:
    """One kernel launch a launcher made: ``kernel[grid](*args, **kwargs)``;
    ``constexprs`` and ``options`` (num_warps, grf_mode, ...) are read from
    them."""

    family: str
    kernel: str
    grid: object
    args: tuple
    kwargs: dict
    constexprs: dict
    options: dict

    def configuration(self) -> str:
        """The launch's constexprs, then its options, as the table prints them."""
        return " ".join(f"{k}={v}" for k, v in {**self.constexprs, **self.options}.items())


def _launch(family: str, name: str, fn, grid, args: tuple, kwargs: dict) -> Launch:
    params = inspect.signature(fn.fn).parameters
    bound = inspect.signature(fn.fn).bind_partial(
        *args, **{k: v for k, v in kwargs.items() if k in params}).arguments
    # Kernel modules use postponed annotations: "tl.constexpr" is a string.
    constexprs = {k: v for k, v in bound.items() if "constexpr" in str(params[k].annotation)}
    options = {k: v for k, v in kwargs.items() if k not in params}
    return Launch(family, name, grid, args, kwargs, constexprs, options)


def ops_modules() -> dict[str, object]:
    """Every module of ``vllm_xpu_hybrid.ops``, by name (the family name)."""
    from vllm_xpu_hybrid import ops

    return {
        info.name: importlib.import_module(f"vllm_xpu_hybrid.ops.{info.name}")
        for info in pkgutil.iter_modules(ops.__path__)
    }


def kernels_of(module) -> dict[str, object]:
    """The kernels a module defines: ``@triton.jit`` objects named ``*_kernel``
    (helpers called from kernels have other names)."""
    from triton.runtime.jit import KernelInterface

    return {
        name: obj
        for name, obj in vars(module).items()
        if name.endswith("_kernel") and isinstance(obj, KernelInterface)
        and getattr(obj.fn, "__module__", None) == module.__name__
    }


@contextmanager
def recording_launches(launches: list[Launch], device_kind: str = DEVICE_KIND) -> Iterator[None]:
    """While active, tensors on the ``meta`` device take every ops module's
    ``LAUNCH_CONFIGS[device_kind]`` entry, and kernel launches append to
    ``launches`` instead of running."""
    modules = ops_modules()
    tables, patched = [], []
    try:
        for family, module in modules.items():
            table = getattr(module, "LAUNCH_CONFIGS", None)
            kernels = kernels_of(module)
            if kernels and table is None:
                raise RuntimeError(f"ops/{family}.py: kernels without a LAUNCH_CONFIGS table")
            if table is not None:
                if device_kind not in table:
                    raise RuntimeError(f"ops/{family}.py: LAUNCH_CONFIGS has no {device_kind!r} entry")
                table["meta"] = table[device_kind]
                tables.append(table)
            for name, fn in kernels.items():
                def record(*args, grid, warmup, _family=family, _name=name, _fn=fn, **kwargs):
                    launches.append(_launch(_family, _name, _fn, grid, args, kwargs))
                fn.run = record
                patched.append(fn)
        yield
    finally:
        for table in tables:
            table.pop("meta", None)
        for fn in patched:
            fn.__dict__.pop("run", None)


def record_case(call: Callable[[], object]) -> list[Launch]:
    """The kernel launches one case's launcher call makes on XPU."""
    launches: list[Launch] = []
    with recording_launches(launches):
        call()
    return launches


# ---------------------------------------------------------------------------
# Reading IGC's shader dump
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class NativeStats:
    """What IGC's assembly listing of one kernel says."""

    num_grf: int
    spill_bytes: int
    dpas: int
    simd: int
    register_allocator: str


_DPAS_LINE = re.compile(r"^\s*(?:\([^)]*\)\s*)?dpasw?\.", re.MULTILINE)


def final_asm(paths: list[str]) -> str:
    """The listing of the kernel that went into the binary. When IGC recompiles
    a kernel (its retry after spilling), the dump holds one listing per attempt
    (``..._simd16_...``, then ``..._1_simd16_...``); the last attempt is kept."""
    listings = [p for p in paths if "Symbol_Table" not in p and re.search(r"_simd\d+_", p)]
    if not listings:
        raise ValueError(f"no IGC assembly listing among {sorted(os.path.basename(p) for p in paths)}")

    def attempt(path: str) -> int:
        found = re.search(r"_(\d+)_simd\d+_", os.path.basename(path))
        return int(found.group(1)) if found else 0

    return max(listings, key=attempt)


def parse_igc_asm(text: str, filename: str) -> NativeStats:
    """Register file, spill size, dpas count and SIMD width of one kernel from
    IGC's ``.asm`` listing (header lines ``//.thread_config numGRF=N``,
    ``//.RA type ...``, ``//.spill size N`` when it spilled)."""
    grf = re.search(r"^//\.thread_config numGRF=(\d+)", text, re.MULTILINE)
    if grf is None:
        raise ValueError(f"{filename}: no '//.thread_config numGRF=' header line")
    spill = re.search(r"^//\.spill size (\d+)", text, re.MULTILINE)
    allocator = re.search(r"^//\.RA type\s+(\S+)", text, re.MULTILINE)
    simd = re.search(r"_simd(\d+)_", filename)
    return NativeStats(
        num_grf=int(grf.group(1)),
        spill_bytes=int(spill.group(1)) if spill else 0,
        dpas=len(_DPAS_LINE.findall(text)),
        simd=int(simd.group(1)) if simd else 0,
        register_allocator=allocator.group(1) if allocator else "",
    )


def count_dots(ttgir: str) -> tuple[int, int]:
    """(``tt.dot`` operations, those laid out for XMX) in a kernel's TTGIR: a
    dot whose result encoding is Intel's ``dpas`` layout is lowered to dpas
    instructions; any other dot runs on the vector ALUs (FMA)."""
    dpas_layouts = set(re.findall(r"^(#\w+) = #(?:triton_intel_gpu|ttig)\.dpas<", ttgir, re.MULTILINE))
    dots = re.findall(r"\btt\.dot\b.*->\s*tensor<[^,>]*,\s*(#\w+)>", ttgir)
    return len(dots), sum(layout in dpas_layouts for layout in dots)


def read_dump(dump_dir: str) -> NativeStats:
    """Statistics of the kernel in an ``IGC_DumpToCustomDir`` directory."""
    path = final_asm(glob.glob(os.path.join(dump_dir, "*.asm")))
    with open(path, errors="replace") as f:
        return parse_igc_asm(f.read(), os.path.basename(path))


# ---------------------------------------------------------------------------
# Rows and checks
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Row:
    """One kernel x configuration compiled for one target."""

    target: str
    family: str
    kernel: str
    configuration: str
    used_by: list[str]
    built: bool
    grf_mode: str = ""
    num_grf: int | None = None
    spill_bytes: int | None = None
    dpas: int | None = None
    dots: int | None = None
    xmx_dots: int | None = None
    slm_bytes: int | None = None
    simd: int | None = None
    error: str = ""


def row_errors(row: Row) -> list[str]:
    """Why a row fails the gate (empty when it passes): it did not build, or
    it needs more shared local memory than its target has."""
    where = f"{row.family}.{row.kernel} [{row.configuration}] on {row.target}"
    errors = []
    if not row.built:
        errors.append(f"{where}: does not compile: {row.error}")
    limit = TARGETS[row.target].slm_bytes
    if row.slm_bytes is not None and row.slm_bytes > limit:
        errors.append(f"{where}: needs {row.slm_bytes} bytes of shared local memory, "
                      f"the target has {limit}")
    return errors


# ---------------------------------------------------------------------------
# Compiling (needs triton-xpu and ocloc)
# ---------------------------------------------------------------------------


class _CompileOnlyDriver:
    """Stands in for Intel's Triton driver: reports the target, never launches."""

    def __init__(self, target: IntelTarget):
        from triton.backends.compiler import GPUTarget

        # warp_size 32: what Intel's driver reports (get_current_target).
        self.target = GPUTarget("xpu", dict(target.properties), 32)
        self.device = target.name

    def get_current_target(self):
        return self.target

    def get_current_device(self):
        return self.device

    def get_current_stream(self, device=None):
        return None


@contextmanager
def _compiling_for(target: IntelTarget) -> Iterator[None]:
    from triton.runtime.driver import driver

    driver.set_active(_CompileOnlyDriver(target))
    try:
        yield
    finally:
        driver.reset_active()


@contextmanager
def _captured_stderr() -> Iterator[Callable[[], str]]:
    """Native code (Triton's MLIR passes, the arch parser) writes to fd 2;
    keep it out of the report and hand it back for error messages."""
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+") as log:
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            yield lambda: (log.seek(0), log.read())[1]
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _diagnostics(text: str, lines: int = 3) -> str:
    """The compiler's own error lines from a log (MLIR dumps whole modules
    around them), else its last lines."""
    kept = [line.strip() for line in text.splitlines() if line.strip() and "sycl_arch" not in line]
    errors = [line for line in kept if re.search(r"LLVM ERROR|error:|Assertion|Error:", line)
              and "Failures have been detected" not in line]
    return " | ".join((errors or kept)[-lines:])


def specialization_key(launch: Launch, target: IntelTarget) -> str:
    """Triton's own cache key of a launch (argument types, divisibility by 16,
    constexprs, options): equal keys compile to the same kernel."""
    fn = kernels_of(ops_modules()[launch.family])[launch.kernel]
    with _compiling_for(target), _captured_stderr():
        binder = fn.device_caches[target.name][3]
        _, specialization, options = binder(*launch.args, **launch.kwargs)
    return f"{launch.family}.{launch.kernel}:{specialization}{options}"


def run_ocloc(spirv: bytes, target: IntelTarget, build_flags: str, workdir: str) -> NativeStats:
    """Native code for ``target`` from SPIR-V, with IGC's shader dump read back.
    Raises RuntimeError with ocloc's log when it fails."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        source = os.path.join(tmp, "kernel.spv")
        with open(source, "wb") as f:
            f.write(spirv)
        dump = os.path.join(tmp, "dump")
        env = {**os.environ, "IGC_ShaderDumpEnable": "1", "IGC_DumpToCustomDir": dump}
        # ocloc 22.43 spells the output option -output (newer ones accept -o).
        try:
            proc = subprocess.run(
                ["ocloc", "compile", "-file", source, "-spirv_input", "-device", target.ocloc_device,
                 "-options", build_flags, "-output", os.path.join(tmp, "kernel")],
                check=False, capture_output=True, text=True, env=env, cwd=tmp, timeout=OCLOC_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"ocloc did not finish in {OCLOC_TIMEOUT_S} s") from None
        if proc.returncode != 0:
            raise RuntimeError(f"ocloc exit {proc.returncode}: {_diagnostics(proc.stdout + proc.stderr)}")
        return read_dump(dump)


def compile_launch(launch: Launch, target: IntelTarget, workdir: str) -> Row:
    """Compile one recorded launch for one target, down to native code."""
    fn = kernels_of(ops_modules()[launch.family])[launch.kernel]
    row = Row(target.name, launch.family, launch.kernel, launch.configuration(), [], built=False,
              grf_mode=str(launch.options.get("grf_mode", "default")))
    with _captured_stderr() as log:
        try:
            with _compiling_for(target):
                kernel = fn.run(*launch.args, grid=launch.grid, warmup=True, **launch.kwargs)
        except Exception as exc:  # noqa: BLE001 - any compiler failure is a row
            row.error = f"Triton: {type(exc).__name__}: {_diagnostics(str(exc))}; {_diagnostics(log())}"
            return row
    row.slm_bytes = kernel.metadata.shared
    row.dots, row.xmx_dots = count_dots(kernel.asm["ttgir"])
    flags = kernel.metadata.build_flags
    try:
        stats = run_ocloc(kernel.asm["spv"], target, flags, workdir)
        if not any(f in flags for f in GRF_MODE_FLAGS) and stats.spill_bytes > RUNTIME_LARGE_GRF_SPILL_BYTES:
            stats = run_ocloc(kernel.asm["spv"], target, f"{flags} {LARGE_GRF_FLAG}".strip(), workdir)
            row.grf_mode += ", large after runtime retry"
    except (RuntimeError, ValueError) as exc:
        row.error = f"IGC: {exc}"
        return row
    row.built = True
    row.num_grf, row.spill_bytes, row.dpas, row.simd = stats.num_grf, stats.spill_bytes, stats.dpas, stats.simd
    return row


# Per worker process: each case's launches, recorded once.
_RECORDED: dict[tuple[str, str], list[Launch]] = {}


def _case_launches(family: str, label: str) -> list[Launch]:
    from vllm_xpu_hybrid.intel_compile_cases import FAMILY_CASES

    if (family, label) not in _RECORDED:
        call = dict(FAMILY_CASES[family]())[label]
        _RECORDED[family, label] = record_case(call)
    return _RECORDED[family, label]


def _compile_task(task: tuple[str, str, str, int], workdir: str) -> Row:
    target, family, label, index = task
    return compile_launch(_case_launches(family, label)[index], TARGETS[target], workdir)


@dataclasses.dataclass
class _Unit:
    """A distinct kernel configuration: the first case launch that makes it,
    and every case that makes it."""

    family: str
    label: str
    index: int
    used_by: list[str]


def record_family(family: str) -> tuple[dict[str, list[Launch]], list[str]]:
    """Every case of a family, recorded: {case label: launches}, and the
    errors found (a launcher refusing a case's shape, a ``*_kernel`` of the
    family's module that no case launches)."""
    from vllm_xpu_hybrid.intel_compile_cases import FAMILY_CASES

    recorded, errors, launched = {}, [], set()
    for label, call in FAMILY_CASES[family]():
        try:
            recorded[label] = record_case(call)
        except Exception as exc:  # noqa: BLE001 - a launcher refusing a real shape is a finding
            errors.append(f"{family}: case {label!r}: the launcher raised {type(exc).__name__}: {exc}")
            continue
        launched.update((launch.family, launch.kernel) for launch in recorded[label])
    errors += [f"{family}.{kernel}: launched by no compile case "
               f"(add one to intel_compile_cases.FAMILY_CASES[{family!r}])"
               for kernel in kernels_of(ops_modules()[family]) if (family, kernel) not in launched]
    return recorded, errors


def plan(families: list[str]) -> tuple[list[_Unit], list[str]]:
    """Distinct configurations over the families' cases (Triton's
    specialisation key), and the errors found before compiling."""
    units: dict[str, _Unit] = {}
    errors = []
    key_target = next(iter(TARGETS.values()))
    for family in families:
        recorded, family_errors = record_family(family)
        errors += family_errors
        for label, launches in recorded.items():
            _RECORDED[family, label] = launches
            for index, launch in enumerate(launches):
                key = specialization_key(launch, key_target)
                unit = units.setdefault(key, _Unit(launch.family, label, index, []))
                if label not in unit.used_by:
                    unit.used_by.append(label)
    return list(units.values()), errors


def _compile_lane(tasks: queue.SimpleQueue, rows: dict, workdir: str) -> None:
    """Compile queued tasks one at a time in a worker process of its own. When
    a compiler aborts the process, that task is the one that crashed: it gets
    a failed row and a fresh process takes the next task."""
    context = multiprocessing.get_context("spawn")
    pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=context)
    try:
        while True:
            try:
                task = tasks.get_nowait()
            except queue.Empty:
                return
            try:
                rows[task] = pool.submit(_compile_task, task, workdir).result()
            except concurrent.futures.process.BrokenProcessPool:
                target, family, label, index = task
                launch = _case_launches(family, label)[index]
                rows[task] = Row(target, family, launch.kernel, launch.configuration(), [], built=False,
                                 error="the compiler aborted its process (crash)")
                pool.shutdown()
                pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=context)
    finally:
        pool.shutdown()


def compile_units(units: list[_Unit], targets: list[IntelTarget], jobs: int) -> list[Row]:
    """Every unit for every target, over ``jobs`` worker processes."""
    tasks = [(t.name, u.family, u.label, u.index) for t in targets for u in units]
    queued: queue.SimpleQueue = queue.SimpleQueue()
    for task in tasks:
        queued.put(task)
    rows: dict[tuple, Row] = {}
    workdir = tempfile.mkdtemp(prefix="intel-compile-")
    try:
        with concurrent.futures.ThreadPoolExecutor(jobs) as lanes:
            for lane in [lanes.submit(_compile_lane, queued, rows, workdir) for _ in range(jobs)]:
                lane.result()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    used_by = {(t.name, u.family, u.label, u.index): u.used_by for t in targets for u in units}
    for task, row in rows.items():
        row.used_by = used_by[task]
    return [rows[task] for task in tasks]


# ---------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------


def compiler_versions() -> dict[str, str]:
    """Versions of the compilers the rows come from."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for package in ("triton-xpu", "torch"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "absent"
    with tempfile.TemporaryDirectory() as tmp:
        # ocloc 22.43 writes the answer to a file named after the query.
        subprocess.run(["ocloc", "query", "OCL_DRIVER_VERSION"], check=False, cwd=tmp, capture_output=True)
        path = os.path.join(tmp, "OCL_DRIVER_VERSION")
        versions["ocloc (compute runtime)"] = "unknown"
        if os.path.exists(path):
            with open(path) as f:
                versions["ocloc (compute runtime)"] = f.read().strip("\x00 \n")
    if shutil.which("dpkg-query"):
        igc = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libigc1"],
                             check=False, capture_output=True, text=True)
        versions["IGC (Debian libigc1)"] = igc.stdout.strip() or "unknown"
    return versions


_COLUMNS = ("target", "kernel", "configuration", "GRF mode", "GRF", "spill B", "XMX dots", "dpas", "SLM B",
            "built", "used by")


def _cells(row: Row) -> list[str]:
    def number(value: int | None) -> str:
        return "-" if value is None else str(value)

    return [row.target, f"{row.family}.{row.kernel}", row.configuration, row.grf_mode,
            number(row.num_grf), number(row.spill_bytes),
            f"{row.xmx_dots}/{row.dots}" if row.dots else "-", number(row.dpas),
            number(row.slm_bytes), "yes" if row.built else "NO", "; ".join(row.used_by)]


def format_table(rows: list[Row]) -> str:
    """Plain-text table, one line per row."""
    lines = [list(_COLUMNS)] + [_cells(row) for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(_COLUMNS) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False)) + "  " + line[-1]
        for line in lines
    ).rstrip()


def _markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(_COLUMNS[1:]) + " |", "|" + "---|" * (len(_COLUMNS) - 1)]
    for row in rows:
        cells = _cells(row)[1:]
        cells[1] = f"`{cells[1]}`"
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def format_markdown(rows: list[Row], errors: list[str], versions: dict[str, str]) -> str:
    """docs/intel-compile.md: what the gate proves, the versions, one table per target."""
    targets = [name for name in TARGETS if any(row.target == name for row in rows)]
    parts = [
        "# Intel compile gate",
        "",
        f"Written by `python -m vllm_xpu_hybrid.intel_compile --markdown docs/intel-compile.md` "
        f"on {datetime.date.today().isoformat()}; CI (`.ci/run`) runs the same gate for PVC and "
        "DG2 and fails when a kernel does not compile or needs more shared local memory than the "
        "target has.",
        "",
        "## What it proves, and what it does not",
        "",
        "No Intel GPU is reachable, but Intel's compilers are. Every Triton kernel in "
        "`vllm_xpu_hybrid/ops/` is compiled at the launch configuration its launcher picks on XPU "
        "(`LAUNCH_CONFIGS[\"xpu\"]`, through the launcher's own code) at real model shapes: Triton "
        "lowers it to SPIR-V with Intel's backend for the target's properties, and Intel's graphics "
        "compiler (IGC, through `ocloc`) turns that into native code with real register allocation.",
        "",
        "It proves, for these targets and compilers:",
        "",
        "- **compiles**: each kernel and configuration builds to native code;",
        "- **register pressure**: the register file it runs with (`GRF`: 128 registers, or 256 in "
        "large GRF mode, which halves the threads per core) and the bytes it spills to scratch memory "
        "(`spill B`, 0 = none);",
        "- **XMX use**: how many of the kernel's `tl.dot` operations Triton laid out for the XMX "
        "matrix engines (`XMX dots`, as laid out / all; `-` for a kernel without dots) and how many "
        "`dpas` instructions IGC emitted for them (`dpas`); other dots run on the vector ALUs;",
        "- **shared local memory** per work-group (`SLM B`), checked against the target's capacity.",
        "",
        "It does not prove:",
        "",
        "- **speed on Intel GPUs**: nothing here runs; the configurations are chosen from compiler "
        "evidence and remain UNVERIFIED on hardware;",
        "- **the driver users have**: Debian's IGC (below) is older than current Intel drivers, which "
        "may allocate registers differently;",
        "- **correctness on Intel**: the kernels' reference tests run on the CPU interpreter "
        "(Triton 3.9) and compiled on NVIDIA (Triton 3.6), never on an Intel GPU.",
        "",
        "Where a PVC row spills, the reason is written beside the `\"xpu\"` entry of that ops "
        "module's `LAUNCH_CONFIGS`. On DG2 this backend lays out no dot for XMX: at the default "
        "sub-group size (32) or 16 every dot falls back to the vector ALUs (DG2's XMX works on "
        "sub-groups of 8), and forcing `threads_per_warp=8` aborts inside LLVM; the DG2 rows show "
        "that the kernels build there and what they spill.",
        "",
        "## Compilers",
        "",
        *[f"- {name}: {value}" for name, value in versions.items()],
        "",
        "Targets (properties given to Triton as `torch.xpu.get_device_capability` reports them):",
        "",
        *[f"- `{t.name}`: {t.product}; `ocloc -device {t.ocloc_device}`; SLM {t.slm_bytes} bytes "
          "per work-group" for t in TARGETS.values() if t.name in targets],
        "",
        "Configurations: a launch's constexprs, then `num_warps`, `num_stages` and `grf_mode` as the "
        "launcher passes them. A row lists every model shape (`used by`) whose launch compiles to "
        "that kernel; the shapes are in `vllm_xpu_hybrid/intel_compile_cases.py`. A configuration "
        "without a GRF mode that spills over 1000 bytes is rebuilt in large GRF mode, as Intel's "
        "runtime does.",
        "",
    ]
    if errors:
        parts += ["## Errors", "", *[f"- {error}" for error in errors], ""]
    for name in targets:
        parts += [f"## {TARGETS[name].product}", "", _markdown_table([r for r in rows if r.target == name]), ""]
    return "\n".join(parts)


def _check_environment() -> None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("triton-xpu")
    except PackageNotFoundError:
        raise SystemExit("intel_compile: needs Intel's Triton backend: pip install "
                         f"triton-xpu=={TRITON_XPU_VERSION} (ci/intel-compile-env.sh builds the environment)"
                         ) from None
    if found != TRITON_XPU_VERSION:
        raise SystemExit(f"intel_compile: written against triton-xpu {TRITON_XPU_VERSION}, found {found}")
    if shutil.which("ocloc") is None:
        raise SystemExit("intel_compile: ocloc not found (Debian: apt-get install intel-opencl-icd)")


def main(argv: list[str] | None = None) -> int:
    """Command line; returns the exit status (1 when the gate fails)."""
    from vllm_xpu_hybrid.intel_compile_cases import FAMILY_CASES

    parser = argparse.ArgumentParser(prog="python -m vllm_xpu_hybrid.intel_compile",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=[*TARGETS, "all"], default="all")
    parser.add_argument("--family", nargs="+", choices=sorted(FAMILY_CASES), metavar="NAME",
                        help=f"kernel families (ops modules): {', '.join(sorted(FAMILY_CASES))}")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--markdown", metavar="PATH", help="also write the Markdown report there")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="compiler processes (default: min(2, CPUs))")
    args = parser.parse_args(argv)
    _check_environment()
    # Intel's Triton driver compiles a C++ helper (SYCL headers) with $CC.
    os.environ.setdefault("CC", "g++")

    families = args.family or sorted(FAMILY_CASES)
    targets = list(TARGETS.values()) if args.target == "all" else [TARGETS[args.target]]
    units, errors = plan(families)
    if not args.family:
        errors += [f"ops/{name}.py: no compile cases (add them to intel_compile_cases.FAMILY_CASES)"
                   for name, module in ops_modules().items() if name not in FAMILY_CASES and kernels_of(module)]
    rows = compile_units(units, targets, max(1, args.jobs))
    errors += [error for row in rows for error in row_errors(row)]

    versions = compiler_versions()
    if args.json:
        print(json.dumps({"versions": versions, "rows": [dataclasses.asdict(r) for r in rows],
                          "errors": errors}, indent=1))
    else:
        print(format_table(rows))
        print("\n".join(f"ERROR: {error}" for error in errors) if errors else
              f"intel_compile: {len(rows)} rows, all built, SLM within limits")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(format_markdown(rows, errors, versions))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
