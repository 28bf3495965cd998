# SPDX-License-Identifier: Apache-2.0
"""Mamba-2: SSD prefill and the decode state update, beside vLLM 0.32's
Triton kernels (``mamba_chunk_scan_combined_varlen``,
``selective_state_update`` with the per-(head, channel) views its mixer
passes)."""

from __future__ import annotations

import torch

from vllm_xpu_hybrid.bench.families.common import (
    Inputs,
    add_stateful,
    state_slots,
    to_ref,
)
from vllm_xpu_hybrid.bench.registry import BuildContext, Built, Case, Family, Work
from vllm_xpu_hybrid.bench.shapes import ShapeSet

SSD_RULE = ("FLOPs = the chunked SSD's dense matmuls as executed, chunk Q (causal halves "
            "not subtracted): 2·L·Q·N·G (C·Bᵀ) + 2·L·Q·P·H (intra-chunk scan) + 2·L·P·N·H "
            "(chunk states) + 2·L·P·N·H (states into outputs); bytes = x, dt, B, C read, out "
            "written, the fp32 state read and written")
UPDATE_RULE = ("bytes = each row's state page read and written (H·P·N), x, z read and out "
               "written (H·P), dt (H), B and C (G·N) read")


def _dims_params(dims, shapes: ShapeSet) -> dict:
    return {"heads": dims.heads, "head_dim": dims.head_dim, "state": dims.state,
            "groups": dims.groups, "chunk": dims.chunk, "dtype": shapes.dtype}


def _dims_label(p: dict) -> str:
    return f"H={p['heads']} P={p['head_dim']} N={p['state']} G={p['groups']}"


def ssd_cases(shapes: ShapeSet) -> list[Case]:
    cases = []
    for names, dims in shapes.having("mamba2"):
        p = _dims_params(dims, shapes)
        H, P, N, G, Q = dims.heads, dims.head_dim, dims.state, dims.groups, dims.chunk
        for L in shapes.prefill_tokens:
            flops = 2 * L * Q * N * G + 2 * L * Q * P * H + 4 * L * P * N * H
            nbytes = (2 * L * H * P + L * H + 2 * L * G * N) * shapes.elt + 2 * H * P * N * 4
            cases.append(Case("ssd", f"L={L} {_dims_label(p)} chunk={Q}", names,
                              {**p, "tokens": L}, Work(bytes=nbytes, flops=flops),
                              tolerance=5e-2))
    return cases


def update_cases(shapes: ShapeSet) -> list[Case]:
    cases = []
    for names, dims in shapes.having("mamba2"):
        p = _dims_params(dims, shapes)
        H, P, N, G = dims.heads, dims.head_dim, dims.state, dims.groups
        for batch in shapes.decode_batches:
            for state_dtype in shapes.state_dtypes():
                state_elt = getattr(torch, state_dtype).itemsize
                nbytes = (2 * batch * H * P * N * state_elt
                          + (3 * batch * H * P + batch * H + 2 * batch * G * N) * shapes.elt)
                cases.append(Case(
                    "mamba2_state_update",
                    f"B={batch} {_dims_label(p)} state={state_dtype}", names,
                    {**p, "batch": batch, "state_dtype": state_dtype},
                    Work(bytes=nbytes), tolerance=2e-2))
    return cases


def _ssm_inputs(inputs: Inputs, rows: int, p: dict):
    """x, dt, A, B, C, D, dt_bias as a Mamba-2 mixer hands them to its kernels."""
    H, P, N, G = p["heads"], p["head_dim"], p["state"], p["groups"]
    x = inputs.randn(rows, H, P)
    dt = inputs.randn(rows, H)
    A = -torch.exp(inputs.rand(H))
    B = inputs.randn(rows, G, N)
    C = inputs.randn(rows, G, N)
    D = inputs.randn(H, dtype=torch.float32)
    dt_bias = inputs.randn(H, dtype=torch.float32)
    return x, dt, A, B, C, D, dt_bias


def build_ssd(case: Case, ctx: BuildContext) -> Built:
    from vllm_xpu_hybrid.ops.reference import ssd_scan_reference
    from vllm_xpu_hybrid.ops.ssd import ssd_chunk_metadata, ssd_chunk_scan

    p = case.params
    L, chunk = p["tokens"], p["chunk"]
    inputs = Inputs(ctx, case)
    x, dt, A, B, C, D, dt_bias = _ssm_inputs(inputs, L, p)
    initial = inputs.randn(2, p["heads"], p["head_dim"], p["state"], dtype=torch.float32, scale=0.1)
    idx = state_slots(1, ctx.device)
    has_initial = torch.ones(1, device=ctx.device, dtype=torch.bool)
    cu = torch.tensor([0, L], device=ctx.device, dtype=torch.int32)
    cu_chunks, last_chunks = ssd_chunk_metadata([0, L], chunk, device=ctx.device)

    def reference() -> dict[str, torch.Tensor]:
        refs = to_ref(ctx, x, dt, A, B, C, cu, idx, has_initial, D, dt_bias)
        states = initial.to(ctx.ref_device, copy=True)
        x_r, dt_r, A_r, B_r, C_r, cu_r, idx_r, init_r, D_r, bias_r = refs
        with torch.device(ctx.ref_device):
            out = ssd_scan_reference(x_r, dt_r, A_r, B_r, C_r, cu_r, states, idx_r, init_r,
                                     D=D_r, dt_bias=bias_r, dt_softplus=True)
        return {"out": out, "state": states[1:]}

    built = Built(reference)
    out = torch.empty_like(x)

    def plugin(states):
        ssd_chunk_scan(x, dt, A, B, C, chunk_size=chunk, cu_chunk_seqlens=cu_chunks,
                       last_chunk_indices=last_chunks, ssm_states=states, state_indices=idx,
                       has_initial_state=has_initial, out=out, D=D, dt_bias=dt_bias,
                       dt_softplus=True)
        return {"out": out}

    add_stateful(built, "plugin", initial, plugin)
    with built.peer("vLLM mamba_chunk_scan_combined_varlen"):
        from vllm.model_executor.layers.mamba.ops.ssd_combined import (
            mamba_chunk_scan_combined_varlen,
        )

        seq_idx = torch.zeros(cu_chunks.numel() - 1, device=ctx.device, dtype=torch.int32)
        peer_out = torch.empty_like(x)

        def peer(states):
            # vLLM's mixer gathers the initial states and scatters the final ones.
            final = mamba_chunk_scan_combined_varlen(
                x, dt, A, B, C, chunk, cu, cu_chunks, last_chunks, seq_idx, peer_out, D=D,
                dt_bias=dt_bias, initial_states=states[idx], dt_softplus=True,
                state_dtype=torch.float32)
            states[idx] = final
            return {"out": peer_out}

        add_stateful(built, "vLLM mamba_chunk_scan_combined_varlen", initial, peer)
    return built


def build_update(case: Case, ctx: BuildContext) -> Built:
    from vllm_xpu_hybrid.ops.reference import selective_state_update_reference
    from vllm_xpu_hybrid.ops.selective_state_update import selective_state_update

    p = case.params
    batch, H, P, N = p["batch"], p["heads"], p["head_dim"], p["state"]
    state_dtype = getattr(torch, p["state_dtype"])
    inputs = Inputs(ctx, case)
    x, dt, A, B, C, D, dt_bias = _ssm_inputs(inputs, batch, p)
    z = inputs.randn(batch, H, P)
    initial = inputs.randn(batch + 1, H, P, N, dtype=state_dtype, scale=0.1)
    idx = state_slots(batch, ctx.device)

    def reference() -> dict[str, torch.Tensor]:
        x_r, dt_r, A_r, B_r, C_r, idx_r, D_r, z_r, bias_r = to_ref(ctx, x, dt, A, B, C, idx, D, z,
                                                                   dt_bias)
        states = initial.to(ctx.ref_device, copy=True)
        with torch.device(ctx.ref_device):
            out = selective_state_update_reference(states, x_r, dt_r, A_r, B_r, C_r, idx_r, D=D_r,
                                                   z=z_r, dt_bias=bias_r, dt_softplus=True)
        return {"out": out, "state": states[1:]}

    built = Built(reference)
    out = torch.empty_like(x)
    add_stateful(built, "plugin", initial, lambda states: {"out": selective_state_update(
        states, x, dt, A, B, C, idx, D=D, z=z, dt_bias=dt_bias, dt_softplus=True, out=out)})
    with built.peer("vLLM selective_state_update"):
        from vllm.model_executor.layers.mamba.ops.mamba_ssm import (
            selective_state_update as vllm_update,
        )

        # MambaMixer2's decode path: per-(head, channel) parameters as tied views.
        dt_p = dt[:, :, None].expand(-1, -1, P)
        A_p = A[:, None, None].expand(-1, P, N)
        D_p = D[:, None].expand(-1, P)
        bias_p = dt_bias[:, None].expand(-1, P)
        peer_out = torch.empty_like(x)

        def peer(states):
            vllm_update(states, x, dt_p, A_p, B, C, D_p, bias_p, z=z, dt_softplus=True,
                        state_batch_indices=idx, out=peer_out)
            return {"out": peer_out}

        add_stateful(built, "vLLM selective_state_update", initial, peer)
    return built


FAMILIES = (
    Family("mamba2_state_update", "Mamba-2 decode state update",
           "vllm_xpu_hybrid.ops.selective_state_update", UPDATE_RULE, update_cases, build_update),
    Family("ssd", "Mamba-2 SSD prefill", "vllm_xpu_hybrid.ops.ssd", SSD_RULE, ssd_cases, build_ssd),
)
