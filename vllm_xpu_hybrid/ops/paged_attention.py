# SPDX-License-Identifier: Apache-2.0
"""Paged attention: KV-cache write and attention over a paged KV cache.

Cache layout, shared by every kernel here::

    kv_cache: [num_blocks, 2, block_size, num_kv_heads, head_size]

Index 0 of the second dimension holds keys, index 1 values. The block
dimension comes first because vLLM's CPU runner zeroes a new block as
``kv_cache[block_id].zero_()``. A token at slot ``s`` lives at block
``s // block_size``, offset ``s % block_size``.

Kernels:

- ``reshape_and_cache_kernel``: writes new K/V rows into their slots.
- ``paged_attention_unified_kernel``: one launch for a mixed batch of
  prefills, chunked prefills and decodes. A program owns a tile of
  ``BLOCK_M`` rows = (query token, query head) pairs of one sequence that
  share one KV head, so GQA reuses each loaded K/V tile for all the query
  heads of its group and ``tl.dot`` always sees at least 16 rows.
- ``paged_attention_split_kv_kernel`` + ``paged_attention_reduce_kernel``:
  long-context decode. Each (sequence, KV head) splits its KV range over
  several programs that keep unnormalised partial results (running max,
  sum of exponentials, weighted values); the reduce kernel merges them.

All softmax arithmetic is fp32, in base 2 (``exp2``) with the log2(e)
factor folded into the logits.

This module imports only torch and triton: the ops layer is a leaf.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from vllm_xpu_hybrid.ops.checks import INDEX_DTYPES, SUPPORTED_DTYPES, check_dtype, launch_config
from vllm_xpu_hybrid.ops.launch import CachedLaunch, cdiv, dot_block, next_power_of_2

SUPPORTED_HEAD_SIZES = (64, 80, 96, 128, 256)

# Launch configurations per device kind ("cuda", "xpu", "cpu" = Triton's
# interpreter). Keys:
#   unified_prefill / unified_decode: tile of the unified kernel. block_m is
#     the number of (query token, query head) rows of a program (>= 16, a
#     power of two); tile_n is keyed by the padded head size. unified_decode
#     is taken when every sequence's rows fit in its block_m (short queries).
#   split_kv: the long-context decode path. It is taken when every query has
#     one token, max_seq_len >= min_seq_len and the unified grid is small
#     (num_seqs * num_kv_heads <= max_programs, keyed by the padded head
#     size: on the H100, 64 sequences x 8 KV heads of 128 at 2k-4k context ran
#     faster unified; on the H200, head size 64 at 4k context split faster at
#     64 and 256 sequences x 8 KV heads: 154 against 165 µs and 571 against
#     578 µs, and head size 256 at 256 x 2 ran unified faster: 503 against
#     576 µs). Splits per sequence: as many as its visible KV range
#     (min(max_seq_len, window)) needs for parts of at most tokens_per_split
#     (keyed by the padded head size), more while num_seqs * num_kv_heads *
#     splits is below min_programs, never parts shorter than
#     min_tokens_per_split, at most max_splits. CUDA, from a sweep on the
#     H100 at 4k context (docs/benchmarks.md, fourteenth pass), % of copy
#     bandwidth at 64 sequences: head 64 87.5 % with 256-token splits, 88.7 %
#     with 512, 83.6 % with 1024; head 256 86.0 % with 256, 89.7 % with 512.
#     The programs floor keeps one sequence at 16 splits: without it, 512
#     tokens per split leave it 16-64 programs (the thirteenth pass's 4-8
#     splits took 42.8-48.0 µs, 16 take 16.0-27.0 µs).
#   reduce: the merge kernel of the split path.
#   cache_write: reshape_and_cache; elems = K (or V) elements a program moves.
#   compile_options: extra backend options passed to every launch.
LAUNCH_CONFIGS: dict[str, dict[str, dict]] = {
    "cuda": {
        "unified_prefill": {"block_m": 64, "tile_n": {64: 64, 128: 64, 256: 32},
                            "num_warps": 4, "num_stages": 2},
        "unified_decode": {"block_m": 16, "tile_n": {64: 64, 128: 64, 256: 32},
                           "num_warps": 4, "num_stages": 2},
        "split_kv": {"tile_n": {64: 64, 128: 64, 256: 32}, "num_warps": 4, "num_stages": 2,
                     "min_seq_len": 1024, "tokens_per_split": {64: 512, 128: 256, 256: 512},
                     "min_programs": 1024, "min_tokens_per_split": 256, "max_splits": 16,
                     "max_programs": {64: 4096, 128: 256, 256: 256}},
        "reduce": {"num_warps": 4},
        "cache_write": {"elems": 2048, "num_warps": 4},
        "compile_options": {},
    },
    # UNVERIFIED: no Intel GPU has run these. Chosen from the Intel compile
    # gate (python -m vllm_xpu_hybrid.intel_compile; docs/intel-compile.md):
    # 256-register GRF mode; num_stages=1 because Intel's software pipeliner
    # has crashed on kernels of this project. Every dot becomes dpas on PVC.
    # PVC spills that remain (bf16, any block_m and warps tried): every
    # sub-group holds the whole K and V tile (tile_n x head_pad) in
    # registers, and tile_n cannot go below 16 (tl.dot's minimum), so
    # head 80/128 spill about 1.7-2.4 KB and head 256 about 28 KB whatever
    # the warps (4-32) and block_m (16-128); only head 64 (tile_n 32) is
    # spill-free. Removing them takes a kernel change (split head_pad in
    # the P @ V product), not a configuration. 16 warps: the least spill
    # (8 warps: 3.1 KB prefill, 2.2 KB decode at head 128).
    "xpu": {
        "unified_prefill": {"block_m": 64, "tile_n": {64: 32, 128: 16, 256: 16},
                            "num_warps": 16, "num_stages": 1},
        "unified_decode": {"block_m": 16, "tile_n": {64: 32, 128: 16, 256: 16},
                           "num_warps": 16, "num_stages": 1},
        "split_kv": {"tile_n": {64: 32, 128: 16, 256: 16}, "num_warps": 16, "num_stages": 1,
                     "min_seq_len": 1024, "tokens_per_split": {64: 256, 128: 256, 256: 256},
                     "min_programs": 4096, "min_tokens_per_split": 256, "max_splits": 16,
                     "max_programs": {64: 256, 128: 256, 256: 256}},
        "reduce": {"num_warps": 4},
        "cache_write": {"elems": 2048, "num_warps": 4},
        "compile_options": {"grf_mode": "large"},
    },
    # Triton's interpreter: small tiles keep numpy work per step small; the
    # split path starts early so that tests reach it at a few hundred tokens.
    "cpu": {
        "unified_prefill": {"block_m": 32, "tile_n": {64: 32, 128: 32, 256: 32},
                            "num_warps": 1, "num_stages": 1},
        "unified_decode": {"block_m": 16, "tile_n": {64: 32, 128: 32, 256: 32},
                           "num_warps": 1, "num_stages": 1},
        "split_kv": {"tile_n": {64: 64, 128: 64, 256: 64}, "num_warps": 1, "num_stages": 1,
                     "min_seq_len": 256, "tokens_per_split": {64: 256, 128: 256, 256: 256},
                     "min_programs": 64, "min_tokens_per_split": 128, "max_splits": 8,
                     "max_programs": {64: 64, 128: 64, 256: 64}},
        "reduce": {"num_warps": 1},
        "cache_write": {"elems": 4096, "num_warps": 1},
        "compile_options": {},
    },
}


def _device_config(name: str, t: torch.Tensor) -> dict[str, dict]:
    """LAUNCH_CONFIGS' entry for t's device type (argument name); CPU
    tensors only under Triton's interpreter."""
    config = launch_config(LAUNCH_CONFIGS, name, t)
    if t.is_cpu and isinstance(reshape_and_cache_kernel, triton.runtime.JITFunction):
        # Triton fixes interpretation when the kernels are decorated (import).
        raise RuntimeError("CPU tensors need Triton's interpreter: set TRITON_INTERPRET=1 "
                           "before importing vllm_xpu_hybrid.ops")
    return config


def _launch_options(config: dict[str, dict], entry: dict) -> dict:
    options = dict(config["compile_options"], num_warps=entry["num_warps"])
    if "num_stages" in entry:
        options["num_stages"] = entry["num_stages"]
    return options


def _row_strides(name: str, t: torch.Tensor) -> tuple[int, ...]:
    """t's strides, checked to end in 1 (the last dimension contiguous)."""
    strides = t.stride()
    if strides[-1] != 1:
        raise ValueError(f"{name}: last dimension must be contiguous (stride 1), "
                         f"got strides {tuple(strides)}")
    return strides


def _check_kv_cache(kv_cache: torch.Tensor) -> tuple[int, ...]:
    """Checks the cache's layout, dtype, block size and head size; returns
    its strides."""
    shape = kv_cache.shape
    if len(shape) != 5 or shape[1] != 2:
        raise ValueError(
            "kv_cache: expected shape [num_blocks, 2, block_size, num_kv_heads, head_size], "
            f"got {tuple(shape)}")
    check_dtype("kv_cache", kv_cache)
    strides = _row_strides("kv_cache", kv_cache)
    block_size = shape[2]
    # Keys are gathered one by one through the block table, so any multiple of
    # 16 works; vLLM's hybrid alignment produces sizes such as 48 or 384.
    if block_size < 16 or block_size % 16:
        raise ValueError(f"kv_cache: block_size (dim 2) must be a multiple of 16 "
                         f"(16, 32, 48, ...), got {block_size}")
    if shape[4] not in SUPPORTED_HEAD_SIZES:
        raise ValueError(f"kv_cache: head_size {shape[4]} not supported; "
                         f"accepted: {list(SUPPORTED_HEAD_SIZES)}")
    return strides


def _check_same_device(*named: tuple[str, torch.Tensor | None]) -> None:
    """(name, tensor) pairs, the first tensor given, the others tensors or
    None: every tensor given is on the first one's device."""
    device = named[0][1].device
    for name, t in named[1:]:
        if t is not None and t.device != device:
            raise ValueError(f"{name}: on device {t.device}, expected {device} like the "
                             f"other tensors")


# ---------------------------------------------------------------------------
# KV-cache write
# ---------------------------------------------------------------------------


@triton.jit
def reshape_and_cache_kernel(
    key_ptr, value_ptr, kv_cache_ptr, slot_mapping_ptr,
    num_kv_heads,
    stride_kt, stride_kh, stride_vt, stride_vh,
    stride_cache_block, stride_cache_kv, stride_cache_slot, stride_cache_head,
    HEAD_SIZE: tl.constexpr, HEAD_PAD: tl.constexpr,
    BLOCK_SIZE: tl.constexpr, BLOCK_H: tl.constexpr,
):
    """Program (token, head group): copies BLOCK_H heads of one token's K and V."""
    token = tl.program_id(0).to(tl.int64)
    slot = tl.load(slot_mapping_ptr + token).to(tl.int64)
    if slot < 0:  # padding token (PAD_SLOT_ID): its cache slot is left untouched
        return
    block = slot // BLOCK_SIZE
    offset = slot % BLOCK_SIZE

    heads = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    dims = tl.arange(0, HEAD_PAD)
    mask = (heads < num_kv_heads)[:, None] & (dims < HEAD_SIZE)[None, :]

    k = tl.load(key_ptr + token * stride_kt + heads[:, None] * stride_kh + dims[None, :],
                mask=mask)
    v = tl.load(value_ptr + token * stride_vt + heads[:, None] * stride_vh + dims[None, :],
                mask=mask)
    dst = (kv_cache_ptr + block * stride_cache_block + offset * stride_cache_slot
           + heads[:, None] * stride_cache_head + dims[None, :])
    cache_dtype = kv_cache_ptr.dtype.element_ty
    tl.store(dst, k.to(cache_dtype), mask=mask)
    tl.store(dst + stride_cache_kv, v.to(cache_dtype), mask=mask)


_launch_cache_write = CachedLaunch(reshape_and_cache_kernel)


def reshape_and_cache(
    key: torch.Tensor,
    value: torch.Tensor,
    kv_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
) -> None:
    """Write new keys and values into the paged KV cache, in place.

    Args:
        key, value: [T, num_kv_heads, head_size], fp16/bf16/fp32; the last dim
            contiguous (token and head strides are free, e.g. views of a
            fused QKV output).
        kv_cache: [num_blocks, 2, block_size, num_kv_heads, head_size],
            fp16/bf16/fp32; K and V are cast to its dtype.
        slot_mapping: [>= T] int32/int64; entry t is the slot of token t
            (block_id * block_size + offset). Only the first T entries are
            read; negative slots (PAD_SLOT_ID = -1) are skipped. Slots are not
            range-checked (that would need a device sync).
    """
    if key.dim() != 3 or value.shape != key.shape:
        raise ValueError(f"key/value: expected equal shapes [T, num_kv_heads, head_size], "
                         f"got key {tuple(key.shape)}, value {tuple(value.shape)}")
    check_dtype("key", key)
    check_dtype("value", value)
    key_strides = _row_strides("key", key)
    value_strides = _row_strides("value", value)
    cache_strides = _check_kv_cache(kv_cache)
    num_tokens, num_kv_heads, head_size = key.shape
    if kv_cache.shape[3:] != (num_kv_heads, head_size):
        raise ValueError(f"kv_cache: (num_kv_heads, head_size) = {tuple(kv_cache.shape[3:])} "
                         f"does not match key's {(num_kv_heads, head_size)}")
    if slot_mapping.dim() != 1 or slot_mapping.shape[0] < num_tokens:
        raise ValueError(f"slot_mapping: expected 1-D with >= {num_tokens} entries (T), "
                         f"got shape {tuple(slot_mapping.shape)}")
    check_dtype("slot_mapping", slot_mapping, INDEX_DTYPES)
    _row_strides("slot_mapping", slot_mapping)
    _check_same_device(("key", key), ("value", value), ("kv_cache", kv_cache),
                       ("slot_mapping", slot_mapping))
    if num_tokens == 0:
        return

    config = _device_config("key", key)
    entry = config["cache_write"]
    head_pad = next_power_of_2(head_size)
    block_h = min(next_power_of_2(num_kv_heads), max(1, entry["elems"] // head_pad))
    grid = (num_tokens, cdiv(num_kv_heads, block_h))
    _launch_cache_write(
        grid,
        (key, value, kv_cache, slot_mapping),
        (num_kv_heads, *key_strides[:2], *value_strides[:2], *cache_strides[:4]),
        {"HEAD_SIZE": head_size, "HEAD_PAD": head_pad, "BLOCK_SIZE": kv_cache.shape[2],
         "BLOCK_H": block_h},
        _launch_options(config, entry),
    )


# ---------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------


@triton.jit
def _load_kv_tile(kv_cache_ptr, block_table_row, keys, key_valid, dims, dim_valid, cache_head,
                  stride_cache_block, stride_cache_kv, stride_cache_slot,
                  BLOCK_SIZE: tl.constexpr):
    """K transposed ([HEAD_PAD, TILE_N]) and V ([TILE_N, HEAD_PAD]) of one
    sequence's keys at positions ``keys``, gathered key by key through its
    block-table row (so any block size works); masked keys read zeros."""
    physical_block = tl.load(block_table_row + keys // BLOCK_SIZE, mask=key_valid,
                             other=0).to(tl.int64)
    slot_base = (physical_block * stride_cache_block
                 + (keys % BLOCK_SIZE) * stride_cache_slot + cache_head)
    k_t = tl.load(kv_cache_ptr + slot_base[None, :] + dims[:, None],
                  mask=key_valid[None, :] & dim_valid[:, None], other=0.0)
    v = tl.load(kv_cache_ptr + stride_cache_kv + slot_base[:, None] + dims[None, :],
                mask=key_valid[:, None] & dim_valid[None, :], other=0.0)
    return k_t, v


@triton.jit
def _online_softmax_step(m, l, acc, s, v, DOT_PRECISION: tl.constexpr):
    """Fold one tile of base-2 logits ``s`` (hidden keys at -inf) and its
    values ``v`` into the running max ``m``, sum ``l`` and weighted sum ``acc``."""
    m_new = tl.maximum(m, tl.max(s, axis=1))
    # A row that has seen nothing yet keeps m = -inf; subtracting 0 then
    # avoids (-inf) - (-inf) = nan.
    m_ref = tl.where(m_new == float("-inf"), 0.0, m_new)
    p = tl.exp2(s - m_ref[:, None])
    alpha = tl.exp2(m - m_ref)
    l = l * alpha + tl.sum(p, axis=1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
    return m_new, l, acc


@triton.jit
def _softcap(s, softcap):
    # softcap * tanh(s / softcap), with tanh from exp: tl.math.tanh is not
    # lowered on every backend. exp of a non-positive argument cannot overflow.
    x = s / softcap
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return softcap * tl.where(x < 0, -t, t)


@triton.jit
def paged_attention_unified_kernel(
    query_ptr, kv_cache_ptr, out_ptr,
    query_start_loc_ptr, seq_lens_ptr, block_table_ptr, sinks_ptr,
    num_seqs, scale, softcap, sliding_window,
    stride_qt, stride_qh, stride_ot, stride_oh,
    stride_cache_block, stride_cache_kv, stride_cache_slot, stride_cache_head,
    stride_block_table,
    Q_PER_KV: tl.constexpr, HEAD_SIZE: tl.constexpr, HEAD_PAD: tl.constexpr,
    BLOCK_SIZE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_Q: tl.constexpr,
    TILE_N: tl.constexpr, DOT_PRECISION: tl.constexpr,
    USE_SINKS: tl.constexpr, USE_SOFTCAP: tl.constexpr, USE_SLIDING_WINDOW: tl.constexpr,
):
    """Program (query block, KV head): BLOCK_Q query tokens of one sequence
    times the Q_PER_KV query heads of one KV head, as BLOCK_M tile rows.

    Query blocks are numbered over the whole batch: sequence ``i`` owns blocks
    ``query_start_loc[i] // BLOCK_Q + i`` onwards, at least as many as it
    needs, so the grid is sized from host-side T and B alone. Programs beyond
    a sequence's query tokens exit at once.
    """
    block_id = tl.program_id(0)
    kv_head = tl.program_id(1)

    # The sequence owning this block: the last i with first_block(i) <= block_id.
    lo = block_id * 0
    hi = lo + num_seqs
    while hi - lo > 1:
        mid = (lo + hi) // 2
        first_block = tl.load(query_start_loc_ptr + mid).to(tl.int32) // BLOCK_Q + mid
        lo = tl.where(first_block <= block_id, mid, lo)
        hi = tl.where(first_block <= block_id, hi, mid)
    seq = lo

    q_start = tl.load(query_start_loc_ptr + seq).to(tl.int32)
    q_len = tl.load(query_start_loc_ptr + seq + 1).to(tl.int32) - q_start
    q_block = block_id - (q_start // BLOCK_Q + seq)
    if q_block * BLOCK_Q >= q_len:
        return
    seq_len = tl.load(seq_lens_ptr + seq).to(tl.int32)
    context_len = seq_len - q_len  # keys already cached before this step's queries

    rows = tl.arange(0, BLOCK_M)
    q_token = q_block * BLOCK_Q + rows // Q_PER_KV  # index within the sequence's queries
    q_head = kv_head * Q_PER_KV + rows % Q_PER_KV
    row_valid = (rows < BLOCK_Q * Q_PER_KV) & (q_token < q_len)
    q_pos = context_len + q_token  # absolute position of each row's query

    dims = tl.arange(0, HEAD_PAD)
    dim_valid = dims < HEAD_SIZE
    q_rows = (q_start + q_token).to(tl.int64)
    q = tl.load(query_ptr + q_rows[:, None] * stride_qt + q_head[:, None] * stride_qh
                + dims[None, :],
                mask=row_valid[:, None] & dim_valid[None, :], other=0.0)

    if USE_SINKS:
        # The sink joins the softmax as one more logit without a value.
        m = tl.load(sinks_ptr + q_head, mask=row_valid, other=float("-inf")).to(tl.float32) * 1.4426950408889634
        l = tl.where(row_valid, 1.0, 0.0)
    else:
        m = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_PAD], tl.float32)

    last_q_pos = context_len + tl.minimum(q_len, (q_block + 1) * BLOCK_Q) - 1
    kv_end = last_q_pos + 1
    kv_begin = 0
    if USE_SLIDING_WINDOW:
        kv_begin = tl.maximum(context_len + q_block * BLOCK_Q - sliding_window + 1, 0)
    kv_begin = (kv_begin // TILE_N) * TILE_N

    cache_head = kv_head.to(tl.int64) * stride_cache_head
    block_table_row = block_table_ptr + seq.to(tl.int64) * stride_block_table
    for tile_start in range(kv_begin, kv_end, TILE_N):
        keys = tile_start + tl.arange(0, TILE_N)
        key_valid = keys < kv_end
        k_t, v = _load_kv_tile(kv_cache_ptr, block_table_row, keys, key_valid, dims, dim_valid,
                               cache_head, stride_cache_block, stride_cache_kv,
                               stride_cache_slot, BLOCK_SIZE)

        s = tl.dot(q, k_t, input_precision=DOT_PRECISION) * scale
        if USE_SOFTCAP:
            s = _softcap(s, softcap)
        s = s * 1.4426950408889634

        visible = key_valid[None, :] & (keys[None, :] <= q_pos[:, None])
        if USE_SLIDING_WINDOW:
            visible = visible & (keys[None, :] > q_pos[:, None] - sliding_window)
        s = tl.where(visible, s, float("-inf"))

        m, l, acc = _online_softmax_step(m, l, acc, s, v, DOT_PRECISION)

    l = tl.where(l == 0.0, 1.0, l)
    out = acc / l[:, None]
    tl.store(out_ptr + q_rows[:, None] * stride_ot + q_head[:, None] * stride_oh + dims[None, :],
             out.to(out_ptr.dtype.element_ty),
             mask=row_valid[:, None] & dim_valid[None, :])


_launch_unified = CachedLaunch(paged_attention_unified_kernel)


@triton.jit
def _split_partials(partials_ptr, seq, q_head, split, num_q_heads, num_splits,
                    HEAD_PAD: tl.constexpr):
    """Where the split path's fp32 partials buffer (acc [B, Hq, S, HEAD_PAD],
    then max [B, Hq, S], then sum [B, Hq, S], B being the grid's first
    dimension) holds (seq, q_head, split): the start of its acc row, its max
    and its sum. q_head or split may be a vector."""
    part = (seq.to(tl.int64) * num_q_heads + q_head) * num_splits + split
    num_parts = tl.num_programs(0).to(tl.int64) * num_q_heads * num_splits
    max_ptr = partials_ptr + num_parts * HEAD_PAD + part
    return partials_ptr + part * HEAD_PAD, max_ptr, max_ptr + num_parts


@triton.jit
def paged_attention_split_kv_kernel(
    query_ptr, kv_cache_ptr, partials_ptr,
    query_start_loc_ptr, seq_lens_ptr, block_table_ptr,
    num_splits, scale, softcap, sliding_window,
    stride_qt, stride_qh,
    stride_cache_block, stride_cache_kv, stride_cache_slot, stride_cache_head,
    stride_block_table,
    Q_PER_KV: tl.constexpr, HEAD_SIZE: tl.constexpr, HEAD_PAD: tl.constexpr,
    BLOCK_SIZE: tl.constexpr, BLOCK_M: tl.constexpr, TILE_N: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    USE_SOFTCAP: tl.constexpr, USE_SLIDING_WINDOW: tl.constexpr,
):
    """Program (sequence, KV head, split): the one query token of a decoding
    sequence, all Q_PER_KV query heads of the KV head as rows, against one
    part of the sequence's visible keys.

    Writes unnormalised partials, per query head and split, into one fp32
    buffer (laid out as _split_partials says):
    acc = sum_k exp2(s_k - max) * v_k,
    max = max (log2 units, -inf if the split saw no key),
    sum = sum_k exp2(s_k - max).
    """
    seq = tl.program_id(0)
    kv_head = tl.program_id(1)
    split = tl.program_id(2)

    q_start = tl.load(query_start_loc_ptr + seq).to(tl.int32)
    q_len = tl.load(query_start_loc_ptr + seq + 1).to(tl.int32) - q_start
    if q_len == 0:  # nothing to decode; the reduce kernel skips it too
        return
    seq_len = tl.load(seq_lens_ptr + seq).to(tl.int32)

    rows = tl.arange(0, BLOCK_M)
    row_valid = rows < Q_PER_KV
    q_head = kv_head * Q_PER_KV + rows
    dims = tl.arange(0, HEAD_PAD)
    dim_valid = dims < HEAD_SIZE
    q = tl.load(query_ptr + q_start.to(tl.int64) * stride_qt + q_head[:, None] * stride_qh
                + dims[None, :],
                mask=row_valid[:, None] & dim_valid[None, :], other=0.0)

    # Visible keys: [kv_begin, seq_len); the query sits at seq_len - 1.
    kv_begin = 0
    if USE_SLIDING_WINDOW:
        kv_begin = tl.maximum(seq_len - sliding_window, 0)
    split_len = tl.cdiv(tl.cdiv(seq_len - kv_begin, num_splits), TILE_N) * TILE_N
    split_begin = kv_begin + split * split_len
    split_end = tl.minimum(split_begin + split_len, seq_len)

    m = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_PAD], tl.float32)
    cache_head = kv_head.to(tl.int64) * stride_cache_head
    block_table_row = block_table_ptr + seq.to(tl.int64) * stride_block_table
    for tile_start in range(split_begin, split_end, TILE_N):
        keys = tile_start + tl.arange(0, TILE_N)
        key_valid = keys < split_end
        k_t, v = _load_kv_tile(kv_cache_ptr, block_table_row, keys, key_valid, dims, dim_valid,
                               cache_head, stride_cache_block, stride_cache_kv,
                               stride_cache_slot, BLOCK_SIZE)

        s = tl.dot(q, k_t, input_precision=DOT_PRECISION) * scale
        if USE_SOFTCAP:
            s = _softcap(s, softcap)
        s = tl.where(key_valid[None, :], s * 1.4426950408889634, float("-inf"))

        m, l, acc = _online_softmax_step(m, l, acc, s, v, DOT_PRECISION)

    acc_ptr, max_ptr, sum_ptr = _split_partials(partials_ptr, seq, q_head, split,
                                                tl.num_programs(1) * Q_PER_KV, num_splits,
                                                HEAD_PAD)
    tl.store(max_ptr, m, mask=row_valid)
    tl.store(sum_ptr, l, mask=row_valid)
    tl.store(acc_ptr[:, None] + dims[None, :], acc, mask=row_valid[:, None])


_launch_split_kv = CachedLaunch(paged_attention_split_kv_kernel)


@triton.jit
def paged_attention_reduce_kernel(
    out_ptr, partials_ptr, query_start_loc_ptr, sinks_ptr,
    num_splits, stride_ot, stride_oh,
    HEAD_SIZE: tl.constexpr, HEAD_PAD: tl.constexpr, SPLITS_PAD: tl.constexpr,
    USE_SINKS: tl.constexpr,
):
    """Program (sequence, query head): merges the split partials (laid out
    as the split kernel writes them) into out."""
    seq = tl.program_id(0)
    q_head = tl.program_id(1)
    q_start = tl.load(query_start_loc_ptr + seq).to(tl.int32)
    q_len = tl.load(query_start_loc_ptr + seq + 1).to(tl.int32) - q_start
    if q_len == 0:
        return

    splits = tl.arange(0, SPLITS_PAD)
    split_valid = splits < num_splits
    acc_ptr, max_ptr, sum_ptr = _split_partials(partials_ptr, seq, q_head, splits,
                                                tl.num_programs(1), num_splits, HEAD_PAD)
    m_split = tl.load(max_ptr, mask=split_valid, other=float("-inf"))
    l_split = tl.load(sum_ptr, mask=split_valid, other=0.0)
    m = tl.max(m_split, axis=0)
    if USE_SINKS:
        sink = tl.load(sinks_ptr + q_head).to(tl.float32) * 1.4426950408889634
        m = tl.maximum(m, sink)
    m_ref = tl.where(m == float("-inf"), 0.0, m)
    weight = tl.exp2(m_split - m_ref)
    denominator = tl.sum(l_split * weight, axis=0)
    if USE_SINKS:
        denominator += tl.exp2(sink - m_ref)
    denominator = tl.where(denominator == 0.0, 1.0, denominator)

    dims = tl.arange(0, HEAD_PAD)
    acc = tl.load(acc_ptr[:, None] + dims[None, :], mask=split_valid[:, None], other=0.0)
    out = tl.sum(acc * weight[:, None], axis=0) / denominator
    tl.store(out_ptr + q_start.to(tl.int64) * stride_ot + q_head * stride_oh + dims,
             out.to(out_ptr.dtype.element_ty), mask=dims < HEAD_SIZE)


_launch_split_kv_reduce = CachedLaunch(paged_attention_reduce_kernel)


def paged_attention(
    query: torch.Tensor,
    kv_cache: torch.Tensor,
    out: torch.Tensor,
    query_start_loc: torch.Tensor,
    seq_lens: torch.Tensor,
    block_table: torch.Tensor,
    *,
    scale: float,
    max_query_len: int,
    max_seq_len: int,
    sliding_window: int | None = None,
    softcap: float = 0.0,
    sinks: torch.Tensor | None = None,
) -> torch.Tensor:
    """Causal attention of new query tokens over a paged KV cache.

    Serves a mixed batch in one launch: prefills (q_len == seq_len), chunked
    prefills continuing a cached prefix (q_len < seq_len) and decodes
    (q_len == 1). Long-context pure-decode batches take a split-KV path (two
    launches). The path is chosen from the host-side ints, without a sync.

    Args:
        query: [T, num_q_heads, head_size], fp16/bf16/fp32, last dim contiguous.
        kv_cache: [num_blocks, 2, block_size, num_kv_heads, head_size], same
            dtype as query; the K/V of every query token already written.
        out: [T, num_q_heads, head_size], fp16/bf16/fp32; written in place for
            tokens < query_start_loc[B]. Rows of padding tokens beyond
            query_start_loc[B] are left untouched.
        query_start_loc: [B + 1] int32/int64, cumulative query lengths.
        seq_lens: [B] int32/int64, total length of each sequence including
            its new query tokens (the queries are its last q_len positions).
        block_table: [B, max_blocks] int32/int64, physical block of each
            logical block.
        scale: multiplier of q.k (usually head_size ** -0.5).
        max_query_len: an upper bound of the query lengths. 1 promises that
            no sequence has more than one query token: the decode paths it
            selects read one query per sequence.
        max_seq_len: max of seq_lens (an upper bound is fine); sizes the
            split-KV path.
        sliding_window: None for full causal attention, else W > 0: a query at
            position p sees keys k with p - W < k <= p.
        softcap: > 0 applies softcap * tanh(logit / softcap) after scaling.
        sinks: [num_q_heads] float32 (fp16/bf16 are read as fp32) logit per
            query head, counted in the softmax denominator only (gpt-oss
            attention sinks), or None.

    Returns:
        out.
    """
    if query.dim() != 3:
        raise ValueError(f"query: expected [T, num_q_heads, head_size], got {tuple(query.shape)}")
    check_dtype("query", query)
    query_strides = _row_strides("query", query)
    cache_strides = _check_kv_cache(kv_cache)
    num_tokens, num_q_heads, head_size = query.shape
    num_kv_heads = kv_cache.shape[3]
    if head_size not in SUPPORTED_HEAD_SIZES:
        raise ValueError(f"query: head_size {head_size} not supported; "
                         f"accepted: {list(SUPPORTED_HEAD_SIZES)}")
    if kv_cache.shape[4] != head_size:
        raise ValueError(f"kv_cache: head_size {kv_cache.shape[4]} differs from query's {head_size}")
    if kv_cache.dtype != query.dtype:
        raise ValueError(f"kv_cache: dtype {kv_cache.dtype} must equal query's dtype {query.dtype}")
    if num_q_heads % num_kv_heads != 0:
        raise ValueError(f"query: num_q_heads ({num_q_heads}) must be a multiple of "
                         f"kv_cache's num_kv_heads ({num_kv_heads})")
    if out.shape != query.shape:
        raise ValueError(f"out: shape {tuple(out.shape)} must equal query's {tuple(query.shape)}")
    check_dtype("out", out)
    out_strides = _row_strides("out", out)
    if query_start_loc.dim() != 1 or query_start_loc.shape[0] < 1:
        raise ValueError(f"query_start_loc: expected [B + 1], got {tuple(query_start_loc.shape)}")
    num_seqs = query_start_loc.shape[0] - 1
    check_dtype("query_start_loc", query_start_loc, INDEX_DTYPES)
    _row_strides("query_start_loc", query_start_loc)
    if seq_lens.shape != (num_seqs,):
        raise ValueError(f"seq_lens: expected [B] = [{num_seqs}] (B from query_start_loc), "
                         f"got {tuple(seq_lens.shape)}")
    check_dtype("seq_lens", seq_lens, INDEX_DTYPES)
    _row_strides("seq_lens", seq_lens)
    if block_table.dim() != 2 or block_table.shape[0] != num_seqs:
        raise ValueError(f"block_table: expected [B, max_blocks] with B = {num_seqs}, "
                         f"got {tuple(block_table.shape)}")
    check_dtype("block_table", block_table, INDEX_DTYPES)
    block_table_stride = _row_strides("block_table", block_table)[0]
    if sinks is not None:
        if sinks.shape != (num_q_heads,):
            raise ValueError(f"sinks: expected [num_q_heads] = [{num_q_heads}], "
                             f"got {tuple(sinks.shape)}")
        check_dtype("sinks", sinks)
        _row_strides("sinks", sinks)
    if sliding_window is not None and (isinstance(sliding_window, bool)
                                       or not isinstance(sliding_window, int)
                                       or sliding_window <= 0):
        raise ValueError(f"sliding_window: expected None or an int > 0, got {sliding_window!r}")
    if not softcap >= 0.0:
        raise ValueError(f"softcap: expected a float >= 0 (0 = off), got {softcap!r}")
    if max_query_len < 0 or max_seq_len < 0:
        raise ValueError(f"max_query_len/max_seq_len: expected ints >= 0, "
                         f"got {max_query_len}, {max_seq_len}")
    _check_same_device(("query", query), ("kv_cache", kv_cache), ("out", out),
                       ("query_start_loc", query_start_loc), ("seq_lens", seq_lens),
                       ("block_table", block_table), ("sinks", sinks))
    if num_tokens == 0 or num_seqs == 0 or max_query_len == 0:
        return out

    config = _device_config("query", query)
    q_per_kv = num_q_heads // num_kv_heads
    head_pad = next_power_of_2(head_size)
    block_size = kv_cache.shape[2]
    # fp32 models: full fp32 products (no TF32) so results match the reference.
    dot_precision = "ieee" if query.dtype == torch.float32 else "tf32"
    window = sliding_window or 0
    scale, softcap = float(scale), float(softcap)

    split_entry = config["split_kv"]
    if (max_query_len == 1 and max_seq_len >= split_entry["min_seq_len"]
            and num_seqs * num_kv_heads <= split_entry["max_programs"][head_pad]):
        visible = min(max_seq_len, window) if window else max_seq_len
        num_splits = min(split_entry["max_splits"],
                         cdiv(visible, split_entry["min_tokens_per_split"]),
                         max(cdiv(visible, split_entry["tokens_per_split"][head_pad]),
                             cdiv(split_entry["min_programs"], num_seqs * num_kv_heads)))
        # acc, max and sum of each (sequence, query head, split), in one buffer.
        partials = torch.empty(num_seqs * num_q_heads * num_splits * (head_pad + 2),
                               dtype=torch.float32, device=query.device)
        _launch_split_kv(
            (num_seqs, num_kv_heads, num_splits),
            (query, kv_cache, partials, query_start_loc, seq_lens, block_table),
            (num_splits, scale, softcap, window, *query_strides[:2], *cache_strides[:4],
             block_table_stride),
            {"Q_PER_KV": q_per_kv, "HEAD_SIZE": head_size, "HEAD_PAD": head_pad,
             "BLOCK_SIZE": block_size, "BLOCK_M": dot_block(q_per_kv),
             "TILE_N": split_entry["tile_n"][head_pad], "DOT_PRECISION": dot_precision,
             "USE_SOFTCAP": softcap > 0, "USE_SLIDING_WINDOW": window > 0},
            _launch_options(config, split_entry),
        )
        _launch_split_kv_reduce(
            (num_seqs, num_q_heads),
            (out, partials, query_start_loc, sinks),
            (num_splits, *out_strides[:2]),
            {"HEAD_SIZE": head_size, "HEAD_PAD": head_pad,
             "SPLITS_PAD": next_power_of_2(split_entry["max_splits"]),
             "USE_SINKS": sinks is not None},
            _launch_options(config, config["reduce"]),
        )
        return out

    entry = config["unified_decode"]
    if max_query_len * q_per_kv > entry["block_m"]:
        entry = config["unified_prefill"]
    block_m = max(entry["block_m"], next_power_of_2(q_per_kv))
    block_q = block_m // q_per_kv
    # Sequence i's first query block is query_start_loc[i] // block_q + i, so
    # T // block_q + B blocks cover every sequence (see the kernel docstring).
    grid = (num_tokens // block_q + num_seqs, num_kv_heads)
    _launch_unified(
        grid,
        (query, kv_cache, out, query_start_loc, seq_lens, block_table, sinks),
        (num_seqs, scale, softcap, window,
         *query_strides[:2], *out_strides[:2], *cache_strides[:4], block_table_stride),
        {"Q_PER_KV": q_per_kv, "HEAD_SIZE": head_size, "HEAD_PAD": head_pad,
         "BLOCK_SIZE": block_size, "BLOCK_M": block_m, "BLOCK_Q": block_q,
         "TILE_N": entry["tile_n"][head_pad], "DOT_PRECISION": dot_precision,
         "USE_SINKS": sinks is not None, "USE_SOFTCAP": softcap > 0,
         "USE_SLIDING_WINDOW": window > 0},
        _launch_options(config, entry),
    )
    return out


__all__ = [
    "LAUNCH_CONFIGS",
    "SUPPORTED_DTYPES",
    "SUPPORTED_HEAD_SIZES",
    "paged_attention",
    "reshape_and_cache",
]
