# SPDX-License-Identifier: Apache-2.0
"""Host-side launch arithmetic and the cached launch shared by the kernel
launchers.

Triton 3.6 and later define ``triton.cdiv`` and ``triton.next_power_of_2``
as constexpr functions, whose wrapper costs microseconds per call from host
code (about 3 µs each on the development CPU); a decode launcher makes
several such calls per step, against a host budget of 20 µs per call. These
are the same integer functions in plain Python.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable


def cdiv(a: int, b: int) -> int:
    """ceil(a / b) for integers, b > 0."""
    return -(-a // b)


def next_power_of_2(n: int) -> int:
    """The smallest power of two >= n for n >= 1; 0 for n = 0 (as Triton's)."""
    return 1 << (n - 1).bit_length() if n > 0 else 0


def dot_block(size: int) -> int:
    """A tile covering size elements along a tl.dot dimension: size padded to
    a power of two, at least 16 (the smallest dot dimension)."""
    return max(16, next_power_of_2(size))


def small_grid_entries(entries: dict, programs: int) -> dict:
    """A launch configuration entry for a grid of ``programs`` programs:
    ``entries`` with its optional ``SMALL_GRID`` entries applied over it when
    programs is below their ``below_programs`` (small decode batches, whose
    grids are latency-bound and take other tiles than the bandwidth-bound
    large ones)."""
    small = entries.get("SMALL_GRID")
    if small is None or programs >= small["below_programs"]:
        return entries
    return {**entries, **small}


# A launch grid's second and third dimensions hold at most 65535 programs on
# CUDA; the launchers put counts there that a vLLM setting bounds.
MAX_GRID_YZ = 65535


def check_grid_dim(name: str, count: int, what: str, fix: str) -> None:
    """Refuse a call whose ``count`` (of ``what``, from argument ``name``)
    would overflow a grid dimension, naming the vLLM setting that bounds it."""
    if count > MAX_GRID_YZ:
        raise ValueError(
            f"{name}: {count} {what} in one call; at most {MAX_GRID_YZ} "
            f"(a launch grid dimension): {fix}"
        )


# Triton backends whose specialisation of a launch's arguments is known to be
# a function of what CachedLaunch keys on: a tensor's dtype and whether its
# address is a multiple of 16, an integer's value (== 1, multiple of 16,
# 32/64-bit range), a float's type, None (triton/backends/compiler.py,
# BaseBackend.get_{int,tensor}_specialization, which Intel's backend keeps).
# ROCm's backend also specialises on a tensor's size (buffer operations), so
# it takes Triton's own launch path.
_KNOWN_SPECIALISATION_BACKENDS = ("cuda", "xpu")


@functools.cache
def _device_queries() -> tuple[Callable[[], int], Callable[[int], int]] | None:
    """Triton's current-device and current-stream queries when the active
    backend is one of _KNOWN_SPECIALISATION_BACKENDS, else None."""
    from triton.runtime import driver

    if driver.active.get_current_target().backend not in _KNOWN_SPECIALISATION_BACKENDS:
        return None
    return driver.active.get_current_device, driver.active.get_current_stream


@functools.cache
def _launch_hook_holder():
    """The object whose ``launch_enter_hook`` and ``launch_exit_hook`` this
    Triton calls around a launch: ``triton.knobs.runtime`` (3.4 and later,
    where each is a HookChain) or ``CompiledKernel`` (3.3, where each is None
    or a callable)."""
    try:
        from triton import knobs
    except ImportError:
        from triton.compiler import CompiledKernel

        return CompiledKernel
    return knobs.runtime


def _launch_hooks_registered() -> bool:
    """Whether a launch hook (a profiler's, such as Proton's) is set."""
    holder = _launch_hook_holder()
    enter, exit_ = holder.launch_enter_hook, holder.launch_exit_hook
    return bool(getattr(enter, "calls", enter) or getattr(exit_, "calls", exit_))


class CachedLaunch:
    """A ``@triton.jit`` kernel launched without Triton's per-call argument
    binding once a call with the same specialisation key has compiled it.

    Triton's ``kernel[grid](...)`` derives the compiled kernel's key from
    every argument on each call: on an H200's host (Triton 3.6) an empty
    kernel of 11 tensors and 35 integers took 52.6 µs per call that way and
    20.7 µs launched through its compiled kernel, against a decode call's
    host budget of 20 µs. This launcher keys its own table on the current
    device, the scalar arguments' values, each tensor's dtype and 16-byte
    alignment, the constexprs and the options, which fix Triton's
    specialisation; a hit calls the compiled kernel's launcher
    (``CompiledKernel.run``, which Triton's own path ends in) with no launch
    metadata and no hooks, a miss goes through Triton's path and records the
    kernel it returns. Through ``CompiledKernel[grid]`` instead, Triton 3.6
    builds launch metadata and calls its two hook chains, empty or not: an
    empty kernel of the same arguments took 15.8 µs per call that way and
    7.7 µs through ``run`` on an H100's host. While a launch hook is set
    (a profiler), hits go through ``CompiledKernel[grid]``, which calls it.
    Tensors off CUDA and XPU (the CPU interpreter, the Intel compile gate's
    ``meta`` tensors) and other Triton backends always take Triton's path.
    The table is emptied in a forked child, whose kernel handles are not
    its own.

    The kernel's parameters must be the tensors, then the scalars, then the
    constexprs, in the order passed (checked on every call through Triton's
    path); a scalar position must always get the same Python type (an int
    where the kernel takes an integer, a float where it takes fp32), since 1
    and 1.0 key alike.
    """

    # The table is emptied past this many entries (a scalar argument that
    # changes every call would otherwise grow it without bound).
    MAX_ENTRIES = 4096

    def __init__(self, kernel) -> None:
        self.kernel = kernel
        self._compiled: dict[tuple, tuple] = {}
        os.register_at_fork(after_in_child=self._compiled.clear)

    def __call__(self, grid: tuple[int, ...], tensors: tuple, scalars: tuple,
                 constexprs: dict, options: dict) -> None:
        """Launch over grid (1 to 3 program counts). tensors: the kernel's
        leading pointer arguments, the first one a tensor, None for an
        absent optional one; scalars: its int and float arguments after
        them; constexprs: its constexpr arguments by name, in signature
        order; options: num_warps, num_stages and backend compile options."""
        first = tensors[0]
        queries = _device_queries() if first.is_cuda or first.is_xpu else None
        if queries is None:
            self._launch_through_triton(grid, tensors, scalars, constexprs, options)
            return
        device = queries[0]()
        key = (device, scalars, tuple(constexprs.values()), tuple(options.items()),
               tuple([None if t is None else (t.dtype, t.data_ptr() % 16 == 0) for t in tensors]))
        hit = self._compiled.get(key)
        if hit is not None:
            compiled, run, function, packed_metadata = hit
            grid = grid + (1,) * (3 - len(grid))
            stream = queries[1](device)
            if _launch_hooks_registered():
                compiled[grid](*tensors, *scalars, *constexprs.values(), stream=stream)
            else:
                run(grid[0], grid[1], grid[2], stream, function, packed_metadata, None, None, None,
                    *tensors, *scalars, *constexprs.values())
            return
        compiled = self._launch_through_triton(grid, tensors, scalars, constexprs, options)
        from triton.compiler import CompiledKernel

        if isinstance(compiled, CompiledKernel):
            if len(self._compiled) >= self.MAX_ENTRIES:
                self._compiled.clear()
            self._compiled[key] = (compiled, compiled.run, compiled.function,
                                   compiled.packed_metadata)

    def _launch_through_triton(self, grid, tensors, scalars, constexprs, options):
        params = self.kernel.arg_names
        positional = len(tensors) + len(scalars)
        if len(params) != positional + len(constexprs) or params[positional:] != list(constexprs):
            raise TypeError(
                f"CachedLaunch: kernel parameters {params} are not {len(tensors)} tensors, "
                f"{len(scalars)} scalars, then the constexprs {list(constexprs)}"
            )
        return self.kernel[grid](*tensors, *scalars, **constexprs, **options)
