# SPDX-License-Identifier: Apache-2.0
"""Causal conv1d: varlen prefill and the decode update, beside vLLM 0.32's
Triton kernels (``causal_conv1d_fn`` with the metadata its builder
precomputes, and ``causal_conv1d_update``), on vLLM's state layout (conv
state pages [slots, width - 1, dim], viewed as [slots, dim, width - 1])."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from vllm_xpu_hybrid.bench.families.common import (
    Inputs,
    add_stateful,
    state_slots,
    to_ref,
)
from vllm_xpu_hybrid.bench.registry import BuildContext, Built, Case, Family, Work
from vllm_xpu_hybrid.bench.shapes import ShapeSet

VARLEN_RULE = ("bytes = x read and out written (L·dim each), weight and bias read, the "
               "sequence's conv state read and written (each once)")
UPDATE_RULE = ("bytes = each row's conv state page read and written, x read and out written, "
               "weight and bias read (each once)")


def conv_specs(shapes: ShapeSet) -> list[tuple[tuple[str, ...], dict]]:
    """Distinct (dim, width, bias, activation) of the models' conv layers,
    with the models having each: Mamba-1/2 (bias, silu), Gated DeltaNet (no
    bias, silu), LFM2's short conv (no bias, no activation)."""
    found: dict[tuple, list[str]] = {}
    for model in shapes.models:
        layers = [(model.mamba2, "conv_dim", True, "silu"), (model.mamba1, "inner", True, "silu"),
                  (model.gdn, "conv_dim", False, "silu"), (model.short_conv, "dim", False, None)]
        for dims, dim_attr, bias, activation in layers:
            if dims is None:
                continue
            width = getattr(dims, "conv_width", None) or dims.width
            key = (getattr(dims, dim_attr), width, bias, activation)
            found.setdefault(key, []).append(model.name)
    return [(tuple(names), {"dim": k[0], "width": k[1], "bias": k[2], "activation": k[3],
                            "dtype": shapes.dtype})
            for k, names in found.items()]


def _label(spec: dict) -> str:
    return (f"D={spec['dim']} K={spec['width']}{' bias' if spec['bias'] else ''}"
            f"{' silu' if spec['activation'] else ''}")


def varlen_cases(shapes: ShapeSet) -> list[Case]:
    cases = []
    for names, spec in conv_specs(shapes):
        dim, width = spec["dim"], spec["width"]
        for tokens in shapes.prefill_tokens:
            nbytes = (2 * tokens * dim + dim * width + dim + 2 * dim * (width - 1)) * shapes.elt
            cases.append(Case("conv1d_varlen", f"L={tokens} {_label(spec)}", names,
                              {**spec, "tokens": tokens}, Work(bytes=nbytes), tolerance=2e-2))
    return cases


def update_cases(shapes: ShapeSet) -> list[Case]:
    cases = []
    for names, spec in conv_specs(shapes):
        dim, width = spec["dim"], spec["width"]
        for batch in shapes.decode_batches:
            nbytes = (2 * batch * dim * (width - 1) + 2 * batch * dim + dim * width + dim) * shapes.elt
            cases.append(Case("conv1d_update", f"B={batch} {_label(spec)}", names,
                              {**spec, "batch": batch}, Work(bytes=nbytes), tolerance=2e-2))
    return cases


def _states(inputs: Inputs, slots: int, dim: int, width: int) -> torch.Tensor:
    """vLLM's default ("SD") conv state pages viewed as [slots, dim, width - 1]."""
    return inputs.randn(slots, width - 1, dim).transpose(1, 2)


def build_varlen(case: Case, ctx: BuildContext) -> Built:
    from vllm_xpu_hybrid.ops.causal_conv1d import causal_conv1d_varlen
    from vllm_xpu_hybrid.ops.reference import causal_conv1d_varlen_reference

    p = case.params
    dim, width, tokens, act = p["dim"], p["width"], p["tokens"], p["activation"]
    inputs = Inputs(ctx, case)
    x = inputs.randn(tokens, dim)
    weight = inputs.randn(dim, width, scale=0.5)
    bias = inputs.randn(dim) if p["bias"] else None
    initial = _states(inputs, 2, dim, width)
    idx = state_slots(1, ctx.device)
    cu = torch.tensor([0, tokens], device=ctx.device, dtype=torch.int32)
    has_initial = torch.ones(1, device=ctx.device, dtype=torch.bool)

    def reference() -> dict[str, torch.Tensor]:
        x_r, w_r, b_r, cu_r, idx_r, init_r = to_ref(ctx, x, weight, bias, cu, idx, has_initial)
        states = initial.to(ctx.ref_device, copy=True)
        with torch.device(ctx.ref_device):
            out = causal_conv1d_varlen_reference(x_r, w_r, b_r, states, cu_r, idx_r, init_r, act)
        return {"out": out, "state": states[1:]}

    out = torch.empty_like(x)
    built = Built(reference)
    add_stateful(built, "plugin", initial, lambda states: {"out": causal_conv1d_varlen(
        x, weight, bias, states, cu, idx, has_initial, act, out=out)})
    with built.peer("vLLM causal_conv1d_fn"):
        from vllm.model_executor.layers.mamba.ops.causal_conv1d import causal_conv1d_fn
        from vllm.v1.attention.backends.utils import compute_causal_conv1d_metadata

        nums, batch_ptr, offsets = compute_causal_conv1d_metadata(cu.cpu(), device=ctx.device)
        metadata = SimpleNamespace(nums_dict=nums, batch_ptr=batch_ptr,
                                   token_chunk_offset_ptr=offsets)
        # vLLM's layers pass x as the [dim, tokens] view of [tokens, dim] and
        # get out in the same layout.
        add_stateful(built, "vLLM causal_conv1d_fn", initial, lambda states: {"out": causal_conv1d_fn(
            x.t(), weight, bias, conv_states=states, query_start_loc=cu, cache_indices=idx,
            has_initial_state=has_initial, activation=act, metadata=metadata).t()})
    return built


def build_update(case: Case, ctx: BuildContext) -> Built:
    from vllm_xpu_hybrid.ops.causal_conv1d import causal_conv1d_update
    from vllm_xpu_hybrid.ops.reference import causal_conv1d_update_reference

    p = case.params
    dim, width, batch, act = p["dim"], p["width"], p["batch"], p["activation"]
    inputs = Inputs(ctx, case)
    x = inputs.randn(batch, dim)
    weight = inputs.randn(dim, width, scale=0.5)
    bias = inputs.randn(dim) if p["bias"] else None
    initial = _states(inputs, batch + 1, dim, width)
    idx = state_slots(batch, ctx.device)

    def reference() -> dict[str, torch.Tensor]:
        x_r, w_r, b_r, idx_r = to_ref(ctx, x, weight, bias, idx)
        states = initial.to(ctx.ref_device, copy=True)
        with torch.device(ctx.ref_device):
            out = causal_conv1d_update_reference(x_r, states, w_r, b_r, idx_r, act)
        return {"out": out, "state": states[1:]}

    built = Built(reference)
    out = torch.empty_like(x)
    add_stateful(built, "plugin", initial, lambda states: {"out": causal_conv1d_update(
        x, states, weight, bias, idx, act, out=out)})
    with built.peer("vLLM causal_conv1d_update"):
        from vllm.model_executor.layers.mamba.ops.causal_conv1d import (
            causal_conv1d_update as vllm_update,
        )

        peer_out = torch.empty_like(x)
        add_stateful(built, "vLLM causal_conv1d_update", initial, lambda states: {"out": vllm_update(
            x, states, weight, bias, act, conv_state_indices=idx, out=peer_out)})
    return built


FAMILIES = (
    Family("conv1d_update", "Causal conv1d decode update", "vllm_xpu_hybrid.ops.causal_conv1d",
           UPDATE_RULE, update_cases, build_update),
    Family("conv1d_varlen", "Causal conv1d varlen prefill", "vllm_xpu_hybrid.ops.causal_conv1d",
           VARLEN_RULE, varlen_cases, build_varlen),
)
