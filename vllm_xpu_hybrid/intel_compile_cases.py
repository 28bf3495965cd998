# SPDX-License-Identifier: Apache-2.0
"""Compile cases of the Intel compile gate: each kernel family's launchers
called at real model shapes.

A case is a label (the model shape) and a call of a family's public launcher
with tensors on torch's ``meta`` device: no memory, no data, but the real
shapes, dtypes and strides (views of one projection output, as the layers
pass them). :mod:`vllm_xpu_hybrid.intel_compile` runs each call with the
family's ``LAUNCH_CONFIGS["xpu"]`` entry standing for the ``meta`` device and
records the kernel launches instead of running them, so the gate compiles
exactly the constexprs and options the launcher picks on an Intel GPU; there
is no second copy of any launcher's logic here.

Adding a family: write ``_<family>_cases()`` yielding ``(label, call)`` and
add it to ``FAMILY_CASES`` under the ops module's name. The gate fails while a
``*_kernel`` of ``vllm_xpu_hybrid/ops/`` is launched by no case.

Values that only the kernels read (sequence lengths, block tables) do not
exist on ``meta`` tensors; the host-side ints a launcher branches on
(``max_query_len``, ``max_seq_len``) are given per case to reach each path.
Runtime ints are chosen not divisible by 16 where the real value varies from
call to call (token and chunk counts), so the gate compiles the general
specialisation; model dimensions keep their real values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

Case = tuple[str, Callable[[], object]]

MODEL_DTYPE = torch.bfloat16
STATE_SLOTS = 9
KV_BLOCK_SIZE = 64


def _meta(*shape: int, dtype: torch.dtype = MODEL_DTYPE) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device="meta")


def _index(length: int) -> torch.Tensor:
    return _meta(length, dtype=torch.int32)


# ---------------------------------------------------------------------------
# Model shapes
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Mamba2Shape:
    """One Mamba-2 layer (tensor parallel 1)."""

    name: str
    nheads: int
    headdim: int
    ngroups: int
    dstate: int
    chunk_size: int
    conv_width: int = 4

    @property
    def d_inner(self) -> int:
        return self.nheads * self.headdim

    @property
    def conv_dim(self) -> int:
        return self.d_inner + 2 * self.ngroups * self.dstate


MAMBA2_SHAPES = (
    Mamba2Shape("Mamba2-2.7B (80x64 heads, 1 group)", 80, 64, 1, 128, 256),
    Mamba2Shape("Granite-4.0-H-Small (128x64 heads, 1 group)", 128, 64, 1, 128, 256),
    Mamba2Shape("Nemotron-H-8B (128x64 heads, 8 groups)", 128, 64, 8, 128, 128),
    Mamba2Shape("Nemotron-Nano-9B-v2 (128x80 heads, 8 groups)", 128, 80, 8, 128, 128),
)


@dataclass(frozen=True)
class AttentionShape:
    """One attention layer: query heads, KV heads (GQA), head size."""

    name: str
    num_q_heads: int
    num_kv_heads: int
    head_size: int


ATTENTION_SHAPES = (
    AttentionShape("LFM2-1.2B (head 64, 32q/8kv)", 32, 8, 64),
    AttentionShape("head 80, 32q/8kv", 32, 8, 80),
    AttentionShape("Llama-3-8B, Granite-4.0-H (head 128, 32q/8kv)", 32, 8, 128),
    AttentionShape("Qwen3-Next (head 256, 16q/2kv)", 16, 2, 256),
)


@dataclass(frozen=True)
class ConvShape:
    """One causal conv1d use: channels, width, bias, activation, and whether
    its layer writes prefix-caching checkpoints (Mamba-2 in align mode)."""

    name: str
    dim: int
    width: int
    bias: bool
    activation: str | None
    checkpoints: bool = False


CONV_SHAPES = tuple(
    ConvShape(f"{s.name.split(' (')[0]} (dim {s.conv_dim}, width 4)", s.conv_dim, s.conv_width, True, "silu",
              checkpoints=True)
    for s in MAMBA2_SHAPES
) + (
    ConvShape("Falcon-Mamba-7B (dim 8192, width 4)", 8192, 4, True, "silu"),
    ConvShape("Qwen3-Next GDN (dim 8192, width 4, no bias)", 8192, 4, False, "silu"),
    ConvShape("LFM2-1.2B short conv (dim 2048, width 3)", 2048, 3, False, None),
)

PREFILL_TOKENS = 1000
DECODE_BATCH = 63


# ---------------------------------------------------------------------------
# Families
# ---------------------------------------------------------------------------


def _paged_attention_cases() -> Iterator[Case]:
    from vllm_xpu_hybrid.ops.paged_attention import paged_attention, reshape_and_cache

    def calls(shape: AttentionShape, num_seqs: int, tokens: int, max_query_len: int,
              max_seq_len: int, write_cache: bool) -> Callable[[], object]:
        def call() -> None:
            q, kv, head = shape.num_q_heads, shape.num_kv_heads, shape.head_size
            qkv = _meta(tokens, (q + 2 * kv) * head)
            query = qkv[:, : q * head].view(tokens, q, head)
            key = qkv[:, q * head: (q + kv) * head].view(tokens, kv, head)
            value = qkv[:, (q + kv) * head:].view(tokens, kv, head)
            # vLLM's [blocks, kv_heads, block_size, 2 * head] page, viewed as the
            # attention backend views it.
            num_blocks = num_seqs * (max_seq_len // KV_BLOCK_SIZE + 1)
            kv_cache = (_meta(num_blocks, kv, KV_BLOCK_SIZE, 2 * head)
                        .unflatten(-1, (2, head)).permute(0, 3, 2, 1, 4))
            if write_cache:
                reshape_and_cache(key, value, kv_cache, _index(tokens))
            paged_attention(
                query, kv_cache, _meta(tokens, q, head), _index(num_seqs + 1), _index(num_seqs),
                _meta(num_seqs, num_blocks // num_seqs, dtype=torch.int32),
                scale=head ** -0.5, max_query_len=max_query_len, max_seq_len=max_seq_len,
            )
        return call

    for shape in ATTENTION_SHAPES:
        yield f"{shape.name}: prefill", calls(shape, 3, PREFILL_TOKENS, 700, 1700, True)
        yield f"{shape.name}: decode", calls(shape, DECODE_BATCH, DECODE_BATCH, 1, 500, True)
        yield f"{shape.name}: long decode", calls(shape, 5, 5, 1, 8000, False)


def _causal_conv1d_cases() -> Iterator[Case]:
    from vllm_xpu_hybrid.ops.causal_conv1d import (
        causal_conv1d_update,
        causal_conv1d_varlen,
    )

    def call(shape: ConvShape, rows: int, prefill: bool, checkpoints: bool = False) -> Callable[[], object]:
        def run() -> None:
            # x is a column slice of the in-projection output; the conv state
            # page is vLLM's default (state_len, dim) layout, seen transposed.
            x = _meta(rows, shape.dim + 1024)[:, : shape.dim]
            weight = _meta(shape.dim, 1, shape.width)[:, 0, :]
            bias = _meta(shape.dim) if shape.bias else None
            states = _meta(STATE_SLOTS, shape.width - 1, shape.dim).transpose(1, 2)
            if prefill:
                # out=None: the launcher allocates it (contiguous, like the layers'
                # conv_out); its alias check would see every meta tensor at address 0.
                causal_conv1d_varlen(
                    x, weight, bias, states, _index(4), _index(3), _meta(3, dtype=torch.bool),
                    activation=shape.activation,
                    checkpoint_offsets=_index(3) if checkpoints else None,
                    checkpoint_state_indices=_index(3) if checkpoints else None,
                )
            else:
                causal_conv1d_update(x, states, weight, bias, _index(rows),
                                     activation=shape.activation, out=_meta(rows, shape.dim))
        return run

    for shape in CONV_SHAPES:
        yield f"{shape.name}: prefill", call(shape, PREFILL_TOKENS, True)
        if shape.checkpoints:
            yield f"{shape.name}: prefill, prefix caching", call(shape, PREFILL_TOKENS, True, True)
        yield f"{shape.name}: decode", call(shape, DECODE_BATCH, False)


def _mamba2_projection(shape: Mamba2Shape, tokens: int):
    """x [T, H, P], B and C [T, G, N] as views of the conv output [T, conv_dim]."""
    xbc = _meta(tokens, shape.conv_dim)
    x = xbc[:, : shape.d_inner].view(tokens, shape.nheads, shape.headdim)
    groups = shape.ngroups * shape.dstate
    B = xbc[:, shape.d_inner: shape.d_inner + groups].view(tokens, shape.ngroups, shape.dstate)
    C = xbc[:, shape.d_inner + groups:].view(tokens, shape.ngroups, shape.dstate)
    return x, B, C


def _ssd_cases() -> Iterator[Case]:
    from vllm_xpu_hybrid.ops.ssd import ssd_chunk_scan

    def call(shape: Mamba2Shape, checkpoints: bool) -> Callable[[], object]:
        def run() -> None:
            tokens, num_seqs = PREFILL_TOKENS, 3
            num_chunks = tokens // shape.chunk_size + num_seqs
            x, B, C = _mamba2_projection(shape, tokens)
            ssd_chunk_scan(
                x, _meta(tokens, shape.nheads), _meta(shape.nheads, dtype=torch.float32), B, C,
                chunk_size=shape.chunk_size,
                cu_chunk_seqlens=_index(num_chunks + 1),
                last_chunk_indices=_index(num_seqs),
                ssm_states=_meta(STATE_SLOTS, shape.nheads, shape.headdim, shape.dstate),
                state_indices=_index(num_seqs),
                has_initial_state=_meta(num_seqs, dtype=torch.bool),
                out=_meta(tokens, shape.nheads, shape.headdim),
                D=_meta(shape.nheads), dt_bias=_meta(shape.nheads), dt_softplus=True,
                checkpoint_chunk_indices=_index(num_seqs) if checkpoints else None,
                checkpoint_state_indices=_index(num_seqs) if checkpoints else None,
            )
        return run

    for shape in MAMBA2_SHAPES:
        yield shape.name, call(shape, False)
        yield f"{shape.name}, prefix caching", call(shape, True)


def _selective_state_update_cases() -> Iterator[Case]:
    from vllm_xpu_hybrid.ops.selective_state_update import (
        selective_state_update,
        selective_state_update_per_channel,
    )

    def mamba2(shape: Mamba2Shape) -> Callable[[], object]:
        def run() -> None:
            x, B, C = _mamba2_projection(shape, DECODE_BATCH)
            selective_state_update(
                _meta(STATE_SLOTS, shape.nheads, shape.headdim, shape.dstate),
                x, _meta(DECODE_BATCH, shape.nheads), _meta(shape.nheads, dtype=torch.float32),
                B, C, _index(DECODE_BATCH),
                D=_meta(shape.nheads), dt_bias=_meta(shape.nheads), dt_softplus=True,
                out=_meta(DECODE_BATCH, shape.nheads, shape.headdim),
            )
        return run

    def mamba1(d_inner: int, dstate: int) -> Callable[[], object]:
        def run() -> None:
            rows = DECODE_BATCH
            selective_state_update_per_channel(
                _meta(STATE_SLOTS, d_inner, dstate), _meta(rows, d_inner), _meta(rows, d_inner),
                _meta(d_inner, dstate, dtype=torch.float32),
                _meta(rows, dstate), _meta(rows, dstate), _index(rows),
                D=_meta(d_inner), z=_meta(rows, d_inner), dt_bias=_meta(d_inner),
                dt_softplus=True, out=_meta(rows, d_inner),
            )
        return run

    for shape in MAMBA2_SHAPES:
        yield shape.name, mamba2(shape)
    yield "Falcon-Mamba-7B (Mamba-1, d_inner 8192, state 16)", mamba1(8192, 16)


# Mamba-1 layers (tensor parallel 1): d_inner and dstate.
MAMBA1_SHAPES = (
    ("Falcon-Mamba-7B, Jamba-v0.1 (d_inner 8192, state 16)", 8192, 16),
    ("Mamba-2.8B (d_inner 5120, state 16)", 5120, 16),
)


def _selective_scan_cases() -> Iterator[Case]:
    from vllm_xpu_hybrid.ops.selective_scan import selective_scan

    def call(d_inner: int, dstate: int) -> Callable[[], object]:
        def run() -> None:
            # x, z: column slices of the in-projection; B, C: of x_proj's
            # output (dt_rank + 2 * dstate columns); dt: dt_proj's output.
            tokens, num_seqs, dt_rank = PREFILL_TOKENS, 3, d_inner // 16
            proj = _meta(tokens, 2 * d_inner)
            ssm_params = _meta(tokens, dt_rank + 2 * dstate)
            selective_scan(
                proj[:, :d_inner], _meta(tokens, d_inner), _meta(d_inner, dstate, dtype=torch.float32),
                ssm_params[:, dt_rank: dt_rank + dstate].unsqueeze(1),
                ssm_params[:, dt_rank + dstate:].unsqueeze(1),
                query_start_loc=_index(num_seqs + 1),
                ssm_states=_meta(STATE_SLOTS, d_inner, dstate),
                state_indices=_index(num_seqs),
                has_initial_state=_meta(num_seqs, dtype=torch.bool),
                out=_meta(tokens, d_inner), D=_meta(d_inner), z=proj[:, d_inner:],
                dt_bias=_meta(d_inner, dtype=torch.float32), dt_softplus=True,
            )
        return run

    for name, d_inner, dstate in MAMBA1_SHAPES:
        yield name, call(d_inner, dstate)


def _gated_rmsnorm_cases() -> Iterator[Case]:
    from vllm_xpu_hybrid.ops.gated_rmsnorm import gated_rmsnorm

    def call(hidden: int, group_size: int) -> Callable[[], object]:
        def run() -> None:
            # x: the scan output; z: a column slice of the in-projection output.
            z = _meta(PREFILL_TOKENS, 2 * hidden)[:, :hidden]
            gated_rmsnorm(_meta(PREFILL_TOKENS, hidden), z, _meta(hidden),
                          group_size=group_size, norm_before_gate=False)
        return run

    for shape in MAMBA2_SHAPES:
        group = shape.d_inner // shape.ngroups
        yield f"{shape.name.split(' (')[0]} (group {group})", call(shape.d_inner, group)


@dataclass(frozen=True)
class GatedDeltaShape:
    """One Gated DeltaNet layer: key heads, value heads, head dims."""

    name: str
    num_k_heads: int
    num_v_heads: int
    head_k_dim: int
    head_v_dim: int


GATED_DELTA_SHAPES = (
    GatedDeltaShape("Qwen3-Next (16 k-heads, 32 v-heads, 128x128)", 16, 32, 128, 128),
)


def _gated_delta_rule_cases() -> Iterator[Case]:
    from vllm_xpu_hybrid.ops.gated_delta_rule import (
        gated_delta_rule_decode,
        gated_delta_rule_prefill,
        gdn_gating,
    )

    def inputs(shape: GatedDeltaShape, rows: int):
        # q, k, v: slices of the conv output of the fused projection; gates fp32.
        h, hv, k, v = shape.num_k_heads, shape.num_v_heads, shape.head_k_dim, shape.head_v_dim
        mixed = _meta(rows, 2 * h * k + hv * v)
        return (mixed[:, : h * k].view(rows, h, k), mixed[:, h * k: 2 * h * k].view(rows, h, k),
                mixed[:, 2 * h * k:].view(rows, hv, v),
                _meta(rows, hv, dtype=torch.float32), _meta(rows, hv, dtype=torch.float32),
                _meta(STATE_SLOTS, hv, v, k, dtype=torch.float32))

    def prefill(shape: GatedDeltaShape) -> Callable[[], object]:
        def run() -> None:
            tokens, num_seqs = PREFILL_TOKENS, 3
            q, k, v, g, beta, states = inputs(shape, tokens)
            gated_delta_rule_prefill(
                q, k, v, g, beta, cu_seqlens=_index(num_seqs + 1),
                chunk_indices=_meta(tokens // 64 + num_seqs, 2, dtype=torch.int32),
                chunk_offsets=_index(num_seqs + 1), states=states, state_indices=_index(num_seqs),
                has_initial_state=_meta(num_seqs, dtype=torch.bool), qk_l2norm=True,
            )
        return run

    def decode(shape: GatedDeltaShape) -> Callable[[], object]:
        def run() -> None:
            q, k, v, g, beta, states = inputs(shape, DECODE_BATCH)
            gated_delta_rule_decode(q, k, v, g, beta, states=states, state_indices=_index(DECODE_BATCH),
                                    qk_l2norm=True)
        return run

    def gating(shape: GatedDeltaShape) -> Callable[[], object]:
        def run() -> None:
            # a and b: column slices of the in-projection output.
            ab = _meta(PREFILL_TOKENS, 2 * shape.num_v_heads + 64)
            hv = shape.num_v_heads
            gdn_gating(ab[:, :hv], ab[:, hv: 2 * hv], _meta(hv, dtype=torch.float32), _meta(hv))
        return run

    for shape in GATED_DELTA_SHAPES:
        yield f"{shape.name}: prefill", prefill(shape)
        yield f"{shape.name}: decode", decode(shape)
        yield f"{shape.name}: gating", gating(shape)


def _lightning_attention_cases() -> Iterator[Case]:
    from vllm_xpu_hybrid.ops.lightning_attention import (
        lightning_attention_decode,
        lightning_attention_prefill,
    )

    def inputs(nheads: int, head: int, rows: int):
        qkv = _meta(rows, 3 * nheads * head)
        return [qkv[:, i * nheads * head: (i + 1) * nheads * head].view(rows, nheads, head) for i in range(3)]

    def prefill(nheads: int, head: int) -> Callable[[], object]:
        def run() -> None:
            num_seqs = 3
            q, k, v = inputs(nheads, head, PREFILL_TOKENS)
            lightning_attention_prefill(
                q, k, v, _meta(nheads, dtype=torch.float32),
                _meta(STATE_SLOTS, nheads, head, head, dtype=torch.float32),
                _index(num_seqs + 1), _index(num_seqs), _meta(num_seqs, dtype=torch.bool),
            )
        return run

    def decode(nheads: int, head: int) -> Callable[[], object]:
        def run() -> None:
            q, k, v = inputs(nheads, head, DECODE_BATCH)
            lightning_attention_decode(
                q, k, v, _meta(nheads, dtype=torch.float32),
                _meta(STATE_SLOTS, nheads, head, head, dtype=torch.float32), _index(DECODE_BATCH),
            )
        return run

    yield "MiniMax-Text-01 (64 heads, 128x128): prefill", prefill(64, 128)
    yield "MiniMax-Text-01 (64 heads, 128x128): decode", decode(64, 128)


FAMILY_CASES: dict[str, Callable[[], Iterator[Case]]] = {
    "paged_attention": _paged_attention_cases,
    "causal_conv1d": _causal_conv1d_cases,
    "ssd": _ssd_cases,
    "selective_state_update": _selective_state_update_cases,
    "selective_scan": _selective_scan_cases,
    "gated_rmsnorm": _gated_rmsnorm_cases,
    "gated_delta_rule": _gated_delta_rule_cases,
    "lightning_attention": _lightning_attention_cases,
}
