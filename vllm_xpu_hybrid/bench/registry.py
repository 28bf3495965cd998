# SPDX-License-Identifier: Apache-2.0
"""What a benchmark family is: a case generator, a counting rule and a
builder that turns a case into tensors, the plugin's call, the peers' calls
and the reference.

Adding a family = one module in ``bench/families/`` that defines a
``Family`` and lists it in ``bench/families/__init__.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from vllm_xpu_hybrid.bench.shapes import ShapeSet

# The resources a case's work is counted in, with the unit of their rates.
RESOURCES = {"bytes": "GB/s", "flops": "TFLOP/s", "exps": "Gexp/s"}
_RATE_SCALE = {"bytes": 1e9, "flops": 1e12, "exps": 1e9}


@dataclass(frozen=True)
class Work:
    """What a case must move or compute, by its family's counting rule: bytes
    read plus written, floating-point operations, exponentials."""

    bytes: float = 0.0
    flops: float = 0.0
    exps: float = 0.0

    def amounts(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in RESOURCES if getattr(self, name) > 0}


def rate(amount: float, median_us: float, resource: str) -> float:
    """amount per median_us, in the unit of RESOURCES[resource]."""
    return amount / (median_us * 1e-6) / _RATE_SCALE[resource]


def roofline(work: Work, median_us: float, peaks: dict[str, float | None]) -> tuple[float, str] | None:
    """Fraction of the roofline: the largest achieved/peak ratio over the
    resources the case uses and the device has a peak for (peaks in the units
    of RESOURCES), with the resource that gives it; None without any peak."""
    best = None
    for resource, amount in work.amounts().items():
        peak = peaks.get(resource)
        if peak:
            fraction = rate(amount, median_us, resource) / peak
            if best is None or fraction > best[0]:
                best = (fraction, resource)
    return best


@dataclass(frozen=True)
class Case:
    """One benchmark point: a family at one shape, for the named models."""

    family: str
    label: str  # short, unique within the family: "B=64 H=80 P=64 N=128 state=fp32"
    models: tuple[str, ...]
    params: dict[str, Any]
    work: Work
    tolerance: float  # see outputs_differ

    @property
    def name(self) -> str:
        return f"{self.family} {self.label} ({', '.join(self.models)})"


@dataclass
class Impl:
    """One implementation of a case.

    call: the timed eager call, on this implementation's own buffers.
    outputs: runs it once from the case's initial state and returns the named
    tensors (outputs, final states) to compare with the reference.
    """

    name: str
    call: Callable[[], object]
    outputs: Callable[[], dict[str, torch.Tensor]]


@dataclass
class Built:
    """A case ready to run: the reference's named tensors, the plugin first
    among the implementations, and the peers that could not be set up."""

    reference: Callable[[], dict[str, torch.Tensor]]
    impls: list[Impl] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, call: Callable[[], object],
            outputs: Callable[[], dict[str, torch.Tensor]]) -> None:
        self.impls.append(Impl(name, call, outputs))

    @contextlib.contextmanager
    def peer(self, name: str) -> Iterator[None]:
        """Set up a peer inside this block; an import or set-up failure
        records the peer as unavailable, with the reason, instead of failing
        the case."""
        try:
            yield
        except Exception as exc:
            self.unavailable[name] = describe_exception(exc)


@dataclass(frozen=True)
class BuildContext:
    """Where a builder allocates: ``device`` for the kernels, ``ref_device``
    for the float64 reference (the GPU when it has float64, else the CPU)."""

    device: str
    ref_device: str


@dataclass(frozen=True)
class Family:
    """A kernel family of the benchmark.

    cases: the case generator (CPU only, allocates nothing).
    build: a case's tensors and implementations; None while the plugin's
    kernel exists but the benchmark has no builder for it yet.
    plugin_module: the module the plugin's kernel lives in; a family whose
    module is missing is reported as skipped.
    counting_rule: how Work is counted, stated in the report.
    """

    name: str
    title: str
    plugin_module: str
    counting_rule: str
    cases: Callable[[ShapeSet], list[Case]]
    build: Callable[[Case, BuildContext], Built] | None


def describe_exception(exc: BaseException) -> str:
    """``Type: first line of the message`` (at most 300 characters)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


def outputs_differ(got: torch.Tensor, want: torch.Tensor, tolerance: float) -> str | None:
    """None when every element satisfies |got - want| <= tolerance *
    (|want| + rms(want)), else a description of the worst element.

    The rms term keeps elements near zero from failing on rounding alone;
    a wrong mask, index or state moves elements by O(rms) and fails.
    """
    if got.shape != want.shape:
        return f"shape {tuple(got.shape)} != reference {tuple(want.shape)}"
    got64 = got.to(device=want.device, dtype=torch.float64)
    want64 = want.to(torch.float64)
    if not torch.isfinite(got64).all():
        return "non-finite values"
    scale = want64.pow(2).mean().sqrt()
    excess = (got64 - want64).abs() / (want64.abs() + scale).clamp_min(1e-30)
    worst = excess.max().item() if excess.numel() else 0.0
    if worst <= tolerance:
        return None
    return f"max |error| / (|ref| + rms(ref)) = {worst:.3g} > tolerance {tolerance:g}"
