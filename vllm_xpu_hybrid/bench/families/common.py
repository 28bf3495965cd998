# SPDX-License-Identifier: Apache-2.0
"""Helpers shared by the family builders: inputs, state slots, the reference
device."""

from __future__ import annotations

import zlib
from collections.abc import Callable

import torch

from vllm_xpu_hybrid.bench.registry import BuildContext, Built, Case


class Inputs:
    """Seeded random tensors on the case's device, in the case's dtype
    unless told otherwise."""

    def __init__(self, ctx: BuildContext, case: Case):
        self.device = ctx.device
        self.dtype = getattr(torch, case.params["dtype"])
        seed = zlib.crc32(f"{case.family} {case.label}".encode())
        self.gen = torch.Generator(device=ctx.device).manual_seed(seed)

    def randn(self, *shape: int, dtype: torch.dtype | None = None, scale: float = 1.0) -> torch.Tensor:
        t = torch.randn(*shape, device=self.device, dtype=torch.float32, generator=self.gen)
        return (t * scale).to(dtype or self.dtype)

    def rand(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.rand(*shape, device=self.device, dtype=torch.float32, generator=self.gen).to(dtype)

    def permutation(self, n: int) -> torch.Tensor:
        return torch.randperm(n, device=self.device, generator=self.gen).to(torch.int32)


def state_slots(batch: int, device: str) -> torch.Tensor:
    """State indices 1..batch (int32): slot 0 is vLLM 0.32's null block, which
    its kernels skip, so state buffers have batch + 1 slots."""
    return torch.arange(1, batch + 1, device=device, dtype=torch.int32)


def to_ref(ctx: BuildContext, *tensors: torch.Tensor | None) -> list[torch.Tensor | None]:
    """The tensors on the reference device (the same tensors when they are
    there already: clone what a reference updates in place)."""
    return [None if t is None else t.to(ctx.ref_device) for t in tensors]


def add_stateful(
    built: Built,
    name: str,
    initial: torch.Tensor,
    step: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    rows: slice = slice(1, None),
) -> None:
    """Add an implementation that updates a state buffer in place.

    It gets its own copy of ``initial``; ``step(state)`` makes one call on it
    and returns the named outputs; the check restores the initial state,
    steps once and compares those outputs and ``state[rows]`` (default: every
    slot but vLLM's null block 0).
    """
    state = initial.clone()

    def outputs() -> dict[str, torch.Tensor]:
        state.copy_(initial)
        return {**step(state), "state": state[rows]}

    built.add(name, lambda: step(state), outputs)
