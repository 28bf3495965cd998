# SPDX-License-Identifier: Apache-2.0
"""Timing on the GPU, the device's peaks and the copy bandwidth.

Device time: each repetition first overwrites a flush buffer larger than the
device's last-level cache (so inputs and state pages come from memory, not
cache), then records an event, makes the eager call, records an event; the
median and the 20th/80th percentiles of the event intervals are reported.
On CUDA a spin of the device (``torch.cuda._sleep``) longer than the host's
launch time of the call sits between the flush and the first event, so the
device is still busy when the call's kernels are queued: the interval is
the kernels' own time, not the host's launch latency of a small call (any
synchronisation the call makes itself still counts).

Host overhead: the wall-clock time one eager call takes to return with the
device idle (the stream is synchronised before each call): argument checks,
launch, and any synchronisation the implementation does itself.

Long calls (one call longer than the timer's target, such as a peer that
loops over tokens on the host) get two warm-up calls, three host calls and
three timed repetitions, and the spin is capped at MAX_SPIN_US: such a call
is bound by its own host work, which no spin can hide.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

# Dense 16-bit tensor-core peak (TFLOP/s) and exponentials per second (the
# special-function units at the boost clock: 16 per SM per clock on sm_80 and
# sm_90), by a substring of the device name, first match wins. From the
# vendors' data sheets; a device not listed gets no compute roofline unless
# --peak-tflops is given.
DEVICE_PEAKS: tuple[tuple[str, float, float], ...] = (
    ("H100 PCIe", 756.0, 114 * 16 * 1.755e9),
    ("H100 NVL", 835.0, 132 * 16 * 1.785e9),
    ("H100", 989.0, 132 * 16 * 1.98e9),
    ("H200", 989.0, 132 * 16 * 1.98e9),
    ("A100", 312.0, 108 * 16 * 1.41e9),
)

# Bytes overwritten before each timed repetition: more than the last-level
# cache (50 MB on H100; 408 MB on Data Center GPU Max, whose L2 size torch
# does not report, hence 1 GiB on XPU).
FLUSH_BYTES = {"cuda": 256 << 20, "xpu": 1 << 30}

# Bytes read plus written by the copy whose bandwidth is the roofline.
COPY_BYTES = 2 << 30

# Calls, host calls and repetitions for a call longer than the target, and
# the longest device spin before a repetition (µs).
LONG_CALL_REPS = 3
MAX_SPIN_US = 20_000.0


@dataclass(frozen=True)
class Measurement:
    """Per-repetition device times and per-call host times, in µs."""

    device_us: list[float]
    host_us: list[float]


class Timer(Protocol):
    def measure(self, impl: str, fn: Callable[[], object]) -> Measurement: ...


def percentile(samples: list[float], q: float) -> float:
    """The q-th percentile (0..100) of samples, linearly interpolated."""
    ordered = sorted(samples)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarise(samples: list[float]) -> dict[str, float]:
    """Median, 20th and 80th percentile."""
    return {"median": statistics.median(samples), "p20": percentile(samples, 20),
            "p80": percentile(samples, 80)}


def spin_us(host_us: list[float]) -> float:
    """Device spin before each timed repetition: twice the slowest host call
    plus 50 µs, at most MAX_SPIN_US."""
    return min(2 * max(host_us) + 50, MAX_SPIN_US)


def repetitions(estimate_ms: float, target_ms: float, min_reps: int, max_reps: int) -> int:
    """Timed repetitions for a call of estimate_ms: as many as fit in
    target_ms, between min_reps and max_reps; LONG_CALL_REPS when one call
    alone exceeds the target."""
    if estimate_ms > target_ms:
        return LONG_CALL_REPS
    return int(min(max_reps, max(min_reps, target_ms / max(estimate_ms, 1e-3))))


def gpu_module(device: str):
    """torch.cuda or torch.xpu."""
    return torch.cuda if device == "cuda" else torch.xpu


class DeviceTimer:
    """Times eager calls on a CUDA or XPU device (see the module docstring).

    Repetitions: as many as fit in target_ms of device time, between
    min_reps and max_reps, after warmup calls (at least two; the second one
    timed on the host); host_calls calls for the host overhead. A call
    longer than target_ms: see the module docstring.
    """

    def __init__(self, device: str, target_ms: float = 50.0, min_reps: int = 10,
                 max_reps: int = 100, warmup: int = 3, host_calls: int = 20):
        self.device = device
        self.gpu = gpu_module(device)
        self.flush = torch.empty(FLUSH_BYTES[device] // 4, dtype=torch.int32, device=device)
        self.target_ms = target_ms
        self.min_reps, self.max_reps = min_reps, max_reps
        self.warmup, self.host_calls = warmup, host_calls
        self._cycles_per_us: float | None = None

    def _event(self):
        return self.gpu.Event(enable_timing=True)

    def _spin_cycles_per_us(self) -> float | None:
        """Clock cycles of ``torch.cuda._sleep`` per µs, measured once; None
        off CUDA."""
        if self.device != "cuda":
            return None
        if self._cycles_per_us is None:
            start, end = self._event(), self._event()
            start.record()
            torch.cuda._sleep(10_000_000)
            end.record()
            self.gpu.synchronize()
            self._cycles_per_us = 10_000_000 / (1e3 * start.elapsed_time(end))
        return self._cycles_per_us

    def measure(self, impl: str, fn: Callable[[], object]) -> Measurement:
        fn()
        self.gpu.synchronize()
        begin = time.perf_counter()
        fn()
        self.gpu.synchronize()
        long_call = 1e3 * (time.perf_counter() - begin) > self.target_ms
        for _ in range(0 if long_call else self.warmup - 2):
            fn()
        host_us = []
        for _ in range(LONG_CALL_REPS if long_call else self.host_calls):
            self.gpu.synchronize()
            begin = time.perf_counter()
            fn()
            host_us.append(1e6 * (time.perf_counter() - begin))
        self.gpu.synchronize()
        cycles_per_us = self._spin_cycles_per_us()
        spin_cycles = int(cycles_per_us * spin_us(host_us)) if cycles_per_us else 0
        start, end = self._event(), self._event()
        start.record()
        fn()
        end.record()
        self.gpu.synchronize()
        reps = repetitions(start.elapsed_time(end), self.target_ms, self.min_reps, self.max_reps)
        events = [(self._event(), self._event()) for _ in range(reps)]
        for start, end in events:
            self.flush.zero_()
            if spin_cycles:
                torch.cuda._sleep(spin_cycles)
            start.record()
            fn()
            end.record()
            if spin_cycles:
                # Keep the host from queueing far ahead of the device.
                end.synchronize()
        self.gpu.synchronize()
        device_us = [1e3 * s.elapsed_time(e) for s, e in events]
        return Measurement(device_us, host_us)


def copy_bandwidth_gbps(timer: Timer, device: str, nbytes: int = COPY_BYTES) -> float:
    """GB/s of a device-to-device copy moving ``nbytes`` (read plus written:
    a copy of nbytes / 2; by default 1 GiB copied, the roofline's copy)."""
    src = torch.empty(nbytes // 2, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    median = statistics.median(timer.measure("copy", lambda: dst.copy_(src)).device_us)
    return 2 * src.numel() / (median * 1e-6) / 1e9


def gpu_device() -> str | None:
    """"cuda" or "xpu" when one is visible, else None."""
    if torch.cuda.is_available():
        return "cuda"
    if hasattr(torch, "xpu") and torch.xpu.is_available():
        return "xpu"
    return None


def device_name(device: str) -> str:
    return gpu_module(device).get_device_name()


def device_peaks(name: str, peak_tflops: float | None = None) -> dict[str, float | None]:
    """Compute peaks in the units of registry.RESOURCES, without "bytes"
    (measured in the run): the table's entry for the device name, with
    peak_tflops overriding its FLOP peak."""
    entry = next((e for e in DEVICE_PEAKS if e[0] in name), None)
    return {
        "flops": peak_tflops if peak_tflops is not None else (entry[1] if entry else None),
        "exps": entry[2] / 1e9 if entry else None,
    }


def reference_device(device: str) -> str:
    """Where the float64 references run: the GPU when it computes in float64
    (some Intel GPUs do not), else the CPU."""
    try:
        probe = torch.ones(4, dtype=torch.float64, device=device)
        (probe * 2).sum().item()
    except RuntimeError:
        return "cpu"
    return device
