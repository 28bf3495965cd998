# SPDX-License-Identifier: Apache-2.0
"""The GDN_ATTN backend (Qwen3-Next, Qwen3.5 and KDA layers).

Until the plugin's own GDN_ATTN kernels and layer land, this backend builds
vLLM's own GDN_ATTN metadata (vLLM's builder, reused as is) and the layer
computes with vLLM's ops; the platform already routes the type here so the
plugin owns the selection.
"""

from __future__ import annotations

from vllm.v1.attention.backends.gdn_attn import GDNAttentionBackend


class HybridGdnBackend(GDNAttentionBackend):
    """vllm-xpu-hybrid's backend for `MambaAttentionBackendEnum.GDN_ATTN`."""

    @staticmethod
    def get_name() -> str:
        return "XPU_HYBRID_GDN_ATTN"
