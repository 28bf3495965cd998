# SPDX-License-Identifier: Apache-2.0
"""Plain PyTorch references of every kernel family in ``vllm_xpu_hybrid.ops``.

Each family has its own self-contained section below. A reference is written
for clarity, not speed: explicit loops over sequences, explicit masks, and
float64 math, independently of how the kernels are organised. Tests and
benchmarks compare the Triton kernels against these functions.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

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


# ---------------------------------------------------------------------------
# Mamba family: causal conv1d (ops/causal_conv1d.py), SSD (ops/ssd.py),
# selective state update (ops/selective_state_update.py), gated RMSNorm
# (ops/gated_rmsnorm.py).
#
# The slow, obvious formulations: per-token loops for the causal convolution
# and a sequential per-token recurrence for the SSD scan (never a chunked
# one), so that they check the kernels' chunking, masking and state
# bookkeeping independently. Results are cast to the kernels' output and
# state dtypes at the end. Conventions shared with the kernels:
#
# - state_indices[b] selects the state page of sequence/row b. A row whose
#   index is negative or equals pad_slot_id is padding: its state page is
#   neither read nor written, and its outputs are computed as if its state
#   were zero.
# - Conv states are [num_slots, dim, state_len] views (state_len = width - 1),
#   oldest input first.
# - SSM states are [num_slots, nheads, headdim, dstate].
# ---------------------------------------------------------------------------

_REF = torch.float64


def _is_padding(slot: int, pad_slot_id: int) -> bool:
    return slot < 0 or slot == pad_slot_id


def _scan_sequences(
    query_start_loc: torch.Tensor,
    states: torch.Tensor,
    state_indices: torch.Tensor,
    has_initial_state: torch.Tensor,
    pad_slot_id: int,
    step: Callable[[torch.Tensor, int], torch.Tensor],
) -> None:
    """The per-sequence state bookkeeping every recurrence here shares. For
    each packed sequence b: start from its page ``states[state_indices[b]]``
    in float64 when has_initial_state[b] and the slot is not padding, else
    from zeros; apply ``state = step(state, t)`` to each of its tokens t in
    order; write the final state back to the page unless the slot is
    padding."""
    qsl = query_start_loc.tolist()
    for seq in range(len(qsl) - 1):
        slot = int(state_indices[seq])
        padding = _is_padding(slot, pad_slot_id)
        state = torch.zeros(states.shape[1:], dtype=_REF)
        if not padding and bool(has_initial_state[seq]):
            state = states[slot].to(_REF).clone()
        for t in range(qsl[seq], qsl[seq + 1]):
            state = step(state, t)
        if not padding:
            states[slot] = state.to(states.dtype)


def _activate(y: torch.Tensor, activation: str | None) -> torch.Tensor:
    return F.silu(y) if activation in ("silu", "swish") else y


def causal_conv1d_varlen_reference(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    conv_states: torch.Tensor,
    query_start_loc: torch.Tensor,
    state_indices: torch.Tensor,
    has_initial_state: torch.Tensor,
    activation: str | None = None,
    pad_slot_id: int = -1,
) -> torch.Tensor:
    """Depthwise causal conv over packed sequences, one token at a time.

    x: [total_tokens, dim]; weight: [dim, width]; bias: [dim] or None;
    conv_states: [num_slots, dim, width - 1], updated in place with the last
    width - 1 inputs of each sequence. Returns out: [total_tokens, dim] in
    x.dtype.
    """
    dim = weight.shape[0]
    w = weight.to(_REF)
    b = bias.to(_REF) if bias is not None else torch.zeros(dim, dtype=_REF)
    out = torch.empty(x.shape, dtype=_REF)

    def step(window: torch.Tensor, t: int) -> torch.Tensor:
        taps = torch.cat([window, x[t].to(_REF)[:, None]], dim=1)
        out[t] = (taps * w).sum(dim=1) + b
        return taps[:, 1:]

    _scan_sequences(query_start_loc, conv_states, state_indices, has_initial_state, pad_slot_id,
                    step)
    return _activate(out, activation).to(x.dtype)


def causal_conv1d_update_reference(
    x: torch.Tensor,
    conv_states: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    state_indices: torch.Tensor,
    activation: str | None = None,
    pad_slot_id: int = -1,
) -> torch.Tensor:
    """One decode token per row: x: [batch, dim]; conv_states as above, the
    page of row b shifted left by one and x[b] appended. Returns [batch, dim]."""
    batch = x.shape[0]
    query_start_loc = torch.arange(batch + 1)
    has_initial_state = torch.ones(batch, dtype=torch.bool)
    return causal_conv1d_varlen_reference(
        x, weight, bias, conv_states, query_start_loc, state_indices,
        has_initial_state, activation, pad_slot_id,
    )


def _softplus_limit(
    dt: torch.Tensor,
    dt_bias: torch.Tensor | None,
    dt_softplus: bool,
    dt_limit: tuple[float, float],
) -> torch.Tensor:
    if dt_bias is not None:
        dt = dt + dt_bias.to(_REF)
    if dt_softplus:
        dt = F.softplus(dt)
    return dt.clamp(dt_limit[0], dt_limit[1])


def ssd_scan_reference(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    query_start_loc: torch.Tensor,
    ssm_states: torch.Tensor,
    state_indices: torch.Tensor,
    has_initial_state: torch.Tensor,
    *,
    D: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
    dt_limit: tuple[float, float] = (0.0, float("inf")),
    pad_slot_id: int = -1,
) -> torch.Tensor:
    """Mamba-2 selective scan over packed sequences, token by token.

    For each head h (group g = h // (nheads // ngroups)) and token t:
        dt'  = clamp(softplus(dt[t, h] + dt_bias[h]), *dt_limit)
        s    = exp(dt' * A[h]) * s + dt' * x[t, h][:, None] * B[t, g][None, :]
        y    = s @ C[t, g] + D[h] * x[t, h]

    x: [total_tokens, nheads, headdim]; dt: [total_tokens, nheads];
    A: [nheads]; B, C: [total_tokens, ngroups, dstate]; D: [nheads] or
    [nheads, headdim]; ssm_states: [num_slots, nheads, headdim, dstate],
    read when has_initial_state[b] and updated in place with the final state.
    Returns y: [total_tokens, nheads, headdim] in x.dtype.
    """
    _, nheads, headdim = x.shape
    ngroups = B.shape[1]
    heads_per_group = nheads // ngroups
    out = torch.empty(x.shape, dtype=_REF)
    dt_all = _softplus_limit(dt.to(_REF), dt_bias, dt_softplus, dt_limit)
    A64 = A.to(_REF)
    D64 = None
    if D is not None:
        D64 = D.to(_REF) if D.dim() == 2 else D.to(_REF)[:, None].expand(nheads, headdim)
    group_of_head = torch.arange(nheads) // heads_per_group

    def step(state: torch.Tensor, t: int) -> torch.Tensor:
        xt = x[t].to(_REF)
        Bt = B[t].to(_REF)[group_of_head]
        Ct = C[t].to(_REF)[group_of_head]
        dtt = dt_all[t]
        decay = torch.exp(dtt * A64)
        state = state * decay[:, None, None] + (
            (dtt[:, None] * xt)[:, :, None] * Bt[:, None, :]
        )
        yt = (state * Ct[:, None, :]).sum(dim=-1)
        if D64 is not None:
            yt = yt + D64 * xt
        out[t] = yt
        return state

    _scan_sequences(query_start_loc, ssm_states, state_indices, has_initial_state, pad_slot_id,
                    step)
    return out.to(x.dtype)


def selective_state_update_reference(
    ssm_states: torch.Tensor,
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    state_indices: torch.Tensor,
    *,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
    dt_limit: tuple[float, float] = (0.0, float("inf")),
    pad_slot_id: int = -1,
) -> torch.Tensor:
    """One decode step of the Mamba-2 recurrence per row.

    ssm_states: [num_slots, nheads, headdim, dstate] (updated in place);
    x: [batch, nheads, headdim]; dt: [batch, nheads] or [batch, nheads,
    headdim]; A: [nheads] or [nheads, headdim, dstate]; B, C: [batch, ngroups,
    dstate]; D, dt_bias: [nheads] or [nheads, headdim]; z: like x.
    y = (s @ C + D * x) * silu(z). Returns y: [batch, nheads, headdim].
    """
    batch, nheads, headdim = x.shape
    ngroups = B.shape[1]
    group_of_head = torch.arange(nheads) // (nheads // ngroups)
    dt64 = dt.to(_REF)
    if dt64.dim() == 2:
        dt64 = dt64[:, :, None].expand(batch, nheads, headdim)
    bias64 = None
    if dt_bias is not None:
        bias64 = dt_bias.to(_REF)
        if bias64.dim() == 1:
            bias64 = bias64[:, None].expand(nheads, headdim)
    dt64 = _softplus_limit(dt64, bias64, dt_softplus, dt_limit)
    A64 = A.to(_REF)
    if A64.dim() == 1:
        A64 = A64[:, None, None]
    out = torch.empty(x.shape, dtype=_REF)
    for row in range(batch):
        slot = int(state_indices[row])
        padding = _is_padding(slot, pad_slot_id)
        state = torch.zeros(ssm_states.shape[1:], dtype=_REF)
        if not padding:
            state = ssm_states[slot].to(_REF)
        xr = x[row].to(_REF)
        Br = B[row].to(_REF)[group_of_head]
        Cr = C[row].to(_REF)[group_of_head]
        dtr = dt64[row]
        state = state * torch.exp(dtr[:, :, None] * A64) + (
            (dtr * xr)[:, :, None] * Br[:, None, :]
        )
        y = (state * Cr[:, None, :]).sum(dim=-1)
        if D is not None:
            D64 = D.to(_REF)
            y = y + (D64 if D64.dim() == 2 else D64[:, None]) * xr
        if z is not None:
            y = y * F.silu(z[row].to(_REF))
        out[row] = y
        if not padding:
            ssm_states[slot] = state.to(ssm_states.dtype)
    return out.to(x.dtype)


def gated_rmsnorm_reference(
    x: torch.Tensor,
    z: torch.Tensor | None,
    weight: torch.Tensor,
    eps: float = 1e-6,
    group_size: int | None = None,
    norm_before_gate: bool = False,
) -> torch.Tensor:
    """RMSNorm over groups of group_size columns, gated by silu(z).

    x, z: [num_tokens, hidden]; weight: [hidden].
    norm_before_gate=False (Mamba-2): y = rmsnorm(x * silu(z)) * weight.
    norm_before_gate=True:            y = rmsnorm(x) * weight * silu(z).
    Returns y in x.dtype.
    """
    tokens, hidden = x.shape
    group_size = hidden if group_size is None else group_size
    h = x.to(_REF)
    gate = F.silu(z.to(_REF)) if z is not None else None
    if gate is not None and not norm_before_gate:
        h = h * gate
    grouped = h.view(tokens, hidden // group_size, group_size)
    rstd = torch.rsqrt(grouped.pow(2).mean(dim=-1, keepdim=True) + eps)
    y = (grouped * rstd).view(tokens, hidden) * weight.to(_REF)
    if gate is not None and norm_before_gate:
        y = y * gate
    return y.to(x.dtype)


# ---------------------------------------------------------------------------
# Mamba-1: selective scan (ops/selective_scan.py).
#
# The per-channel recurrence token by token, one sequence at a time; it
# knows nothing of the kernel's chunks. SSM states are [num_slots, dim,
# dstate] (one state row per channel); padding as in the Mamba family above.
# The Mamba-1 decode step is selective_state_update_reference on the views
# described in ops/selective_state_update.py.
# ---------------------------------------------------------------------------


def selective_scan_reference(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    query_start_loc: torch.Tensor,
    ssm_states: torch.Tensor,
    state_indices: torch.Tensor,
    has_initial_state: torch.Tensor,
    *,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
    pad_slot_id: int = -1,
) -> torch.Tensor:
    """Mamba-1 selective scan over packed sequences, token by token.

    For each channel d (group g = d // (dim // ngroups)) and token t:
        dt' = softplus(dt[t, d] + dt_bias[d])
        s[d] = exp(dt' * A[d]) * s[d] + dt' * x[t, d] * B[t, g]      s[d]: [dstate]
        y[t, d] = (s[d] . C[t, g] + D[d] * x[t, d]) * silu(z[t, d])

    x, dt, z: [total_tokens, dim]; A: [dim, dstate]; B, C: [total_tokens,
    ngroups, dstate]; D, dt_bias: [dim]; ssm_states: [num_slots, dim,
    dstate], read when has_initial_state[b] and updated in place with the
    final state. Returns y: [total_tokens, dim] in x.dtype.
    """
    dim = x.shape[1]
    ngroups = B.shape[1]
    group_of_channel = torch.arange(dim) // (dim // ngroups)
    dt_all = dt.to(_REF)
    if dt_bias is not None:
        dt_all = dt_all + dt_bias.to(_REF)
    if dt_softplus:
        dt_all = F.softplus(dt_all)
    A64 = A.to(_REF)
    out = torch.empty(x.shape, dtype=_REF)

    def step(state: torch.Tensor, t: int) -> torch.Tensor:
        xt = x[t].to(_REF)
        dtt = dt_all[t]
        Bt = B[t].to(_REF)[group_of_channel]
        Ct = C[t].to(_REF)[group_of_channel]
        state = torch.exp(dtt[:, None] * A64) * state + (dtt * xt)[:, None] * Bt
        yt = (state * Ct).sum(dim=-1)
        if D is not None:
            yt = yt + D.to(_REF) * xt
        if z is not None:
            yt = yt * F.silu(z[t].to(_REF))
        out[t] = yt
        return state

    _scan_sequences(query_start_loc, ssm_states, state_indices, has_initial_state, pad_slot_id,
                    step)
    return out.to(x.dtype)


# ---------------------------------------------------------------------------
# Lightning attention (ops/lightning_attention.py).
#
# The recurrence token by token, one sequence at a time; it knows nothing of
# the kernel's chunks. Per head h with decay rate slopes[h]:
#     S = exp(-slopes[h]) * S + k_t^T v_t,    o_t = q_t @ S
# States are [num_slots, nheads, key_dim, value_dim]; padding as in the
# Mamba family above (no state page read or written, zero state).
# ---------------------------------------------------------------------------


def lightning_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    slopes: torch.Tensor,
    states: torch.Tensor,
    query_start_loc: torch.Tensor,
    state_indices: torch.Tensor,
    has_initial_state: torch.Tensor,
    *,
    pad_slot_id: int = -1,
) -> torch.Tensor:
    """Lightning attention over packed sequences, token by token.

    q, k: [total_tokens, nheads, key_dim]; v: [total_tokens, nheads,
    value_dim]; slopes: [nheads]; states: [num_slots, nheads, key_dim,
    value_dim], read when has_initial_state[b] and updated in place with the
    final state. A decode step is a batch of one-token sequences with
    has_initial_state all true. Returns o: [total_tokens, nheads, value_dim]
    in q.dtype.
    """
    decay = torch.exp(-slopes.to(_REF))[:, None, None]
    out = torch.empty(v.shape, dtype=_REF)

    def step(state: torch.Tensor, t: int) -> torch.Tensor:
        kt, vt = k[t].to(_REF), v[t].to(_REF)
        state = decay * state + kt[:, :, None] * vt[:, None, :]
        out[t] = (q[t].to(_REF)[:, :, None] * state).sum(dim=1)
        return state

    _scan_sequences(query_start_loc, states, state_indices, has_initial_state, pad_slot_id, step)
    return out.to(q.dtype)


# ---------------------------------------------------------------------------
# Gated delta rule (ops/gated_delta_rule.py): Gated DeltaNet layers
# (Qwen3-Next, Qwen3.5).
#
# A sequential per-token recurrence (never a chunked one) in float64, so it
# checks the kernels' chunked form, masking and state bookkeeping
# independently. States are [num_slots, num_v_heads, head_v_dim, head_k_dim]
# (vLLM's layout); state_indices and padding as in the Mamba family above
# (_is_padding). Value head h reads key head h // (num_v_heads //
# num_k_heads).
# ---------------------------------------------------------------------------


def gdn_gating_reference(
    a: torch.Tensor,
    b: torch.Tensor,
    A_log: torch.Tensor,
    dt_bias: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """g = -exp(A_log) * softplus(a + dt_bias), beta = sigmoid(b).

    a, b: [tokens, HV]; A_log, dt_bias: [HV]. Returns (g, beta) in fp32.
    """
    g = -torch.exp(A_log.to(_REF)) * F.softplus(a.to(_REF) + dt_bias.to(_REF))
    return g.float(), torch.sigmoid(b.to(_REF)).float()


def gated_delta_rule_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    query_start_loc: torch.Tensor,
    states: torch.Tensor,
    state_indices: torch.Tensor,
    has_initial_state: torch.Tensor,
    *,
    scale: float | None = None,
    qk_l2norm: bool = False,
    pad_slot_id: int = -1,
) -> torch.Tensor:
    """Gated delta rule over packed sequences, token by token.

    Per value head h and token t, with S: [V, K]:
        S = exp(g[t, h]) * S
        S = S + (beta[t, h] * (v[t, h] - S @ k[t])) (outer) k[t]
        o = scale * S @ q[t]
    q, k: [tokens, H, K] (L2-normalised first, eps 1e-6, when qk_l2norm);
    v: [tokens, HV, V]; g, beta: [tokens, HV]; states: [num_slots, HV, V, K],
    read when has_initial_state[b] and updated in place with the final state.
    Returns o: [tokens, HV, V] in q.dtype.
    """
    _, num_k_heads, head_k_dim = q.shape
    num_v_heads = v.shape[1]
    scale = head_k_dim**-0.5 if scale is None else scale
    key_head = torch.arange(num_v_heads) // (num_v_heads // num_k_heads)
    q64, k64 = q.to(_REF)[:, key_head], k.to(_REF)[:, key_head]    # [tokens, HV, K]
    if qk_l2norm:
        q64 = q64 * torch.rsqrt((q64 * q64).sum(-1, keepdim=True) + 1e-6)
        k64 = k64 * torch.rsqrt((k64 * k64).sum(-1, keepdim=True) + 1e-6)
    v64, g64, beta64 = v.to(_REF), g.to(_REF), beta.to(_REF)
    out = torch.empty(v.shape, dtype=_REF)

    def step(state: torch.Tensor, t: int) -> torch.Tensor:
        state = state * torch.exp(g64[t])[:, None, None]
        predicted = torch.einsum("hvk,hk->hv", state, k64[t])
        delta = beta64[t][:, None] * (v64[t] - predicted)
        state = state + delta[:, :, None] * k64[t][:, None, :]
        out[t] = scale * torch.einsum("hvk,hk->hv", state, q64[t])
        return state

    _scan_sequences(query_start_loc, states, state_indices, has_initial_state, pad_slot_id, step)
    return out.to(q.dtype)


def gated_delta_rule_decode_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    states: torch.Tensor,
    state_indices: torch.Tensor,
    *,
    scale: float | None = None,
    qk_l2norm: bool = False,
    pad_slot_id: int = -1,
) -> torch.Tensor:
    """One decode token per row (row b on states[state_indices[b]]), as
    above. Returns o: [batch, HV, V]."""
    batch = q.shape[0]
    return gated_delta_rule_reference(
        q, k, v, g, beta, torch.arange(batch + 1), states, state_indices,
        torch.ones(batch, dtype=torch.bool), scale=scale, qk_l2norm=qk_l2norm,
        pad_slot_id=pad_slot_id,
    )
