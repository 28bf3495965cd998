# SPDX-License-Identifier: Apache-2.0
"""The MAMBA1 backend (Mamba, FalconMamba, Jamba).

Metadata only, as every vLLM Mamba backend: the plugin's
``HybridMambaMixer`` (:mod:`vllm_xpu_hybrid.layers.mamba_mixer`) computes,
with the plugin's conv, selective-scan and state-update kernels.

vLLM's Mamba-1 builder is reused as is: it already gives those kernels
everything they take (the decode/prefill split, ``query_start_loc_p``,
``has_initial_states_p`` and state slots), computed from host-side copies
and uploaded without a device->host sync. The selective scan lays out its
own chunks on the device from ``query_start_loc_p``, so it needs no chunk
metadata (vLLM's Mamba-1 builder makes none). The builder also builds the
per-token program tables of vLLM's Triton conv kernel, which the plugin's
kernels do not read; that is host work and small non-blocking copies, no
sync.
"""

from __future__ import annotations

from vllm.v1.attention.backends.mamba1_attn import Mamba1AttentionBackend


class HybridMamba1Backend(Mamba1AttentionBackend):
    """vllm-xpu-hybrid's backend for `MambaAttentionBackendEnum.MAMBA1`."""

    @staticmethod
    def get_name() -> str:
        return "XPU_HYBRID_MAMBA1"
