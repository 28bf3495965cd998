# SPDX-License-Identifier: Apache-2.0
"""Gated RMSNorm as Mamba-2 (norm of x·silu(z) over each group) and Gated
DeltaNet (norm of each value head, then ·silu(z)) apply it, beside vLLM
0.32's Triton kernel (``layernorm_gated.rms_norm_gated``)."""

from __future__ import annotations

import torch

from vllm_xpu_hybrid.bench.families.common import Inputs, to_ref
from vllm_xpu_hybrid.bench.registry import BuildContext, Built, Case, Family, Work
from vllm_xpu_hybrid.bench.shapes import ShapeSet

EPS = 1e-5

RULE = "bytes = x and z read, out written (rows·hidden each), weight read"


def norm_specs(shapes: ShapeSet) -> list[tuple[tuple[str, ...], dict]]:
    """(models, {heads_per_token, hidden, group, norm_before_gate}) of the
    Mamba-2 mixers (one row per token, hidden = H·P, groups of H·P/G) and the
    Gated DeltaNet layers (one row per token and value head)."""
    specs = []
    for names, d in shapes.having("mamba2"):
        specs.append((names, {"rows_per_token": 1, "hidden": d.inner, "group": d.inner // d.groups,
                              "norm_before_gate": False}))
    for names, d in shapes.having("gdn"):
        specs.append((names, {"rows_per_token": d.v_heads, "hidden": d.v_dim, "group": d.v_dim,
                              "norm_before_gate": True}))
    return specs


def cases(shapes: ShapeSet) -> list[Case]:
    result = []
    tokens_list = sorted(set(shapes.decode_batches) | set(shapes.prefill_tokens))
    for names, spec in norm_specs(shapes):
        for tokens in tokens_list:
            rows = tokens * spec["rows_per_token"]
            nbytes = (3 * rows * spec["hidden"] + spec["hidden"]) * shapes.elt
            gate = "norm-then-gate" if spec["norm_before_gate"] else "gate-then-norm"
            result.append(Case(
                "gated_rmsnorm", f"T={tokens} rows={rows} hidden={spec['hidden']} "
                f"group={spec['group']} {gate}", names,
                {**spec, "tokens": tokens, "rows": rows, "dtype": shapes.dtype},
                Work(bytes=nbytes), tolerance=2e-2))
    return result


def build(case: Case, ctx: BuildContext) -> Built:
    from vllm_xpu_hybrid.ops.gated_rmsnorm import gated_rmsnorm
    from vllm_xpu_hybrid.ops.reference import gated_rmsnorm_reference

    p = case.params
    inputs = Inputs(ctx, case)
    x = inputs.randn(p["rows"], p["hidden"])
    z = inputs.randn(p["rows"], p["hidden"])
    weight = 1 + inputs.randn(p["hidden"], scale=0.1)
    group, before = p["group"], p["norm_before_gate"]

    def reference() -> dict[str, torch.Tensor]:
        x_r, z_r, w_r = to_ref(ctx, x, z, weight)
        return {"out": gated_rmsnorm_reference(x_r, z_r, w_r, EPS, group, before)}

    built = Built(reference)
    out = torch.empty_like(x)

    def plugin():
        return gated_rmsnorm(x, z, weight, EPS, group, before, out=out)

    built.add("plugin", plugin, lambda: {"out": plugin()})
    with built.peer("vLLM rms_norm_gated"):
        from vllm.model_executor.layers.mamba.ops.layernorm_gated import rms_norm_gated

        def peer():
            return rms_norm_gated(x, weight, None, z=z, eps=EPS, group_size=group,
                                  norm_before_gate=before)

        built.add("vLLM rms_norm_gated", peer, lambda: {"out": peer()})
    return built


FAMILIES = (
    Family("gated_rmsnorm", "Gated RMSNorm", "vllm_xpu_hybrid.ops.gated_rmsnorm", RULE, cases,
           build),
)
