# SPDX-License-Identifier: Apache-2.0
"""The SHORT_CONV backend (LFM2).

Metadata only, as every vLLM Mamba backend: the plugin's ``HybridShortConv``
(:mod:`vllm_xpu_hybrid.layers.short_conv`) computes, with the plugin's conv
kernels.

vLLM's ShortConv builder is reused as is: it already gives those kernels
everything they take (the decode/prefill split, ``query_start_loc_p``,
``has_initial_states_p`` and state slots), computed from host-side copies and
uploaded without a device->host sync. It also builds the per-token program
tables of vLLM's Triton conv kernel, which the plugin's kernels do not read;
that is host work and small non-blocking copies, no sync.
"""

from __future__ import annotations

from vllm.v1.attention.backends.short_conv_attn import ShortConvAttentionBackend


class HybridShortConvBackend(ShortConvAttentionBackend):
    """vllm-xpu-hybrid's backend for `MambaAttentionBackendEnum.SHORT_CONV`."""

    @staticmethod
    def get_name() -> str:
        return "XPU_HYBRID_SHORT_CONV"
