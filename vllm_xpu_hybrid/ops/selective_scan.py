# SPDX-License-Identifier: Apache-2.0
"""Mamba-1 selective scan for prefill, chunked across tokens.

The recurrence, per channel d (group g of d), state element n and token t of
a sequence:

    dt'      = softplus(dt[t, d] + dt_bias[d])   (or dt + dt_bias)
    s[d, n]  = exp(dt' * A[d, n]) * s[d, n] + dt' * x[t, d] * B[t, g, n]
    y[t, d]  = (sum_n s[d, n] * C[t, g, n] + D[d] * x[t, d]) * silu(z[t, d])

A decays every state element at its own rate, so unlike Mamba-2's SSD there
is no matrix-product form: the work is one exp per channel x state x token.
A naive kernel runs one program per channel over all tokens of a sequence,
which serialises a long prompt. Here every sequence is cut into *logical
chunks* of ``chunk_size`` tokens (never crossing a sequence boundary), and
three launches, in stream order, make the chunks independent:

1. ``_chunk_state_kernel``: each chunk's state contribution from a zero
   start, and its dt sum per channel. Sub-blocks of ``BLOCK_T`` tokens are
   evaluated in closed form, ``sum_t exp(A * (dt_cum[end] - dt_cum[t])) *
   dt[t] * x[t] * B[t]`` (decays only ever to the future, so no overflow), as
   tile loads and one reduction instead of a token-by-token chain. The last
   chunk of a sequence is skipped: nothing reads its contribution.
2. ``_state_passing_kernel``: per sequence, walks its chunks in order,
   replaces each contribution by the state at the chunk's start
   (``exp(A * dt_sum) * s + contribution``), starting from the initial state
   ``ssm_states[state_indices[b]]`` when ``has_initial_state[b]``.
3. ``_chunk_scan_kernel``: every chunk recomputes the recurrence from its
   start state, token by token, and writes y; the last chunk of a sequence
   writes its final state to the sequence's page (after launch 2 read it).

So a token costs two exps per state element (launches 1 and 3) unless it
is in its sequence's last chunk (launch 3 only: a prompt shorter than a
chunk costs one); all chunks of all sequences run in parallel, and only
launch 2 walks chunks in order, one state update per chunk. The chunk layout is
computed on the device from ``query_start_loc`` (a cumulative sum of chunks
per sequence; each program finds its sequence by binary search), so there is
no device->host sync; chunk boundaries change rounding, never the result.

Prefix caching (vLLM 0.32, ``mamba_cache_mode="align"``): ``MambaMixer``
keeps vLLM's default KV-cache spec, which has no prefill checkpoint blocks
(``num_prefill_checkpoint_blocks = 0``; only ``MambaMixer2`` asks for one).
The scheduler then ends every prefill step that is not a prompt's last at a
block boundary, and the model runner copies the previous block's state into
the current block before the step (``preprocess_mamba``). The kernel needs
nothing but correct initial and final states.

Padding: a sequence whose index is negative or equals ``pad_slot_id`` (vLLM
0.32 pads with ``NULL_BLOCK_ID = 0``; the default -1 is ``PAD_SLOT_ID``)
neither reads nor writes a state page; its outputs come from a zero state.

Arithmetic is fp32; states are stored in the state dtype, outputs in the
output dtype. This module imports only torch and triton.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from vllm_xpu_hybrid.ops.checks import (
    FLAG_DTYPES,
    INDEX_DTYPES,
    check_dtype,
    check_shape,
    check_vector,
    launch_config,
)
from vllm_xpu_hybrid.ops.launch import cdiv, next_power_of_2

# Launch configurations per device kind ("cuda", "xpu", "cpu" = Triton's
# interpreter, where fewer, larger programs run faster).
#   CHUNK: tokens per logical chunk (the launcher's default chunk_size).
#   chunk_state: BLOCK_D channels x BLOCK_T tokens x dstate per sub-block.
#   state_passing, chunk_scan: BLOCK_D channels x dstate state tile.
#   compile_options: extra backend options passed to every launch.
# BLOCK_D is for dstate <= 16; the launcher scales it by 16 / dstate for
# larger states (same tile size) and clips it to the channels (and to a
# divisor of the channels per group when there are groups).
# The chunk and state-passing loops are latency-bound chains, so "cuda"
# favours state elements in flight per SM: chunk_scan's 128 x 16 tile (16
# per thread, 135 registers) leaves room for 3 programs per SM where a 64 x
# 16 tile (8 per thread, 182 registers: Triton replicates the per-channel
# vectors) leaves 2. No spills on sm_90 (Triton 3.9, ptxas); speed not yet
# measured. "xpu" follows Intel's guidance (more warps); triton-xpu 3.3 +
# ocloc compile it without spills at 128 GRF for PVC, while DG2 needs the
# 256-register mode for chunk_state and chunk_scan (Intel's runtime retries
# with it); never run on an Intel GPU: UNVERIFIED.
LAUNCH_CONFIGS: dict[str, dict] = {
    "cuda": {
        "CHUNK": 128,
        "chunk_state": {"BLOCK_D": 32, "BLOCK_T": 8, "num_warps": 4},
        "state_passing": {"BLOCK_D": 64, "num_warps": 4},
        "chunk_scan": {"BLOCK_D": 128, "num_warps": 4},
        "compile_options": {},
    },
    # UNVERIFIED: no Intel GPU has run these.
    "xpu": {
        "CHUNK": 128,
        "chunk_state": {"BLOCK_D": 32, "BLOCK_T": 4, "num_warps": 16},
        "state_passing": {"BLOCK_D": 64, "num_warps": 8},
        "chunk_scan": {"BLOCK_D": 64, "num_warps": 8},
        "compile_options": {},
    },
    "cpu": {
        "CHUNK": 64,
        "chunk_state": {"BLOCK_D": 256, "BLOCK_T": 16, "num_warps": 1},
        "state_passing": {"BLOCK_D": 256, "num_warps": 1},
        "chunk_scan": {"BLOCK_D": 256, "num_warps": 1},
        "compile_options": {},
    },
}


@triton.jit
def _discretise_dt(dt, bias, DT_SOFTPLUS: tl.constexpr):
    dt = dt + bias
    if DT_SOFTPLUS:
        # softplus(v) = log(1 + exp(v)); above 20 it equals v in fp32.
        dt = tl.where(dt <= 20.0, tl.log(1.0 + tl.exp(dt)), dt)
    return dt


@triton.jit
def _locate_chunk(chunk, qsl_ptr, chunk_offsets_ptr, num_seqs, search_steps, chunk_size):
    """(seq, start, end, is_last) of a logical chunk: its sequence, its
    packed token range and whether it ends its sequence; start == end past
    the last chunk."""
    # Sequence: the largest b with chunk_offsets[b] <= chunk (empty
    # sequences share their offset with the next one and are skipped).
    lo = chunk * 0
    hi = lo + num_seqs
    for _ in range(search_steps):
        mid = (lo + hi) // 2
        go_right = tl.load(chunk_offsets_ptr + mid) <= chunk
        lo = tl.where(go_right, mid, lo)
        hi = tl.where(go_right, hi, mid)
    first_chunk = tl.load(chunk_offsets_ptr + lo)
    next_first_chunk = tl.load(chunk_offsets_ptr + lo + 1)
    seq_end = tl.load(qsl_ptr + lo + 1)
    start = tl.load(qsl_ptr + lo) + (chunk - first_chunk) * chunk_size
    end = tl.minimum(start + chunk_size, seq_end)
    end = tl.where(chunk < next_first_chunk, end, start)
    return lo, start, end, chunk == next_first_chunk - 1


@triton.jit
def _chunk_state_kernel(
    x_ptr, dt_ptr, A_ptr, B_ptr, dt_bias_ptr, qsl_ptr, chunk_offsets_ptr,
    states_ptr, dt_sum_ptr,
    dim, dstate, num_seqs, search_steps, chunk_size, channels_per_group,
    stride_x_t, stride_x_d,
    stride_dt_t, stride_dt_d,
    stride_A_d, stride_A_n,
    stride_B_t, stride_B_g, stride_B_n,
    stride_bias_d,
    HAS_DT_BIAS: tl.constexpr,
    DT_SOFTPLUS: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    chunk = tl.program_id(0)
    _, start, end, is_last = _locate_chunk(
        chunk, qsl_ptr, chunk_offsets_ptr, num_seqs, search_steps, chunk_size
    )
    if (start < end) & (is_last == 0):
        d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
        n = tl.arange(0, BLOCK_N)
        d_ok = d < dim
        n_ok = n < dstate
        group = (tl.program_id(1) * BLOCK_D) // channels_per_group
        A = tl.load(A_ptr + d[:, None] * stride_A_d + n[None, :] * stride_A_n,
                    mask=d_ok[:, None] & n_ok[None, :], other=0.0).to(tl.float32)
        bias = tl.zeros([BLOCK_D], dtype=tl.float32)
        if HAS_DT_BIAS:
            bias = tl.load(dt_bias_ptr + d * stride_bias_d, mask=d_ok, other=0.0).to(tl.float32)
        state = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
        dt_sum = tl.zeros([BLOCK_D], dtype=tl.float32)
        B_base = B_ptr + group * stride_B_g
        for t0 in range(start, end, BLOCK_T):
            t = t0 + tl.arange(0, BLOCK_T)
            t_ok = t < end
            td_ok = t_ok[:, None] & d_ok[None, :]
            rows = t.to(tl.int64)[:, None]
            x = tl.load(x_ptr + rows * stride_x_t + d[None, :] * stride_x_d,
                        mask=td_ok, other=0.0).to(tl.float32)
            dt = tl.load(dt_ptr + rows * stride_dt_t + d[None, :] * stride_dt_d,
                         mask=td_ok, other=0.0).to(tl.float32)
            # Tokens past the chunk get dt = 0: no decay, no contribution.
            dt = tl.where(td_ok, _discretise_dt(dt, bias[None, :], DT_SOFTPLUS), 0.0)
            B = tl.load(B_base + rows * stride_B_t + n[None, :] * stride_B_n,
                        mask=t_ok[:, None] & n_ok[None, :], other=0.0).to(tl.float32)
            dt_cum = tl.cumsum(dt, axis=0)
            block_dt = tl.sum(dt, axis=0)
            # Decay from each token to the end of the sub-block (exponent <= 0).
            decay = tl.exp(A[None, :, :] * (block_dt[None, :] - dt_cum)[:, :, None])
            contribution = tl.sum(decay * (dt * x)[:, :, None] * B[:, None, :], axis=0)
            state = state * tl.exp(A * block_dt[:, None]) + contribution
            dt_sum += block_dt
        # [max_chunks, dim, dstate] and [max_chunks, dim], fp32.
        chunk_state = states_ptr + chunk.to(tl.int64) * dim * dstate
        tl.store(chunk_state + d[:, None] * dstate + n[None, :], state,
                 mask=d_ok[:, None] & n_ok[None, :])
        tl.store(dt_sum_ptr + chunk.to(tl.int64) * dim + d, dt_sum, mask=d_ok)


@triton.jit
def _state_passing_kernel(
    states_ptr, dt_sum_ptr, A_ptr, chunk_offsets_ptr, ssm_ptr, slot_ptr, has_init_ptr,
    dim, dstate, pad_slot_id,
    stride_A_d, stride_A_n,
    stride_s_slot, stride_s_d, stride_s_n,
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    seq = tl.program_id(0)
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    d_ok = d < dim
    tile_ok = d_ok[:, None] & (n < dstate)[None, :]
    first_chunk = tl.load(chunk_offsets_ptr + seq)
    end_chunk = tl.load(chunk_offsets_ptr + seq + 1)
    slot = tl.load(slot_ptr + seq).to(tl.int64)
    valid = (slot >= 0) & (slot != pad_slot_id)
    has_init = tl.load(has_init_ptr + seq) != 0
    page = ssm_ptr + slot * stride_s_slot + d[:, None] * stride_s_d + n[None, :] * stride_s_n
    state = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    if valid & has_init:
        state = tl.load(page, mask=tile_ok, other=0.0).to(tl.float32)
    A = tl.load(A_ptr + d[:, None] * stride_A_d + n[None, :] * stride_A_n,
                mask=tile_ok, other=0.0).to(tl.float32)
    # Chunk rows of the [max_chunks, dim, dstate] and [max_chunks, dim]
    # buffers. Each contribution and dt sum is loaded one chunk ahead (a
    # valid row, clamped, when there is none), so the loads overlap the
    # previous chunk's update.
    tile = d[:, None] * dstate + n[None, :]
    last_chunk = end_chunk - 1
    ahead = tl.maximum(tl.minimum(first_chunk, last_chunk - 1), 0).to(tl.int64)
    contribution_next = tl.load(states_ptr + ahead * dim * dstate + tile, mask=tile_ok, other=0.0)
    dt_sum_next = tl.load(dt_sum_ptr + ahead * dim + d, mask=d_ok, other=0.0)
    chunk_state = states_ptr + first_chunk.to(tl.int64) * dim * dstate + tile
    for _ in range(first_chunk, last_chunk):
        contribution = contribution_next
        dt_sum = dt_sum_next
        ahead = tl.minimum(ahead + 1, last_chunk - 1)
        contribution_next = tl.load(states_ptr + ahead * dim * dstate + tile, mask=tile_ok, other=0.0)
        dt_sum_next = tl.load(dt_sum_ptr + ahead * dim + d, mask=d_ok, other=0.0)
        tl.store(chunk_state, state, mask=tile_ok)
        state = state * tl.exp(A * dt_sum[:, None]) + contribution
        chunk_state += dim * dstate
    if first_chunk < end_chunk:
        # The last chunk's start state; that chunk writes the final state.
        tl.store(chunk_state, state, mask=tile_ok)
    elif valid:
        # An empty sequence: its final state is its initial one (or zero).
        tl.store(page, state.to(ssm_ptr.dtype.element_ty), mask=tile_ok)


@triton.jit
def _chunk_scan_kernel(
    x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, dt_bias_ptr,
    qsl_ptr, chunk_offsets_ptr, states_ptr, ssm_ptr, slot_ptr, out_ptr,
    dim, dstate, num_seqs, search_steps, chunk_size, channels_per_group, pad_slot_id,
    stride_x_t, stride_x_d,
    stride_dt_t, stride_dt_d,
    stride_A_d, stride_A_n,
    stride_B_t, stride_B_g, stride_B_n,
    stride_C_t, stride_C_g, stride_C_n,
    stride_D_d,
    stride_z_t, stride_z_d,
    stride_bias_d,
    stride_s_slot, stride_s_d, stride_s_n,
    stride_o_t, stride_o_d,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_DT_BIAS: tl.constexpr,
    DT_SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    chunk = tl.program_id(0)
    seq, start, end, is_last = _locate_chunk(
        chunk, qsl_ptr, chunk_offsets_ptr, num_seqs, search_steps, chunk_size
    )
    if start < end:
        d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
        n = tl.arange(0, BLOCK_N)
        d_ok = d < dim
        n_ok = n < dstate
        tile_ok = d_ok[:, None] & n_ok[None, :]
        group = (tl.program_id(1) * BLOCK_D) // channels_per_group
        tile = d[:, None] * dstate + n[None, :]
        state = tl.load(states_ptr + chunk.to(tl.int64) * dim * dstate + tile,
                        mask=tile_ok, other=0.0)
        A = tl.load(A_ptr + d[:, None] * stride_A_d + n[None, :] * stride_A_n,
                    mask=tile_ok, other=0.0).to(tl.float32)
        bias = tl.zeros([BLOCK_D], dtype=tl.float32)
        if HAS_DT_BIAS:
            bias = tl.load(dt_bias_ptr + d * stride_bias_d, mask=d_ok, other=0.0).to(tl.float32)
        D = tl.zeros([BLOCK_D], dtype=tl.float32)
        if HAS_D:
            D = tl.load(D_ptr + d * stride_D_d, mask=d_ok, other=0.0).to(tl.float32)
        x_col = x_ptr + d * stride_x_d
        dt_col = dt_ptr + d * stride_dt_d
        B_col = B_ptr + group * stride_B_g + n * stride_B_n
        C_col = C_ptr + group * stride_C_g + n * stride_C_n
        # Each token's inputs are loaded one step ahead (the last token's
        # twice), so their latency overlaps the previous token's arithmetic.
        row = start.to(tl.int64)
        x_next = tl.load(x_col + row * stride_x_t, mask=d_ok, other=0.0)
        dt_next = tl.load(dt_col + row * stride_dt_t, mask=d_ok, other=0.0)
        B_next = tl.load(B_col + row * stride_B_t, mask=n_ok, other=0.0)
        C_next = tl.load(C_col + row * stride_C_t, mask=n_ok, other=0.0)
        if HAS_Z:
            z_col = z_ptr + d * stride_z_d
            z_next = tl.load(z_col + row * stride_z_t, mask=d_ok, other=0.0)
        for _ in range(start, end):
            x = x_next.to(tl.float32)
            dt = _discretise_dt(dt_next.to(tl.float32), bias, DT_SOFTPLUS)
            B = B_next.to(tl.float32)
            C = C_next.to(tl.float32)
            if HAS_Z:
                z = z_next.to(tl.float32)
            ahead = tl.minimum(row + 1, end - 1)
            x_next = tl.load(x_col + ahead * stride_x_t, mask=d_ok, other=0.0)
            dt_next = tl.load(dt_col + ahead * stride_dt_t, mask=d_ok, other=0.0)
            B_next = tl.load(B_col + ahead * stride_B_t, mask=n_ok, other=0.0)
            C_next = tl.load(C_col + ahead * stride_C_t, mask=n_ok, other=0.0)
            if HAS_Z:
                z_next = tl.load(z_col + ahead * stride_z_t, mask=d_ok, other=0.0)
            state = state * tl.exp(A * dt[:, None]) + (dt * x)[:, None] * B[None, :]
            y = tl.sum(state * C[None, :], axis=1) + D * x
            if HAS_Z:
                y *= z * tl.sigmoid(z)
            tl.store(out_ptr + row * stride_o_t + d * stride_o_d,
                     y.to(out_ptr.dtype.element_ty), mask=d_ok)
            row += 1
        slot = tl.load(slot_ptr + seq).to(tl.int64)
        if is_last & (slot >= 0) & (slot != pad_slot_id):
            page = ssm_ptr + slot * stride_s_slot + d[:, None] * stride_s_d + n[None, :] * stride_s_n
            tl.store(page, state.to(ssm_ptr.dtype.element_ty), mask=tile_ok)


def _block_d(limit: int, dim: int, ngroups: int, block_n: int) -> int:
    """Channels per program: the configured limit (for dstate <= 16), scaled
    down for larger states so the state tile keeps its size, no larger than
    dim padded to a power of two and, with groups, dividing the channels per
    group (a program reads one group's B and C)."""
    block = min(max(1, limit * 16 // max(block_n, 16)), next_power_of_2(dim))
    if ngroups > 1:
        per_group = dim // ngroups
        block = min(block, per_group & -per_group)
    return block


def selective_scan(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    *,
    query_start_loc: torch.Tensor,
    ssm_states: torch.Tensor,
    state_indices: torch.Tensor,
    has_initial_state: torch.Tensor,
    out: torch.Tensor | None = None,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
    pad_slot_id: int = -1,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Mamba-1 prefill over packed sequences, carrying SSM states.

    x: [total_tokens, dim]; dt: [total_tokens, dim] (before bias and
    softplus); z: [total_tokens, dim] or None; all three any strides (column
    slices of a projection). A: [dim, dstate] (negative); B, C:
    [total_tokens, ngroups, dstate], ngroups dividing dim; D, dt_bias: [dim]
    or None. Any of fp16/bf16/fp32, mixed.
    query_start_loc: [num_seqs + 1] token offsets, int32/int64.
    ssm_states: [num_slots, dim, dstate], fp32 or a 16-bit dtype, any strides;
    sequence b starts from ssm_states[state_indices[b]] when
    has_initial_state[b] (else zeros) and its final state is written there.
    state_indices: [num_seqs] int32/int64; has_initial_state: [num_seqs] bool
    or int32; the three index tensors contiguous.
    out: optional [total_tokens, dim]; may be x or z itself (each token's
    output is written after its inputs are read, by the program that reads
    them), but must not overlap them otherwise.
    chunk_size: tokens per logical chunk (default: the device's CHUNK).
    Returns out (x.dtype unless given):
    y = (s @ C + D * x) * silu(z), per token and channel.
    """
    cfg = launch_config(LAUNCH_CONFIGS, "x", x)
    for name, t in (("x", x), ("dt", dt), ("A", A), ("B", B), ("C", C), ("ssm_states", ssm_states)):
        check_dtype(name, t)
    if x.dim() != 2:
        raise ValueError(f"x: expected [total_tokens, dim], got shape {tuple(x.shape)}")
    total_tokens, dim = x.shape
    if B.dim() != 3 or B.shape[0] != total_tokens:
        raise ValueError(
            f"B: expected [total_tokens={total_tokens}, ngroups, dstate], got shape {tuple(B.shape)}"
        )
    ngroups, dstate = B.shape[1], B.shape[2]
    if ngroups == 0 or dim % ngroups != 0:
        raise ValueError(f"B: ngroups={ngroups} must divide dim={dim}")
    check_shape("C", C, tuple(B.shape), "same as B")
    check_shape("dt", dt, (total_tokens, dim), "[total_tokens, dim]")
    check_shape("A", A, (dim, dstate), "[dim, dstate]")
    for name, t in (("z", z), ("out", out)):
        if t is not None:
            check_dtype(name, t)
            check_shape(name, t, (total_tokens, dim), "[total_tokens, dim]")
    for name, t in (("D", D), ("dt_bias", dt_bias)):
        if t is not None:
            check_dtype(name, t)
            check_shape(name, t, (dim,), "[dim]")
    if ssm_states.dim() != 3 or ssm_states.shape[1:] != (dim, dstate):
        raise ValueError(
            f"ssm_states: expected [num_slots, dim={dim}, dstate={dstate}], "
            f"got shape {tuple(ssm_states.shape)}"
        )
    if state_indices.dim() != 1:
        raise ValueError(f"state_indices: expected shape [num_seqs], got {tuple(state_indices.shape)}")
    num_seqs = state_indices.shape[0]
    check_vector("state_indices", state_indices, num_seqs, INDEX_DTYPES)
    check_vector("query_start_loc", query_start_loc, num_seqs + 1, INDEX_DTYPES)
    check_vector("has_initial_state", has_initial_state, num_seqs, FLAG_DTYPES)
    chunk_size = cfg["CHUNK"] if chunk_size is None else chunk_size
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size: {chunk_size!r} unsupported; accepted: an int >= 1")
    if out is None:
        out = torch.empty_like(x)
    if num_seqs == 0:
        return out

    dev = x.device
    options = cfg["compile_options"]
    # Chunks per sequence, cumulated: [num_seqs + 1], on the device (no sync).
    seq_chunks = (query_start_loc[1:] - query_start_loc[:-1] + chunk_size - 1) // chunk_size
    chunk_offsets = torch.zeros(num_seqs + 1, dtype=torch.int32, device=dev)
    chunk_offsets[1:] = torch.cumsum(seq_chunks, dim=0, dtype=torch.int32)
    # The most chunks total_tokens can make over num_seqs sequences.
    max_chunks = cdiv(total_tokens + num_seqs * (chunk_size - 1), chunk_size)
    states = torch.empty(max(max_chunks, 1), dim, dstate, dtype=torch.float32, device=dev)
    dt_sums = torch.empty(max(max_chunks, 1), dim, dtype=torch.float32, device=dev)
    search_steps = max(num_seqs - 1, 0).bit_length()
    channels_per_group = dim // ngroups
    block_n = next_power_of_2(dstate)
    bias_stride = dt_bias.stride(0) if dt_bias is not None else 0
    flags = dict(HAS_DT_BIAS=dt_bias is not None, DT_SOFTPLUS=dt_softplus)

    if max_chunks > 0:
        c = cfg["chunk_state"]
        block_d = _block_d(c["BLOCK_D"], dim, ngroups, block_n)
        _chunk_state_kernel[(max_chunks, cdiv(dim, block_d))](
            x, dt, A, B, dt_bias, query_start_loc, chunk_offsets, states, dt_sums,
            dim, dstate, num_seqs, search_steps, chunk_size, channels_per_group,
            *x.stride(), *dt.stride(), *A.stride(), *B.stride(), bias_stride,
            **flags, BLOCK_T=min(c["BLOCK_T"], next_power_of_2(chunk_size)),
            BLOCK_D=block_d, BLOCK_N=block_n, num_warps=c["num_warps"], **options,
        )

    c = cfg["state_passing"]
    block_d = _block_d(c["BLOCK_D"], dim, 1, block_n)
    _state_passing_kernel[(num_seqs, cdiv(dim, block_d))](
        states, dt_sums, A, chunk_offsets, ssm_states, state_indices, has_initial_state,
        dim, dstate, pad_slot_id, *A.stride(), *ssm_states.stride(),
        BLOCK_D=block_d, BLOCK_N=block_n, num_warps=c["num_warps"], **options,
    )

    if max_chunks > 0:
        c = cfg["chunk_scan"]
        block_d = _block_d(c["BLOCK_D"], dim, ngroups, block_n)
        z_strides = z.stride() if z is not None else (0, 0)
        _chunk_scan_kernel[(max_chunks, cdiv(dim, block_d))](
            x, dt, A, B, C, D, z, dt_bias, query_start_loc, chunk_offsets, states,
            ssm_states, state_indices, out,
            dim, dstate, num_seqs, search_steps, chunk_size, channels_per_group, pad_slot_id,
            *x.stride(), *dt.stride(), *A.stride(), *B.stride(), *C.stride(),
            D.stride(0) if D is not None else 0, *z_strides, bias_stride,
            *ssm_states.stride(), *out.stride(),
            HAS_D=D is not None, HAS_Z=z is not None, **flags,
            BLOCK_D=block_d, BLOCK_N=block_n, num_warps=c["num_warps"], **options,
        )
    return out
