# SPDX-License-Identifier: Apache-2.0
"""Mamba-2 SSD (state space duality) chunked scan for prefill.

The recurrence, per head h (group g of h) and token t of a sequence:

    dt'  = clamp(softplus(dt[t, h] + dt_bias[h]), *dt_limit)
    s    = exp(dt' * A[h]) * s + dt' * x[t, h] (outer) B[t, g]     s: [headdim, dstate]
    y    = s @ C[t, g] + D[h] * x[t, h]

is evaluated chunk by chunk: inside a chunk as a masked, decay-weighted
attention-like product (``tl.dot``), across chunks by passing one state per
chunk.

Chunks. Sequences are packed (``[total_tokens, ...]``). The scan works on
*logical chunks*: token ranges ``[cu_chunk_seqlens[c], cu_chunk_seqlens[c+1])``
of at most ``chunk_size`` tokens that never cross a sequence boundary, so a
sequence is a run of consecutive chunks and ``last_chunk_indices[b]`` is the
last chunk of sequence b. These are exactly the tensors vLLM 0.32's Mamba-2
metadata builder already computes on the host for every prefill batch
(``cu_chunk_seqlen_p``, ``last_chunk_indices_p``; mamba_attn.py
``_compute_chunk_metadata``), where a continuing sequence's first chunk only
fills up to the next multiple of ``chunk_size`` of its absolute position, so
states land on chunk_size-aligned positions (prefix caching). Reusing them
costs nothing and keeps chunk ends identical to vLLM's. ``ssd_chunk_metadata``
builds the same layout for callers without that builder (tests, benchmarks).
Chunk boundaries do not change the result, only rounding.

Kernels (one launch each, in stream order):

1. ``_ssd_dt_cumsum_kernel``: dt bias, softplus, clamp; per-chunk cumulative
   sum of ``dt * A``.
2. ``_ssd_chunk_cb_kernel``: ``C @ B^T`` per chunk and group, lower-triangular
   tiles only (shared by all heads of a group).
3. ``_ssd_chunk_states_kernel``: per sequence and state tile, walks the
   sequence's chunks in order with the state in registers, starting from
   ``ssm_states[state_indices[b]]`` (or zeros): stores each chunk's start
   state for the chunk scan, then folds the chunk in,
   ``exp(dA_last) * state + x^T @ (decay * dt * B)``; writes the final state
   back to the same page. For prefix caching it also writes the state at one
   chosen chunk end per sequence (vLLM 0.32's prefill checkpoint) to another
   page. One kernel, so no per-chunk contributions go through memory.
4. ``_ssd_chunk_scan_kernel``: output = inter-chunk term
   ``exp(dA_cum) * C @ state_start^T`` + intra-chunk term
   ``(CB * decay * dt, causal) @ x`` + ``D * x``.

z gating is not part of this op: vLLM 0.32's MambaMixer2 passes ``z=None``
(mamba_mixer2.py:861) and gates inside its RMSNorm (``Mixer2RMSNormGated``,
norm_before_gate=False); see ops/gated_rmsnorm.py.

Dot operands are in the input dtype (tensor cores for fp16/bf16); fp32 inputs
use ``input_precision="ieee"``. Accumulation, decays and the running states
are fp32; the chunk-start states are stored in the dot dtype (the chunk
scan's product takes them in it) and the final state in the state dtype.
This module imports only torch and triton.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from vllm_xpu_hybrid.ops.checks import (
    FLAG_DTYPES,
    INDEX_DTYPES,
    check_checkpoints,
    check_dtype,
    check_shape,
    check_vector,
    launch_config,
)
from vllm_xpu_hybrid.ops.launch import cdiv, check_grid_dim, dot_block, next_power_of_2


# Launch configurations per device kind ("cuda", "xpu", "cpu" = Triton's
# interpreter, where fewer, larger programs run faster). Block sizes are
# upper bounds: the launcher clips them to the chunk size and to the problem
# (headdim, dstate padded to a power of two, at least 16 for tl.dot).
#   dt_cumsum: BLOCK_H heads of one chunk.
#   chunk_cb: BLOCK_M x BLOCK_N tile of C @ B^T, BLOCK_K over dstate.
#   chunk_states: BLOCK_P x BLOCK_N tile of one head's running state,
#     BLOCK_K over a chunk's tokens; UNROLL_CHUNK: the token loop unrolled
#     over the whole chunk (2-4 % faster on an H200; on PVC it spills 7-68 KB
#     where the loop does not).
#   chunk_scan: BLOCK_M tokens x BLOCK_P headdim, BLOCK_N over dstate,
#     BLOCK_K over source tokens.
#   compile_options: extra backend options passed to every launch.
# "cuda": chunk_cb and chunk_scan from sweeps on an H100 (Triton 3.6) at
# Mamba2-2.7B's shapes, 16k tokens, chunk_states from one on an H200 at
# Mamba2-2.7B's and Nemotron-H's (72 tiles, docs/benchmarks.md); chunk_scan
# again through the bench's cases (with D and initial states) at Mamba2-2.7B
# and Nemotron-Nano shapes (docs/benchmarks.md); its headdim tile covers up
# to 128, so Nemotron-Nano's 80 is one tile, not two (13 % faster at 16k,
# same for headdim 64). "xpu": large GRF mode for the dot tiles,
# num_stages=1 (Intel's pipeliner has crashed on a chunked-scan kernel);
# checked by the Intel compile gate (python -m
# vllm_xpu_hybrid.intel_compile, docs/intel-compile.md) at Mamba-2 shapes
# (64/80 headdim, 1 and 8 groups, state 128, chunk 128/256): no spill on PVC
# and every dot becomes dpas. Never run on an Intel GPU: UNVERIFIED. DG2
# (Arc) gets no dpas from that backend and spills 33-87 KB in the dot kernels.

LAUNCH_CONFIGS: dict[str, dict[str, dict]] = {
    "cuda": {
        "dt_cumsum": {"BLOCK_H": 16, "num_warps": 4},
        "chunk_cb": {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 64, "num_warps": 4, "num_stages": 2},
        "chunk_states": {"BLOCK_P": 64, "BLOCK_N": 64, "BLOCK_K": 128, "num_warps": 4, "num_stages": 1, "UNROLL_CHUNK": True},
        "chunk_scan": {"BLOCK_M": 64, "BLOCK_P": 128, "BLOCK_N": 32, "BLOCK_K": 32, "num_warps": 4, "num_stages": 3},
        "compile_options": {},
    },
    # UNVERIFIED: no Intel GPU has run these.
    "xpu": {
        "dt_cumsum": {"BLOCK_H": 16, "num_warps": 8},
        "chunk_cb": {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32, "num_warps": 8, "num_stages": 1},
        "chunk_states": {"BLOCK_P": 64, "BLOCK_N": 64, "BLOCK_K": 32, "num_warps": 8, "num_stages": 1, "UNROLL_CHUNK": False},
        "chunk_scan": {"BLOCK_M": 64, "BLOCK_P": 64, "BLOCK_N": 32, "BLOCK_K": 32, "num_warps": 16, "num_stages": 1},
        "compile_options": {"grf_mode": "large"},
    },
    "cpu": {
        "dt_cumsum": {"BLOCK_H": 64, "num_warps": 1},
        "chunk_cb": {"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 128, "num_warps": 1, "num_stages": 1},
        "chunk_states": {"BLOCK_P": 128, "BLOCK_N": 128, "BLOCK_K": 128, "num_warps": 1, "num_stages": 1, "UNROLL_CHUNK": True},
        "chunk_scan": {"BLOCK_M": 128, "BLOCK_P": 128, "BLOCK_N": 128, "BLOCK_K": 128, "num_warps": 1, "num_stages": 1},
        "compile_options": {},
    },
}


@triton.jit
def _ssd_dt_cumsum_kernel(
    dt_ptr, dt_bias_ptr, A_ptr, cu_chunk_ptr, dt_out_ptr, dA_cum_ptr,
    nheads, num_chunks, dt_min, dt_max,
    stride_dt_t, stride_dt_h, stride_bias_h, stride_A_h,
    HAS_DT_BIAS: tl.constexpr,
    DT_SOFTPLUS: tl.constexpr,
    CHUNK: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    chunk = tl.program_id(0)
    head = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    head_ok = head < nheads
    start = tl.load(cu_chunk_ptr + chunk)
    length = tl.load(cu_chunk_ptr + chunk + 1) - start
    i = tl.arange(0, CHUNK)
    ok = (i < length)[:, None] & head_ok[None, :]
    dt = tl.load(
        dt_ptr + (start + i).to(tl.int64)[:, None] * stride_dt_t + head[None, :] * stride_dt_h,
        mask=ok, other=0.0,
    ).to(tl.float32)
    if HAS_DT_BIAS:
        dt += tl.load(dt_bias_ptr + head * stride_bias_h, mask=head_ok, other=0.0).to(tl.float32)[None, :]
    if DT_SOFTPLUS:
        # softplus(v) = log(1 + exp(v)); above 20 it equals v in fp32.
        dt = tl.where(dt <= 20.0, tl.log(1.0 + tl.exp(dt)), dt)
    dt = tl.minimum(tl.maximum(dt, dt_min), dt_max)
    dt = tl.where(ok, dt, 0.0)
    A = tl.load(A_ptr + head * stride_A_h, mask=head_ok, other=0.0).to(tl.float32)
    dA_cum = tl.cumsum(dt * A[None, :], axis=0)
    # [nheads, num_chunks, CHUNK]: a chunk's values are contiguous per head.
    offs = head[None, :].to(tl.int64) * num_chunks * CHUNK + chunk * CHUNK + i[:, None]
    tl.store(dt_out_ptr + offs, dt, mask=head_ok[None, :])
    tl.store(dA_cum_ptr + offs, dA_cum, mask=head_ok[None, :])


@triton.jit
def _ssd_chunk_cb_kernel(
    B_ptr, C_ptr, cu_chunk_ptr, cb_ptr,
    ngroups, dstate,
    stride_B_t, stride_B_g, stride_B_n,
    stride_C_t, stride_C_g, stride_C_n,
    CHUNK: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    chunk = tl.program_id(0)
    group = tl.program_id(1)
    n_col_blocks: tl.constexpr = CHUNK // BLOCK_N
    row_block = tl.program_id(2) // n_col_blocks
    col_block = tl.program_id(2) % n_col_blocks
    # Tiles strictly above the diagonal are never read (causal mask).
    if col_block * BLOCK_N < (row_block + 1) * BLOCK_M:
        start = tl.load(cu_chunk_ptr + chunk)
        length = tl.load(cu_chunk_ptr + chunk + 1) - start
        rows = row_block * BLOCK_M + tl.arange(0, BLOCK_M)
        cols = col_block * BLOCK_N + tl.arange(0, BLOCK_N)
        C_base = C_ptr + (start + rows).to(tl.int64)[:, None] * stride_C_t + group * stride_C_g
        B_base = B_ptr + (start + cols).to(tl.int64)[None, :] * stride_B_t + group * stride_B_g
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        for k in range(0, dstate, BLOCK_K):
            n = k + tl.arange(0, BLOCK_K)
            c = tl.load(
                C_base + n[None, :] * stride_C_n,
                mask=(rows < length)[:, None] & (n < dstate)[None, :], other=0.0,
            )
            b = tl.load(
                B_base + n[:, None] * stride_B_n,
                mask=(n < dstate)[:, None] & (cols < length)[None, :], other=0.0,
            )
            acc += tl.dot(c, b, input_precision=DOT_PRECISION)
        # [num_chunks, ngroups, CHUNK, CHUNK]
        cb = cb_ptr + (chunk * ngroups + group).to(tl.int64) * CHUNK * CHUNK
        tl.store(cb + rows[:, None] * CHUNK + cols[None, :], acc)


@triton.jit
def _ssd_fold_tokens(state, k, start, length, x_head, B_group, dA_chunk, dt_chunk, dA_last,
                     stride_x_t, stride_B_t, p_ok, n_ok,
                     BLOCK_K: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """state + x^T @ (exp(dA_last - dA) * dt * B) over the tokens k ..
    k + BLOCK_K of the chunk at token start (masked past length). x_head:
    [BLOCK_P, 1] pointers to token 0, B_group: [1, BLOCK_N]; dA_chunk,
    dt_chunk: the chunk's fp32 values."""
    i = k + tl.arange(0, BLOCK_K)
    i_ok = i < length
    t = (start + i).to(tl.int64)
    xt = tl.load(x_head + t[None, :] * stride_x_t, mask=p_ok[:, None] & i_ok[None, :], other=0.0)
    b = tl.load(B_group + t[:, None] * stride_B_t, mask=i_ok[:, None] & n_ok[None, :], other=0.0)
    dA = tl.load(dA_chunk + i, mask=i_ok, other=0.0)
    dt = tl.load(dt_chunk + i, mask=i_ok, other=0.0)
    scale = tl.exp(dA_last - dA) * dt
    b_scaled = (b.to(tl.float32) * scale[:, None]).to(x_head.dtype.element_ty)
    return tl.dot(xt, b_scaled, state, input_precision=DOT_PRECISION)


@triton.jit
def _ssd_chunk_states_kernel(
    x_ptr, B_ptr, dt_ptr, dA_cum_ptr, cu_chunk_ptr, last_chunk_ptr, start_states_ptr,
    ssm_ptr, slot_ptr, has_init_ptr, checkpoint_chunk_ptr, checkpoint_slot_ptr,
    nheads, headdim, dstate, num_chunks, heads_per_group, pad_slot_id,
    stride_x_t, stride_x_h, stride_x_p,
    stride_B_t, stride_B_g, stride_B_n,
    stride_ssm_slot, stride_ssm_h, stride_ssm_p, stride_ssm_n,
    HAS_CHECKPOINTS: tl.constexpr,
    UNROLL_CHUNK: tl.constexpr,
    CHUNK: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    # One [BLOCK_P, BLOCK_N] tile of one head's state, carried in registers
    # through a sequence's chunks: each chunk's start state is stored for the
    # chunk scan, then the chunk's tokens are folded in,
    # state = exp(dA_last) * state + x^T @ (exp(dA_last - dA) * dt * B).
    seq = tl.program_id(0)
    head = tl.program_id(1)
    group = head // heads_per_group
    n_col_blocks = tl.cdiv(dstate, BLOCK_N)
    p = (tl.program_id(2) // n_col_blocks) * BLOCK_P + tl.arange(0, BLOCK_P)
    n = (tl.program_id(2) % n_col_blocks) * BLOCK_N + tl.arange(0, BLOCK_N)
    p_ok = p < headdim
    n_ok = n < dstate
    tile_ok = p_ok[:, None] & n_ok[None, :]
    first_chunk = tl.load(last_chunk_ptr + seq - 1, mask=seq > 0, other=-1) + 1
    end_chunk = tl.load(last_chunk_ptr + seq) + 1
    slot = tl.load(slot_ptr + seq).to(tl.int64)
    valid = (slot >= 0) & (slot != pad_slot_id)
    has_init = tl.load(has_init_ptr + seq) != 0
    page_offs = p[:, None] * stride_ssm_p + n[None, :] * stride_ssm_n
    page = ssm_ptr + slot * stride_ssm_slot + head * stride_ssm_h + page_offs
    state = tl.zeros([BLOCK_P, BLOCK_N], dtype=tl.float32)
    if valid & has_init:
        state = tl.load(page, mask=tile_ok, other=0.0).to(tl.float32)
    if HAS_CHECKPOINTS:
        checkpoint_slot = tl.load(checkpoint_slot_ptr + seq).to(tl.int64)
        checkpoint_chunk = tl.where(
            (checkpoint_slot >= 0) & (checkpoint_slot != pad_slot_id),
            tl.load(checkpoint_chunk_ptr + seq), -1,
        )
        checkpoint_page = ssm_ptr + checkpoint_slot * stride_ssm_slot + head * stride_ssm_h + page_offs
    x_head = x_ptr + head * stride_x_h + p[:, None] * stride_x_p
    B_group = B_ptr + group * stride_B_g + n[None, :] * stride_B_n
    # [num_chunks, nheads, headdim, dstate] in the dot dtype: the chunk scan
    # casts a start state to that dtype for its product anyway.
    start_tile = (start_states_ptr + (first_chunk * nheads + head).to(tl.int64) * headdim * dstate
                  + p[:, None] * dstate + n[None, :])
    for chunk in range(first_chunk, end_chunk):
        tl.store(start_tile, state.to(start_states_ptr.dtype.element_ty), mask=tile_ok)
        start_tile += nheads * headdim * dstate
        start = tl.load(cu_chunk_ptr + chunk)
        length = tl.load(cu_chunk_ptr + chunk + 1) - start
        chunk_vals = (head * num_chunks + chunk).to(tl.int64) * CHUNK
        dA_chunk = dA_cum_ptr + chunk_vals
        dt_chunk = dt_ptr + chunk_vals
        # Padded tokens have dt = 0, so the last entry is the chunk's total.
        dA_last = tl.load(dA_chunk + CHUNK - 1)
        state *= tl.exp(dA_last)
        # Unrolled over the whole chunk (masked past its length), the chunk
        # loop is the innermost loop and its loads can be pipelined (CUDA);
        # Intel's compiler spills registers on the unrolled form.
        if UNROLL_CHUNK:
            for k in tl.static_range(0, CHUNK, BLOCK_K):
                state = _ssd_fold_tokens(state, k, start, length, x_head, B_group, dA_chunk, dt_chunk,
                                         dA_last, stride_x_t, stride_B_t, p_ok, n_ok,
                                         BLOCK_K, DOT_PRECISION)
        else:
            for k in range(0, length, BLOCK_K):
                state = _ssd_fold_tokens(state, k, start, length, x_head, B_group, dA_chunk, dt_chunk,
                                         dA_last, stride_x_t, stride_B_t, p_ok, n_ok,
                                         BLOCK_K, DOT_PRECISION)
        if HAS_CHECKPOINTS:
            if chunk == checkpoint_chunk:
                tl.store(checkpoint_page, state.to(ssm_ptr.dtype.element_ty), mask=tile_ok)
    if valid:
        tl.store(page, state.to(ssm_ptr.dtype.element_ty), mask=tile_ok)


@triton.jit
def _ssd_chunk_scan_kernel(
    x_ptr, C_ptr, D_ptr, cb_ptr, dt_ptr, dA_cum_ptr, states_ptr, cu_chunk_ptr, out_ptr,
    nheads, headdim, dstate, ngroups, num_chunks, heads_per_group,
    stride_x_t, stride_x_h, stride_x_p,
    stride_C_t, stride_C_g, stride_C_n,
    stride_D_h, stride_D_p,
    stride_o_t, stride_o_h, stride_o_p,
    HAS_D: tl.constexpr,
    CHUNK: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    # The tiles of one (chunk, head) are adjacent in launch order, so they
    # share its start state and source rows through the cache.
    chunk = tl.program_id(1)
    head = tl.program_id(2)
    group = head // heads_per_group
    n_p_blocks = tl.cdiv(headdim, BLOCK_P)
    row_block = tl.program_id(0) // n_p_blocks
    p = (tl.program_id(0) % n_p_blocks) * BLOCK_P + tl.arange(0, BLOCK_P)
    p_ok = p < headdim
    start = tl.load(cu_chunk_ptr + chunk)
    length = tl.load(cu_chunk_ptr + chunk + 1) - start
    if row_block * BLOCK_M < length:
        rows = row_block * BLOCK_M + tl.arange(0, BLOCK_M)
        row_ok = rows < length
        chunk_vals = (head * num_chunks + chunk).to(tl.int64) * CHUNK
        dA_rows = tl.load(dA_cum_ptr + chunk_vals + rows)
        x_base = x_ptr + start.to(tl.int64) * stride_x_t + head * stride_x_h
        dot_dtype = x_ptr.dtype.element_ty

        # Inter-chunk: exp(dA_cum[t]) * C[t] @ state_start^T.
        C_base = C_ptr + start.to(tl.int64) * stride_C_t + group * stride_C_g
        state_start = states_ptr + (chunk * nheads + head).to(tl.int64) * headdim * dstate
        acc = tl.zeros([BLOCK_M, BLOCK_P], dtype=tl.float32)
        for k in range(0, dstate, BLOCK_N):
            n = k + tl.arange(0, BLOCK_N)
            c = tl.load(
                C_base + rows[:, None] * stride_C_t + n[None, :] * stride_C_n,
                mask=row_ok[:, None] & (n < dstate)[None, :], other=0.0,
            )
            s = tl.load(
                state_start + n[:, None] + p[None, :] * dstate,
                mask=(n < dstate)[:, None] & p_ok[None, :], other=0.0,
            )
            acc += tl.dot(c, s, input_precision=DOT_PRECISION)
        acc *= tl.exp(dA_rows)[:, None]

        # Intra-chunk: sum over s <= t of CB[t, s] * exp(dA[t] - dA[s]) * dt[s] * x[s].
        cb_base = cb_ptr + (chunk * ngroups + group).to(tl.int64) * CHUNK * CHUNK
        for k in range(0, tl.minimum((row_block + 1) * BLOCK_M, length), BLOCK_K):
            src = k + tl.arange(0, BLOCK_K)
            src_ok = src < length
            cb = tl.load(cb_base + rows[:, None] * CHUNK + src[None, :])
            dA_src = tl.load(dA_cum_ptr + chunk_vals + src)
            dt_src = tl.load(dt_ptr + chunk_vals + src)
            causal = rows[:, None] >= src[None, :]
            # Above the diagonal: -inf keeps exp() from overflowing, and the
            # where() drops CB tiles that the CB kernel skipped (uninitialised).
            decay = tl.exp(tl.where(causal, dA_rows[:, None] - dA_src[None, :], float("-inf")))
            weights = tl.where(causal, cb * decay * dt_src[None, :], 0.0)
            xs = tl.load(
                x_base + src[:, None] * stride_x_t + p[None, :] * stride_x_p,
                mask=src_ok[:, None] & p_ok[None, :], other=0.0,
            )
            acc += tl.dot(weights.to(dot_dtype), xs, input_precision=DOT_PRECISION)

        if HAS_D:
            # Loaded here rather than kept from the start: a [BLOCK_M, BLOCK_P]
            # tile live across both loops costs registers.
            x_rows = tl.load(
                x_base + rows[:, None] * stride_x_t + p[None, :] * stride_x_p,
                mask=row_ok[:, None] & p_ok[None, :], other=0.0,
            )
            D = tl.load(D_ptr + head * stride_D_h + p * stride_D_p, mask=p_ok, other=0.0)
            acc += x_rows.to(tl.float32) * D.to(tl.float32)[None, :]
        out = out_ptr + start.to(tl.int64) * stride_o_t + head * stride_o_h
        tl.store(out + rows[:, None] * stride_o_t + p[None, :] * stride_o_p,
                 acc.to(out_ptr.dtype.element_ty), mask=row_ok[:, None] & p_ok[None, :])


def ssd_chunk_metadata(
    query_start_loc: torch.Tensor | list[int],
    chunk_size: int,
    num_computed_tokens: torch.Tensor | list[int] | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logical chunks of a packed prefill batch, computed on the host.

    query_start_loc: [B + 1] token offsets (host values);
    num_computed_tokens: [B] tokens each sequence already processed (its
    initial state covers them), default 0. A sequence whose computed count is
    not a multiple of chunk_size first fills up to the next multiple, as
    vLLM 0.32's builder does. Returns (cu_chunk_seqlens [num_chunks + 1],
    last_chunk_indices [B]) as int32 on ``device``. An empty sequence gets
    no chunk and repeats the previous sequence's last index.
    """
    qsl = [int(v) for v in query_start_loc]
    computed = [0] * (len(qsl) - 1) if num_computed_tokens is None else [int(v) for v in num_computed_tokens]
    bounds = [0]
    last_chunk_indices = []
    for seq in range(len(qsl) - 1):
        pos, end = qsl[seq], qsl[seq + 1]
        absolute = computed[seq]
        while pos < end:
            take = min(chunk_size - absolute % chunk_size, end - pos)
            pos += take
            absolute += take
            bounds.append(pos)
        last_chunk_indices.append(len(bounds) - 2)
    return (
        torch.tensor(bounds, dtype=torch.int32, device=device),
        torch.tensor(last_chunk_indices, dtype=torch.int32, device=device),
    )



def _block(limit: int, size: int) -> int:
    """Tile size: the configured limit, no larger than size padded to a power
    of two, and at least 16 (tl.dot)."""
    return min(limit, dot_block(size))


def ssd_chunk_scan(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    *,
    chunk_size: int,
    cu_chunk_seqlens: torch.Tensor,
    last_chunk_indices: torch.Tensor,
    ssm_states: torch.Tensor,
    state_indices: torch.Tensor,
    has_initial_state: torch.Tensor,
    out: torch.Tensor,
    D: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
    dt_limit: tuple[float, float] = (0.0, float("inf")),
    pad_slot_id: int = -1,
    checkpoint_chunk_indices: torch.Tensor | None = None,
    checkpoint_state_indices: torch.Tensor | None = None,
) -> None:
    """Mamba-2 SSD prefill over packed sequences, carrying SSM states.

    x: [total_tokens, nheads, headdim] (any strides); dt: [total_tokens,
    nheads]; A: [nheads] (negative); B, C: [total_tokens, ngroups, dstate],
    ngroups dividing nheads; x, B, C share one dtype.
    chunk_size: power of two >= 16; cu_chunk_seqlens: [num_chunks + 1] and
    last_chunk_indices: [B], logical chunks of at most chunk_size tokens
    inside one sequence each (vLLM's ``cu_chunk_seqlen_p`` /
    ``last_chunk_indices_p``, or ``ssd_chunk_metadata``).
    ssm_states: [num_slots, nheads, headdim, dstate], fp32 or a 16-bit dtype,
    any strides; sequence b starts from ssm_states[state_indices[b]] when
    has_initial_state[b] (else zeros) and its final state is written there.
    state_indices: [B]; has_initial_state: [B] bool or int32; the index
    tensors contiguous.
    out: [total_tokens, nheads, headdim], written.
    D: [nheads] or [nheads, headdim]; dt_bias: [nheads];
    dt' = clamp(softplus(dt + dt_bias) if dt_softplus else dt + dt_bias, *dt_limit).
    checkpoint_chunk_indices, checkpoint_state_indices: optional [B]
    int32/int64, both or neither (prefix caching, vLLM's
    ``checkpoint_chunk_idx`` / ``checkpoint_meta.state_indices``): the state
    at the end of logical chunk checkpoint_chunk_indices[b] (a chunk of
    sequence b) is also written to ssm_states[checkpoint_state_indices[b]];
    rows whose index is padding write none.
    """
    cfg = launch_config(LAUNCH_CONFIGS, "x", x)
    for name, t in (("x", x), ("dt", dt), ("A", A), ("B", B), ("C", C),
                    ("ssm_states", ssm_states), ("out", out)):
        check_dtype(name, t)
    if x.dim() != 3:
        raise ValueError(f"x: expected [total_tokens, nheads, headdim], got shape {tuple(x.shape)}")
    total_tokens, nheads, headdim = x.shape
    if B.dim() != 3 or B.shape[0] != total_tokens:
        raise ValueError(
            f"B: expected [total_tokens={total_tokens}, ngroups, dstate], got shape {tuple(B.shape)}"
        )
    ngroups, dstate = B.shape[1], B.shape[2]
    if nheads % ngroups != 0:
        raise ValueError(f"B: ngroups={ngroups} must divide nheads={nheads}")
    if B.dtype != x.dtype or C.dtype != x.dtype:
        raise ValueError(f"B, C: dtype must equal x.dtype={x.dtype}, got {B.dtype}, {C.dtype}")
    check_shape("C", C, tuple(B.shape), "same as B")
    check_shape("dt", dt, (total_tokens, nheads), "[total_tokens, nheads]")
    check_shape("A", A, (nheads,), "[nheads]")
    check_shape("out", out, tuple(x.shape), "same as x")
    if D is not None:
        check_dtype("D", D)
        if tuple(D.shape) not in ((nheads,), (nheads, headdim)):
            raise ValueError(
                f"D: expected shape ({nheads},) or ({nheads}, {headdim}), got {tuple(D.shape)}"
            )
    if dt_bias is not None:
        check_dtype("dt_bias", dt_bias)
        check_shape("dt_bias", dt_bias, (nheads,), "[nheads]")
    if chunk_size < 16 or chunk_size & (chunk_size - 1):
        raise ValueError(f"chunk_size: {chunk_size} unsupported; accepted: powers of two >= 16")
    if state_indices.dim() != 1 or cu_chunk_seqlens.dim() != 1 or cu_chunk_seqlens.shape[0] < 1:
        raise ValueError(
            f"state_indices, cu_chunk_seqlens: expected shapes [B] and [num_chunks + 1], "
            f"got {tuple(state_indices.shape)} and {tuple(cu_chunk_seqlens.shape)}"
        )
    num_seqs = state_indices.shape[0]
    num_chunks = cu_chunk_seqlens.shape[0] - 1
    check_vector("state_indices", state_indices, num_seqs, INDEX_DTYPES)
    check_vector("cu_chunk_seqlens", cu_chunk_seqlens, num_chunks + 1, INDEX_DTYPES)
    check_vector("last_chunk_indices", last_chunk_indices, num_seqs, INDEX_DTYPES)
    check_vector("has_initial_state", has_initial_state, num_seqs, FLAG_DTYPES)
    check_checkpoints(
        "checkpoint_chunk_indices", checkpoint_chunk_indices, checkpoint_state_indices, num_seqs
    )
    if ssm_states.dim() != 4 or ssm_states.shape[1:] != (nheads, headdim, dstate):
        raise ValueError(
            f"ssm_states: expected [num_slots, nheads={nheads}, headdim={headdim}, "
            f"dstate={dstate}], got shape {tuple(ssm_states.shape)}"
        )
    # The chunk scan launches chunks along the second grid dimension.
    check_grid_dim("cu_chunk_seqlens", num_chunks, "chunks",
                   "lower vLLM's max_num_batched_tokens")
    if num_seqs == 0:
        return

    dev = x.device
    options = cfg["compile_options"]
    # Only fp32 operands read this: exact fp32 products instead of tf32 (fp32
    # models are the small test models, where parity matters more than speed).
    dot_precision = "ieee"
    heads_per_group = nheads // ngroups
    L = chunk_size
    dt_out = torch.empty(nheads, max(num_chunks, 1), L, dtype=torch.float32, device=dev)
    dA_cum = torch.empty_like(dt_out)
    cb = torch.empty(max(num_chunks, 1), ngroups, L, L, dtype=torch.float32, device=dev)
    start_states = torch.empty(max(num_chunks, 1), nheads, headdim, dstate, dtype=x.dtype, device=dev)

    if num_chunks > 0:
        c = cfg["dt_cumsum"]
        block_h = min(c["BLOCK_H"], next_power_of_2(nheads))
        _ssd_dt_cumsum_kernel[(num_chunks, cdiv(nheads, block_h))](
            dt, dt_bias, A, cu_chunk_seqlens, dt_out, dA_cum,
            nheads, num_chunks, float(dt_limit[0]), float(dt_limit[1]),
            dt.stride(0), dt.stride(1), dt_bias.stride(0) if dt_bias is not None else 0, A.stride(0),
            HAS_DT_BIAS=dt_bias is not None, DT_SOFTPLUS=dt_softplus, CHUNK=L, BLOCK_H=block_h,
            num_warps=c["num_warps"], **options,
        )

        c = cfg["chunk_cb"]
        bm, bn, bk = min(c["BLOCK_M"], L), min(c["BLOCK_N"], L), _block(c["BLOCK_K"], dstate)
        _ssd_chunk_cb_kernel[(num_chunks, ngroups, (L // bm) * (L // bn))](
            B, C, cu_chunk_seqlens, cb, ngroups, dstate,
            B.stride(0), B.stride(1), B.stride(2), C.stride(0), C.stride(1), C.stride(2),
            CHUNK=L, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, DOT_PRECISION=dot_precision,
            num_warps=c["num_warps"], num_stages=c["num_stages"], **options,
        )

    c = cfg["chunk_states"]
    bp, bn, bk = _block(c["BLOCK_P"], headdim), _block(c["BLOCK_N"], dstate), min(c["BLOCK_K"], L)
    _ssd_chunk_states_kernel[(num_seqs, nheads, cdiv(headdim, bp) * cdiv(dstate, bn))](
        x, B, dt_out, dA_cum, cu_chunk_seqlens, last_chunk_indices, start_states,
        ssm_states, state_indices, has_initial_state,
        checkpoint_chunk_indices, checkpoint_state_indices,
        nheads, headdim, dstate, max(num_chunks, 1), heads_per_group, pad_slot_id,
        x.stride(0), x.stride(1), x.stride(2), B.stride(0), B.stride(1), B.stride(2),
        ssm_states.stride(0), ssm_states.stride(1), ssm_states.stride(2), ssm_states.stride(3),
        HAS_CHECKPOINTS=checkpoint_chunk_indices is not None, UNROLL_CHUNK=c["UNROLL_CHUNK"], CHUNK=L,
        BLOCK_P=bp, BLOCK_N=bn, BLOCK_K=bk, DOT_PRECISION=dot_precision,
        num_warps=c["num_warps"], num_stages=c["num_stages"], **options,
    )

    if num_chunks > 0:
        c = cfg["chunk_scan"]
        bm, bp, bn = min(c["BLOCK_M"], L), _block(c["BLOCK_P"], headdim), _block(c["BLOCK_N"], dstate)
        bk = min(c["BLOCK_K"], bm)
        D_strides = (0, 0) if D is None else (D.stride(0), D.stride(1) if D.dim() == 2 else 0)
        _ssd_chunk_scan_kernel[((L // bm) * cdiv(headdim, bp), num_chunks, nheads)](
            x, C, D, cb, dt_out, dA_cum, start_states, cu_chunk_seqlens, out,
            nheads, headdim, dstate, ngroups, num_chunks, heads_per_group,
            x.stride(0), x.stride(1), x.stride(2), C.stride(0), C.stride(1), C.stride(2),
            D_strides[0], D_strides[1], out.stride(0), out.stride(1), out.stride(2),
            HAS_D=D is not None, CHUNK=L, BLOCK_M=bm, BLOCK_P=bp, BLOCK_N=bn, BLOCK_K=bk,
            DOT_PRECISION=dot_precision,
            num_warps=c["num_warps"], num_stages=c["num_stages"], **options,
        )
