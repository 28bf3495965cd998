# SPDX-License-Identifier: Apache-2.0
"""The MAMBA2 backend (Mamba2, GraniteMoeHybrid, NemotronH, FalconH1, Zamba2).

Until the plugin's own MAMBA2 kernels and layer land, this backend builds
vLLM's own MAMBA2 metadata (vLLM's builder, reused as is) and the layer
computes with vLLM's ops; the platform already routes the type here so the
plugin owns the selection.
"""

from __future__ import annotations

from vllm.v1.attention.backends.mamba2_attn import Mamba2AttentionBackend


class HybridMamba2Backend(Mamba2AttentionBackend):
    """vllm-xpu-hybrid's backend for `MambaAttentionBackendEnum.MAMBA2`."""

    @staticmethod
    def get_name() -> str:
        return "XPU_HYBRID_MAMBA2"
