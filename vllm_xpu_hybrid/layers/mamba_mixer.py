# SPDX-License-Identifier: Apache-2.0
"""The plugin's Mamba-1 mixer (Mamba, FalconMamba, Jamba): vLLM's
``MambaMixer`` computing with the plugin's kernels.

vLLM 0.32's ``MambaMixer.forward(hidden_states, output)`` calls the custom op
``torch.ops.vllm.mamba_mixer``, whose body looks the layer up and calls
``layer.forward_impl(hidden_states, output)``: in-projection, conv, SSM,
out-projection. This subclass overrides ``forward_impl`` only: prefill tokens
through ``causal_conv1d_varlen`` and ``selective_scan``, decode tokens through
``causal_conv1d_update`` and ``selective_state_update_per_channel`` (the
state update's kernel on Mamba-1's per-channel state; see
ops/selective_state_update.py). vLLM's ``_ssm_transform`` (x_proj, the
FalconMamba/Jamba RMS norms of dt, B and C, dt_proj without its bias) is
reused as is. Tokens stay token-major throughout: vLLM transposes to
channel-major for its CUDA ops; the plugin's kernels take any strides.

Parameters, weight loading, state shapes and dtypes, and the KV-cache spec
stay vLLM's; the metadata is vLLM's Mamba-1 builder's, reused as is.

Prefix caching (``mamba_cache_mode="align"``) needs nothing more: vLLM's
``MambaMixer`` asks for no prefill checkpoint blocks, so the scheduler ends
non-final prefill steps at block boundaries and the model runner copies
each request's state into its current block before the step
(``preprocess_mamba``); the kernels read initial and write final states.
"""

from __future__ import annotations

import torch
from vllm.config import get_current_vllm_config
from vllm.distributed import get_tensor_model_parallel_world_size
from vllm.model_executor.layers.mamba.mamba_mixer import MambaMixer

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
from vllm_xpu_hybrid.ops.selective_scan import selective_scan
from vllm_xpu_hybrid.ops.selective_state_update import selective_state_update_per_channel


class HybridMambaMixer(MambaMixer):
    """vLLM's ``MambaMixer`` whose conv and SSM run the plugin's kernels;
    refuses at construction what they cannot serve."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        serve_or_refuse(self, "Mamba-1", self.configuration_problems())

    def configuration_problems(self) -> list[str]:
        """Why the plugin's kernels cannot serve this layer, each reason
        naming the value and the fix; empty when they can."""
        problems = unsupported_settings(
            get_current_vllm_config(), get_tensor_model_parallel_world_size()
        )
        problems += conv_problems(
            "conv kernel width", self.conv_kernel_size, "conv activation", self.activation
        )
        return problems

    def forward_impl(self, hidden_states: torch.Tensor, output: torch.Tensor) -> None:
        """The layer's output for this step's tokens, written into
        ``output[:num_tokens]``; ``hidden_states`` is ``[tokens, hidden]``."""
        projected, _ = self.in_proj(hidden_states)
        x, gate = projected.chunk(2, dim=-1)
        metadata = step_metadata(self.prefix)
        if metadata is None:
            # Profile run: the values do not matter, the shapes do.
            output[: hidden_states.shape[0]] = self.out_proj(x)[0]
            return
        num_decode = metadata.num_decode_tokens
        num_prefill = metadata.num_prefill_tokens
        num_tokens = num_decode + num_prefill
        conv_weights = self.conv1d.weight.view(self.conv1d.weight.size(0), self.conv1d.weight.size(2))
        conv_state = conv_state_view(self.kv_cache[0])
        ssm_state = self.kv_cache[1]
        conv_out = torch.empty(num_tokens, x.shape[1], dtype=x.dtype, device=x.device)
        prefill = slice(num_decode, num_tokens)

        if num_prefill:
            prefill_slots = prefill_state_indices(metadata)
            causal_conv1d_varlen(
                x[prefill],
                conv_weights,
                self.conv1d.bias,
                conv_state,
                metadata.query_start_loc_p,
                prefill_slots,
                metadata.has_initial_states_p,
                activation=self.activation,
                out=conv_out[prefill],
                pad_slot_id=PAD_SLOT_ID,
            )
        if num_decode:
            decode_slots = decode_state_indices(metadata)
            causal_conv1d_update(
                x[:num_decode],
                conv_state,
                conv_weights,
                self.conv1d.bias,
                decode_slots,
                activation=self.activation,
                out=conv_out[:num_decode],
                pad_slot_id=PAD_SLOT_ID,
            )

        # dt: [tokens, channels] (vLLM's transform hands it channel-major).
        dt_t, B, C = self._ssm_transform(conv_out)
        dt = dt_t.transpose(-2, -1)
        dt_bias = self._time_proj_bias()
        y = torch.empty_like(conv_out)

        if num_prefill:
            selective_scan(
                conv_out[prefill],
                dt[prefill],
                self.A,
                B[prefill].unsqueeze(1),
                C[prefill].unsqueeze(1),
                query_start_loc=metadata.query_start_loc_p,
                ssm_states=ssm_state,
                state_indices=prefill_slots,
                has_initial_state=metadata.has_initial_states_p,
                out=y[prefill],
                D=self.D,
                z=gate[prefill],
                dt_bias=dt_bias,
                dt_softplus=True,
                pad_slot_id=PAD_SLOT_ID,
            )
        if num_decode:
            selective_state_update_per_channel(
                ssm_state,
                conv_out[:num_decode],
                dt[:num_decode],
                self.A,
                B[:num_decode],
                C[:num_decode],
                decode_slots,
                D=self.D,
                z=gate[:num_decode],
                dt_bias=dt_bias,
                dt_softplus=True,
                out=y[:num_decode],
                pad_slot_id=PAD_SLOT_ID,
            )

        output[:num_tokens] = self.out_proj(y)[0]
