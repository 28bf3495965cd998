# SPDX-License-Identifier: Apache-2.0
"""The plugin's gated short convolution (LFM2): vLLM's ``ShortConv``
computing with the plugin's conv kernels.

vLLM 0.32's ``ShortConv.forward`` calls the custom op
``torch.ops.vllm.short_conv``, whose body calls ``layer.forward_native`` when
``current_platform.is_cpu()`` (the plugin's CPU platform is a CPU platform)
and ``layer.forward_cuda`` otherwise. This subclass overrides both with one
computation, :meth:`HybridShortConv.conv_forward`: ``B, C, x = in_proj(h)``;
``y = C * conv(B * x)`` with prefill tokens through ``causal_conv1d_varlen``
and decode tokens through ``causal_conv1d_update``; ``out_proj(y)``.

Parameters, weight loading, state shapes and the KV-cache spec stay vLLM's;
the metadata is vLLM's ShortConv builder's, reused as is.
"""

from __future__ import annotations

import torch
from vllm.config import get_current_vllm_config
from vllm.distributed import get_tensor_model_parallel_world_size
from vllm.model_executor.layers.mamba.short_conv import ShortConv

from vllm_xpu_hybrid.layers.mamba_step import (
    PAD_SLOT_ID,
    conv_problems,
    conv_state_view,
    decode_state_indices,
    prefill_state_indices,
    serve_or_refuse,
    step_metadata,
    unsupported_settings,
)
from vllm_xpu_hybrid.ops.causal_conv1d import (
    causal_conv1d_update,
    causal_conv1d_varlen,
)

class HybridShortConv(ShortConv):
    """vLLM's ``ShortConv`` whose convolution runs the plugin's kernels on
    every platform; refuses at construction what they cannot serve."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        serve_or_refuse(self, "ShortConv", self.configuration_problems())

    def configuration_problems(self) -> list[str]:
        """Why the plugin's kernels cannot serve this layer, each reason
        naming the value and the fix; empty when they can."""
        problems = unsupported_settings(
            get_current_vllm_config(), get_tensor_model_parallel_world_size()
        )
        problems += conv_problems("conv_L_cache", self.L_cache)
        return problems

    def forward_native(self, hidden_states: torch.Tensor, output: torch.Tensor) -> None:
        """What vLLM's custom op calls on CPU platforms: the plugin's kernels."""
        self.conv_forward(hidden_states, output)

    def forward_cuda(self, hidden_states: torch.Tensor, output: torch.Tensor) -> None:
        """What vLLM's custom op calls on other platforms: the plugin's kernels."""
        self.conv_forward(hidden_states, output)

    def conv_forward(self, hidden_states: torch.Tensor, output: torch.Tensor) -> None:
        """The layer's output for this step's tokens, written into
        ``output[:num_tokens]``."""
        B, C, x = self.in_proj(hidden_states)[0].chunk(3, dim=-1)
        Bx = B * x
        metadata = step_metadata(self.prefix)
        if metadata is None:
            # Profile run: the values do not matter, the shapes do.
            output[: hidden_states.shape[0]] = self.out_proj(C * Bx)[0]
            return
        num_decode = metadata.num_decode_tokens
        num_prefill = metadata.num_prefill_tokens
        num_tokens = num_decode + num_prefill
        weight = self.conv.weight.view(self.conv.weight.size(0), self.conv.weight.size(2))
        conv_state = conv_state_view(self.kv_cache[0])
        conv_out = torch.empty_like(Bx[:num_tokens])
        if num_prefill:
            causal_conv1d_varlen(
                Bx[num_decode:num_tokens],
                weight,
                self.conv.bias,
                conv_state,
                metadata.query_start_loc_p,
                prefill_state_indices(metadata),
                metadata.has_initial_states_p,
                out=conv_out[num_decode:],
                pad_slot_id=PAD_SLOT_ID,
            )
        if num_decode:
            causal_conv1d_update(
                Bx[:num_decode],
                conv_state,
                weight,
                self.conv.bias,
                decode_state_indices(metadata),
                out=conv_out[:num_decode],
                pad_slot_id=PAD_SLOT_ID,
            )
        output[:num_tokens] = self.out_proj(C[:num_tokens] * conv_out)[0]
