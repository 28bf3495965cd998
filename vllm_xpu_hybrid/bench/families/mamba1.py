# SPDX-License-Identifier: Apache-2.0
"""Mamba-1: the selective scan for prefill and the decode state update.

Peers: vLLM 0.32's ``selective_scan_fn`` (its Mamba-1 prefill), which is a
compiled CUDA op (``_C.selective_scan_fwd``) on NVIDIA and a naive Triton
port on XPU (``vllm/_xpu_ops.py``, which needs ``vllm_xpu_kernels``): with
vLLM's Python sources alone (the anchor bundle) it cannot run, and the report
says so. The scan's other peer is a sequential scan in PyTorch: the
token-by-token float64 reference of ops/reference.py run on the device,
what a device without a scan kernel falls back to. The update runs beside
vLLM's Triton ``selective_state_update`` in the Mamba-1 layout its mixer
uses (state [slots, D, N], x [B, D]).
"""

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

SCAN_RULE = ("exps = L·D·N (one exponential per channel, state element and token: the "
             "scan's bound); bytes = x, dt, z read and out written (L·D each), B and C read "
             "(L·N each), the fp32 state read and written")
UPDATE_RULE = ("bytes = each row's state page read and written (D·N), x, dt, z read and out "
               "written (D each), B and C read (N each)")


def scan_cases(shapes: ShapeSet) -> list[Case]:
    cases = []
    for names, d in shapes.having("mamba1"):
        for L in shapes.prefill_tokens:
            nbytes = (4 * L * d.inner + 2 * L * d.state) * shapes.elt + 2 * d.inner * d.state * 4
            cases.append(Case("mamba1_scan", f"L={L} D={d.inner} N={d.state}", names,
                              {"tokens": L, "inner": d.inner, "state": d.state,
                               "dtype": shapes.dtype},
                              Work(bytes=nbytes, exps=L * d.inner * d.state), tolerance=5e-2))
    return cases


def update_cases(shapes: ShapeSet) -> list[Case]:
    cases = []
    for names, d in shapes.having("mamba1"):
        for batch in shapes.decode_batches:
            for state_dtype in shapes.state_dtypes():
                state_elt = getattr(torch, state_dtype).itemsize
                nbytes = (2 * batch * d.inner * d.state * state_elt
                          + (4 * batch * d.inner + 2 * batch * d.state) * shapes.elt)
                cases.append(Case(
                    "mamba1_state_update",
                    f"B={batch} D={d.inner} N={d.state} state={state_dtype}", names,
                    {"batch": batch, "inner": d.inner, "state": d.state,
                     "state_dtype": state_dtype, "dtype": shapes.dtype},
                    Work(bytes=nbytes), tolerance=2e-2))
    return cases


def _ssm_inputs(inputs: Inputs, rows: int, p: dict):
    """x, dt, z [rows, D]; A [D, N] (negative, fp32); B, C [rows, N]; D,
    dt_bias [D] fp32: what a Mamba-1 mixer hands its kernels."""
    D, N = p["inner"], p["state"]
    x, dt, z = inputs.randn(rows, D), inputs.randn(rows, D), inputs.randn(rows, D)
    A = -torch.exp(inputs.rand(D, N) * 2)
    B, C = inputs.randn(rows, N), inputs.randn(rows, N)
    D_skip = inputs.randn(D, dtype=torch.float32)
    dt_bias = inputs.randn(D, dtype=torch.float32, scale=0.5) - 2
    return x, dt, z, A, B, C, D_skip, dt_bias


def build_scan(case: Case, ctx: BuildContext) -> Built:
    from vllm_xpu_hybrid.ops.reference import selective_scan_reference
    from vllm_xpu_hybrid.ops.selective_scan import selective_scan

    p = case.params
    L = p["tokens"]
    inputs = Inputs(ctx, case)
    x, dt, z, A, B, C, D_skip, dt_bias = _ssm_inputs(inputs, L, p)
    initial = inputs.randn(2, p["inner"], p["state"], dtype=torch.float32, scale=0.1)
    idx = state_slots(1, ctx.device)
    has_initial = torch.ones(1, device=ctx.device, dtype=torch.bool)
    cu = torch.tensor([0, L], device=ctx.device, dtype=torch.int32)

    def reference() -> dict[str, torch.Tensor]:
        refs = to_ref(ctx, x, dt, A, B[:, None], C[:, None], cu, idx, has_initial, D_skip, z,
                      dt_bias)
        x_r, dt_r, A_r, B_r, C_r, cu_r, idx_r, init_r, D_r, z_r, bias_r = refs
        states = initial.to(ctx.ref_device, copy=True)
        with torch.device(ctx.ref_device):
            out = selective_scan_reference(x_r, dt_r, A_r, B_r, C_r, cu_r, states, idx_r, init_r,
                                           D=D_r, z=z_r, dt_bias=bias_r, dt_softplus=True)
        return {"out": out, "state": states[1:]}

    built = Built(reference)
    out = torch.empty_like(x)
    add_stateful(built, "plugin", initial, lambda states: {"out": selective_scan(
        x, dt, A, B[:, None], C[:, None], query_start_loc=cu, ssm_states=states,
        state_indices=idx, has_initial_state=has_initial, out=out, D=D_skip, z=z,
        dt_bias=dt_bias, dt_softplus=True)})
    with built.peer("vLLM selective_scan_fn"):
        from vllm.model_executor.layers.mamba.ops.mamba_ssm import selective_scan_fn

        # vLLM's mixer holds these channel-major; the op overwrites delta and
        # z with its outputs, so the check restores them first.
        x_cm, B_cm, C_cm = x.t().contiguous(), B.t().contiguous(), C.t().contiguous()
        dt_cm, z_cm = dt.t().contiguous(), z.t().contiguous()
        dt_work, z_work = dt_cm.clone(), z_cm.clone()
        states = initial.clone()

        def peer():
            return selective_scan_fn(x_cm, states, dt_work, A, B_cm, C_cm, D_skip, z_work, dt_bias,
                                     delta_softplus=True, query_start_loc=cu, cache_indices=idx,
                                     has_initial_state=has_initial)

        def peer_outputs() -> dict[str, torch.Tensor]:
            states.copy_(initial)
            dt_work.copy_(dt_cm)
            z_work.copy_(z_cm)
            return {"out": peer().t(), "state": states[1:]}

        built.add("vLLM selective_scan_fn", peer, peer_outputs)

    def sequential(states: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.device(ctx.device):
            return {"out": selective_scan_reference(
                x, dt, A, B[:, None], C[:, None], cu, states, idx, has_initial, D=D_skip, z=z,
                dt_bias=dt_bias, dt_softplus=True)}

    add_stateful(built, "PyTorch sequential scan", initial, sequential)
    return built


def build_update(case: Case, ctx: BuildContext) -> Built:
    from vllm_xpu_hybrid.ops.reference import selective_state_update_reference
    from vllm_xpu_hybrid.ops.selective_state_update import selective_state_update_per_channel

    p = case.params
    batch = p["batch"]
    inputs = Inputs(ctx, case)
    x, dt, z, A, B, C, D_skip, dt_bias = _ssm_inputs(inputs, batch, p)
    initial = inputs.randn(batch + 1, p["inner"], p["state"], dtype=getattr(torch, p["state_dtype"]),
                           scale=0.1)
    idx = state_slots(batch, ctx.device)

    def one_head(t: torch.Tensor) -> torch.Tensor:
        """The reference's Mamba-1 form: one head whose headdim is the channels."""
        return t.unsqueeze(1)

    def reference() -> dict[str, torch.Tensor]:
        refs = to_ref(ctx, x, dt, A, B, C, idx, D_skip, z, dt_bias)
        x_r, dt_r, A_r, B_r, C_r, idx_r, D_r, z_r, bias_r = refs
        states = initial.to(ctx.ref_device, copy=True)
        with torch.device(ctx.ref_device):
            out = selective_state_update_reference(
                one_head(states), one_head(x_r), one_head(dt_r), A_r[None], one_head(B_r),
                one_head(C_r), idx_r, D=D_r[None], z=one_head(z_r), dt_bias=bias_r[None],
                dt_softplus=True)
        return {"out": out[:, 0], "state": states[1:]}

    built = Built(reference)
    out = torch.empty_like(x)

    add_stateful(built, "plugin", initial, lambda states: {"out": selective_state_update_per_channel(
        states, x, dt, A, B, C, idx, D=D_skip, z=z, dt_bias=dt_bias, dt_softplus=True, out=out)})
    with built.peer("vLLM selective_state_update"):
        from vllm.model_executor.layers.mamba.ops.mamba_ssm import (
            selective_state_update as vllm_update,
        )

        peer_out = torch.empty_like(x)

        def peer(states):
            vllm_update(states, x, dt, A, B, C, D_skip, dt_bias, z=z, dt_softplus=True,
                        state_batch_indices=idx, out=peer_out)
            return {"out": peer_out}

        add_stateful(built, "vLLM selective_state_update", initial, peer)
    return built


FAMILIES = (
    Family("mamba1_state_update", "Mamba-1 decode state update",
           "vllm_xpu_hybrid.ops.selective_state_update", UPDATE_RULE, update_cases, build_update),
    Family("mamba1_scan", "Mamba-1 selective scan prefill", "vllm_xpu_hybrid.ops.selective_scan",
           SCAN_RULE, scan_cases, build_scan),
)
