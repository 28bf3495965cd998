# SPDX-License-Identifier: Apache-2.0
"""The plugin's Mamba-2 mixer (Mamba2, GraniteMoeHybrid, NemotronH, FalconH1,
Zamba2): vLLM's ``MambaMixer2`` computing with the plugin's kernels.

vLLM 0.32's ``MambaMixer2.forward`` runs the in-projection, then the custom op
``torch.ops.vllm.mamba_mixer2``, whose body looks the layer up and calls
``layer.conv_ssm_forward(projected_states, output)`` (conv + SSM), then the
gated RMSNorm (``Mixer2RMSNormGated``: vLLM's Triton kernel on GPUs for one
group, PyTorch otherwise) and the out-projection. This subclass overrides:

- ``conv_ssm_forward``: conv, SSM and the gated norm, with the plugin's
  kernels: prefill tokens through ``causal_conv1d_varlen`` and
  ``ssd_chunk_scan``, decode tokens through ``causal_conv1d_update`` and
  ``selective_state_update``, then ``gated_rmsnorm`` over all tokens, in place.
- ``forward``: the same steps as vLLM's without its separate norm call. The
  norm moved inside the custom op so that, under ``torch.compile``, the
  plugin's Triton launch stays in the opaque op instead of being traced.

Parameters, weight loading, state shapes and dtypes, and the KV-cache spec
stay vLLM's. The metadata is vLLM's Mamba-2 builder's, reused as is
(``cu_chunk_seqlen_p`` / ``last_chunk_indices_p`` are exactly the SSD
kernel's logical chunks).

Prefix caching (``mamba_cache_mode="align"``, vLLM 0.32's default for these
models): vLLM's engine copies each request's state to the page of its
current block before the step (the kernels read and write
``state_indices_tensor_p`` / ``_d`` as without caching), and vLLM's layer
spec asks for one prefill checkpoint per row (``num_prefill_checkpoint_blocks
= 1``): the state after the last full block inside this prefill, at a chunk
end the builder places on it (``checkpoint_chunk_idx``), written to
``checkpoint_meta.state_indices``. The conv and SSD kernels write those
checkpoint states in the same launches that write the final states.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from vllm.config import get_current_vllm_config
from vllm.model_executor.layers.mamba.mamba_mixer2 import MambaMixer2
from vllm.utils.torch_utils import _encode_layer_name

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
from vllm_xpu_hybrid.ops.gated_rmsnorm import gated_rmsnorm
from vllm_xpu_hybrid.ops.selective_state_update import selective_state_update
from vllm_xpu_hybrid.ops.ssd import ssd_chunk_scan


class HybridMambaMixer2(MambaMixer2):
    """vLLM's ``MambaMixer2`` whose conv, SSM and gated norm run the
    plugin's kernels; refuses at construction what they cannot serve."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        serve_or_refuse(self, "Mamba-2", self.configuration_problems())

    def configuration_problems(self) -> list[str]:
        """Why the plugin's kernels cannot serve this layer, each reason
        naming the value and the fix; empty when they can."""
        vllm_config = get_current_vllm_config()
        problems = unsupported_settings(vllm_config, self.tp_size)
        if self.model_config is not None:
            chunk_size = self.model_config.get_mamba_chunk_size()
            if chunk_size is None or chunk_size < 16 or chunk_size & (chunk_size - 1):
                problems.append(
                    f"Mamba chunk size {chunk_size}: the SSD kernel takes powers "
                    "of two >= 16"
                )
        problems += conv_problems(
            "conv kernel width", self.conv_kernel_size, "conv activation", self.activation
        )
        return problems

    def forward(
        self,
        hidden_states: torch.Tensor,
        mup_vector: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """in_proj -> conv, SSM and gated norm (one custom op) -> out_proj."""
        projected_states, _ = self.in_proj(hidden_states)
        if mup_vector is not None:
            projected_states = projected_states * mup_vector
        normed = torch.empty(
            hidden_states.shape[0],
            self.tped_intermediate_size,
            dtype=hidden_states.dtype,
            device=hidden_states.device,
        )
        torch.ops.vllm.mamba_mixer2(projected_states, normed, _encode_layer_name(self.prefix))
        output, _ = self.out_proj(normed)
        return output

    def conv_ssm_forward(self, projected_states: torch.Tensor, output: torch.Tensor) -> None:
        """Conv, SSM and gated norm of this step's tokens into ``output``
        ``[num_tokens, intermediate]``; ``projected_states`` is the
        in-projection ``[num_tokens, gate | x B C | dt]``."""
        metadata = step_metadata(self.prefix)
        if metadata is None:
            return
        num_decode = metadata.num_decode_tokens
        num_prefill = metadata.num_prefill_tokens
        num_tokens = num_decode + num_prefill
        heads, head_dim = self.tped_dt_size, self.head_dim
        groups, dstate = self.n_groups // self.tp_size, self.ssm_state_size
        gate, xbc, dt = torch.split(
            projected_states[:num_tokens],
            [self.tped_intermediate_size, self.tped_conv_size, self.tped_dt_size],
            dim=-1,
        )
        conv_state = conv_state_view(self.kv_cache[0])
        ssm_state = self.kv_cache[1]
        conv_out = torch.empty_like(xbc)
        y = output[:num_tokens].view(num_tokens, heads, head_dim)

        def split_heads(rows: torch.Tensor):
            x, B, C = self.split_hidden_states_B_C_fn(rows)
            n = rows.shape[0]
            return x.view(n, heads, head_dim), B.view(n, groups, dstate), C.view(n, groups, dstate)

        if num_prefill:
            slots = prefill_state_indices(metadata)
            prefill = slice(num_decode, num_tokens)
            # Prefix caching (align mode): a row's state at its checkpoint
            # inside this prefill, written to the checkpoint's own page.
            checkpoint = metadata.checkpoint_meta
            checkpoint_slots = None if checkpoint is None else checkpoint.state_indices
            causal_conv1d_varlen(
                xbc[prefill],
                self.conv_weights,
                self.conv1d.bias,
                conv_state,
                metadata.query_start_loc_p,
                slots,
                metadata.has_initial_states_p,
                activation=self.activation,
                out=conv_out[prefill],
                pad_slot_id=PAD_SLOT_ID,
                checkpoint_offsets=None if checkpoint is None else checkpoint.checkpoint_offsets,
                checkpoint_state_indices=checkpoint_slots,
            )
            x, B, C = split_heads(conv_out[prefill])
            ssd_chunk_scan(
                x,
                dt[prefill],
                self.A,
                B,
                C,
                chunk_size=metadata.chunk_size,
                cu_chunk_seqlens=metadata.cu_chunk_seqlen_p,
                last_chunk_indices=metadata.last_chunk_indices_p,
                ssm_states=ssm_state,
                state_indices=slots,
                has_initial_state=metadata.has_initial_states_p,
                out=y[prefill],
                D=self.D,
                dt_bias=self.dt_bias,
                dt_softplus=True,
                pad_slot_id=PAD_SLOT_ID,
                checkpoint_chunk_indices=metadata.checkpoint_chunk_idx,
                checkpoint_state_indices=checkpoint_slots,
            )

        if num_decode:
            slots = decode_state_indices(metadata)
            causal_conv1d_update(
                xbc[:num_decode],
                conv_state,
                self.conv_weights,
                self.conv1d.bias,
                slots,
                activation=self.activation,
                out=conv_out[:num_decode],
                pad_slot_id=PAD_SLOT_ID,
            )
            x, B, C = split_heads(conv_out[:num_decode])
            selective_state_update(
                ssm_state,
                x,
                dt[:num_decode],
                self.A,
                B,
                C,
                slots,
                D=self.D,
                dt_bias=self.dt_bias,
                dt_softplus=True,
                out=y[:num_decode],
                pad_slot_id=PAD_SLOT_ID,
            )

        ssm_out = output[:num_tokens]
        if self.use_rms_norm:
            gated_rmsnorm(
                ssm_out,
                gate,
                self.norm.weight,
                eps=self.norm.variance_epsilon,
                group_size=self.norm.group_size,
                norm_before_gate=False,
                out=ssm_out,
            )
        else:
            # No norm (Falcon-H1 without mamba_rms_norm): the gate alone,
            # rounded as vLLM's Mixer2RMSNormGated rounds it (silu in fp32).
            ssm_out.mul_(F.silu(gate.float()).to(ssm_out.dtype))
