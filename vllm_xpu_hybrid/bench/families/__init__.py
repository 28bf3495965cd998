# SPDX-License-Identifier: Apache-2.0
"""The benchmark's families, in run order, and the groups ``--family``
accepts besides their names."""

from __future__ import annotations

from vllm_xpu_hybrid.bench.families import (
    attention,
    conv1d,
    gated_delta_rule,
    lightning,
    mamba1,
    mamba2,
    rmsnorm,
)
from vllm_xpu_hybrid.bench.registry import Family

FAMILIES: dict[str, Family] = {
    family.name: family
    for module in (attention, mamba2, conv1d, rmsnorm, mamba1, gated_delta_rule, lightning)
    for family in module.FAMILIES
}

GROUPS: dict[str, tuple[str, ...]] = {
    "attention": ("attention_decode", "attention_prefill"),
    "mamba2": ("mamba2_state_update", "ssd", "gated_rmsnorm"),
    "conv1d": ("conv1d_update", "conv1d_varlen"),
    "mamba1": ("mamba1_state_update", "mamba1_scan"),
    "gdn": ("gdn_decode", "gdn_prefill"),
    "lightning": ("lightning_decode", "lightning_prefill"),
    "decode": ("attention_decode", "mamba2_state_update", "conv1d_update", "mamba1_state_update",
               "gdn_decode", "lightning_decode"),
    "prefill": ("attention_prefill", "ssd", "conv1d_varlen", "mamba1_scan", "gdn_prefill",
                "lightning_prefill"),
}


def select(names: list[str] | None) -> list[Family]:
    """The families named (family or group names), in run order; all when
    names is empty or None. Raises ValueError naming the choices."""
    if not names:
        return list(FAMILIES.values())
    wanted: set[str] = set()
    for name in names:
        if name in FAMILIES:
            wanted.add(name)
        elif name in GROUPS:
            wanted.update(GROUPS[name])
        else:
            raise ValueError(f"--family {name!r} is not a family or group; choose from "
                             f"{', '.join([*FAMILIES, *GROUPS])}")
    return [family for name, family in FAMILIES.items() if name in wanted]
