# SPDX-License-Identifier: Apache-2.0
"""The MAMBA1 backend (Mamba, FalconMamba, Jamba).

Until the plugin's own MAMBA1 kernels and layer land, this backend builds
vLLM's own MAMBA1 metadata (vLLM's builder, reused as is) and the layer
computes with vLLM's ops; the platform already routes the type here so the
plugin owns the selection.
"""

from __future__ import annotations

from vllm.v1.attention.backends.mamba1_attn import Mamba1AttentionBackend


class HybridMamba1Backend(Mamba1AttentionBackend):
    """vllm-xpu-hybrid's backend for `MambaAttentionBackendEnum.MAMBA1`."""

    @staticmethod
    def get_name() -> str:
        return "XPU_HYBRID_MAMBA1"
