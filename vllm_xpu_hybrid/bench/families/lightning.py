# SPDX-License-Identifier: Apache-2.0
"""Lightning (linear) attention with per-head decay: block prefill and the
decode state update, beside vLLM 0.32's Triton kernels (``lightning_attn``:
its MiniMax layer's prefill and decode calls) and FLA 0.6.0's
(``fla.ops.lightning_attn``).

Decay rates are FLA's for layer 0 of 1 (head h decays by exp(-8h/H) per
token) so that FLA, which derives them from the layer index, computes the
same function; no scale on q (FLA is given scale 1). States are
[slots, H, D, D]; FLA has no state indices, so it reads the pages of rows
1..B as one contiguous view and returns the final states as a new tensor.
"""

from __future__ import annotations

import torch

from vllm_xpu_hybrid.bench.families.common import (
    Inputs,
    add_stateful,
    state_slots,
    to_ref,
)
from vllm_xpu_hybrid.bench.registry import BuildContext, Built, Case, Family, Work
from vllm_xpu_hybrid.bench.shapes import ShapeSet

# The block length the FLOP count assumes, whatever an implementation uses.
RULE_CHUNK = 64

PREFILL_RULE = (f"FLOPs = 4·T·H·(C·D + D²) with C = {RULE_CHUNK}: intra-block Q·Kᵀ and ·V, "
                "inter-block Q·S and the state update Kᵀ·V, counted the same for every "
                "implementation; bytes = q, k, v read and out written (T·H·D each), the fp32 "
                "state read and written")
# vLLM's MiniMax layer prefills in blocks of this many tokens.
VLLM_PREFILL_BLOCK = 256

DECODE_RULE = "bytes = each row's fp32 state read and written (H·D·D), q, k, v read and out written"


# bf16 prefill: on an H100 (2026-11-23) the plugin and FLA's
# chunk_lightning_attn both reached a worst error of 0.053 at 4k and 0.067 at
# 16k tokens on these inputs (the error measure of registry.outputs_differ),
# growing with the length; a wrong decay or a lost state moves elements by
# O(rms), far above this.
PREFILL_TOLERANCE = 0.1


def prefill_cases(shapes: ShapeSet) -> list[Case]:
    cases = []
    for names, d in shapes.having("lightning"):
        for T in shapes.prefill_tokens:
            flops = 4 * T * d.heads * (RULE_CHUNK * d.head_dim + d.head_dim ** 2)
            nbytes = 4 * T * d.heads * d.head_dim * shapes.elt + 2 * d.heads * d.head_dim ** 2 * 4
            cases.append(Case("lightning_prefill", f"T={T} H={d.heads} D={d.head_dim}", names,
                              {"tokens": T, "heads": d.heads, "head_dim": d.head_dim,
                               "dtype": shapes.dtype},
                              Work(bytes=nbytes, flops=flops), tolerance=PREFILL_TOLERANCE))
    return cases


def decode_cases(shapes: ShapeSet) -> list[Case]:
    cases = []
    for names, d in shapes.having("lightning"):
        for B in shapes.decode_batches:
            nbytes = 2 * B * d.heads * d.head_dim ** 2 * 4 + 4 * B * d.heads * d.head_dim * shapes.elt
            cases.append(Case("lightning_decode", f"B={B} H={d.heads} D={d.head_dim}", names,
                              {"batch": B, "heads": d.heads, "head_dim": d.head_dim,
                               "dtype": shapes.dtype},
                              Work(bytes=nbytes), tolerance=2e-2))
    return cases


def _inputs(inputs: Inputs, rows: int, p: dict):
    H, D = p["heads"], p["head_dim"]
    q, k, v = (inputs.randn(rows, H, D, scale=D ** -0.5) for _ in range(3))
    slopes = 8 * torch.arange(H, device=inputs.device, dtype=torch.float32) / H
    return q, k, v, slopes


def _add_fla(built: Built, name: str, initial: torch.Tensor, call) -> None:
    """FLA returns the final states of rows 1.. as a new tensor."""
    states = initial.clone()

    def outputs() -> dict[str, torch.Tensor]:
        o, final = call(states)
        return {"out": o[0], "state": final}

    built.add(name, lambda: call(states), outputs)


def build_prefill(case: Case, ctx: BuildContext) -> Built:
    from vllm_xpu_hybrid.ops.lightning_attention import lightning_attention_prefill
    from vllm_xpu_hybrid.ops.reference import lightning_attention_reference

    p = case.params
    T, H, D = p["tokens"], p["heads"], p["head_dim"]
    inputs = Inputs(ctx, case)
    q, k, v, slopes = _inputs(inputs, T, p)
    # From a zero state: with a carried state, vLLM's prefill weights it by
    # one decay step less at each query than its decode kernel and the
    # reference do (its outputs differ; its final state agrees).
    initial = torch.zeros(2, H, D, D, dtype=torch.float32, device=ctx.device)
    idx = state_slots(1, ctx.device)
    has_initial = torch.zeros(1, device=ctx.device, dtype=torch.bool)
    cu = torch.tensor([0, T], device=ctx.device, dtype=torch.int32)

    def reference() -> dict[str, torch.Tensor]:
        q_r, k_r, v_r, s_r, cu_r, idx_r, init_r = to_ref(ctx, q, k, v, slopes, cu, idx, has_initial)
        states = initial.to(ctx.ref_device, copy=True)
        with torch.device(ctx.ref_device):
            out = lightning_attention_reference(q_r, k_r, v_r, s_r, states, cu_r, idx_r, init_r)
        return {"out": out, "state": states[1:]}

    built = Built(reference)
    out = torch.empty_like(v)
    add_stateful(built, "plugin", initial, lambda states: {"out": lightning_attention_prefill(
        q, k, v, slopes, states, cu, idx, has_initial, out=out)})
    with built.peer("vLLM lightning_attention"):
        from vllm.model_executor.layers.mamba.linear.minimax_linear_attn import (
            MiniMaxText01LinearKernel,
        )

        # The MiniMax layer's per-sequence prefill: head-first q, k, v.
        q_hf, k_hf, v_hf = (t.transpose(0, 1).contiguous() for t in (q, k, v))
        add_stateful(built, "vLLM lightning_attention", initial, lambda states: {
            "out": MiniMaxText01LinearKernel.jit_linear_forward_prefix(
                q_hf, k_hf, v_hf, states[1], slopes, VLLM_PREFILL_BLOCK).view(T, H, D)})
    with built.peer("FLA chunk_lightning_attn"):
        from fla.ops.lightning_attn import chunk_lightning_attn

        _add_fla(built, "FLA chunk_lightning_attn", initial, lambda states: chunk_lightning_attn(
            q[None], k[None], v[None], layer_idx=0, num_layers=1, scale=1.0,
            initial_state=states[1:2], output_final_state=True))
    return built


def build_decode(case: Case, ctx: BuildContext) -> Built:
    from vllm_xpu_hybrid.ops.lightning_attention import lightning_attention_decode
    from vllm_xpu_hybrid.ops.reference import lightning_attention_reference

    p = case.params
    batch, H, D = p["batch"], p["heads"], p["head_dim"]
    inputs = Inputs(ctx, case)
    q, k, v, slopes = _inputs(inputs, batch, p)
    initial = inputs.randn(batch + 1, H, D, D, dtype=torch.float32, scale=0.1)
    idx = state_slots(batch, ctx.device)
    cu = torch.arange(batch + 1, device=ctx.device, dtype=torch.int32)

    def reference() -> dict[str, torch.Tensor]:
        q_r, k_r, v_r, s_r, cu_r, idx_r = to_ref(ctx, q, k, v, slopes, cu, idx)
        states = initial.to(ctx.ref_device, copy=True)
        with torch.device(ctx.ref_device):
            every = torch.ones(batch, dtype=torch.bool)
            out = lightning_attention_reference(q_r, k_r, v_r, s_r, states, cu_r, idx_r, every)
        return {"out": out, "state": states[1:]}

    built = Built(reference)
    out = torch.empty_like(v)
    add_stateful(built, "plugin", initial, lambda states: {"out": lightning_attention_decode(
        q, k, v, slopes, states, idx, out=out)})
    with built.peer("vLLM linear_decode_forward_triton"):
        from vllm.model_executor.layers.lightning_attn import (
            linear_decode_forward_triton,
        )

        # The MiniMax layer's decode: [B, H, 1, D] inputs, [B, H·D] output.
        q4, k4, v4 = (t.unsqueeze(2) for t in (q, k, v))
        add_stateful(built, "vLLM linear_decode_forward_triton", initial, lambda states: {
            "out": linear_decode_forward_triton(q4, k4, v4, states, slopes, idx).view(batch, H, D)})
    with built.peer("FLA fused_recurrent_lightning_attn"):
        cu64 = cu.long()  # FLA's cu_seqlens are int64
        from fla.ops.lightning_attn import fused_recurrent_lightning_attn

        _add_fla(built, "FLA fused_recurrent_lightning_attn", initial,
                 lambda states: fused_recurrent_lightning_attn(
                     q[None], k[None], v[None], layer_idx=0, num_layers=1, scale=1.0,
                     initial_state=states[1:], output_final_state=True, cu_seqlens=cu64))
    return built


FAMILIES = (
    Family("lightning_decode", "Lightning attention decode", "vllm_xpu_hybrid.ops.lightning_attention",
           DECODE_RULE, decode_cases, build_decode),
    Family("lightning_prefill", "Lightning attention prefill",
           "vllm_xpu_hybrid.ops.lightning_attention", PREFILL_RULE, prefill_cases, build_prefill),
)
