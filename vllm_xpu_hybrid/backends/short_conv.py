# SPDX-License-Identifier: Apache-2.0
"""The SHORT_CONV backend (LFM2).

Until the plugin's own SHORT_CONV kernels and layer land, this backend builds
vLLM's own SHORT_CONV metadata (vLLM's builder, reused as is) and the layer
computes with vLLM's ops; the platform already routes the type here so the
plugin owns the selection.
"""

from __future__ import annotations

from vllm.v1.attention.backends.short_conv_attn import ShortConvAttentionBackend


class HybridShortConvBackend(ShortConvAttentionBackend):
    """vllm-xpu-hybrid's backend for `MambaAttentionBackendEnum.SHORT_CONV`."""

    @staticmethod
    def get_name() -> str:
        return "XPU_HYBRID_SHORT_CONV"
