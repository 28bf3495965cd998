# SPDX-License-Identifier: Apache-2.0
"""The LINEAR backend (lightning-style linear attention, Bailing linear models).

Until the plugin's own LINEAR kernels and layer land, this backend builds
vLLM's own LINEAR metadata (vLLM's builder, reused as is) and the layer
computes with vLLM's ops; the platform already routes the type here so the
plugin owns the selection.
"""

from __future__ import annotations

from vllm.v1.attention.backends.linear_attn import LinearAttentionBackend


class HybridLinearBackend(LinearAttentionBackend):
    """vllm-xpu-hybrid's backend for `MambaAttentionBackendEnum.LINEAR`."""

    @staticmethod
    def get_name() -> str:
        return "XPU_HYBRID_LINEAR"
