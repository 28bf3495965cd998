# SPDX-License-Identifier: Apache-2.0
"""Gated RMSNorm, as Mamba-2 applies it after the SSD scan.

The hidden dimension is normalised in independent groups of ``group_size``
columns (Mamba-2: ``intermediate_size // n_groups`` per tensor-parallel
rank), then scaled by ``weight``; ``z`` gates through silu either before the
norm (``norm_before_gate=False``, what vLLM 0.32's ``Mixer2RMSNormGated``
computes: ``rmsnorm(x * silu(z)) * weight``) or after it
(``norm_before_gate=True``: ``rmsnorm(x) * weight * silu(z)``).

Tensor parallelism is the caller's business: with n_groups == 1 and TP > 1,
vLLM all-reduces the sum of squares across ranks (mamba_mixer2.py:139-150);
this op normalises what it is given.

Numerics: everything in fp32, one cast at the end (vLLM's native path casts
the normalised value to the input dtype before multiplying by the weight;
its Triton path, like this one, does not).

Kernel: ``_gated_rmsnorm_kernel``, one program per (``BLOCK_T`` tokens,
group). A group that fits in one ``BLOCK`` stays in registers (one read of x
and z); a wider one is read twice (sum of squares, then normalise). This module imports only
torch and triton.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from vllm_xpu_hybrid.ops.checks import check_dtype, launch_config
from vllm_xpu_hybrid.ops.launch import CachedLaunch, cdiv, next_power_of_2, small_grid_entries


# Launch configurations per device kind ("cuda", "xpu", "cpu" = Triton's
# interpreter, where fewer, larger programs run faster). BLOCK_T: tokens per
# program; MAX_BLOCK: the widest group kept in registers in one pass;
# num_warps by block width (the smallest entry whose width >= BLOCK);
# SMALL_GRID: entries for a grid of fewer than below_programs programs
# (launch.small_grid_entries).
# "cuda" compiles without spills on sm_90 (Triton 3.9); in small grids 8
# warps for groups of 1025-2048 columns, from an H100 sweep
# (docs/benchmarks.md, fifteenth pass: Nemotron-Nano's 1280-wide groups at 1
# and 64 tokens 6.59 -> 4.64 and 7.52 -> 6.24 µs against 4 warps; at 256
# tokens and more of 1024-wide groups 8 warps ran 0.83-0.90x vLLM on an
# H200, hence small grids only). "xpu" follows Intel's
# guidance (more warps); it compiles for PVC without spills (triton-xpu 3.3 +
# ocloc) but has never run on an Intel GPU: UNVERIFIED.
LAUNCH_CONFIGS: dict[str, dict] = {
    "cuda": {"BLOCK_T": 1, "MAX_BLOCK": 8192, "num_warps": {512: 1, 2048: 4, 4096: 8, 8192: 16},
             "compile_options": {},
             "SMALL_GRID": {"below_programs": 2048,
                            "num_warps": {512: 1, 2048: 8, 4096: 8, 8192: 16}}},
    # UNVERIFIED: no Intel GPU has run these.
    "xpu": {"BLOCK_T": 1, "MAX_BLOCK": 8192, "num_warps": {512: 2, 2048: 8, 4096: 16, 8192: 32},
            "compile_options": {}},
    "cpu": {"BLOCK_T": 64, "MAX_BLOCK": 8192, "num_warps": {8192: 1}, "compile_options": {}},
}


@triton.jit
def _gated_rmsnorm_kernel(
    x_ptr, z_ptr, w_ptr, out_ptr,
    num_tokens, group_size, eps,
    stride_x_t, stride_x_d, stride_z_t, stride_z_d, stride_o_t, stride_o_d,
    HAS_Z: tl.constexpr,
    NORM_BEFORE_GATE: tl.constexpr,
    NUM_BLOCKS: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK: tl.constexpr,
):
    tokens = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    token_ok = tokens < num_tokens
    tokens = tokens.to(tl.int64)
    first_col = tl.program_id(1) * group_size
    x_rows = x_ptr + tokens[:, None] * stride_x_t
    out_rows = out_ptr + tokens[:, None] * stride_o_t
    offs = tl.arange(0, BLOCK)

    if NUM_BLOCKS == 1:
        col = first_col + offs
        ok = token_ok[:, None] & (offs < group_size)[None, :]
        h = tl.load(x_rows + col[None, :] * stride_x_d, mask=ok, other=0.0).to(tl.float32)
        if HAS_Z:
            z = tl.load(z_ptr + tokens[:, None] * stride_z_t + col[None, :] * stride_z_d, mask=ok, other=0.0).to(tl.float32)
            gate = z * tl.sigmoid(z)
            if not NORM_BEFORE_GATE:
                h *= gate
        rstd = 1.0 / tl.sqrt(tl.sum(h * h, axis=1) / group_size + eps)
        weight = tl.load(w_ptr + col, mask=offs < group_size, other=0.0).to(tl.float32)
        y = h * rstd[:, None] * weight[None, :]
        if HAS_Z and NORM_BEFORE_GATE:
            y *= gate
        tl.store(out_rows + col[None, :] * stride_o_d, y.to(out_ptr.dtype.element_ty), mask=ok)
    else:
        sum_sq = tl.zeros([BLOCK_T, BLOCK], dtype=tl.float32)
        for b in range(NUM_BLOCKS):
            col = first_col + b * BLOCK + offs
            ok = token_ok[:, None] & (b * BLOCK + offs < group_size)[None, :]
            h = tl.load(x_rows + col[None, :] * stride_x_d, mask=ok, other=0.0).to(tl.float32)
            if HAS_Z and not NORM_BEFORE_GATE:
                z = tl.load(z_ptr + tokens[:, None] * stride_z_t + col[None, :] * stride_z_d, mask=ok, other=0.0).to(tl.float32)
                h *= z * tl.sigmoid(z)
            sum_sq += h * h
        rstd = 1.0 / tl.sqrt(tl.sum(sum_sq, axis=1) / group_size + eps)
        for b in range(NUM_BLOCKS):
            col = first_col + b * BLOCK + offs
            col_ok = b * BLOCK + offs < group_size
            ok = token_ok[:, None] & col_ok[None, :]
            h = tl.load(x_rows + col[None, :] * stride_x_d, mask=ok, other=0.0).to(tl.float32)
            if HAS_Z:
                z = tl.load(z_ptr + tokens[:, None] * stride_z_t + col[None, :] * stride_z_d, mask=ok, other=0.0).to(tl.float32)
                gate = z * tl.sigmoid(z)
                if not NORM_BEFORE_GATE:
                    h *= gate
            weight = tl.load(w_ptr + col, mask=col_ok, other=0.0).to(tl.float32)
            y = h * rstd[:, None] * weight[None, :]
            if HAS_Z and NORM_BEFORE_GATE:
                y *= gate
            tl.store(out_rows + col[None, :] * stride_o_d, y.to(out_ptr.dtype.element_ty), mask=ok)


_launch_gated_rmsnorm = CachedLaunch(_gated_rmsnorm_kernel)


def gated_rmsnorm(
    x: torch.Tensor,
    z: torch.Tensor | None,
    weight: torch.Tensor,
    eps: float = 1e-6,
    group_size: int | None = None,
    norm_before_gate: bool = False,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Group-wise RMSNorm with a silu(z) gate.

    x: [num_tokens, hidden] (rows may be strided); z: [num_tokens, hidden]
    or None (plain grouped RMSNorm); weight: [hidden] contiguous;
    group_size: divides hidden (default hidden, one group);
    norm_before_gate=False: y = rmsnorm(x * silu(z)) * weight (Mamba-2);
    True: y = rmsnorm(x) * weight * silu(z).
    out: optional [num_tokens, hidden]; may be x. Returns out (x.dtype unless given).
    """
    cfg = launch_config(LAUNCH_CONFIGS, "x", x)
    if x.dim() != 2:
        raise ValueError(f"x: expected [num_tokens, hidden], got shape {tuple(x.shape)}")
    tokens, hidden = x.shape
    for name, t in (("x", x), ("z", z), ("weight", weight), ("out", out)):
        if t is not None:
            check_dtype(name, t)
    for name, t in (("z", z), ("out", out)):
        if t is not None and t.shape != x.shape:
            raise ValueError(f"{name}: expected shape {tuple(x.shape)} (same as x), got {tuple(t.shape)}")
    if weight.shape != (hidden,) or weight.stride(0) != 1:
        raise ValueError(
            f"weight: expected contiguous shape ({hidden},), got {tuple(weight.shape)} "
            f"stride {tuple(weight.stride())}"
        )
    group_size = hidden if group_size is None else group_size
    if group_size <= 0 or hidden % group_size != 0:
        raise ValueError(f"group_size: {group_size} must be positive and divide hidden={hidden}")
    if out is None:
        out = torch.empty_like(x)
    if tokens == 0:
        return out

    block = min(next_power_of_2(group_size), cfg["MAX_BLOCK"])
    block_t = cfg["BLOCK_T"]
    grid = (cdiv(tokens, block_t), hidden // group_size)
    warps_by_width = small_grid_entries(cfg, grid[0] * grid[1])["num_warps"]
    num_warps = next(w for width, w in sorted(warps_by_width.items()) if width >= block)
    z_strides = (z.stride(0), z.stride(1)) if z is not None else (0, 0)
    _launch_gated_rmsnorm(
        grid,
        (x, z, weight, out),
        (tokens, group_size, float(eps), *x.stride(), *z_strides, *out.stride()),
        {"HAS_Z": z is not None, "NORM_BEFORE_GATE": norm_before_gate,
         "NUM_BLOCKS": cdiv(group_size, block), "BLOCK_T": block_t, "BLOCK": block},
        {"num_warps": num_warps, **cfg["compile_options"]},
    )
    return out
