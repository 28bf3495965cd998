# SPDX-License-Identifier: Apache-2.0
"""Plain PyTorch references of every kernel family in ``vllm_xpu_hybrid.ops``.

Each family has its own self-contained section below. A reference is written
for clarity, not speed: explicit loops over sequences, explicit masks, and
float64 math, independently of how the kernels are organised. Tests and
benchmarks compare the Triton kernels against these functions.
"""

from __future__ import annotations

import torch

# ---------------------------------------------------------------------------
# Paged attention (ops/paged_attention.py)
#
# Cache layout: kv_cache [num_blocks, 2, block_size, num_kv_heads, head_size],
# index 0 = keys, 1 = values; slot s = block_id * block_size + offset.
# ---------------------------------------------------------------------------


def reshape_and_cache_reference(
    key: torch.Tensor,
    value: torch.Tensor,
    kv_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
) -> None:
    """Write key/value [T, Hkv, D] into kv_cache at slot_mapping[:T], in place.

    Negative slots are padding and leave the cache untouched. Values are cast
    to the cache dtype.
    """
    block_size = kv_cache.shape[2]
    for token in range(key.shape[0]):
        slot = int(slot_mapping[token])
        if slot < 0:
            continue
        block, offset = divmod(slot, block_size)
        kv_cache[block, 0, offset] = key[token].to(kv_cache.dtype)
        kv_cache[block, 1, offset] = value[token].to(kv_cache.dtype)


def paged_attention_reference(
    query: torch.Tensor,
    kv_cache: torch.Tensor,
    query_start_loc: torch.Tensor,
    seq_lens: torch.Tensor,
    block_table: torch.Tensor,
    *,
    scale: float,
    sliding_window: int | None = None,
    softcap: float = 0.0,
    sinks: torch.Tensor | None = None,
) -> torch.Tensor:
    """Causal attention of each sequence's new queries over its paged K/V.

    Args:
        query: [T, Hq, D]; tokens of sequence i are
            query[query_start_loc[i]:query_start_loc[i + 1]] and sit at the
            last q_len positions of the sequence (seq_lens[i] long).
        kv_cache: [num_blocks, 2, block_size, Hkv, D].
        query_start_loc: [B + 1]; seq_lens: [B]; block_table: [B, max_blocks].
        scale, sliding_window, softcap, sinks: as in ``paged_attention``.

    Returns:
        [T, Hq, D] float64; rows of tokens beyond query_start_loc[B] are zero.
    """
    num_tokens, num_q_heads, head_size = query.shape
    block_size = kv_cache.shape[2]
    num_kv_heads = kv_cache.shape[3]
    group = num_q_heads // num_kv_heads
    out = torch.zeros(num_tokens, num_q_heads, head_size, dtype=torch.float64,
                      device=query.device)

    for i in range(seq_lens.shape[0]):
        q_begin, q_end = int(query_start_loc[i]), int(query_start_loc[i + 1])
        q_len, seq_len = q_end - q_begin, int(seq_lens[i])
        if q_len == 0:
            continue
        # Gather this sequence's keys and values in logical order.
        positions = torch.arange(seq_len, device=query.device)
        blocks = block_table[i].long()[positions // block_size]
        offsets = positions % block_size
        keys = kv_cache[blocks, 0, offsets].double()      # [seq_len, Hkv, D]
        values = kv_cache[blocks, 1, offsets].double()
        keys = keys.repeat_interleave(group, dim=1)       # [seq_len, Hq, D]
        values = values.repeat_interleave(group, dim=1)

        q = query[q_begin:q_end].double()                 # [q_len, Hq, D]
        logits = torch.einsum("qhd,khd->hqk", q, keys) * scale
        if softcap > 0:
            logits = softcap * torch.tanh(logits / softcap)

        q_pos = torch.arange(seq_len - q_len, seq_len, device=query.device)
        visible = positions[None, :] <= q_pos[:, None]    # [q_len, seq_len]
        if sliding_window is not None:
            visible &= positions[None, :] > q_pos[:, None] - sliding_window
        logits = logits.masked_fill(~visible[None], float("-inf"))

        if sinks is not None:
            # One extra logit per head that takes part in the normalisation
            # but carries no value.
            sink = sinks.double()[:, None, None].expand(num_q_heads, q_len, 1)
            probs = torch.softmax(torch.cat([logits, sink], dim=-1), dim=-1)[..., :-1]
        else:
            probs = torch.softmax(logits, dim=-1)
        out[q_begin:q_end] = torch.einsum("hqk,khd->qhd", probs, values)
    return out
