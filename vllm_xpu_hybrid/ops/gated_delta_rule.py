# SPDX-License-Identifier: Apache-2.0
"""Gated delta rule (Gated DeltaNet: Qwen3-Next, Qwen3.5): chunked prefill,
recurrent decode, and the gates they take.

The recurrence, per value head h (key head ``h // (HV // H)``) and token t,
with the state ``S: [V, K]`` as vLLM 0.32 stores it (``[num_slots, HV, V,
K]``, gated_delta_net_state_shape):

    S   = exp(g[t, h]) * S                               g <= 0, log space
    u   = beta[t, h] * (v[t, h] - S @ k[t])              the delta rule
    S   = S + u (outer) k[t]
    o   = scale * S @ q[t]                               scale = K ** -0.5

q and k are L2-normalised per head first when ``qk_l2norm`` (eps 1e-6, as
transformers' and FLA's ``l2norm``), inside the kernels: the norms are
computed in fp32 and applied as fp32 row/column scales of the products, so no
normalised copy of q or k is ever stored or held.

Chunked form (own derivation). Inside a chunk of L tokens with
``G[i] = g[0] + ... + g[i]`` (in-chunk cumulative log decay) and S0 the
state at the chunk start, the deltas ``u`` solve a unit lower-triangular
system:

    (I + A) u = beta * v - (beta * exp(G) * k) S0^T,
    A[i, j] = beta[i] (k[i] . k[j]) exp(G[i] - G[j])     for j < i, else 0

so with ``T = (I + A)^-1``, ``W = T (beta exp(G) k)`` and ``U = T (beta v)``
(both independent of S0): ``u = U - W S0^T``, and

    o[i]  = scale * (exp(G[i]) S0 q[i] + sum_{j <= i} exp(G[i] - G[j]) (q[i] . k[j]) u[j])
    S_end = exp(G[L-1]) S0 + sum_j exp(G[L-1] - G[j]) u[j] (outer) k[j]

Chunks are 64 tokens (``CHUNK_SIZE``); a sequence's chunks start at its
first token. The inverse ``T`` is built from 16 x 16 blocks: the four
diagonal blocks by forward substitution, all four in one [4, 16, 16] tensor
(16 row steps on row vectors), the blocks below them by block forward
substitution (``T[i, j] = -T[i, i] sum_{j <= m < i} A[i, m] T[m, j]``, 16 x
16 products in fp32 or tf32x3, see ``_mm``); forward substitution stays
accurate where A's powers grow large (strongly correlated keys), unlike
series or doubling products.

Kernels, in stream order:

1. ``_gdr_chunk_inverse_kernel`` (chunks x value heads, parallel): in-chunk
   cumulative gates, ``A`` and its inverse ``T``, stored as 64-wide rows in
   the input dtype.
2. ``_gdr_chunk_wy_kernel`` (chunks x value heads, parallel): ``W`` and
   ``U``, one 64 x 64 product each, and what the output needs besides the
   state: the causal, decayed intra-chunk weights ``scale exp(G[i] - G[j])
   (q[i] . k[j])`` (written over ``T``), q's factor ``scale exp(G[i])`` on
   the inter-chunk term and each delta's factor ``exp(G[L-1] - G[j])`` in
   the state update (with the L2 norms folded in).
3. ``_gdr_chunk_scan_kernel`` (sequences x value heads x V tiles): walks a
   sequence's chunks in order from its initial state (``states
   [state_indices[b]]`` when ``has_initial_state[b]``, else zeros), holding
   the state transposed (``S^T``, so every product takes its operands as
   loaded): per chunk ``u = U - W S0^T``, the chunk's output from S0 and
   u, then the state's advance; writes the final state back to the same
   page. Neither the chunk start states nor ``u`` go through memory.

Decode: ``_gdr_recurrent_kernel`` applies the recurrence to one token per
row, reading and writing the row's page in place.

Gates: ``gdn_gating`` computes, in one kernel, what Qwen's GDN layers feed
the rule: ``g = -exp(A_log) * softplus(a + dt_bias)``, ``beta = sigmoid(b)``.

Sequence metadata: ``cu_seqlens [B + 1]`` token offsets of the packed
sequences; ``chunk_indices [num_chunks, 2]`` (sequence, chunk within it) and
``chunk_offsets [B + 1]`` (each sequence's first chunk) -- the layout vLLM
0.32's GDN metadata builder already computes on the host for 64-token chunks
(``chunk_indices`` / ``chunk_offsets``, gdn_attn.py ``_build_chunk_metadata``),
so the plugin's layer reuses it as is; ``gated_delta_rule_chunk_metadata``
builds it for callers without the builder.

Padding: a sequence or row whose state index is negative or equals
``pad_slot_id`` neither reads nor writes a state page and computes from a
zero state (vLLM 0.32 pads decode rows with ``NULL_BLOCK_ID = 0``, so its
layers pass ``pad_slot_id=0``).

Precision: gates, decays, the inverse, the states carried between chunks and
all accumulation are fp32 (the inverse's block products tf32x3 on CUDA).
Dot operands are in the input dtype (tensor cores for fp16/bf16); fp32
inputs use ``input_precision="ieee"``. ``T``, ``W``, ``U`` and the
intra-chunk weights are kept in the input dtype between kernels, and the
chunk start states and ``u`` are cast to it for their products.
States are stored in the state tensor's dtype (fp32, or the model dtype).
This module imports only torch and triton.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from vllm_xpu_hybrid.ops.checks import (
    FLAG_DTYPES,
    INDEX_DTYPES,
    SUPPORTED_DTYPES,
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
)

CHUNK_SIZE = 64
# Head sizes the kernels keep whole in registers (a state tile is [K, BV]).
MAX_HEAD_DIM = 256

# Launch configurations per device kind ("cuda", "xpu", "cpu" = Triton's
# interpreter, where fewer, larger programs run faster).
#   inverse: one chunk of one value head; inverse_products: how its 16 x 16
#     fp32 block products are computed ("ieee" or "tf32x3" dot, or
#     "elementwise" where neither compiles), see _mm.
#   wy: one chunk of one value head, all K and V columns.
#   scan: BV value rows of one value head's state (and BV output columns),
#     for one sequence.
#   recurrent: BV value rows of one decode row's state, launched
#     tile-major (the tiles of one (row, head) adjacent; H200 sweep, batch
#     >= 64: 82-85 % -> 88-95 % of copy bandwidth against row-major order).
#   gating: BT tokens x BH heads.
#   compile_options: extra backend options passed to every launch.
# "cuda": from sweeps through the bench's cases on an H100 (inverse; fourth
# pass in docs/benchmarks.md) and an H200 (wy, scan; ninth pass), Triton
# 3.6, at Qwen3-Next's shapes (K = V = 128, bf16, 4k and 16k tokens).
# tf32x3 block products are 1.6x faster than ieee ones in the inverse and
# pass the fp32 tests. wy takes 16 warps: since it computes the intra-chunk
# weights too, 8 warps made the 16k call 190 us slower (wy about 470 us
# against 280). scan with num_stages=1 (BV 32, 4 warps) faulted
# with an illegal address on the H200 once; 2 and 3 stages passed every
# check; not traced.
# "xpu" follows Intel's guidance (more warps, large GRF mode, num_stages=1:
# Intel's pipeliner has crashed on a chunked-scan kernel); the inverse's
# block products are elementwise (no fp32 dpas on PVC). For PVC at the same
# shapes (triton-xpu 3.3 + ocloc, 256 GRF) every kernel builds, with XMX
# dots, but the prefill kernels spill (docs/intel-compile.md): the inverse
# least with 32 warps (about 20 KB; 89 KB with 16, 26 KB with 8), wy about
# 55 KB, scan about 19 KB; recurrent and gating do not. Never run on an
# Intel GPU: UNVERIFIED.
LAUNCH_CONFIGS: dict[str, dict[str, dict]] = {
    "cuda": {
        "inverse": {"num_warps": 1, "num_stages": 1, "inverse_products": "tf32x3"},
        "wy": {"num_warps": 16, "num_stages": 1},
        "scan": {"BV": 32, "num_warps": 4, "num_stages": 3},
        "recurrent": {"BV": 16, "num_warps": 4, "num_stages": 1},
        "gating": {"BT": 64, "BH": 32, "num_warps": 4},
        "compile_options": {},
    },
    # UNVERIFIED: no Intel GPU has run these.
    "xpu": {
        "inverse": {"num_warps": 32, "num_stages": 1, "inverse_products": "elementwise"},
        "wy": {"num_warps": 16, "num_stages": 1},
        "scan": {"BV": 16, "num_warps": 16, "num_stages": 1},
        "recurrent": {"BV": 16, "num_warps": 8, "num_stages": 1},
        "gating": {"BT": 64, "BH": 32, "num_warps": 8},
        "compile_options": {"grf_mode": "large"},
    },
    "cpu": {
        "inverse": {"num_warps": 1, "num_stages": 1, "inverse_products": "ieee"},
        "wy": {"num_warps": 1, "num_stages": 1},
        "scan": {"BV": 256, "num_warps": 1, "num_stages": 1},
        "recurrent": {"BV": 256, "num_warps": 1, "num_stages": 1},
        "gating": {"BT": 256, "BH": 64, "num_warps": 1},
        "compile_options": {},
    },
}


@triton.jit
def _inv_norms(x, NORMALIZE: tl.constexpr, ROWS: tl.constexpr):
    """Per row of x: its L2 normalisation factor 1 / sqrt(sum of squares +
    eps) when NORMALIZE, else 1 (fp32). The kernels fold these factors into
    row and column scales of their products instead of keeping normalised
    fp32 copies of q and k."""
    if NORMALIZE:
        xf = x.to(tl.float32)
        return 1.0 / tl.sqrt(tl.sum(xf * xf, axis=1) + 1e-6)
    else:
        return tl.full((ROWS,), 1.0, tl.float32)


@triton.jit
def _load_rows(base, first, length, stride_t, cols, cols_ok, ROWS: tl.constexpr):
    """ROWS consecutive token rows from row ``first`` of a chunk (rows at or
    past ``length`` read zeros), in the tensor's dtype."""
    rows = first + tl.arange(0, ROWS)
    return tl.load(
        base + rows.to(tl.int64)[:, None] * stride_t + cols[None, :],
        mask=(rows < length)[:, None] & cols_ok[None, :], other=0.0,
    )


@triton.jit
def _store_rows(base, first, length, stride_t, cols, cols_ok, values, ROWS: tl.constexpr):
    rows = first + tl.arange(0, ROWS)
    tl.store(
        base + rows.to(tl.int64)[:, None] * stride_t + cols[None, :],
        values.to(base.dtype.element_ty),
        mask=(rows < length)[:, None] & cols_ok[None, :],
    )


@triton.jit
def _chunk_span(cu_ptr, chunk_ptr, chunk):
    """First token and token count (at most 64) of a chunk, from
    chunk_indices [num_chunks, 2] (sequence, chunk within it)."""
    seq = tl.load(chunk_ptr + 2 * chunk)
    start = tl.load(cu_ptr + seq) + tl.load(chunk_ptr + 2 * chunk + 1) * 64
    return start, tl.minimum(tl.load(cu_ptr + seq + 1) - start, 64)


@triton.jit
def _load_gates(ptr, first, length, stride_t, ROWS: tl.constexpr):
    rows = first + tl.arange(0, ROWS)
    return tl.load(ptr + rows.to(tl.int64) * stride_t, mask=rows < length, other=0.0).to(tl.float32)


@triton.jit
def _decayed_kkt(k_i, k_j, scale_i, scale_j, G_i, G_j, DIAGONAL: tl.constexpr,
                 DOT_PRECISION: tl.constexpr):
    """One 16 x 16 block of A from raw keys: (k_i . k_j) scale_i scale_j
    exp(G_i - G_j) with scale_i = beta_i / |k_i| and scale_j = 1 / |k_j|; on
    a diagonal block only strictly below the diagonal (where G_i <= G_j, so
    exp never overflows)."""
    a = tl.dot(k_i, tl.trans(k_j), input_precision=DOT_PRECISION) * scale_i[:, None] * scale_j[None, :]
    if DIAGONAL:
        r = tl.arange(0, 16)
        below = r[:, None] > r[None, :]
        a = tl.where(below, a * tl.exp(tl.where(below, G_i[:, None] - G_j[None, :], 0.0)), 0.0)
    else:
        a = a * tl.exp(G_i[:, None] - G_j[None, :])
    return a


@triton.jit
def _mm(a, b, FORM: tl.constexpr):
    """fp32 product of 16 x 16 blocks (the inverse's block products): a
    tl.dot with input precision FORM ("ieee", or "tf32x3": three tf32
    tensor-core products, near fp32; the fp32 tests pass with it on an
    H100), or with FORM == "elementwise" a broadcast product summed over its
    last axis, for backends where neither compiles (PVC: no fp32 dpas). Not
    summed over the middle axis: Triton's combine pass turns sum(a[:, :,
    None] * b[None, :, :], 1) into a tl.dot, which Triton 3.6 runs as plain
    tf32 on NVIDIA (4e-3 errors in these products on an H100, 2e-3 in the
    fp32 outputs)."""
    if FORM == "elementwise":
        return tl.sum(a[:, None, :] * tl.trans(b)[None, :, :], axis=2)
    else:
        return tl.dot(a, b, input_precision=FORM)


@triton.jit
def _stack_blocks(a0, a1, a2, a3):
    """Four 16 x 16 blocks as one [4, 16, 16] tensor (block index first)."""
    pairs = tl.join(tl.join(a0, a1), tl.join(a2, a3))  # [16, 16, 2, 2]: [..., i, j] = a_{2i+j}
    return tl.reshape(tl.permute(pairs, (2, 3, 0, 1)), (4, 16, 16))


@triton.jit
def _unstack_blocks(x):
    """The inverse of _stack_blocks: [4, 16, 16] -> four 16 x 16 blocks."""
    pairs = tl.permute(tl.reshape(x, (2, 2, 16, 16)), (2, 3, 0, 1))
    lo, hi = tl.split(pairs)
    a0, a1 = tl.split(lo)
    a2, a3 = tl.split(hi)
    return a0, a1, a2, a3


@triton.jit
def _unit_lower_inverse_16(a):
    """(I + a)^-1 for four strictly lower-triangular 16 x 16 fp32 blocks at
    once (a: [4, 16, 16]), by forward substitution, one row of every block
    per step: row i = e_i - sum_{c < i} a[i, c] row c (row i of the running
    inverse is still e_i then)."""
    r = tl.arange(0, 16)[None, :, None]
    inv = tl.where(r == tl.arange(0, 16)[None, None, :], 1.0, 0.0) + tl.zeros([4, 16, 16], tl.float32)
    for i in tl.static_range(1, 16):
        a_row = tl.sum(tl.where(r == i, a, 0.0), axis=1)
        update = tl.sum(a_row[:, :, None] * inv, axis=1)
        inv -= tl.where(r == i, update[:, None, :], 0.0)
    return inv


@triton.jit
def _gdr_chunk_inverse_kernel(
    k_ptr, g_ptr, beta_ptr, cu_ptr, chunk_ptr, gcum_ptr, t_ptr,
    K, heads_per_k,
    stride_k_t, stride_k_h, stride_g_t, stride_g_h, stride_beta_t, stride_beta_h,
    stride_gcum_t, stride_t_t, stride_t_h,
    QK_L2NORM: tl.constexpr,
    BK: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    MM_FORM: tl.constexpr,
):
    chunk = tl.program_id(0)
    hv = tl.program_id(1)
    h = hv // heads_per_k
    start, n = _chunk_span(cu_ptr, chunk_ptr, chunk)
    kc = tl.arange(0, BK)
    kc_ok = kc < K

    # In-chunk cumulative gates, 16 rows at a time (rows past n add 0).
    g_base = g_ptr + start.to(tl.int64) * stride_g_t + hv * stride_g_h
    g0 = _load_gates(g_base, 0, n, stride_g_t, 16)
    g1 = _load_gates(g_base, 16, n, stride_g_t, 16)
    g2 = _load_gates(g_base, 32, n, stride_g_t, 16)
    g3 = _load_gates(g_base, 48, n, stride_g_t, 16)
    G0 = tl.cumsum(g0, axis=0)
    G1 = tl.cumsum(g1, axis=0) + tl.sum(g0, axis=0)
    G2 = tl.cumsum(g2, axis=0) + tl.sum(g0, axis=0) + tl.sum(g1, axis=0)
    G3 = tl.cumsum(g3, axis=0) + tl.sum(g0, axis=0) + tl.sum(g1, axis=0) + tl.sum(g2, axis=0)
    r = tl.arange(0, 16)
    gcum_base = gcum_ptr + start.to(tl.int64) * stride_gcum_t + hv
    tl.store(gcum_base + r * stride_gcum_t, G0, mask=r < n)
    tl.store(gcum_base + (16 + r) * stride_gcum_t, G1, mask=16 + r < n)
    tl.store(gcum_base + (32 + r) * stride_gcum_t, G2, mask=32 + r < n)
    tl.store(gcum_base + (48 + r) * stride_gcum_t, G3, mask=48 + r < n)

    beta_base = beta_ptr + start.to(tl.int64) * stride_beta_t + hv * stride_beta_h
    b0 = _load_gates(beta_base, 0, n, stride_beta_t, 16)
    b1 = _load_gates(beta_base, 16, n, stride_beta_t, 16)
    b2 = _load_gates(beta_base, 32, n, stride_beta_t, 16)
    b3 = _load_gates(beta_base, 48, n, stride_beta_t, 16)

    # Raw keys in the input dtype; the L2 norm enters as row/column scales.
    k_base = k_ptr + start.to(tl.int64) * stride_k_t + h * stride_k_h
    k0 = _load_rows(k_base, 0, n, stride_k_t, kc, kc_ok, 16)
    k1 = _load_rows(k_base, 16, n, stride_k_t, kc, kc_ok, 16)
    k2 = _load_rows(k_base, 32, n, stride_k_t, kc, kc_ok, 16)
    k3 = _load_rows(k_base, 48, n, stride_k_t, kc, kc_ok, 16)
    kn0 = _inv_norms(k0, QK_L2NORM, 16)
    kn1 = _inv_norms(k1, QK_L2NORM, 16)
    kn2 = _inv_norms(k2, QK_L2NORM, 16)
    kn3 = _inv_norms(k3, QK_L2NORM, 16)

    # T = (I + A)^-1, block by block.
    T00, T11, T22, T33 = _unstack_blocks(_unit_lower_inverse_16(_stack_blocks(
        _decayed_kkt(k0, k0, b0 * kn0, kn0, G0, G0, True, DOT_PRECISION),
        _decayed_kkt(k1, k1, b1 * kn1, kn1, G1, G1, True, DOT_PRECISION),
        _decayed_kkt(k2, k2, b2 * kn2, kn2, G2, G2, True, DOT_PRECISION),
        _decayed_kkt(k3, k3, b3 * kn3, kn3, G3, G3, True, DOT_PRECISION),
    )))
    A10 = _decayed_kkt(k1, k0, b1 * kn1, kn0, G1, G0, False, DOT_PRECISION)
    A20 = _decayed_kkt(k2, k0, b2 * kn2, kn0, G2, G0, False, DOT_PRECISION)
    A21 = _decayed_kkt(k2, k1, b2 * kn2, kn1, G2, G1, False, DOT_PRECISION)
    A30 = _decayed_kkt(k3, k0, b3 * kn3, kn0, G3, G0, False, DOT_PRECISION)
    A31 = _decayed_kkt(k3, k1, b3 * kn3, kn1, G3, G1, False, DOT_PRECISION)
    A32 = _decayed_kkt(k3, k2, b3 * kn3, kn2, G3, G2, False, DOT_PRECISION)
    T10 = -_mm(T11, _mm(A10, T00, MM_FORM), MM_FORM)
    T21 = -_mm(T22, _mm(A21, T11, MM_FORM), MM_FORM)
    T20 = -_mm(T22, _mm(A20, T00, MM_FORM) + _mm(A21, T10, MM_FORM), MM_FORM)
    T32 = -_mm(T33, _mm(A32, T22, MM_FORM), MM_FORM)
    T31 = -_mm(T33, _mm(A31, T11, MM_FORM) + _mm(A32, T21, MM_FORM), MM_FORM)
    T30 = -_mm(T33, _mm(A30, T00, MM_FORM) + _mm(A31, T10, MM_FORM) + _mm(A32, T20, MM_FORM), MM_FORM)
    # T rows in the input dtype, [16, 64] per row block; blocks above the
    # diagonal are not stored (the W/U kernel masks them).
    t_base = t_ptr + start.to(tl.int64) * stride_t_t + hv * stride_t_h
    _store_rows(t_base, 0, n, stride_t_t, r, r < 16, T00, 16)
    _store_rows(t_base, 16, n, stride_t_t, r, r < 16, T10, 16)
    _store_rows(t_base, 16, n, stride_t_t, 16 + r, r < 16, T11, 16)
    _store_rows(t_base, 32, n, stride_t_t, r, r < 16, T20, 16)
    _store_rows(t_base, 32, n, stride_t_t, 16 + r, r < 16, T21, 16)
    _store_rows(t_base, 32, n, stride_t_t, 32 + r, r < 16, T22, 16)
    _store_rows(t_base, 48, n, stride_t_t, r, r < 16, T30, 16)
    _store_rows(t_base, 48, n, stride_t_t, 16 + r, r < 16, T31, 16)
    _store_rows(t_base, 48, n, stride_t_t, 32 + r, r < 16, T32, 16)
    _store_rows(t_base, 48, n, stride_t_t, 48 + r, r < 16, T33, 16)


@triton.jit
def _gdr_chunk_wy_kernel(
    q_ptr, k_ptr, v_ptr, beta_ptr, cu_ptr, chunk_ptr, gcum_ptr, t_ptr, w_ptr, u_ptr,
    q_gate_ptr, k_gate_ptr,
    scale, K, V, heads_per_k,
    stride_q_t, stride_q_h, stride_k_t, stride_k_h, stride_v_t, stride_v_h,
    stride_beta_t, stride_beta_h, stride_gate_t, stride_t_t, stride_t_h,
    stride_w_t, stride_w_h, stride_u_t, stride_u_h,
    QK_L2NORM: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    chunk = tl.program_id(0)
    hv = tl.program_id(1)
    h = hv // heads_per_k
    start, n = _chunk_span(cu_ptr, chunk_ptr, chunk)
    dot_dtype = k_ptr.dtype.element_ty
    t = tl.arange(0, 64)
    t_ok = t < n
    t_rows = t_ptr + (start + t).to(tl.int64)[:, None] * stride_t_t + hv * stride_t_h + t[None, :]
    T = tl.load(t_rows, mask=t_ok[:, None] & (t[None, :] // 16 <= t[:, None] // 16), other=0.0)
    gates = (start + t).to(tl.int64) * stride_gate_t + hv
    G = tl.load(gcum_ptr + gates, mask=t_ok, other=0.0)
    G_last = tl.load(gcum_ptr + (start + n - 1).to(tl.int64) * stride_gate_t + hv)
    beta = _load_gates(beta_ptr + start.to(tl.int64) * stride_beta_t + hv * stride_beta_h,
                       0, n, stride_beta_t, 64)

    # W = T (beta exp(G) k / |k|).
    kc = tl.arange(0, BK)
    kc_ok = kc < K
    k = _load_rows(k_ptr + start.to(tl.int64) * stride_k_t + h * stride_k_h, 0, n, stride_k_t, kc, kc_ok, 64)
    k_scale = _inv_norms(k, QK_L2NORM, 64)
    y = (k * (beta * k_scale * tl.exp(G))[:, None]).to(dot_dtype)
    _store_rows(w_ptr + start.to(tl.int64) * stride_w_t + hv * stride_w_h, 0, n, stride_w_t, kc, kc_ok,
                tl.dot(T, y, input_precision=DOT_PRECISION), 64)

    # U = T (beta v).
    vc = tl.arange(0, BV)
    vc_ok = vc < V
    v = _load_rows(v_ptr + start.to(tl.int64) * stride_v_t + hv * stride_v_h, 0, n, stride_v_t, vc, vc_ok, 64)
    z = (v * beta[:, None]).to(dot_dtype)
    _store_rows(u_ptr + start.to(tl.int64) * stride_u_t + hv * stride_u_h, 0, n, stride_u_t, vc, vc_ok,
                tl.dot(T, z, input_precision=DOT_PRECISION), 64)

    # What the chunk scan needs besides the state, none of which depends on
    # it: the causal, decayed (q . k) weights of the intra-chunk output
    # (written over T, which is no longer needed), q's factor on the
    # inter-chunk term, and each u row's factor in the state update (decay
    # to the chunk end and the key's 1 / |k|). Rows past n are masked: their
    # G (0) minus a valid one could overflow exp.
    q = _load_rows(q_ptr + start.to(tl.int64) * stride_q_t + h * stride_q_h, 0, n, stride_q_t, kc, kc_ok, 64)
    q_scale = _inv_norms(q, QK_L2NORM, 64) * scale
    causal = (t[:, None] >= t[None, :]) & t_ok[:, None]
    qk = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * q_scale[:, None] * k_scale[None, :]
    weights = tl.where(causal, qk * tl.exp(tl.where(causal, G[:, None] - G[None, :], 0.0)), 0.0)
    tl.store(t_rows, weights.to(t_ptr.dtype.element_ty), mask=t_ok[:, None])
    tl.store(q_gate_ptr + gates, q_scale * tl.exp(G), mask=t_ok)
    tl.store(k_gate_ptr + gates, tl.exp(G_last - G) * k_scale, mask=t_ok)


@triton.jit
def _gdr_chunk_scan_kernel(
    q_ptr, k_ptr, w_ptr, u_ptr, weights_ptr, gcum_ptr, q_gate_ptr, k_gate_ptr, cu_ptr, chunk_off_ptr,
    states_ptr, slot_ptr, has_init_ptr, out_ptr,
    K, V, heads_per_k, pad_slot_id,
    stride_q_t, stride_q_h, stride_k_t, stride_k_h, stride_w_t, stride_w_h, stride_u_t, stride_u_h,
    stride_wt_t, stride_wt_h, stride_gate_t,
    stride_s_slot, stride_s_h, stride_s_v, stride_s_k, stride_o_t, stride_o_h,
    BK: tl.constexpr,
    BV: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    seq = tl.program_id(0)
    hv = tl.program_id(1)
    h = hv // heads_per_k
    vr = tl.program_id(2) * BV + tl.arange(0, BV)
    vr_ok = vr < V
    kc = tl.arange(0, BK)
    kc_ok = kc < K
    # The state is held transposed, [BK, BV] (S^T, read and written through
    # swapped strides), so every product takes its operands as loaded.
    tile_ok = kc_ok[:, None] & vr_ok[None, :]
    dot_dtype = k_ptr.dtype.element_ty

    slot = tl.load(slot_ptr + seq).to(tl.int64)
    valid = (slot >= 0) & (slot != pad_slot_id)
    has_init = tl.load(has_init_ptr + seq) != 0
    page = (states_ptr + slot * stride_s_slot + hv * stride_s_h
            + vr[None, :] * stride_s_v + kc[:, None] * stride_s_k)
    state = tl.zeros([BK, BV], dtype=tl.float32)
    if valid & has_init:
        state = tl.load(page, mask=tile_ok, other=0.0).to(tl.float32)

    seq_start = tl.load(cu_ptr + seq)
    seq_end = tl.load(cu_ptr + seq + 1)
    first_chunk = tl.load(chunk_off_ptr + seq)
    end_chunk = tl.load(chunk_off_ptr + seq + 1)
    t = tl.arange(0, 64)
    for chunk in range(first_chunk, end_chunk):
        start = seq_start + (chunk - first_chunk) * 64
        n = tl.minimum(seq_end - start, 64)
        # Every load of the chunk shares these row offsets rather than going
        # through _load_rows with a base pointer each: that form compiles
        # (sm_90) to 254 registers and a stack instead of 183 and none.
        t_ok = t < n
        rows = (start + t).to(tl.int64)
        s0 = state.to(dot_dtype)
        w = tl.load(w_ptr + rows[:, None] * stride_w_t + hv * stride_w_h + kc[None, :],
                    mask=t_ok[:, None] & kc_ok[None, :], other=0.0)
        q = tl.load(q_ptr + rows[:, None] * stride_q_t + h * stride_q_h + kc[None, :],
                    mask=t_ok[:, None] & kc_ok[None, :], other=0.0)
        rows_ok = t_ok[:, None] & vr_ok[None, :]
        U = tl.load(u_ptr + rows[:, None] * stride_u_t + hv * stride_u_h + vr[None, :],
                    mask=rows_ok, other=0.0).to(tl.float32)
        # u = U - W S0^T; the output: exp(G) S0 q (scaled) plus the
        # intra-chunk weights on u.
        u = (U - tl.dot(w, s0, input_precision=DOT_PRECISION)).to(dot_dtype)
        q_gate = tl.load(q_gate_ptr + rows * stride_gate_t + hv, mask=t_ok, other=0.0)
        weights = tl.load(weights_ptr + rows[:, None] * stride_wt_t + hv * stride_wt_h + t[None, :],
                          mask=t_ok[:, None], other=0.0)
        o = tl.dot(q, s0, input_precision=DOT_PRECISION) * q_gate[:, None]
        o = tl.dot(weights, u, o, input_precision=DOT_PRECISION)
        tl.store(out_ptr + rows[:, None] * stride_o_t + hv * stride_o_h + vr[None, :],
                 o.to(out_ptr.dtype.element_ty), mask=rows_ok)
        # S^T = exp(G_last) S0^T + k^T (k_gate * u).
        k_t = tl.load(k_ptr + rows[None, :] * stride_k_t + h * stride_k_h + kc[:, None],
                      mask=kc_ok[:, None] & t_ok[None, :], other=0.0)
        k_gate = tl.load(k_gate_ptr + rows * stride_gate_t + hv, mask=t_ok, other=0.0)
        G_last = tl.load(gcum_ptr + (start + n - 1).to(tl.int64) * stride_gate_t + hv)
        u_decayed = (u.to(tl.float32) * k_gate[:, None]).to(dot_dtype)
        state = state * tl.exp(G_last) + tl.dot(k_t, u_decayed, input_precision=DOT_PRECISION)
    if valid:
        tl.store(page, state.to(states_ptr.dtype.element_ty), mask=tile_ok)


@triton.jit
def _gdr_recurrent_kernel(
    q_ptr, k_ptr, v_ptr, g_ptr, beta_ptr, states_ptr, slot_ptr, out_ptr,
    scale, K, V, heads_per_k, pad_slot_id,
    stride_q_b, stride_q_h, stride_q_k, stride_k_b, stride_k_h, stride_k_k,
    stride_v_b, stride_v_h, stride_v_v, stride_g_b, stride_g_h, stride_beta_b, stride_beta_h,
    stride_s_slot, stride_s_h, stride_s_v, stride_s_k,
    stride_o_b, stride_o_h, stride_o_v,
    QK_L2NORM: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
):
    vr = tl.program_id(0) * BV + tl.arange(0, BV)
    hv = tl.program_id(1)
    row = tl.program_id(2).to(tl.int64)
    h = hv // heads_per_k
    vr_ok = vr < V
    kc = tl.arange(0, BK)
    kc_ok = kc < K
    tile_ok = vr_ok[:, None] & kc_ok[None, :]

    slot = tl.load(slot_ptr + row).to(tl.int64)
    valid = (slot >= 0) & (slot != pad_slot_id)
    page = (states_ptr + slot * stride_s_slot + hv * stride_s_h
            + vr[:, None] * stride_s_v + kc[None, :] * stride_s_k)
    # Scalar conditions guard whole loads and stores (the interpreter
    # mishandles block & scalar-bool masks).
    state = tl.zeros([BV, BK], dtype=tl.float32)
    if valid:
        state = tl.load(page, mask=tile_ok, other=0.0).to(tl.float32)
    q = tl.load(q_ptr + row * stride_q_b + h * stride_q_h + kc * stride_q_k, mask=kc_ok, other=0.0)
    k = tl.load(k_ptr + row * stride_k_b + h * stride_k_h + kc * stride_k_k, mask=kc_ok, other=0.0)
    q = q.to(tl.float32)
    k = k.to(tl.float32)
    if QK_L2NORM:
        q = q / tl.sqrt(tl.sum(q * q, axis=0) + 1e-6)
        k = k / tl.sqrt(tl.sum(k * k, axis=0) + 1e-6)
    v = tl.load(v_ptr + row * stride_v_b + hv * stride_v_h + vr * stride_v_v, mask=vr_ok, other=0.0)
    g = tl.load(g_ptr + row * stride_g_b + hv * stride_g_h).to(tl.float32)
    beta = tl.load(beta_ptr + row * stride_beta_b + hv * stride_beta_h).to(tl.float32)

    state = state * tl.exp(g)
    delta = beta * (v.to(tl.float32) - tl.sum(state * k[None, :], axis=1))
    state += delta[:, None] * k[None, :]
    out = tl.sum(state * q[None, :], axis=1) * scale
    tl.store(out_ptr + row * stride_o_b + hv * stride_o_h + vr * stride_o_v,
             out.to(out_ptr.dtype.element_ty), mask=vr_ok)
    if valid:
        tl.store(page, state.to(states_ptr.dtype.element_ty), mask=tile_ok)


_launch_recurrent = CachedLaunch(_gdr_recurrent_kernel)


@triton.jit
def _gdn_gating_kernel(
    a_ptr, b_ptr, A_log_ptr, dt_bias_ptr, g_ptr, beta_ptr,
    num_tokens, num_heads,
    stride_a_t, stride_a_h, stride_b_t, stride_b_h,
    BT: tl.constexpr,
    BH: tl.constexpr,
):
    t = tl.program_id(0) * BT + tl.arange(0, BT)
    hd = tl.program_id(1) * BH + tl.arange(0, BH)
    h_ok = hd < num_heads
    ok = (t < num_tokens)[:, None] & h_ok[None, :]
    t64 = t.to(tl.int64)[:, None]
    a = tl.load(a_ptr + t64 * stride_a_t + hd[None, :] * stride_a_h, mask=ok, other=0.0).to(tl.float32)
    b = tl.load(b_ptr + t64 * stride_b_t + hd[None, :] * stride_b_h, mask=ok, other=0.0).to(tl.float32)
    x = a + tl.load(dt_bias_ptr + hd, mask=h_ok, other=0.0).to(tl.float32)[None, :]
    # softplus(x) = log(1 + exp(x)); above 20 it equals x in fp32 (torch's threshold).
    softplus = tl.where(x <= 20.0, tl.log(1.0 + tl.exp(tl.minimum(x, 20.0))), x)
    A = tl.exp(tl.load(A_log_ptr + hd, mask=h_ok, other=0.0).to(tl.float32))
    offs = t64 * num_heads + hd[None, :]
    tl.store(g_ptr + offs, -A[None, :] * softplus, mask=ok)
    tl.store(beta_ptr + offs, tl.sigmoid(b), mask=ok)


_launch_gating = CachedLaunch(_gdn_gating_kernel)


def gated_delta_rule_chunk_metadata(
    cu_seqlens: torch.Tensor | list[int],
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunks of a packed prefill batch, computed on the host: 64-token
    chunks from each sequence's first token.

    cu_seqlens: [B + 1] token offsets (host values). Returns
    (chunk_indices [num_chunks, 2] int32: sequence, chunk within it;
    chunk_offsets [B + 1] int32: each sequence's first chunk) on ``device``.
    """
    bounds = [int(v) for v in cu_seqlens]
    chunk_indices = []
    chunk_offsets = [0]
    for seq in range(len(bounds) - 1):
        count = cdiv(bounds[seq + 1] - bounds[seq], CHUNK_SIZE)
        chunk_indices.extend([seq, i] for i in range(count))
        chunk_offsets.append(chunk_offsets[-1] + count)
    return (
        torch.tensor(chunk_indices, dtype=torch.int32, device=device).view(-1, 2),
        torch.tensor(chunk_offsets, dtype=torch.int32, device=device),
    )


def _check_heads(q, k, v, g, beta, states, out) -> tuple[int, int, int, int, int]:
    """Checks shared by both launchers; returns (rows, H, HV, K, V)."""
    for name, t in (("q", q), ("k", k), ("v", v), ("g", g), ("beta", beta), ("states", states)):
        check_dtype(name, t)
    if q.dim() != 3 or k.shape != q.shape:
        raise ValueError(
            f"q, k: expected equal shapes [tokens, num_k_heads, head_k_dim], got "
            f"{tuple(q.shape)} and {tuple(k.shape)}"
        )
    rows, H, K = q.shape
    if v.dim() != 3 or v.shape[0] != rows:
        raise ValueError(f"v: expected [tokens={rows}, num_v_heads, head_v_dim], got {tuple(v.shape)}")
    HV, V = v.shape[1], v.shape[2]
    if HV % H != 0:
        raise ValueError(f"v: num_v_heads={HV} must be a multiple of num_k_heads={H}")
    if K > MAX_HEAD_DIM or V > MAX_HEAD_DIM:
        raise ValueError(f"head dims K={K}, V={V}: the kernels take at most {MAX_HEAD_DIM}")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"q, k, v: one dtype expected, got {q.dtype}, {k.dtype}, {v.dtype}")
    for name, t in (("g", g), ("beta", beta)):
        if t.shape != (rows, HV):
            raise ValueError(f"{name}: expected shape ({rows}, {HV}) [tokens, num_v_heads], got {tuple(t.shape)}")
    if states.dim() != 4 or states.shape[1:] != (HV, V, K):
        raise ValueError(
            f"states: expected [num_slots, num_v_heads={HV}, head_v_dim={V}, head_k_dim={K}] "
            f"(vLLM's GDN state layout), got {tuple(states.shape)}"
        )
    if out is not None and (out.shape != (rows, HV, V) or out.dtype not in SUPPORTED_DTYPES):
        raise ValueError(
            f"out: expected shape ({rows}, {HV}, {V}) and dtype in {SUPPORTED_DTYPES}, "
            f"got {tuple(out.shape)} {out.dtype}"
        )
    return rows, H, HV, K, V


def _check_inner_stride(**tensors: torch.Tensor) -> None:
    for name, t in tensors.items():
        if t.stride(-1) != 1:
            raise ValueError(f"{name}: the last dimension must be contiguous, got strides {tuple(t.stride())}")


def gated_delta_rule_prefill(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    *,
    cu_seqlens: torch.Tensor,
    chunk_indices: torch.Tensor,
    chunk_offsets: torch.Tensor,
    states: torch.Tensor,
    state_indices: torch.Tensor,
    has_initial_state: torch.Tensor,
    out: torch.Tensor | None = None,
    scale: float | None = None,
    qk_l2norm: bool = False,
    pad_slot_id: int = -1,
) -> torch.Tensor:
    """Chunked gated delta rule over packed sequences, carrying states.

    q, k: [total_tokens, H, K]; v: [total_tokens, HV, V], HV a multiple of H
    (value head h reads key head h // (HV // H)); one dtype, any strides with
    the last dimension contiguous. g: [total_tokens, HV] log-space gates
    (<= 0); beta: [total_tokens, HV]; any float dtype and strides.
    cu_seqlens: [B + 1]; chunk_indices: [num_chunks, 2]; chunk_offsets:
    [B + 1] (vLLM's GDN builder's, or ``gated_delta_rule_chunk_metadata``).
    states: [num_slots, HV, V, K], fp32 or a 16-bit dtype, last dimension
    contiguous; sequence b starts from states[state_indices[b]] when
    has_initial_state[b] (else zeros) and its final state is written there.
    state_indices: [B]; has_initial_state: [B] bool or int32.
    scale: default K ** -0.5; qk_l2norm: L2-normalise q and k in the kernels.
    out: optional [total_tokens, HV, V]. Returns out (q.dtype unless given).
    """
    cfg = launch_config(LAUNCH_CONFIGS, "q", q)
    total, H, HV, K, V = _check_heads(q, k, v, g, beta, states, out)
    _check_inner_stride(q=q, k=k, v=v, states=states)
    if state_indices.dim() != 1:
        raise ValueError(f"state_indices: expected shape [B], got {tuple(state_indices.shape)}")
    num_seqs = state_indices.shape[0]
    check_vector("state_indices", state_indices, num_seqs, INDEX_DTYPES)
    check_vector("has_initial_state", has_initial_state, num_seqs, FLAG_DTYPES)
    check_vector("cu_seqlens", cu_seqlens, num_seqs + 1, INDEX_DTYPES)
    check_vector("chunk_offsets", chunk_offsets, num_seqs + 1, INDEX_DTYPES)
    if (chunk_indices.dim() != 2 or chunk_indices.shape[1] != 2 or chunk_indices.dtype not in INDEX_DTYPES
            or not chunk_indices.is_contiguous()):
        raise ValueError(
            f"chunk_indices: expected a contiguous [num_chunks, 2] tensor of dtype in {INDEX_DTYPES}, "
            f"got {tuple(chunk_indices.shape)} {chunk_indices.dtype}"
        )
    if out is None:
        out = torch.empty(total, HV, V, dtype=q.dtype, device=q.device)
    _check_inner_stride(out=out)
    num_chunks = chunk_indices.shape[0]
    if num_seqs == 0:
        return out
    scale = K**-0.5 if scale is None else scale
    dev = q.device
    dot_precision = "ieee"
    options = cfg["compile_options"]
    bk = dot_block(K)
    bv_full = dot_block(V)
    rows = max(total, 1)
    gcum = torch.empty(rows, HV, dtype=torch.float32, device=dev)
    q_gate = torch.empty_like(gcum)
    k_gate = torch.empty_like(gcum)
    w = torch.empty(rows, HV, K, dtype=q.dtype, device=dev)
    u = torch.empty(rows, HV, V, dtype=q.dtype, device=dev)
    # T's rows, then (written over them by the W/U kernel) the intra-chunk weights.
    t_rows = torch.empty(rows, HV, CHUNK_SIZE, dtype=q.dtype, device=dev)
    heads_per_k = HV // H

    if num_chunks > 0:
        c = cfg["inverse"]
        _gdr_chunk_inverse_kernel[(num_chunks, HV)](
            k, g, beta, cu_seqlens, chunk_indices, gcum, t_rows,
            K, heads_per_k,
            k.stride(0), k.stride(1), g.stride(0), g.stride(1), beta.stride(0), beta.stride(1),
            gcum.stride(0), t_rows.stride(0), t_rows.stride(1),
            QK_L2NORM=qk_l2norm, BK=bk, DOT_PRECISION=dot_precision, MM_FORM=c["inverse_products"],
            num_warps=c["num_warps"], num_stages=c["num_stages"], **options,
        )
        c = cfg["wy"]
        _gdr_chunk_wy_kernel[(num_chunks, HV)](
            q, k, v, beta, cu_seqlens, chunk_indices, gcum, t_rows, w, u, q_gate, k_gate,
            scale, K, V, heads_per_k,
            q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
            beta.stride(0), beta.stride(1), gcum.stride(0), t_rows.stride(0), t_rows.stride(1),
            w.stride(0), w.stride(1), u.stride(0), u.stride(1),
            QK_L2NORM=qk_l2norm, BK=bk, BV=bv_full, DOT_PRECISION=dot_precision,
            num_warps=c["num_warps"], num_stages=c["num_stages"], **options,
        )

    c = cfg["scan"]
    bv = min(c["BV"], bv_full)
    _gdr_chunk_scan_kernel[(num_seqs, HV, cdiv(V, bv))](
        q, k, w, u, t_rows, gcum, q_gate, k_gate, cu_seqlens, chunk_offsets,
        states, state_indices, has_initial_state, out,
        K, V, heads_per_k, pad_slot_id,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), w.stride(0), w.stride(1),
        u.stride(0), u.stride(1), t_rows.stride(0), t_rows.stride(1), gcum.stride(0),
        states.stride(0), states.stride(1), states.stride(2), states.stride(3),
        out.stride(0), out.stride(1),
        BK=bk, BV=bv, DOT_PRECISION=dot_precision,
        num_warps=c["num_warps"], num_stages=c["num_stages"], **options,
    )
    return out


def gated_delta_rule_decode(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    *,
    states: torch.Tensor,
    state_indices: torch.Tensor,
    out: torch.Tensor | None = None,
    scale: float | None = None,
    qk_l2norm: bool = False,
    pad_slot_id: int = -1,
) -> torch.Tensor:
    """One decode token per row: the recurrence on states[state_indices[b]],
    in place.

    q, k: [B, H, K]; v: [B, HV, V], HV a multiple of H; g, beta: [B, HV];
    any strides. states: [num_slots, HV, V, K], fp32 or a 16-bit dtype, any
    strides; state_indices: [B] (padding rows: negative or pad_slot_id).
    scale: default K ** -0.5; qk_l2norm: L2-normalise q and k in the kernel.
    out: optional [B, HV, V]. Returns out (q.dtype unless given).
    """
    cfg = launch_config(LAUNCH_CONFIGS, "q", q)
    batch, H, HV, K, V = _check_heads(q, k, v, g, beta, states, out)
    check_vector("state_indices", state_indices, batch, INDEX_DTYPES)
    check_grid_dim("q", batch, "decode rows", "lower vLLM's max_num_seqs")
    if out is None:
        out = torch.empty(batch, HV, V, dtype=q.dtype, device=q.device)
    if batch == 0:
        return out
    scale = K**-0.5 if scale is None else scale
    c = cfg["recurrent"]
    bk = dot_block(K)
    bv = min(c["BV"], dot_block(V))
    _launch_recurrent(
        (cdiv(V, bv), HV, batch),
        (q, k, v, g, beta, states, state_indices, out),
        (float(scale), K, V, HV // H, pad_slot_id, *q.stride(), *k.stride(), *v.stride(),
         *g.stride(), *beta.stride(), *states.stride(), *out.stride()),
        {"QK_L2NORM": qk_l2norm, "BK": bk, "BV": bv},
        {"num_warps": c["num_warps"], "num_stages": c["num_stages"], **cfg["compile_options"]},
    )
    return out


def gdn_gating(
    a: torch.Tensor,
    b: torch.Tensor,
    A_log: torch.Tensor,
    dt_bias: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gates of Qwen's GDN layers: g = -exp(A_log) * softplus(a + dt_bias)
    (log space), beta = sigmoid(b).

    a, b: [tokens, HV], any strides; A_log, dt_bias: [HV] contiguous.
    Returns (g, beta), each [tokens, HV] fp32 contiguous.
    """
    cfg = launch_config(LAUNCH_CONFIGS, "a", a)
    for name, t in (("a", a), ("b", b), ("A_log", A_log), ("dt_bias", dt_bias)):
        check_dtype(name, t)
    if a.dim() != 2 or b.shape != a.shape:
        raise ValueError(f"a, b: expected equal shapes [tokens, HV], got {tuple(a.shape)} and {tuple(b.shape)}")
    tokens, heads = a.shape
    check_vector("A_log", A_log, heads, SUPPORTED_DTYPES)
    check_vector("dt_bias", dt_bias, heads, SUPPORTED_DTYPES)
    g = torch.empty(tokens, heads, dtype=torch.float32, device=a.device)
    beta = torch.empty_like(g)
    if tokens == 0:
        return g, beta
    c = cfg["gating"]
    bh = min(c["BH"], next_power_of_2(heads))
    _launch_gating(
        (cdiv(tokens, c["BT"]), cdiv(heads, bh)),
        (a, b, A_log, dt_bias, g, beta),
        (tokens, heads, *a.stride(), *b.stride()),
        {"BT": c["BT"], "BH": bh},
        {"num_warps": c["num_warps"], **cfg["compile_options"]},
    )
    return g, beta
