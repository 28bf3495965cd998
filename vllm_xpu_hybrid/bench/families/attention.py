# SPDX-License-Identifier: Apache-2.0
"""Paged attention, decode and prefill, beside vLLM 0.32's unified Triton
attention (``triton_unified_attention.unified_attention``, called as vLLM's
Triton backend calls it, with its 3D split-softmax buffers)."""

from __future__ import annotations

import torch

from vllm_xpu_hybrid.bench.families.common import Inputs, to_ref
from vllm_xpu_hybrid.bench.registry import BuildContext, Built, Case, Family, Work
from vllm_xpu_hybrid.bench.shapes import ShapeSet

# Prefill checks compare this many query rows at each end of the sequence
# (the reference's logits are rows x L in float64).
CHECK_ROWS = 128
# vLLM's Triton backend (triton_attn.py): the 3D split-softmax kernel serves
# decode batches below MIN_LAUNCH_GRID_SIZE_2D // num_kv_heads sequences.
VLLM_MIN_LAUNCH_GRID_2D = 128
VLLM_SOFTMAX_SEGMENTS = 16

DECODE_RULE = ("bytes = K and V read over every sequence's context, Q read, O written, block "
               "table read (each once); decode = one query token per sequence")
PREFILL_RULE = ("FLOPs = 4·Hq·D·L(L+1)/2 (QKᵀ and PV over the causal pairs of one sequence of L "
                "tokens); bytes = Q, K, V read and O written once")


def _params(dims, shapes: ShapeSet, **extra) -> dict:
    return {"q_heads": dims.q_heads, "kv_heads": dims.kv_heads, "head_dim": dims.head_dim,
            "block_size": shapes.block_size, "dtype": shapes.dtype, **extra}


def decode_cases(shapes: ShapeSet) -> list[Case]:
    cases = []
    ctx_len = shapes.decode_context
    for names, dims in shapes.having("attention"):
        for batch in shapes.decode_batches:
            kv = batch * ctx_len * dims.kv_heads * dims.head_dim * 2 * shapes.elt
            qo = 2 * batch * dims.q_heads * dims.head_dim * shapes.elt
            table = batch * (ctx_len // shapes.block_size) * 4
            cases.append(Case(
                "attention_decode",
                f"B={batch} ctx={ctx_len} Hq={dims.q_heads} Hkv={dims.kv_heads} D={dims.head_dim}",
                names, _params(dims, shapes, batch=batch, context=ctx_len),
                Work(bytes=kv + qo + table), tolerance=2e-2))
    return cases


def prefill_cases(shapes: ShapeSet) -> list[Case]:
    cases = []
    for names, dims in shapes.having("attention"):
        for tokens in shapes.prefill_tokens:
            flops = 4 * dims.q_heads * dims.head_dim * tokens * (tokens + 1) / 2
            nbytes = tokens * dims.head_dim * (2 * dims.q_heads + 2 * dims.kv_heads) * shapes.elt
            cases.append(Case(
                "attention_prefill",
                f"L={tokens} Hq={dims.q_heads} Hkv={dims.kv_heads} D={dims.head_dim}",
                names, _params(dims, shapes, tokens=tokens),
                Work(bytes=nbytes, flops=flops), tolerance=2e-2))
    return cases


def _paged_cache(inputs: Inputs, num_blocks: int, p: dict):
    """One physical cache in vLLM's layer-compact layout [blocks, slot,
    kv_head, K|V]; the plugin's [blocks, 2, slot, kv_head, D] view and vLLM's
    key/value views of the same memory."""
    physical = inputs.randn(num_blocks, p["block_size"], p["kv_heads"], 2 * p["head_dim"])
    plugin_cache = physical.unflatten(-1, (2, p["head_dim"])).permute(0, 3, 1, 2, 4)
    key_cache, value_cache = physical.split(p["head_dim"], dim=-1)
    return plugin_cache, key_cache, value_cache


def _add_vllm_peer(built: Built, ctx: BuildContext, p: dict, query, key_cache, value_cache,
                   cu, seq_lens, table, max_q: int, max_k: int, scale: float, views) -> None:
    with built.peer("vLLM unified_attention"):
        from vllm.v1.attention.ops.triton_unified_attention import unified_attention

        threshold = VLLM_MIN_LAUNCH_GRID_2D // p["kv_heads"]
        head_pad = 1 << (p["head_dim"] - 1).bit_length()
        segm = torch.empty(threshold, p["q_heads"], VLLM_SOFTMAX_SEGMENTS, head_pad,
                           dtype=torch.float32, device=ctx.device)
        segm_max = torch.empty(threshold, p["q_heads"], VLLM_SOFTMAX_SEGMENTS,
                               dtype=torch.float32, device=ctx.device)
        segm_sum = torch.empty_like(segm_max)
        out = torch.empty_like(query)

        def call() -> dict[str, torch.Tensor]:
            unified_attention(query, key_cache, value_cache, out, cu, max_q, seq_lens, max_k,
                              scale, True, (-1, -1), table, 0, None, None, None,
                              seq_threshold_3D=threshold,
                              num_par_softmax_segments=VLLM_SOFTMAX_SEGMENTS,
                              softmax_segm_output=segm, softmax_segm_max=segm_max,
                              softmax_segm_expsum=segm_sum)
            return views(out)

        built.add("vLLM unified_attention", call, call)


def build(case: Case, ctx: BuildContext) -> Built:
    from vllm_xpu_hybrid.ops.paged_attention import paged_attention
    from vllm_xpu_hybrid.ops.reference import paged_attention_reference

    p = case.params
    decode = case.family == "attention_decode"
    batch, ctx_len = (p["batch"], p["context"]) if decode else (1, p["tokens"])
    tokens = batch if decode else ctx_len
    blocks_per_seq = -(-ctx_len // p["block_size"])
    inputs = Inputs(ctx, case)
    plugin_cache, key_cache, value_cache = _paged_cache(inputs, batch * blocks_per_seq, p)
    query = inputs.randn(tokens, p["q_heads"], p["head_dim"])
    q_per_seq = 1 if decode else tokens
    cu = torch.arange(batch + 1, device=ctx.device, dtype=torch.int32) * q_per_seq
    seq_lens = torch.full((batch,), ctx_len, device=ctx.device, dtype=torch.int32)
    table = inputs.permutation(batch * blocks_per_seq).view(batch, blocks_per_seq)
    scale = p["head_dim"] ** -0.5
    out = torch.empty_like(query)
    check_rows = min(CHECK_ROWS, tokens)

    def reference() -> dict[str, torch.Tensor]:
        q, cache, cu_r, lens, tab = to_ref(ctx, query, plugin_cache, cu, seq_lens, table)
        if decode:
            return {"out": paged_attention_reference(q, cache, cu_r, lens, tab, scale=scale)}
        # Queries [0, R) of the sequence see keys [0, R); the last R see all.
        rows = torch.tensor([0, check_rows], dtype=torch.int32, device=ctx.ref_device)
        first_len = torch.tensor([check_rows], dtype=torch.int32, device=ctx.ref_device)
        return {
            "first": paged_attention_reference(q[:check_rows], cache, rows, first_len, tab,
                                               scale=scale),
            "last": paged_attention_reference(q[-check_rows:], cache, rows, lens, tab, scale=scale),
        }

    def views(out: torch.Tensor) -> dict[str, torch.Tensor]:
        """The rows the reference computes."""
        if decode:
            return {"out": out}
        return {"first": out[:check_rows], "last": out[-check_rows:]}

    def plugin() -> dict[str, torch.Tensor]:
        paged_attention(query, plugin_cache, out, cu, seq_lens, table, scale=scale,
                        max_query_len=q_per_seq, max_seq_len=ctx_len)
        return views(out)

    built = Built(reference)
    built.add("plugin", plugin, plugin)
    _add_vllm_peer(built, ctx, p, query, key_cache, value_cache, cu, seq_lens, table,
                   q_per_seq, ctx_len, scale, views)
    return built


FAMILIES = (
    Family("attention_decode", "Paged attention decode", "vllm_xpu_hybrid.ops.paged_attention",
           DECODE_RULE, decode_cases, build),
    Family("attention_prefill", "Paged attention prefill", "vllm_xpu_hybrid.ops.paged_attention",
           PREFILL_RULE, prefill_cases, build),
)
