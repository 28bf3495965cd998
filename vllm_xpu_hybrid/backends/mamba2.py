# SPDX-License-Identifier: Apache-2.0
"""The MAMBA2 backend (Mamba2, GraniteMoeHybrid, NemotronH, FalconH1, Zamba2).

Metadata only, as every vLLM Mamba backend: the plugin's
``HybridMambaMixer2`` (:mod:`vllm_xpu_hybrid.layers.mamba_mixer2`) computes,
with the plugin's conv, SSD, state-update and gated-norm kernels.

vLLM's Mamba-2 builder is reused as is: it already gives those kernels
everything they take (the decode/prefill split, ``query_start_loc_p``,
``has_initial_states_p``, state slots, and the logical chunks
``cu_chunk_seqlen_p`` / ``last_chunk_indices_p`` the SSD kernel runs on),
computed from host-side copies and uploaded without a device->host sync.
It also builds what only vLLM's own kernels read (``seq_idx_p`` and the
per-token program tables of its Triton conv kernel); that is host work and
small non-blocking copies, no sync.
"""

from __future__ import annotations

from vllm.v1.attention.backends.mamba2_attn import Mamba2AttentionBackend


class HybridMamba2Backend(Mamba2AttentionBackend):
    """vllm-xpu-hybrid's backend for `MambaAttentionBackendEnum.MAMBA2`."""

    @staticmethod
    def get_name() -> str:
        return "XPU_HYBRID_MAMBA2"
