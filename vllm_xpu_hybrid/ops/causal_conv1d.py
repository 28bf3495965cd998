# SPDX-License-Identifier: Apache-2.0
"""Depthwise causal conv1d with per-sequence conv states (Mamba-1/2,
ShortConv, GDN).

Layouts:

- Tokens are ``[total_tokens, dim]``: the layer's in-projection output as it
  is (a column slice of ``projected_states``, so rows may be strided), no
  transpose. Sequences are packed back to back; ``query_start_loc [B + 1]``
  gives their token offsets.
- ``weight`` is ``[dim, width]`` (vLLM's ``conv1d.weight`` viewed without its
  middle axis), ``bias`` is ``[dim]`` or None. Widths 2, 3 and 4.
- ``conv_states`` is a ``[num_slots, dim, state_len]`` view with
  ``state_len = width - 1``, oldest input first, any strides. This is the view
  vLLM 0.32's layers hand their conv ops ("conv_state must be (..., dim,
  width-1)", mamba_mixer2.py:741-748; short_conv.py:234-238). vLLM stores the
  page as ``(state_len, dim)`` by default ("SD", ``get_conv_state_layout()``
  in mamba_utils.py; ``VLLM_SSM_CONV_STATE_LAYOUT=DS`` selects
  ``(dim, state_len)``) and the layer transposes it, so with the default
  layout ``dim`` is the stride-1 axis and a program's loads along ``dim`` are
  contiguous. Both layouts work: the kernels take all strides, and
  ``num_slots`` may have any stride (vLLM's state pages interleave the conv
  and SSM states of a block). With speculative decoding vLLM allocates
  ``width - 1 + num_spec`` entries; that layout is not supported here.
- ``state_indices [B]`` selects each sequence's state page. A row whose index
  is negative or equals ``pad_slot_id`` is padding: its page is neither read
  nor written, and its outputs are computed as if its state were zero. vLLM
  0.32 pads decode rows with ``NULL_BLOCK_ID = 0`` (mamba_attn.py:659), so
  its layers pass ``pad_slot_id=0``; the default -1 is ``PAD_SLOT_ID``.

Kernels:

- ``_causal_conv1d_varlen_kernel``: prefill. A program owns ``BLOCK_T``
  consecutive packed tokens x ``BLOCK_D`` channels and walks its tokens in
  order, keeping the last ``width - 1`` inputs in registers, so each input
  is loaded once. The tokens may straddle sequences: the program finds the
  sequence of its first token by a binary search over ``query_start_loc``
  (no host-side metadata, no device->host sync), then takes one sequence
  segment at a time. Taps before a sequence's first token come from its
  initial state.
- ``_conv_state_store_kernel``: prefill, afterwards. A program owns one
  sequence x ``BLOCK_D`` channels and writes the last ``state_len`` inputs
  (from x, or shifted from the old state when the sequence is shorter); for
  prefix caching, launched once more first to write the state at a
  checkpoint inside the sequence to another page. It is
  a separate launch because the conv kernel's programs read initial states
  that this one overwrites: stream order is the only cross-program ordering
  that is portable.
- ``_causal_conv1d_update_kernel``: decode, one token per row; reads and
  writes its own row's page only, so it updates in place in one launch.

All arithmetic is fp32; outputs are cast to ``out``'s dtype, states to the
state dtype. This module imports only torch and triton.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from vllm_xpu_hybrid.ops.checks import (
    FLAG_DTYPES,
    INDEX_DTYPES,
    SUPPORTED_DTYPES,
    check_checkpoints,
    check_dtype,
    check_vector,
    launch_config,
)
from vllm_xpu_hybrid.ops.launch import CachedLaunch, cdiv, next_power_of_2

SUPPORTED_WIDTHS = (2, 3, 4)
_ACTIVATIONS = (None, "silu", "swish")

# Launch configurations per device kind ("cuda", "xpu", "cpu" = Triton's
# interpreter, where fewer, larger programs run faster).
#   varlen: BLOCK_T consecutive tokens x BLOCK_D channels per prefill program.
#   state_store: BLOCK_D channels of one sequence's final state.
#   update: BLOCK_D channels of one decode row.
#   compile_options: extra backend options passed to every launch.
# "cuda": varlen and update from sweeps on the H100 through the bench's cases
# (Triton 3.6; four channels per thread did best throughout, docs/benchmarks.md).
# "xpu": builds for PVC at 128 GRF without spills (the Intel compile gate,
# python -m vllm_xpu_hybrid.intel_compile, table in docs/intel-compile.md);
# never run on an Intel GPU: UNVERIFIED.
LAUNCH_CONFIGS: dict[str, dict[str, dict]] = {
    "cuda": {
        "varlen": {"BLOCK_T": 32, "BLOCK_D": 256, "num_warps": 2, "num_stages": 1},
        "state_store": {"BLOCK_D": 128, "num_warps": 4, "num_stages": 1},
        "update": {"BLOCK_D": 128, "num_warps": 1, "num_stages": 1},
        "compile_options": {},
    },
    # UNVERIFIED: no Intel GPU has run these.
    "xpu": {
        "varlen": {"BLOCK_T": 32, "BLOCK_D": 256, "num_warps": 4, "num_stages": 1},
        "state_store": {"BLOCK_D": 128, "num_warps": 8, "num_stages": 1},
        "update": {"BLOCK_D": 256, "num_warps": 4, "num_stages": 1},
        "compile_options": {},
    },
    "cpu": {
        "varlen": {"BLOCK_T": 256, "BLOCK_D": 1024, "num_warps": 1, "num_stages": 1},
        "state_store": {"BLOCK_D": 256, "num_warps": 1, "num_stages": 1},
        "update": {"BLOCK_D": 256, "num_warps": 1, "num_stages": 1},
        "compile_options": {},
    },
}


@triton.jit
def _silu(y):
    return y * tl.sigmoid(y)


@triton.jit
def _conv_weights(w_ptr, bias_ptr, chan, chan_ok, stride_w_d, stride_w_k,
                  WIDTH: tl.constexpr, HAS_BIAS: tl.constexpr):
    """fp32 [BLOCK_D] weights of the current input and of the inputs 1, 2, 3
    tokens back (zero beyond the width), and the bias (zero without one)."""
    w_row = w_ptr + chan * stride_w_d
    w_cur = tl.load(w_row + (WIDTH - 1) * stride_w_k, mask=chan_ok, other=0.0).to(tl.float32)
    w_prev1 = tl.load(w_row + (WIDTH - 2) * stride_w_k, mask=chan_ok, other=0.0).to(tl.float32)
    w_prev2 = tl.zeros_like(w_cur)
    w_prev3 = tl.zeros_like(w_cur)
    if WIDTH >= 3:
        w_prev2 = tl.load(w_row + (WIDTH - 3) * stride_w_k, mask=chan_ok, other=0.0).to(tl.float32)
    if WIDTH >= 4:
        w_prev3 = tl.load(w_row + (WIDTH - 4) * stride_w_k, mask=chan_ok, other=0.0).to(tl.float32)
    bias = tl.zeros_like(w_cur)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + chan, mask=chan_ok, other=0.0).to(tl.float32)
    return w_cur, w_prev1, w_prev2, w_prev3, bias


@triton.jit
def _conv_output(cur, prev1, prev2, prev3, w_cur, w_prev1, w_prev2, w_prev3, bias,
                 WIDTH: tl.constexpr, SILU: tl.constexpr):
    """fp32 conv output from the current input and those 1, 2, 3 tokens back."""
    acc = bias + cur * w_cur + prev1 * w_prev1
    if WIDTH >= 3:
        acc += prev2 * w_prev2
    if WIDTH >= 4:
        acc += prev3 * w_prev3
    if SILU:
        acc = _silu(acc)
    return acc


@triton.jit
def _sequence_of(qsl_ptr, tok, num_seqs, search_steps):
    """Index of the sequence holding token tok: the largest b with
    query_start_loc[b] <= tok (so empty sequences are skipped)."""
    lo = tl.full([], 0, tl.int32)
    hi = tl.full([], 0, tl.int32) + num_seqs
    for _ in range(search_steps):
        mid = (lo + hi) // 2
        if tl.load(qsl_ptr + mid) <= tok:
            lo = mid
        else:
            hi = mid
    return lo


@triton.jit
def _initial_state(slot_ptr, has_init_ptr, seq, dim, pad_slot_id):
    """Sequence seq's state page and the channel bound of its initial state:
    dim when it has one, 0 (nothing read) otherwise."""
    slot = tl.load(slot_ptr + seq).to(tl.int64)
    use_state = (tl.load(has_init_ptr + seq) != 0) & (slot >= 0) & (slot != pad_slot_id)
    return slot, tl.where(use_state, dim, 0)


@triton.jit
def _conv_input(x_ptr, states_ptr, src, seq_start, slot, state_limit, chan, dim,
                stride_x_t, stride_x_d, stride_s_slot, stride_s_d, stride_s_k,
                WIDTH: tl.constexpr):
    """fp32 [BLOCK_D] conv input at token src of the sequence starting at
    seq_start: x[src], or before the start the initial state's entry
    (WIDTH - 1) + (src - seq_start), counted from its oldest, for channels
    below state_limit (zero elsewhere)."""
    if src >= seq_start:
        v = tl.load(x_ptr + src.to(tl.int64) * stride_x_t + chan * stride_x_d,
                    mask=chan < dim, other=0.0).to(tl.float32)
    else:
        v = tl.load(states_ptr + slot * stride_s_slot + chan * stride_s_d
                    + ((WIDTH - 1) + (src - seq_start)) * stride_s_k,
                    mask=chan < state_limit, other=0.0).to(tl.float32)
    return v


@triton.jit
def _causal_conv1d_varlen_kernel(
    x_ptr, w_ptr, bias_ptr, states_ptr, qsl_ptr, slot_ptr, has_init_ptr, out_ptr,
    total_tokens, dim, num_seqs, search_steps, pad_slot_id,
    stride_x_t, stride_x_d,
    stride_w_d, stride_w_k,
    stride_s_slot, stride_s_d, stride_s_k,
    stride_o_t, stride_o_d,
    WIDTH: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SILU: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    tok0 = tl.program_id(0) * BLOCK_T
    chan = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    chan_ok = chan < dim
    w_cur, w_prev1, w_prev2, w_prev3, bias = _conv_weights(
        w_ptr, bias_ptr, chan, chan_ok, stride_w_d, stride_w_k, WIDTH, HAS_BIAS)

    # The tile's tokens, one sequence segment at a time (a tile may begin
    # inside a sequence and hold several; empty ones give empty segments).
    # Within a segment the inputs 1, 2, 3 tokens back slide along with the
    # token; at its start they come from x or the initial state.
    tok = tok0
    tile_end = tl.minimum(tok0 + BLOCK_T, total_tokens)
    seq = _sequence_of(qsl_ptr, tok0, num_seqs, search_steps)
    while tok < tile_end:
        seq_start = tl.load(qsl_ptr + seq)
        segment_end = tl.minimum(tl.load(qsl_ptr + seq + 1), tile_end)
        slot, state_limit = _initial_state(slot_ptr, has_init_ptr, seq, dim, pad_slot_id)
        prev1 = _conv_input(x_ptr, states_ptr, tok - 1, seq_start, slot, state_limit, chan, dim,
                            stride_x_t, stride_x_d, stride_s_slot, stride_s_d, stride_s_k, WIDTH)
        prev2 = tl.zeros([BLOCK_D], dtype=tl.float32)
        prev3 = tl.zeros([BLOCK_D], dtype=tl.float32)
        if WIDTH >= 3:
            prev2 = _conv_input(x_ptr, states_ptr, tok - 2, seq_start, slot, state_limit, chan,
                                dim, stride_x_t, stride_x_d, stride_s_slot, stride_s_d,
                                stride_s_k, WIDTH)
        if WIDTH >= 4:
            prev3 = _conv_input(x_ptr, states_ptr, tok - 3, seq_start, slot, state_limit, chan,
                                dim, stride_x_t, stride_x_d, stride_s_slot, stride_s_d,
                                stride_s_k, WIDTH)
        x_row = x_ptr + tok.to(tl.int64) * stride_x_t + chan * stride_x_d
        out_row = out_ptr + tok.to(tl.int64) * stride_o_t + chan * stride_o_d
        for _ in range(tok, segment_end):
            cur = tl.load(x_row, mask=chan_ok, other=0.0).to(tl.float32)
            acc = _conv_output(cur, prev1, prev2, prev3, w_cur, w_prev1, w_prev2, w_prev3, bias,
                               WIDTH, SILU)
            tl.store(out_row, acc.to(out_ptr.dtype.element_ty), mask=chan_ok)
            prev3 = prev2
            prev2 = prev1
            prev1 = cur
            x_row += stride_x_t
            out_row += stride_o_t
        tok = segment_end
        seq += 1


@triton.jit
def _conv_state_store_kernel(
    x_ptr, states_ptr, qsl_ptr, read_slot_ptr, write_slot_ptr, has_init_ptr, lengths_ptr,
    dim, pad_slot_id,
    stride_x_t, stride_x_d,
    stride_s_slot, stride_s_d, stride_s_k,
    STATE_LEN: tl.constexpr,
    STATE_POW2: tl.constexpr,
    PARTIAL: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    seq = tl.program_id(0)
    write_slot = tl.load(write_slot_ptr + seq).to(tl.int64)
    if (write_slot >= 0) & (write_slot != pad_slot_id):
        chan = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
        chan_ok = chan < dim
        start = tl.load(qsl_ptr + seq)
        if PARTIAL:
            end = start + tl.load(lengths_ptr + seq)
        else:
            end = tl.load(qsl_ptr + seq + 1)
        read_slot = tl.load(read_slot_ptr + seq).to(tl.int64)
        has_init = ((tl.load(has_init_ptr + seq) != 0) & (read_slot >= 0)
                    & (read_slot != pad_slot_id))
        pos = tl.arange(0, STATE_POW2)
        pos_ok = pos < STATE_LEN
        src = end - STATE_LEN + pos
        in_seq = src >= start
        from_x = tl.load(
            x_ptr + src.to(tl.int64)[:, None] * stride_x_t + chan[None, :] * stride_x_d,
            mask=(pos_ok & in_seq)[:, None] & chan_ok[None, :], other=0.0,
        ).to(tl.float32)
        # Fewer inputs than the state keeps the newest old entries:
        # new[pos] = old[pos + length].
        from_state = tl.zeros([STATE_POW2, BLOCK_D], dtype=tl.float32)
        if has_init:
            from_state = tl.load(
                states_ptr + read_slot * stride_s_slot + chan[None, :] * stride_s_d
                + (pos + (end - start))[:, None] * stride_s_k,
                mask=(pos_ok & ~in_seq)[:, None] & chan_ok[None, :], other=0.0,
            ).to(tl.float32)
        tl.store(
            states_ptr + write_slot * stride_s_slot + chan[None, :] * stride_s_d
            + pos[:, None] * stride_s_k,
            (from_x + from_state).to(states_ptr.dtype.element_ty),
            mask=pos_ok[:, None] & chan_ok[None, :],
        )


@triton.jit
def _causal_conv1d_update_kernel(
    x_ptr, w_ptr, bias_ptr, states_ptr, slot_ptr, out_ptr,
    dim, pad_slot_id,
    stride_x_b, stride_x_d,
    stride_w_d, stride_w_k,
    stride_s_slot, stride_s_d, stride_s_k,
    stride_o_b, stride_o_d,
    WIDTH: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SILU: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    row = tl.program_id(0)
    chan = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    chan_ok = chan < dim
    slot = tl.load(slot_ptr + row).to(tl.int64)
    # A padding row neither reads nor writes its page: no channel is below 0.
    page_ok = chan < tl.where((slot >= 0) & (slot != pad_slot_id), dim, 0)
    page = states_ptr + slot * stride_s_slot + chan * stride_s_d
    w_cur, w_prev1, w_prev2, w_prev3, bias = _conv_weights(
        w_ptr, bias_ptr, chan, chan_ok, stride_w_d, stride_w_k, WIDTH, HAS_BIAS)

    # The page holds the inputs 1, 2, 3 tokens back at entries WIDTH - 2,
    # WIDTH - 3, WIDTH - 4 (oldest first). All loads come before the stores
    # that shift them one entry older and append x.
    x = tl.load(x_ptr + row * stride_x_b + chan * stride_x_d, mask=chan_ok, other=0.0)
    prev1 = tl.load(page + (WIDTH - 2) * stride_s_k, mask=page_ok, other=0.0)
    prev2 = tl.zeros_like(prev1)
    prev3 = tl.zeros_like(prev1)
    if WIDTH >= 3:
        prev2 = tl.load(page + (WIDTH - 3) * stride_s_k, mask=page_ok, other=0.0)
    if WIDTH >= 4:
        prev3 = tl.load(page + (WIDTH - 4) * stride_s_k, mask=page_ok, other=0.0)
    tl.store(page + (WIDTH - 2) * stride_s_k, x.to(states_ptr.dtype.element_ty), mask=page_ok)
    if WIDTH >= 3:
        tl.store(page + (WIDTH - 3) * stride_s_k, prev1, mask=page_ok)
    if WIDTH >= 4:
        tl.store(page + (WIDTH - 4) * stride_s_k, prev2, mask=page_ok)
    acc = _conv_output(x.to(tl.float32), prev1.to(tl.float32), prev2.to(tl.float32),
                       prev3.to(tl.float32), w_cur, w_prev1, w_prev2, w_prev3, bias, WIDTH, SILU)
    tl.store(out_ptr + row * stride_o_b + chan * stride_o_d, acc.to(out_ptr.dtype.element_ty),
             mask=chan_ok)


_launch_conv1d_update = CachedLaunch(_causal_conv1d_update_kernel)


def _check_common(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    conv_states: torch.Tensor,
    activation: str | None,
    out: torch.Tensor | None,
) -> dict:
    """Checks shared by both launchers; x is [rows, dim]. Returns x's launch
    configuration."""
    config = launch_config(LAUNCH_CONFIGS, "x", x)
    for name, t in (("x", x), ("weight", weight), ("conv_states", conv_states)):
        check_dtype(name, t)
    if x.dim() != 2:
        raise ValueError(f"x: expected 2 dims, got shape {tuple(x.shape)}")
    dim = x.shape[1]
    if weight.dim() != 2 or weight.shape[0] != dim or weight.shape[1] not in SUPPORTED_WIDTHS:
        raise ValueError(
            f"weight: expected [dim={dim}, width] with width in {SUPPORTED_WIDTHS}, "
            f"got shape {tuple(weight.shape)}"
        )
    width = weight.shape[1]
    if bias is not None:
        check_vector("bias", bias, dim, SUPPORTED_DTYPES)
    if conv_states.dim() != 3 or conv_states.shape[1:] != (dim, width - 1):
        raise ValueError(
            f"conv_states: expected [num_slots, dim={dim}, width - 1={width - 1}] "
            f"(vLLM's (dim, state_len) view), got shape {tuple(conv_states.shape)}"
        )
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation: {activation!r} unsupported; accepted: {_ACTIVATIONS}")
    if out is not None and (out.shape != x.shape or out.dtype not in SUPPORTED_DTYPES):
        raise ValueError(
            f"out: expected shape {tuple(x.shape)} and dtype in {SUPPORTED_DTYPES}, "
            f"got {tuple(out.shape)} {out.dtype}"
        )
    return config


def causal_conv1d_varlen(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    conv_states: torch.Tensor,
    query_start_loc: torch.Tensor,
    state_indices: torch.Tensor,
    has_initial_state: torch.Tensor,
    activation: str | None = None,
    out: torch.Tensor | None = None,
    pad_slot_id: int = -1,
    checkpoint_offsets: torch.Tensor | None = None,
    checkpoint_state_indices: torch.Tensor | None = None,
) -> torch.Tensor:
    """Prefill causal conv over packed sequences, carrying conv states.

    x: [total_tokens, dim] (rows may be strided); weight: [dim, width],
    width in (2, 3, 4); bias: [dim] or None;
    conv_states: [num_slots, dim, width - 1], any strides;
    query_start_loc: [B + 1] int32/int64 token offsets;
    state_indices: [B]; has_initial_state: [B] bool or int32; all three
    contiguous.
    Sequence b starts from conv_states[state_indices[b]] when
    has_initial_state[b], else from zeros; its last width - 1 inputs (taken
    from the old state too when it is shorter) are written back there.
    activation: None or "silu" ("swish" is accepted as silu).
    out: optional [total_tokens, dim]; must not alias x.
    checkpoint_offsets, checkpoint_state_indices: optional [B] int32/int64,
    both or neither (prefix caching, vLLM's ``checkpoint_meta``): the conv
    state after the first checkpoint_offsets[b] tokens of sequence b is also
    written to conv_states[checkpoint_state_indices[b]]; rows whose index is
    padding write none.
    Returns out (x.dtype unless given).
    """
    cfg = _check_common(x, weight, bias, conv_states, activation, out)
    if state_indices.dim() != 1:
        raise ValueError(f"state_indices: expected shape [B], got {tuple(state_indices.shape)}")
    num_seqs = state_indices.shape[0]
    check_vector("state_indices", state_indices, num_seqs, INDEX_DTYPES)
    check_vector("query_start_loc", query_start_loc, num_seqs + 1, INDEX_DTYPES)
    check_vector("has_initial_state", has_initial_state, num_seqs, FLAG_DTYPES)
    check_checkpoints("checkpoint_offsets", checkpoint_offsets, checkpoint_state_indices, num_seqs)
    if out is None:
        out = torch.empty_like(x)
    elif out.data_ptr() == x.data_ptr():
        raise ValueError("out: must not alias x (neighbouring tokens read x after out is written)")
    total_tokens, dim = x.shape
    width = weight.shape[1]
    if total_tokens == 0 or num_seqs == 0:
        return out
    conv_cfg = dict(cfg["varlen"])
    block_t, block_d = conv_cfg.pop("BLOCK_T"), conv_cfg.pop("BLOCK_D")
    grid = (cdiv(total_tokens, block_t), cdiv(dim, block_d))
    _causal_conv1d_varlen_kernel[grid](
        x, weight, bias, conv_states, query_start_loc, state_indices, has_initial_state, out,
        total_tokens, dim, num_seqs, max(num_seqs - 1, 0).bit_length(), pad_slot_id,
        x.stride(0), x.stride(1),
        weight.stride(0), weight.stride(1),
        conv_states.stride(0), conv_states.stride(1), conv_states.stride(2),
        out.stride(0), out.stride(1),
        WIDTH=width, HAS_BIAS=bias is not None, SILU=activation is not None,
        BLOCK_T=block_t, BLOCK_D=block_d, **conv_cfg, **cfg["compile_options"],
    )
    store_cfg = dict(cfg["state_store"])
    block_d = store_cfg.pop("BLOCK_D")

    def store_states(write_slots: torch.Tensor, lengths: torch.Tensor | None) -> None:
        _conv_state_store_kernel[(num_seqs, cdiv(dim, block_d))](
            x, conv_states, query_start_loc, state_indices, write_slots, has_initial_state,
            lengths, dim, pad_slot_id,
            x.stride(0), x.stride(1),
            conv_states.stride(0), conv_states.stride(1), conv_states.stride(2),
            STATE_LEN=width - 1, STATE_POW2=next_power_of_2(width - 1),
            PARTIAL=lengths is not None, BLOCK_D=block_d, **store_cfg, **cfg["compile_options"],
        )

    # Checkpoints first: they may read the initial state the final store overwrites.
    if checkpoint_offsets is not None:
        store_states(checkpoint_state_indices, checkpoint_offsets)
    store_states(state_indices, None)
    return out


def causal_conv1d_update(
    x: torch.Tensor,
    conv_states: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    state_indices: torch.Tensor,
    activation: str | None = None,
    out: torch.Tensor | None = None,
    pad_slot_id: int = -1,
) -> torch.Tensor:
    """Decode step: one new token per row.

    x: [B, dim]; conv_states: [num_slots, dim, width - 1], any strides;
    weight: [dim, width]; bias: [dim] or None; state_indices: [B].
    Row b convolves conv_states[state_indices[b]] followed by x[b], then
    shifts that page left by one and appends x[b].
    out: optional [B, dim]; may be x itself (in-place).
    Returns out (x.dtype unless given).
    """
    cfg = _check_common(x, weight, bias, conv_states, activation, out)
    batch, dim = x.shape
    check_vector("state_indices", state_indices, batch, INDEX_DTYPES)
    if out is None:
        out = torch.empty_like(x)
    if batch == 0:
        return out
    width = weight.shape[1]
    update_cfg = dict(cfg["update"])
    block_d = update_cfg.pop("BLOCK_D")
    _launch_conv1d_update(
        (batch, cdiv(dim, block_d)),
        (x, weight, bias, conv_states, state_indices, out),
        (dim, pad_slot_id, *x.stride(), *weight.stride(), *conv_states.stride(), *out.stride()),
        {"WIDTH": width, "HAS_BIAS": bias is not None, "SILU": activation is not None,
         "BLOCK_D": block_d},
        {**update_cfg, **cfg["compile_options"]},
    )
    return out
