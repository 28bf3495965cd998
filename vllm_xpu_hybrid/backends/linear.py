# SPDX-License-Identifier: Apache-2.0
"""The LINEAR backend (lightning attention: Bailing V2.5's linear layers).

Metadata only, as every vLLM Mamba backend: the plugin's
``HybridBailingLinearAttention`` (:mod:`vllm_xpu_hybrid.layers.linear_attention`)
computes, with the plugin's lightning-attention kernels.

vLLM 0.32's own LINEAR builder (``LinearAttentionMetadataBuilder``) gives
each row's state slot but neither the prefill rows' own ``query_start_loc``
nor which of them carry a state, which vLLM's layers rebuild per layer and
per sequence on the host (a device->host sync each). vLLM's shared Mamba
builder (``BaseMambaAttentionMetadataBuilder``, the one its ShortConv backend
uses) gives exactly what the kernels take, once per step and without a sync:
the decode/prefill split, ``query_start_loc_p``, ``has_initial_states_p`` and
the decode/prefill state slots (in prefix-caching "align" mode, the block
holding each row's last token, as vLLM's LINEAR builder picks it). It is
reused as is, without the per-token tables of vLLM's Triton conv kernel.

The builder checks at engine start that every layer of its group is one the
plugin computes: another LINEAR layer (vLLM's MiniMax-Text-01 layer, which no
vLLM 0.32 model builds, or an out-of-tree one) would read metadata it does
not know and run vLLM's kernels, so it is refused with its class named.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from vllm.config import VllmConfig
from vllm.v1.attention.backends.linear_attn import LinearAttentionBackend
from vllm.v1.attention.backends.mamba_attn import (
    BaseMambaAttentionMetadata,
    BaseMambaAttentionMetadataBuilder,
)
from vllm.v1.kv_cache_interface import MambaSpec


@dataclass
class HybridLinearAttentionMetadata(BaseMambaAttentionMetadata):
    pass


class HybridLinearAttentionMetadataBuilder(
    BaseMambaAttentionMetadataBuilder[HybridLinearAttentionMetadata]
):
    metadata_cls = HybridLinearAttentionMetadata
    needs_causal_conv1d_metadata = False

    def __init__(
        self,
        kv_cache_spec: MambaSpec,
        layer_names: list[str],
        vllm_config: VllmConfig,
        device: torch.device,
    ):
        super().__init__(kv_cache_spec, layer_names, vllm_config, device)
        check_layers_served(vllm_config, layer_names)


def check_layers_served(vllm_config: VllmConfig, layer_names: list[str]) -> None:
    """Raise ``ValueError`` naming every layer among ``layer_names`` that is
    not one of the plugin's lightning-attention layers."""
    from vllm_xpu_hybrid.layers.linear_attention import HybridBailingLinearAttention

    layers = vllm_config.compilation_config.static_forward_context
    foreign = sorted(
        {
            f"{type(layers[name]).__module__}.{type(layers[name]).__qualname__}"
            for name in layer_names
            if name in layers and not isinstance(layers[name], HybridBailingLinearAttention)
        }
    )
    if foreign:
        raise ValueError(
            "vllm-xpu-hybrid's LINEAR backend serves Bailing V2.5's linear-attention "
            f"layers only (BailingMoELinearAttention); this model builds {', '.join(foreign)}, "
            "which the plugin does not compute. Serve this model without the plugin "
            "(unset VLLM_PLUGINS or VLLM_XPU_HYBRID_DEVICE)."
        )


class HybridLinearBackend(LinearAttentionBackend):
    """vllm-xpu-hybrid's backend for `MambaAttentionBackendEnum.LINEAR`."""

    @staticmethod
    def get_name() -> str:
        return "XPU_HYBRID_LINEAR"

    @staticmethod
    def get_builder_cls() -> type[HybridLinearAttentionMetadataBuilder]:
        return HybridLinearAttentionMetadataBuilder
