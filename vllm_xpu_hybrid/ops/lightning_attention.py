# SPDX-License-Identifier: Apache-2.0
"""Lightning attention: linear attention with a constant per-head decay
(MiniMax-Text-01's and Bailing V2.5's linear layers; FLA calls it simple GLA
with a per-head ``g_gamma``).

The recurrence, per head h with decay rate ``slopes[h] = s >= 0`` and token t
of a sequence (``k``, ``q``: key dim K; ``v``: value dim V):

    S_t = exp(-s) * S_{t-1} + k_t^T v_t          S: [K, V], fp32
    o_t = q_t @ S_t

``S_0`` is the sequence's initial state (its page when it has one, else
zeros); the final state is written back to the same page. Any scaling of q
(Bailing's ``head_dim ** -0.5``) is the caller's.

Prefill (``lightning_attention_prefill``) walks each sequence in chunks of
``CHUNK`` tokens, one program per (sequence, head, value tile) carrying its
slice of S in registers. For the chunk's tokens i, j (0-based) and the state
S_in before it:

    o_i   = exp(-s (i + 1)) q_i @ S_in                       (inter-chunk)
          + sum_{j <= i} exp(-s (i - j)) (q_i . k_j) v_j      (intra-chunk)
    S_out = exp(-s L) S_in + sum_j exp(-s (L - 1 - j)) k_j^T v_j

with L the chunk's length: three ``tl.dot`` per chunk (q S, q k^T, the
masked decayed scores times v) plus the state update (decayed k^T v). Every
exponent is <= 0, so no decay overflows whatever the chunk length. Chunks
start at each sequence's first token: the result does not depend on where a
step or a chunk ends, only rounding does.

vLLM 0.32's own prefill kernel (``vllm.model_executor.layers.lightning_attn``)
decays the inter-block term by exp(-s i) instead of exp(-s (i + 1)), so its
outputs after a carried state (a continued prefill, and every 256-token block
boundary) are off by a factor exp(-s) on that term, while its decode kernel
follows the recurrence above. This module follows the recurrence, as
transformers' MiniMax and FLA's simple GLA do.

Decode (``lightning_attention_decode``) applies one step per row, one
program per (row, head, value tile).

Padding: a sequence or row whose state index is negative or equals
``pad_slot_id`` reads and writes no state page; its outputs are computed from
a zero state.

Dot operands are in the input dtype (tensor cores for fp16/bf16, where the
q @ S dot reads S rounded to it, as FLA's chunked kernels do; fp32 inputs use
``input_precision="ieee"``); accumulation, decays and the carried state are
fp32, cast to the state dtype when stored. This module imports only torch
and triton.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from vllm_xpu_hybrid.ops.checks import (
    FLAG_DTYPES,
    INDEX_DTYPES,
    check_dtype,
    check_vector,
    launch_config,
)
from vllm_xpu_hybrid.ops.launch import (
    CachedLaunch,
    cdiv,
    check_grid_dim,
    dot_block,
    next_power_of_2,
    small_grid_entries,
)

# The widest key head dim a program holds in one [K, BLOCK_V] state tile.
MAX_KEY_HEAD_DIM = 256

# Launch configurations per device kind ("cuda", "xpu", "cpu" = Triton's
# interpreter, where fewer, larger programs run faster).
#   prefill: CHUNK tokens per step of the walk (a power of two >= 16),
#     BLOCK_V value columns of the state per program (the whole key dim is
#     one tile: q @ S and q @ k^T reduce over it).
#   decode: BLOCK_V value columns of the state per program, launched
#     tile-major (the tiles of one (row, head) adjacent; H200 sweep, batch
#     >= 64: 88-91 % -> 93-97 % of copy bandwidth against row-major order).
#     SMALL_GRID (optional): entries for a grid of fewer than its
#     below_programs programs (launch.small_grid_entries).
#   compile_options: extra backend options for that kernel.
# "cuda": compiled and checked on an H100 (tests/ops, docs/benchmarks.md);
# decode from sweeps through the bench's cases (BLOCK_V 8-64, 1-8 warps;
# fifteenth pass, H200, batch 1-256 with the row's operands loaded before
# its slot: 64 columns and 8 warps 1-3 % faster than 4 warps from batch 16
# up, 32 columns and 2 warps 4-7 % faster at batch 1 and 4), prefill not swept. "xpu" follows Intel's
# guidance (more warps, large GRF mode for dot tiles, num_stages=1); the Intel
# compile gate (triton-xpu 3.3 + ocloc, key dim 128, bf16) builds both for
# PVC and DG2: decode without spills; prefill with XMX dots on PVC but
# spilling 7.9 KB there (66 KB on DG2, no XMX): the [K, BLOCK_V] fp32 state
# lives in registers for the whole walk; this was the least spill among the
# CHUNK / BLOCK_V / warps tried (64 / 32 / 8 spills 30+ KB). Never run on an
# Intel GPU: UNVERIFIED.
LAUNCH_CONFIGS: dict[str, dict[str, dict]] = {
    "cuda": {
        "prefill": {"CHUNK": 64, "BLOCK_V": 64, "num_warps": 8, "num_stages": 2,
                    "compile_options": {}},
        "decode": {"BLOCK_V": 64, "num_warps": 8, "compile_options": {},
                   "SMALL_GRID": {"below_programs": 2048, "BLOCK_V": 32, "num_warps": 2}},
    },
    # UNVERIFIED: no Intel GPU has run these.
    "xpu": {
        "prefill": {"CHUNK": 32, "BLOCK_V": 16, "num_warps": 8, "num_stages": 1,
                    "compile_options": {"grf_mode": "large"}},
        "decode": {"BLOCK_V": 32, "num_warps": 16, "compile_options": {}},
    },
    "cpu": {
        "prefill": {"CHUNK": 64, "BLOCK_V": 128, "num_warps": 1, "num_stages": 1,
                    "compile_options": {}},
        "decode": {"BLOCK_V": 128, "num_warps": 1, "compile_options": {}},
    },
}


@triton.jit
def _lightning_prefill_kernel(
    q_ptr, k_ptr, v_ptr, slope_ptr, qsl_ptr, state_ptr, slot_ptr, has_init_ptr, out_ptr,
    key_dim, value_dim, pad_slot_id, stride_slope,
    stride_q_t, stride_q_h, stride_q_d,
    stride_k_t, stride_k_h, stride_k_d,
    stride_v_t, stride_v_h, stride_v_d,
    stride_s_slot, stride_s_h, stride_s_k, stride_s_v,
    stride_o_t, stride_o_h, stride_o_d,
    CHUNK: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_V: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    seq = tl.program_id(0)
    head = tl.program_id(1)
    kd = tl.arange(0, BLOCK_K)
    vd = tl.program_id(2) * BLOCK_V + tl.arange(0, BLOCK_V)
    k_ok = kd < key_dim
    v_ok = vd < value_dim
    tile_ok = k_ok[:, None] & v_ok[None, :]

    start = tl.load(qsl_ptr + seq).to(tl.int64)
    end = tl.load(qsl_ptr + seq + 1).to(tl.int64)
    slot = tl.load(slot_ptr + seq).to(tl.int64)
    valid = (slot >= 0) & (slot != pad_slot_id)
    has_init = tl.load(has_init_ptr + seq) != 0
    page = (state_ptr + slot * stride_s_slot + head * stride_s_h
            + kd[:, None] * stride_s_k + vd[None, :] * stride_s_v)
    state = tl.zeros([BLOCK_K, BLOCK_V], dtype=tl.float32)
    if valid & has_init:
        state = tl.load(page, mask=tile_ok, other=0.0).to(tl.float32)

    slope = tl.load(slope_ptr + head * stride_slope).to(tl.float32)
    i = tl.arange(0, CHUNK)
    # Decay from key j to query i in one chunk; -inf above the diagonal (the
    # causal mask) keeps exp() at 0 instead of overflowing.
    distance = (i[:, None] - i[None, :]).to(tl.float32)
    intra_decay = tl.exp(tl.where(distance >= 0, -slope * distance, float("-inf")))
    # Decay of the chunk's initial state at query i: i + 1 steps.
    query_decay = tl.exp(-slope * (i + 1).to(tl.float32))

    q_head = q_ptr + head * stride_q_h
    k_head = k_ptr + head * stride_k_h
    v_head = v_ptr + head * stride_v_h
    o_head = out_ptr + head * stride_o_h
    for chunk_start in range(start, end, CHUNK):
        length = tl.minimum(end - chunk_start, CHUNK)
        rows = chunk_start + i
        row_ok = i < length
        q = tl.load(q_head + rows[:, None] * stride_q_t + kd[None, :] * stride_q_d,
                    mask=row_ok[:, None] & k_ok[None, :], other=0.0)
        k_t = tl.load(k_head + rows[None, :] * stride_k_t + kd[:, None] * stride_k_d,
                      mask=k_ok[:, None] & row_ok[None, :], other=0.0)
        v = tl.load(v_head + rows[:, None] * stride_v_t + vd[None, :] * stride_v_d,
                    mask=row_ok[:, None] & v_ok[None, :], other=0.0)
        dot_dtype = q.dtype

        acc = tl.dot(q, state.to(dot_dtype), input_precision=DOT_PRECISION) * query_decay[:, None]
        scores = tl.dot(q, k_t, input_precision=DOT_PRECISION) * intra_decay
        acc += tl.dot(scores.to(dot_dtype), v, input_precision=DOT_PRECISION)
        tl.store(o_head + rows[:, None] * stride_o_t + vd[None, :] * stride_o_d,
                 acc.to(out_ptr.dtype.element_ty), mask=row_ok[:, None] & v_ok[None, :])

        # Decay from token j to the chunk's last token, 0 past the chunk's
        # end; applied to v ([CHUNK, BLOCK_V]) rather than to the wider k.
        key_decay = tl.exp(tl.where(row_ok, -slope * (length - 1 - i).to(tl.float32), float("-inf")))
        state = state * tl.exp(-slope * length.to(tl.float32)) + tl.dot(
            k_t, (v.to(tl.float32) * key_decay[:, None]).to(dot_dtype),
            input_precision=DOT_PRECISION,
        )
    if valid:
        tl.store(page, state.to(state_ptr.dtype.element_ty), mask=tile_ok)


@triton.jit
def _lightning_decode_kernel(
    q_ptr, k_ptr, v_ptr, slope_ptr, state_ptr, slot_ptr, out_ptr,
    key_dim, value_dim, pad_slot_id, stride_slope,
    stride_q_t, stride_q_h, stride_q_d,
    stride_k_t, stride_k_h, stride_k_d,
    stride_v_t, stride_v_h, stride_v_d,
    stride_s_slot, stride_s_h, stride_s_k, stride_s_v,
    stride_o_t, stride_o_h, stride_o_d,
    BLOCK_K: tl.constexpr,
    BLOCK_V: tl.constexpr,
):
    vd = tl.program_id(0) * BLOCK_V + tl.arange(0, BLOCK_V)
    head = tl.program_id(1)
    row = tl.program_id(2).to(tl.int64)
    kd = tl.arange(0, BLOCK_K)
    k_ok = kd < key_dim
    v_ok = vd < value_dim

    # The row's operands come before its slot, so their latency overlaps the
    # slot -> page dependency; a padding row's page is masked off rather
    # than branched around (fifteenth pass, H200: 1-4 % faster at batch 1-64).
    q = tl.load(q_ptr + row * stride_q_t + head * stride_q_h + kd * stride_q_d,
                mask=k_ok, other=0.0).to(tl.float32)
    k = tl.load(k_ptr + row * stride_k_t + head * stride_k_h + kd * stride_k_d,
                mask=k_ok, other=0.0).to(tl.float32)
    v = tl.load(v_ptr + row * stride_v_t + head * stride_v_h + vd * stride_v_d,
                mask=v_ok, other=0.0).to(tl.float32)
    slope = tl.load(slope_ptr + head * stride_slope).to(tl.float32)
    slot = tl.load(slot_ptr + row).to(tl.int64)
    valid = (slot >= 0) & (slot != pad_slot_id)
    page = (state_ptr + slot * stride_s_slot + head * stride_s_h
            + kd[:, None] * stride_s_k + vd[None, :] * stride_s_v)
    page_ok = (kd < tl.where(valid, key_dim, 0))[:, None] & v_ok[None, :]
    state = tl.load(page, mask=page_ok, other=0.0).to(tl.float32)

    state = state * tl.exp(-slope) + k[:, None] * v[None, :]
    tl.store(page, state.to(state_ptr.dtype.element_ty), mask=page_ok)
    out = tl.sum(q[:, None] * state, axis=0)
    tl.store(out_ptr + row * stride_o_t + head * stride_o_h + vd * stride_o_d,
             out.to(out_ptr.dtype.element_ty), mask=v_ok)


_launch_decode = CachedLaunch(_lightning_decode_kernel)


def _check_qkv_state(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    slopes: torch.Tensor,
    states: torch.Tensor,
    out: torch.Tensor | None,
) -> tuple[int, int, int, int]:
    """Shared checks; returns (num_tokens, nheads, key_dim, value_dim)."""
    for name, t in (("q", q), ("k", k), ("v", v), ("slopes", slopes), ("states", states),
                    ("out", out)):
        if t is not None:
            check_dtype(name, t)
    if q.dim() != 3:
        raise ValueError(f"q: expected [num_tokens, nheads, key_dim], got shape {tuple(q.shape)}")
    num_tokens, nheads, key_dim = q.shape
    if k.shape != q.shape:
        raise ValueError(f"k: expected shape {tuple(q.shape)} (same as q), got {tuple(k.shape)}")
    if v.dim() != 3 or v.shape[:2] != (num_tokens, nheads):
        raise ValueError(
            f"v: expected [num_tokens={num_tokens}, nheads={nheads}, value_dim], got shape "
            f"{tuple(v.shape)}"
        )
    value_dim = v.shape[2]
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"k, v: dtype must equal q.dtype={q.dtype}, got {k.dtype}, {v.dtype}")
    if key_dim > MAX_KEY_HEAD_DIM:
        raise ValueError(
            f"q: key head dim {key_dim} unsupported; accepted: up to {MAX_KEY_HEAD_DIM}"
        )
    if slopes.shape != (nheads,):
        raise ValueError(f"slopes: expected shape ({nheads},) (one per head), got {tuple(slopes.shape)}")
    if states.dim() != 4 or states.shape[1:] != (nheads, key_dim, value_dim):
        raise ValueError(
            f"states: expected [num_slots, nheads={nheads}, key_dim={key_dim}, "
            f"value_dim={value_dim}], got shape {tuple(states.shape)}"
        )
    if out is not None and out.shape != (num_tokens, nheads, value_dim):
        raise ValueError(
            f"out: expected shape {(num_tokens, nheads, value_dim)}, got {tuple(out.shape)}"
        )
    return num_tokens, nheads, key_dim, value_dim


def lightning_attention_prefill(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    slopes: torch.Tensor,
    states: torch.Tensor,
    query_start_loc: torch.Tensor,
    state_indices: torch.Tensor,
    has_initial_state: torch.Tensor,
    *,
    out: torch.Tensor | None = None,
    pad_slot_id: int = -1,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Lightning attention over packed sequences, carrying states.

    q, k: [total_tokens, nheads, key_dim] (key_dim <= 256); v:
    [total_tokens, nheads, value_dim]; q, k, v share one dtype, any strides.
    slopes: [nheads] decay rates >= 0 (the state decays by exp(-slopes[h]) per
    token), any float dtype. states: [num_slots, nheads, key_dim, value_dim],
    fp32 or a 16-bit dtype, any strides.
    query_start_loc: [B + 1] token offsets; state_indices: [B];
    has_initial_state: [B] bool or int32 (all contiguous). Sequence b starts
    from states[state_indices[b]] when has_initial_state[b] (else zeros) and
    its final state is written there.
    out: optional [total_tokens, nheads, value_dim]; chunk_size: the walk's
    chunk (a power of two >= 16; default: the device's launch configuration;
    it changes rounding only). Returns out (q.dtype unless given).
    """
    num_tokens, nheads, key_dim, value_dim = _check_qkv_state(q, k, v, slopes, states, out)
    if query_start_loc.dim() != 1 or query_start_loc.shape[0] < 1:
        raise ValueError(
            f"query_start_loc: expected shape [B + 1], got {tuple(query_start_loc.shape)}"
        )
    num_seqs = query_start_loc.shape[0] - 1
    check_vector("query_start_loc", query_start_loc, num_seqs + 1, INDEX_DTYPES)
    check_vector("state_indices", state_indices, num_seqs, INDEX_DTYPES)
    check_vector("has_initial_state", has_initial_state, num_seqs, FLAG_DTYPES)
    c = launch_config(LAUNCH_CONFIGS, "q", q)["prefill"]
    chunk = c["CHUNK"] if chunk_size is None else chunk_size
    if chunk < 16 or chunk & (chunk - 1):
        raise ValueError(f"chunk_size: {chunk} unsupported; accepted: powers of two >= 16")
    if out is None:
        out = torch.empty(num_tokens, nheads, value_dim, dtype=q.dtype, device=q.device)
    if num_seqs == 0 or nheads == 0:
        return out

    block_k = dot_block(key_dim)
    block_v = min(c["BLOCK_V"], dot_block(value_dim))
    _lightning_prefill_kernel[(num_seqs, nheads, cdiv(value_dim, block_v))](
        q, k, v, slopes, query_start_loc, states, state_indices, has_initial_state, out,
        key_dim, value_dim, pad_slot_id, slopes.stride(0),
        *q.stride(), *k.stride(), *v.stride(), *states.stride(), *out.stride(),
        CHUNK=chunk, BLOCK_K=block_k, BLOCK_V=block_v,
        # Only fp32 operands read this: exact fp32 products instead of tf32.
        DOT_PRECISION="ieee",
        num_warps=c["num_warps"], num_stages=c["num_stages"], **c["compile_options"],
    )
    return out


def lightning_attention_decode(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    slopes: torch.Tensor,
    states: torch.Tensor,
    state_indices: torch.Tensor,
    *,
    out: torch.Tensor | None = None,
    pad_slot_id: int = -1,
) -> torch.Tensor:
    """One lightning-attention step per row, updating state pages in place.

    q, k: [batch, nheads, key_dim] (key_dim <= 256); v: [batch, nheads,
    value_dim]; slopes: [nheads] decay rates >= 0; states: [num_slots, nheads,
    key_dim, value_dim]; state_indices: [batch] int32/int64, contiguous (padding
    rows: negative or pad_slot_id). out: optional [batch, nheads, value_dim].
    Returns out (q.dtype unless given): o = q @ (exp(-s) S + k^T v).
    """
    batch, nheads, key_dim, value_dim = _check_qkv_state(q, k, v, slopes, states, out)
    check_vector("state_indices", state_indices, batch, INDEX_DTYPES)
    check_grid_dim("q", batch, "decode rows", "lower vLLM's max_num_seqs")
    if out is None:
        out = torch.empty(batch, nheads, value_dim, dtype=q.dtype, device=q.device)
    if batch == 0 or nheads == 0:
        return out

    c = launch_config(LAUNCH_CONFIGS, "q", q)["decode"]
    value_block = next_power_of_2(value_dim)
    c = small_grid_entries(c, cdiv(value_dim, min(c["BLOCK_V"], value_block)) * nheads * batch)
    block_v = min(c["BLOCK_V"], value_block)
    _launch_decode(
        (cdiv(value_dim, block_v), nheads, batch),
        (q, k, v, slopes, states, state_indices, out),
        (key_dim, value_dim, pad_slot_id, slopes.stride(0),
         *q.stride(), *k.stride(), *v.stride(), *states.stride(), *out.stride()),
        {"BLOCK_K": next_power_of_2(key_dim), "BLOCK_V": block_v},
        {"num_warps": c["num_warps"], **c["compile_options"]},
    )
    return out
