# SPDX-License-Identifier: Apache-2.0
"""Gated delta rule (Gated DeltaNet, Qwen3-Next): chunked prefill and
recurrent decode, beside FLA 0.6.0 and vLLM 0.32's vendored copy of FLA's
kernels, with q/k L2-normalised in the kernels as Qwen3-Next runs them.

States are vLLM's [slots, Hv, V, K] pages. vLLM's kernels update them in
place by index (decode) or take and return one sequence's state (prefill);
FLA 0.6.0 has no state indices, so it reads the pages of rows 1..B as one
contiguous view and returns the final states as a new tensor (the same bytes
a kernel updating in place moves)."""

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

# The chunk length the FLOP count assumes (FLA's), whatever an implementation uses.
RULE_CHUNK = 64

PREFILL_RULE = (f"FLOPs = 2·T·Hv·(3·C·K + 2·C·V + 3·K·V) with C = {RULE_CHUNK}: the matmuls of "
                "the chunked WY form (K·Kᵀ, the WY products, state read/update, outputs), "
                "counted the same for every implementation; bytes = q, k (T·Hk·K), v and out "
                "(T·Hv·V), g (fp32) and beta (T·Hv) read, the fp32 state read and written")
DECODE_RULE = ("bytes = each row's fp32 state read and written (Hv·K·V), q, k, v read and out "
               "written, g (fp32) and beta read")


def prefill_cases(shapes: ShapeSet) -> list[Case]:
    cases = []
    C = RULE_CHUNK
    for names, d in shapes.having("gdn"):
        for T in shapes.prefill_tokens:
            flops = 2 * T * d.v_heads * (3 * C * d.k_dim + 2 * C * d.v_dim + 3 * d.k_dim * d.v_dim)
            activations = 2 * T * d.k_heads * d.k_dim + 2 * T * d.v_heads * d.v_dim + T * d.v_heads
            nbytes = (activations * shapes.elt + T * d.v_heads * 4
                      + 2 * d.v_heads * d.k_dim * d.v_dim * 4)
            cases.append(Case(
                "gdn_prefill", f"T={T} Hk={d.k_heads} Hv={d.v_heads} K={d.k_dim} V={d.v_dim}", names,
                {"tokens": T, "k_heads": d.k_heads, "v_heads": d.v_heads, "k_dim": d.k_dim,
                 "v_dim": d.v_dim, "dtype": shapes.dtype},
                Work(bytes=nbytes, flops=flops), tolerance=5e-2))
    return cases


def decode_cases(shapes: ShapeSet) -> list[Case]:
    cases = []
    for names, d in shapes.having("gdn"):
        for B in shapes.decode_batches:
            nbytes = (2 * B * d.v_heads * d.k_dim * d.v_dim * 4
                      + (2 * B * d.k_heads * d.k_dim + 2 * B * d.v_heads * d.v_dim
                         + B * d.v_heads) * shapes.elt + B * d.v_heads * 4)
            cases.append(Case(
                "gdn_decode", f"B={B} Hk={d.k_heads} Hv={d.v_heads} K={d.k_dim} V={d.v_dim}", names,
                {"batch": B, "k_heads": d.k_heads, "v_heads": d.v_heads, "k_dim": d.k_dim,
                 "v_dim": d.v_dim, "dtype": shapes.dtype},
                Work(bytes=nbytes), tolerance=2e-2))
    return cases


def _inputs(inputs: Inputs, rows: int, p: dict):
    """q, k [rows, Hk, K]; v [rows, Hv, V]; g [rows, Hv] fp32 log-space gates
    (<= 0); beta [rows, Hv] in (0, 1)."""
    q = inputs.randn(rows, p["k_heads"], p["k_dim"])
    k = inputs.randn(rows, p["k_heads"], p["k_dim"])
    v = inputs.randn(rows, p["v_heads"], p["v_dim"])
    g = torch.nn.functional.logsigmoid(inputs.randn(rows, p["v_heads"], dtype=torch.float32) + 2)
    beta = torch.sigmoid(inputs.randn(rows, p["v_heads"], dtype=torch.float32)).to(q.dtype)
    return q, k, v, g, beta


def _states(inputs: Inputs, slots: int, p: dict) -> torch.Tensor:
    return inputs.randn(slots, p["v_heads"], p["v_dim"], p["k_dim"], dtype=torch.float32, scale=0.1)


def build_prefill(case: Case, ctx: BuildContext) -> Built:
    from vllm_xpu_hybrid.ops.gated_delta_rule import (
        gated_delta_rule_chunk_metadata,
        gated_delta_rule_prefill,
    )
    from vllm_xpu_hybrid.ops.reference import gated_delta_rule_reference

    p = case.params
    T = p["tokens"]
    inputs = Inputs(ctx, case)
    q, k, v, g, beta = _inputs(inputs, T, p)
    initial = _states(inputs, 2, p)
    idx = state_slots(1, ctx.device)
    has_initial = torch.ones(1, device=ctx.device, dtype=torch.bool)
    cu = torch.tensor([0, T], device=ctx.device, dtype=torch.int32)
    chunk_indices, chunk_offsets = gated_delta_rule_chunk_metadata([0, T], device=ctx.device)

    def reference() -> dict[str, torch.Tensor]:
        q_r, k_r, v_r, g_r, beta_r, cu_r, idx_r, init_r = to_ref(ctx, q, k, v, g, beta, cu, idx,
                                                                 has_initial)
        states = initial.to(ctx.ref_device, copy=True)
        with torch.device(ctx.ref_device):
            out = gated_delta_rule_reference(q_r, k_r, v_r, g_r, beta_r, cu_r, states, idx_r,
                                             init_r, qk_l2norm=True)
        return {"out": out, "state": states[1:]}

    built = Built(reference)
    out = torch.empty_like(v)
    add_stateful(built, "plugin", initial, lambda states: {"out": gated_delta_rule_prefill(
        q, k, v, g, beta, cu_seqlens=cu, chunk_indices=chunk_indices, chunk_offsets=chunk_offsets,
        states=states, state_indices=idx, has_initial_state=has_initial, out=out,
        qk_l2norm=True)})
    with built.peer("vLLM chunk_gated_delta_rule"):
        from vllm.third_party.flash_linear_attention.ops import chunk_gated_delta_rule
        from vllm.third_party.flash_linear_attention.ops.index import (
            prepare_chunk_indices,
            prepare_chunk_offsets,
        )

        vllm_indices = prepare_chunk_indices(cu, RULE_CHUNK)
        vllm_offsets = prepare_chunk_offsets(cu, RULE_CHUNK)

        def vllm_prefill(states):
            o, final = chunk_gated_delta_rule(
                q[None], k[None], v[None], g[None], beta[None], initial_state=states[1:2],
                output_final_state=True, cu_seqlens=cu, chunk_indices=vllm_indices,
                chunk_offsets=vllm_offsets, use_qk_l2norm_in_kernel=True)
            return {"out": o[0], "final": final}

        _add_returning_state(built, "vLLM chunk_gated_delta_rule", initial, vllm_prefill)
    with built.peer("FLA chunk_gated_delta_rule"):
        from fla.ops.gated_delta_rule import chunk_gated_delta_rule as fla_chunk

        def fla_prefill(states):
            o, final = fla_chunk(q[None], k[None], v[None], g[None], beta[None],
                                 initial_state=states[1:2], output_final_state=True,
                                 use_qk_l2norm_in_kernel=True, state_v_first=True)
            return {"out": o[0], "final": final}

        _add_returning_state(built, "FLA chunk_gated_delta_rule", initial, fla_prefill)
    return built


def _add_returning_state(built: Built, name: str, initial: torch.Tensor, step) -> None:
    """A peer that reads the state pages of rows 1.. and returns the final
    states as a new tensor: compare that tensor with the reference's pages."""
    states = initial.clone()

    def outputs() -> dict[str, torch.Tensor]:
        got = step(states)
        return {"out": got["out"], "state": got["final"]}

    built.add(name, lambda: step(states), outputs)


def build_decode(case: Case, ctx: BuildContext) -> Built:
    from vllm_xpu_hybrid.ops.gated_delta_rule import gated_delta_rule_decode
    from vllm_xpu_hybrid.ops.reference import gated_delta_rule_decode_reference

    p = case.params
    batch = p["batch"]
    inputs = Inputs(ctx, case)
    q, k, v, g, beta = _inputs(inputs, batch, p)
    initial = _states(inputs, batch + 1, p)
    idx = state_slots(batch, ctx.device)
    cu = torch.arange(batch + 1, device=ctx.device, dtype=torch.int32)

    def reference() -> dict[str, torch.Tensor]:
        q_r, k_r, v_r, g_r, beta_r, idx_r = to_ref(ctx, q, k, v, g, beta, idx)
        states = initial.to(ctx.ref_device, copy=True)
        with torch.device(ctx.ref_device):
            out = gated_delta_rule_decode_reference(q_r, k_r, v_r, g_r, beta_r, states, idx_r,
                                                    qk_l2norm=True)
        return {"out": out, "state": states[1:]}

    built = Built(reference)
    out = torch.empty_like(v)
    add_stateful(built, "plugin", initial, lambda states: {"out": gated_delta_rule_decode(
        q, k, v, g, beta, states=states, state_indices=idx, out=out, qk_l2norm=True)})
    with built.peer("vLLM fused_recurrent_gated_delta_rule"):
        from vllm.third_party.flash_linear_attention.ops import (
            fused_recurrent_gated_delta_rule,
        )

        def vllm_decode(states):
            o, _ = fused_recurrent_gated_delta_rule(
                q[None], k[None], v[None], g[None], beta[None], initial_state=states,
                inplace_final_state=True, cu_seqlens=cu, ssm_state_indices=idx,
                use_qk_l2norm_in_kernel=True)
            return {"out": o[0]}

        add_stateful(built, "vLLM fused_recurrent_gated_delta_rule", initial, vllm_decode)
    with built.peer("FLA fused_recurrent_gated_delta_rule"):
        cu64 = cu.long()  # FLA's cu_seqlens are int64
        from fla.ops.gated_delta_rule import (
            fused_recurrent_gated_delta_rule as fla_recurrent,
        )

        def fla_decode(states):
            o, final = fla_recurrent(q[None], k[None], v[None], g[None], beta=beta[None],
                                     initial_state=states[1:], output_final_state=True,
                                     use_qk_l2norm_in_kernel=True, state_v_first=True,
                                     cu_seqlens=cu64)
            return {"out": o[0], "final": final}

        _add_returning_state(built, "FLA fused_recurrent_gated_delta_rule", initial, fla_decode)
    return built


FAMILIES = (
    Family("gdn_decode", "Gated delta rule recurrent decode", "vllm_xpu_hybrid.ops.gated_delta_rule",
           DECODE_RULE, decode_cases, build_decode),
    Family("gdn_prefill", "Gated delta rule chunked prefill", "vllm_xpu_hybrid.ops.gated_delta_rule",
           PREFILL_RULE, prefill_cases, build_prefill),
)
