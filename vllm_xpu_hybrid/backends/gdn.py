# SPDX-License-Identifier: Apache-2.0
"""The GDN_ATTN backend (Qwen3-Next, Qwen3.5; the KDA and vendor GDN layers
that share the type are refused by the plugin's layers).

Metadata only, as every vLLM Mamba backend: the plugin's
``HybridQwenGatedDeltaNet`` (:mod:`vllm_xpu_hybrid.layers.gdn`) computes,
with the plugin's conv, gated delta rule and gated-norm kernels.

vLLM's GDN builder is reused as is: it already gives those kernels
everything they take -- the decode/prefill split (decode rows first), the
decode rows' state slots (``non_spec_state_indices_tensor``), the prefill
rows' ``prefill_query_start_loc`` (rebased to the first prefill token),
``prefill_state_indices`` and ``prefill_has_initial_state``, and the
64-token chunk layout of the prefill tokens (``chunk_indices``,
``chunk_offsets``: FLA's layout, which the plugin's chunked kernels take) --
computed from host-side copies and uploaded without a device->host sync. On
a non-CUDA platform its prefill backend resolves to "triton", the branch
that builds those chunk tensors. It also builds what only vLLM's own Triton
conv kernel reads (``nums_dict``, ``batch_ptr``, ``token_chunk_offset_ptr``);
that is host work and small non-blocking copies, no sync.
"""

from __future__ import annotations

from vllm.v1.attention.backends.gdn_attn import GDNAttentionBackend


class HybridGdnBackend(GDNAttentionBackend):
    """vllm-xpu-hybrid's backend for `MambaAttentionBackendEnum.GDN_ATTN`."""

    @staticmethod
    def get_name() -> str:
        return "XPU_HYBRID_GDN_ATTN"
