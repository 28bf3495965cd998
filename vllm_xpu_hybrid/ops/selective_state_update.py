# SPDX-License-Identifier: Apache-2.0
"""Selective state update: one decode token per row of a state-space layer.

Per row b (state page ``ssm_states[state_indices[b]]``), head h, group g of h:

    dt'  = clamp(softplus(dt + dt_bias) if dt_softplus else dt + dt_bias, *dt_limit)
    s    = exp(dt' * A) * s + (dt' * x[b, h])[:, None] * B[b, g][None, :]
    y    = (s @ C[b, g] + D * x[b, h]) * silu(z[b, h])

Layouts (the Mamba-2 heads x groups layout):

- ``ssm_states``: ``[num_slots, nheads, headdim, dstate]``, fp32 or a 16-bit
  dtype, any strides (vLLM's state pages interleave conv and SSM states).
- ``x``, ``z``, ``out``: ``[B, nheads, headdim]``.
- ``dt``: ``[B, nheads]`` (one per head, Mamba-2) or ``[B, nheads,
  headdim]``; ``dt_bias`` and ``D``: ``[nheads]`` or ``[nheads, headdim]``.
  vLLM 0.32's MambaMixer2 expands dt, dt_bias and D to ``[..., headdim]``
  with stride-0 views (mamba_mixer2.py:963-970); both forms work since the
  kernel reads these through their strides.
- ``A``: ``[nheads]`` (Mamba-2: one scalar decay per head, computed once per
  headdim row) or ``[nheads, headdim, dstate]`` (a decay per state element).
- ``B``, ``C``: ``[B, ngroups, dstate]``, ngroups dividing nheads.

Mamba-1 runs the same kernel (``selective_state_update_per_channel``): its
per-channel state ``[num_slots, d_inner, dstate]`` is one head of headdim
``d_inner``, with x/dt/z ``[B, d_inner]``, A ``[d_inner, dstate]``, B/C
``[B, dstate]``, D/dt_bias ``[d_inner]``, passed by their strides (no views
to make per call). The grid tiles headdim, so a wide single head still
spreads over programs.

Padding: a row whose index is negative or equals ``pad_slot_id`` (vLLM 0.32
pads decode rows with ``NULL_BLOCK_ID = 0``, mamba_attn.py:659; the default
-1 is ``PAD_SLOT_ID``) neither reads nor writes a state page; its output row
is computed from a zero state (``D * x`` gated), as vLLM's kernel does.

All arithmetic is fp32. This module imports only torch and triton.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from vllm_xpu_hybrid.ops.checks import (
    INDEX_DTYPES,
    SUPPORTED_DTYPES,
    check_dtype,
    check_shape,
    check_vector,
    launch_config,
)
from vllm_xpu_hybrid.ops.launch import (
    CachedLaunch,
    cdiv,
    check_grid_dim,
    next_power_of_2,
    small_grid_entries,
)


# Launch configurations per device kind ("cuda", "xpu", "cpu" = Triton's
# interpreter), one entry per layout of A, whose best tiles differ:
#   "per_head_A": Mamba-2 (A [nheads], dstate 128 at the models' shapes);
#   "per_state_A": Mamba-1 (A [nheads, headdim, dstate]: one head of headdim
#   d_inner, dstate 16).
# A program holds a [BLOCK_P, dstate] state tile: BLOCK_P headdim rows, at
# least the configured BLOCK_P, more for small states or 16-bit states until
# the tile holds STATE_TILE_BYTES bytes of state, clipped to headdim.
# Programs are launched tile-major: the headdim tiles of one (row, head) are
# adjacent in launch order, so programs running together stream one state
# page (H200 sweep through the bench's cases: fp32 Mamba-2 states 86-87 % ->
# 92-98 % of copy bandwidth at batch >= 64, against row-major order).
# ROW_AXIS, keyed by the state's element size in bytes, is the grid axis
# (1 or 2) of the batch rows, the heads taking the other: 2 puts the heads
# of one row next to each other in launch order, 1 the rows of one head.
# "cuda": from those sweeps (Triton 3.6); 4 KB per program is 8 rows of a
# fp32 and 16 of a bf16 dstate-128 state, the best tile of each. Rows on
# axis 2 for every state: with 16-bit Mamba-2 states on the H100 (the
# targets' device) axis 1 ran 7-25 % slower at batch 64 and 256 (Granite-4.0-H:
# 96.3 -> 103.5 and 371.4 -> 403.7 µs; Mamba2-2.7B: 62.8 -> 70.1 and
# 234.2 -> 290.1 µs), where on the H200 it had run 3-5 % faster (Granite-4.0-H:
# 83.1 -> 79.9 and 313.6 -> 301.6 µs); with fp32 states it ran 6 % slower
# on the H200 (Mamba2-2.7B, batch 64: 86.1 -> 91.0 µs).
# EARLY_GATE: load D and z with the row's other operands instead of after
# the page's store.
# SMALL_GRID (optional): {"below_programs": n, and entries}: a launch whose
# grid, with the entries above, has fewer than n programs takes these
# entries instead (batch-1 and batch-4 decode, latency-bound: one warp per
# program leaves most of the device's memory parallelism unused).
# "cuda" small grids and EARLY_GATE: from an H100 and an H200 sweep through
# the bench's cases at batch 1-256 (docs/benchmarks.md, fifteenth pass).
# Mamba-1, 4 warps per program: fp32 batch 1 6.56 -> 5.66 µs, batch 4
# 7.42 -> 6.72 µs on the H100, at batch 16 (4096 programs) no better than
# the base tile; EARLY_GATE 3-8 % faster at every batch with bf16 states
# (H200, batch 256: 50.1 -> 47.1 µs), 1-2 % slower at batch >= 64 with fp32.
# Mamba-2, 2 KB state tiles: batch 1 7.20 -> 6.78 µs (fp32) and 6.30 ->
# 6.11 µs (bf16) on the H100; EARLY_GATE 6-9 % faster at batch 1 (H200:
# 6.35 -> 5.95 µs), 2-9 % slower from batch 4 up, hence small grids only.
# "xpu" compiles without register spills on PVC (triton-xpu 3.3 + ocloc at
# 128 GRF) with bf16 states at dstate 128 and at 128 rows of dstate 16 with
# a per-state A; never run on an Intel GPU: UNVERIFIED.
LAUNCH_CONFIGS: dict[str, dict] = {
    "cuda": {
        "per_head_A": {"BLOCK_P": 8, "STATE_TILE_BYTES": 4096, "num_warps": 1,
                       "ROW_AXIS": {4: 2, 2: 2}, "EARLY_GATE": False,
                       "SMALL_GRID": {"below_programs": 2048, "BLOCK_P": 4,
                                      "STATE_TILE_BYTES": 2048, "EARLY_GATE": True}},
        "per_state_A": {"BLOCK_P": 32, "STATE_TILE_BYTES": 0, "num_warps": 1,
                        "ROW_AXIS": {4: 2, 2: 2}, "EARLY_GATE": True,
                        "SMALL_GRID": {"below_programs": 2048, "num_warps": 4}},
        "compile_options": {},
    },
    # UNVERIFIED: no Intel GPU has run these.
    "xpu": {
        "per_head_A": {"BLOCK_P": 16, "STATE_TILE_BYTES": 4096, "num_warps": 8,
                       "ROW_AXIS": {4: 2, 2: 2}, "EARLY_GATE": False},
        "per_state_A": {"BLOCK_P": 16, "STATE_TILE_BYTES": 4096, "num_warps": 8,
                        "ROW_AXIS": {4: 2, 2: 2}, "EARLY_GATE": False},
        "compile_options": {},
    },
    # The interpreter takes both row axes and both EARLY_GATE orders, so the
    # CPU tests check each.
    "cpu": {
        "per_head_A": {"BLOCK_P": 128, "STATE_TILE_BYTES": 65536, "num_warps": 1,
                       "ROW_AXIS": {4: 2, 2: 1}, "EARLY_GATE": False},
        "per_state_A": {"BLOCK_P": 128, "STATE_TILE_BYTES": 65536, "num_warps": 1,
                        "ROW_AXIS": {4: 2, 2: 1}, "EARLY_GATE": True},
        "compile_options": {},
    },
}


@triton.jit
def _skip_and_gate(x, D_ptr, z_ptr, row, head, p, p_ok, stride_D_h, stride_D_p,
                   stride_z_b, stride_z_h, stride_z_p, HAS_D: tl.constexpr, HAS_Z: tl.constexpr):
    """fp32 [BLOCK_P] D * x (zero without D) and silu(z) (one without z)."""
    skip = tl.zeros_like(x)
    if HAS_D:
        skip = x * tl.load(D_ptr + head * stride_D_h + p * stride_D_p, mask=p_ok, other=0.0).to(tl.float32)
    gate = tl.full(x.shape, 1.0, tl.float32)
    if HAS_Z:
        z = tl.load(z_ptr + row * stride_z_b + head * stride_z_h + p * stride_z_p,
                    mask=p_ok, other=0.0).to(tl.float32)
        gate = z * tl.sigmoid(z)
    return skip, gate


@triton.jit
def _selective_state_update_kernel(
    ssm_ptr, x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, dt_bias_ptr, slot_ptr, out_ptr,
    headdim, dstate, heads_per_group, pad_slot_id, dt_min, dt_max,
    stride_s_slot, stride_s_h, stride_s_p, stride_s_n,
    stride_x_b, stride_x_h, stride_x_p,
    stride_dt_b, stride_dt_h, stride_dt_p,
    stride_A_h, stride_A_p, stride_A_n,
    stride_B_b, stride_B_g, stride_B_n,
    stride_C_b, stride_C_g, stride_C_n,
    stride_D_h, stride_D_p,
    stride_z_b, stride_z_h, stride_z_p,
    stride_bias_h, stride_bias_p,
    stride_o_b, stride_o_h, stride_o_p,
    A_PER_STATE: tl.constexpr,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_DT_BIAS: tl.constexpr,
    DT_SOFTPLUS: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr,
    ROW_AXIS: tl.constexpr,
    EARLY_GATE: tl.constexpr,
):
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    if ROW_AXIS == 1:
        row = tl.program_id(1)
        head = tl.program_id(2)
    else:
        head = tl.program_id(1)
        row = tl.program_id(2)
    group = head // heads_per_group
    n = tl.arange(0, BLOCK_N)
    p_ok = p < headdim
    n_ok = n < dstate
    tile_ok = p_ok[:, None] & n_ok[None, :]

    x = tl.load(x_ptr + row * stride_x_b + head * stride_x_h + p * stride_x_p,
                mask=p_ok, other=0.0).to(tl.float32)
    dt = tl.load(dt_ptr + row * stride_dt_b + head * stride_dt_h + p * stride_dt_p,
                 mask=p_ok, other=0.0).to(tl.float32)
    if HAS_DT_BIAS:
        dt += tl.load(dt_bias_ptr + head * stride_bias_h + p * stride_bias_p,
                      mask=p_ok, other=0.0).to(tl.float32)
    if DT_SOFTPLUS:
        # softplus(v) = log(1 + exp(v)); above 20 it equals v in fp32.
        dt = tl.where(dt <= 20.0, tl.log(1.0 + tl.exp(dt)), dt)
    dt = tl.minimum(tl.maximum(dt, dt_min), dt_max)
    if A_PER_STATE:
        A = tl.load(A_ptr + head * stride_A_h + p[:, None] * stride_A_p + n[None, :] * stride_A_n,
                    mask=tile_ok, other=0.0).to(tl.float32)
        decay = tl.exp(A * dt[:, None])
    else:
        A = tl.load(A_ptr + head * stride_A_h).to(tl.float32)
        decay = tl.exp(A * dt)[:, None]
    B = tl.load(B_ptr + row * stride_B_b + group * stride_B_g + n * stride_B_n,
                mask=n_ok, other=0.0).to(tl.float32)
    C = tl.load(C_ptr + row * stride_C_b + group * stride_C_g + n * stride_C_n,
                mask=n_ok, other=0.0).to(tl.float32)
    # EARLY_GATE loads D and z here too, so they do not wait behind the
    # page's store (what a latency-bound small grid needs; at batch >= 64 the
    # registers they hold cost Mamba-2 states 4-9 %, docs/benchmarks.md).
    if EARLY_GATE:
        skip, gate = _skip_and_gate(x, D_ptr, z_ptr, row, head, p, p_ok, stride_D_h, stride_D_p,
                                    stride_z_b, stride_z_h, stride_z_p, HAS_D, HAS_Z)

    # The row's own operands are loaded before its slot, so their latency
    # overlaps the slot -> page dependency; a padding row's page is masked
    # off rather than branched around (H200, Triton 3.6: 6-12 % faster with
    # 16-bit states, 2-5 % with Mamba-1's fp32 state, docs/benchmarks.md).
    slot = tl.load(slot_ptr + row).to(tl.int64)
    valid = (slot >= 0) & (slot != pad_slot_id)
    page = (ssm_ptr + slot * stride_s_slot + head * stride_s_h
            + p[:, None] * stride_s_p + n[None, :] * stride_s_n)
    page_ok = (p < tl.where(valid, headdim, 0))[:, None] & n_ok[None, :]
    state = tl.load(page, mask=page_ok, other=0.0).to(tl.float32)

    state = state * decay + (dt * x)[:, None] * B[None, :]
    tl.store(page, state.to(ssm_ptr.dtype.element_ty), mask=page_ok)

    if not EARLY_GATE:
        skip, gate = _skip_and_gate(x, D_ptr, z_ptr, row, head, p, p_ok, stride_D_h, stride_D_p,
                                    stride_z_b, stride_z_h, stride_z_p, HAS_D, HAS_Z)
    y = (tl.sum(state * C[None, :], axis=1) + skip) * gate
    tl.store(out_ptr + row * stride_o_b + head * stride_o_h + p * stride_o_p,
             y.to(out_ptr.dtype.element_ty), mask=p_ok)


_launch_state_update = CachedLaunch(_selective_state_update_kernel)


def _per_head_strides(name: str, t: torch.Tensor | None, nheads: int, headdim: int) -> tuple[int, int]:
    """(head, headdim) strides of a [nheads] or [nheads, headdim] tensor."""
    if t is None:
        return 0, 0
    check_dtype(name, t)
    if t.shape == (nheads,):
        return t.stride(0), 0
    if t.shape == (nheads, headdim):
        return t.stride()
    raise ValueError(
        f"{name}: expected shape ({nheads},) or ({nheads}, {headdim}), got {tuple(t.shape)}"
    )


def _check_like_x(name: str, t: torch.Tensor | None, x: torch.Tensor) -> None:
    """z and out: x's shape, a supported dtype."""
    if t is not None and (t.shape != x.shape or t.dtype not in SUPPORTED_DTYPES):
        raise ValueError(
            f"{name}: expected shape {tuple(x.shape)} and dtype in {SUPPORTED_DTYPES}, "
            f"got {tuple(t.shape)} {t.dtype}"
        )


def _launch(cfg: dict, tensors: tuple, strides: tuple, batch: int, nheads: int, headdim: int,
            dstate: int, heads_per_group: int, a_per_state: bool, dt_softplus: bool,
            dt_limit: tuple[float, float], pad_slot_id: int) -> None:
    """Launch the kernel on checked arguments: tensors and strides in the
    kernel's order, in the heads x groups layout."""
    ssm_states, D, z, dt_bias = tensors[0], tensors[6], tensors[7], tensors[8]
    layout_cfg = cfg["per_state_A" if a_per_state else "per_head_A"]
    block_n = next_power_of_2(dstate)

    def headdim_tile(entries: dict) -> int:
        tile_rows = entries["STATE_TILE_BYTES"] // (block_n * ssm_states.element_size())
        return min(max(entries["BLOCK_P"], tile_rows), next_power_of_2(headdim))

    layout_cfg = small_grid_entries(layout_cfg, cdiv(headdim, headdim_tile(layout_cfg)) * batch * nheads)
    block_p = headdim_tile(layout_cfg)
    row_axis = layout_cfg["ROW_AXIS"][ssm_states.element_size()]
    tiles = cdiv(headdim, block_p)
    _launch_state_update(
        (tiles, batch, nheads) if row_axis == 1 else (tiles, nheads, batch),
        tensors,
        (headdim, dstate, heads_per_group, pad_slot_id, float(dt_limit[0]), float(dt_limit[1]),
         *strides),
        {"A_PER_STATE": a_per_state, "HAS_D": D is not None, "HAS_Z": z is not None,
         "HAS_DT_BIAS": dt_bias is not None, "DT_SOFTPLUS": dt_softplus,
         "BLOCK_P": block_p, "BLOCK_N": block_n, "ROW_AXIS": row_axis,
         "EARLY_GATE": layout_cfg["EARLY_GATE"]},
        {"num_warps": layout_cfg["num_warps"], **cfg["compile_options"]},
    )


def selective_state_update(
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
    out: torch.Tensor | None = None,
    pad_slot_id: int = -1,
) -> torch.Tensor:
    """One recurrence step per row, updating state pages in place.

    ssm_states: [num_slots, nheads, headdim, dstate]; x: [B, nheads, headdim];
    dt: [B, nheads] or [B, nheads, headdim]; A: [nheads] or
    [nheads, headdim, dstate]; B, C: [B, ngroups, dstate];
    state_indices: [B] int32/int64, contiguous; D, dt_bias: [nheads] or [nheads, headdim];
    z: [B, nheads, headdim] or None; out: optional [B, nheads, headdim].
    Returns out (x.dtype unless given): y = (s' @ C + D * x) * silu(z).
    """
    cfg = launch_config(LAUNCH_CONFIGS, "x", x)
    for name, t in (("ssm_states", ssm_states), ("x", x), ("dt", dt), ("A", A), ("B", B), ("C", C)):
        check_dtype(name, t)
    if x.dim() != 3:
        raise ValueError(f"x: expected [B, nheads, headdim], got shape {tuple(x.shape)}")
    batch, nheads, headdim = x.shape
    if B.dim() != 3 or B.shape[0] != batch:
        raise ValueError(f"B: expected [B={batch}, ngroups, dstate], got shape {tuple(B.shape)}")
    ngroups, dstate = B.shape[1], B.shape[2]
    if nheads % ngroups != 0:
        raise ValueError(f"B: ngroups={ngroups} must divide nheads={nheads}")
    if C.shape != B.shape:
        raise ValueError(f"C: expected shape {tuple(B.shape)} (same as B), got {tuple(C.shape)}")
    if ssm_states.dim() != 4 or ssm_states.shape[1:] != (nheads, headdim, dstate):
        raise ValueError(
            f"ssm_states: expected [num_slots, nheads={nheads}, headdim={headdim}, "
            f"dstate={dstate}], got shape {tuple(ssm_states.shape)}"
        )
    if dt.shape == (batch, nheads):
        dt_strides = (*dt.stride(), 0)
    elif dt.shape == (batch, nheads, headdim):
        dt_strides = dt.stride()
    else:
        raise ValueError(
            f"dt: expected shape ({batch}, {nheads}) or ({batch}, {nheads}, {headdim}), "
            f"got {tuple(dt.shape)}"
        )
    if A.shape == (nheads,):
        A_strides, a_per_state = (A.stride(0), 0, 0), False
    elif A.shape == (nheads, headdim, dstate):
        A_strides, a_per_state = A.stride(), True
    else:
        raise ValueError(
            f"A: expected shape ({nheads},) or ({nheads}, {headdim}, {dstate}), got {tuple(A.shape)}"
        )
    D_strides = _per_head_strides("D", D, nheads, headdim)
    bias_strides = _per_head_strides("dt_bias", dt_bias, nheads, headdim)
    _check_like_x("z", z, x)
    _check_like_x("out", out, x)
    check_vector("state_indices", state_indices, batch, INDEX_DTYPES)
    check_grid_dim("x", batch, "decode rows", "lower vLLM's max_num_seqs")
    if out is None:
        out = torch.empty_like(x)
    if batch == 0:
        return out
    z_strides = z.stride() if z is not None else (0, 0, 0)
    _launch(cfg, (ssm_states, x, dt, A, B, C, D, z, dt_bias, state_indices, out),
            (*ssm_states.stride(), *x.stride(), *dt_strides, *A_strides, *B.stride(),
             *C.stride(), *D_strides, *z_strides, *bias_strides, *out.stride()),
            batch, nheads, headdim, dstate, nheads // ngroups, a_per_state, dt_softplus,
            dt_limit, pad_slot_id)
    return out


def selective_state_update_per_channel(
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
    out: torch.Tensor | None = None,
    pad_slot_id: int = -1,
) -> torch.Tensor:
    """The same step in Mamba-1's per-channel layout, without views.

    ssm_states: [num_slots, dim, dstate]; x, dt: [B, dim]; A: [dim, dstate];
    B, C: [B, dstate]; state_indices: [B] int32/int64, contiguous; D,
    dt_bias: [dim]; z: [B, dim] or None; out: optional [B, dim]. Equal to
    selective_state_update on one head of headdim dim (``unsqueeze(1)`` of
    x, dt, z, B, C and the states, ``unsqueeze(0)`` of A, D and dt_bias).
    """
    cfg = launch_config(LAUNCH_CONFIGS, "x", x)
    for name, t in (("ssm_states", ssm_states), ("x", x), ("dt", dt), ("A", A), ("B", B), ("C", C)):
        check_dtype(name, t)
    if x.dim() != 2:
        raise ValueError(f"x: expected [B, dim], got shape {tuple(x.shape)}")
    batch, dim = x.shape
    if B.dim() != 2 or B.shape[0] != batch:
        raise ValueError(f"B: expected [B={batch}, dstate], got shape {tuple(B.shape)}")
    dstate = B.shape[1]
    check_shape("C", C, B.shape, "same as B")
    if ssm_states.dim() != 3 or ssm_states.shape[1:] != (dim, dstate):
        raise ValueError(
            f"ssm_states: expected [num_slots, dim={dim}, dstate={dstate}], "
            f"got shape {tuple(ssm_states.shape)}"
        )
    check_shape("dt", dt, x.shape, "same as x")
    check_shape("A", A, (dim, dstate), "[dim, dstate]")
    for name, t in (("D", D), ("dt_bias", dt_bias)):
        if t is not None:
            check_dtype(name, t)
            check_shape(name, t, (dim,), "[dim]")
    _check_like_x("z", z, x)
    _check_like_x("out", out, x)
    check_vector("state_indices", state_indices, batch, INDEX_DTYPES)
    check_grid_dim("x", batch, "decode rows", "lower vLLM's max_num_seqs")
    if out is None:
        out = torch.empty_like(x)
    if batch == 0:
        return out
    s_slot, s_dim, s_state = ssm_states.stride()
    _launch(cfg, (ssm_states, x, dt, A, B, C, D, z, dt_bias, state_indices, out),
            (s_slot, 0, s_dim, s_state, *_one_head_rows(x), *_one_head_rows(dt), 0, *A.stride(),
             *_one_head_rows(B), *_one_head_rows(C), *_one_head_channels(D), *_one_head_rows(z),
             *_one_head_channels(dt_bias), *_one_head_rows(out)),
            batch, 1, dim, dstate, 1, True, dt_softplus, dt_limit, pad_slot_id)
    return out


# The per-channel layout as one head (head index 0, so its stride is 0).
def _one_head_rows(t: torch.Tensor | None) -> tuple[int, int, int]:
    """(row, head, channel) strides of a [B, dim] tensor."""
    if t is None:
        return 0, 0, 0
    row, channel = t.stride()
    return row, 0, channel


def _one_head_channels(t: torch.Tensor | None) -> tuple[int, int]:
    """(head, channel) strides of a [dim] tensor."""
    return (0, 0) if t is None else (0, *t.stride())
