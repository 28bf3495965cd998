# SPDX-License-Identifier: Apache-2.0
"""The plugin's lightning-attention layer (Bailing V2.5's linear layers):
vLLM's ``BailingMoELinearAttention`` computing with the plugin's kernels.

vLLM 0.32's ``BailingMoELinearAttention.forward`` calls the custom op
``torch.ops.vllm.linear_attention``, whose body looks the layer up and calls
``layer._forward(hidden_states, output, positions)``. This subclass overrides:

- ``_forward``: the same steps as vLLM's (fused q/k/v projection, in fp32:
  optional silu, optional per-head q/k RMSNorm, rotary embedding, q scaled
  by ``head_dim ** -0.5``; then lightning attention; grouped RMSNorm; sigmoid
  output gate; dense projection), with the attention computed by
  ``lightning_attention_prefill`` (prefill rows) and
  ``lightning_attention_decode`` (decode rows), and the grouped norm by
  ``gated_rmsnorm``. vLLM's own kernels are Triton kernels that vLLM's CPU
  build disables, and its prefill kernel decays the carried state one step
  short (see ops/lightning_attention.py): the plugin follows the recurrence.
- ``get_attn_backend``: vLLM's layer names vLLM's Bailing backend directly,
  bypassing the selector; this one asks the selector, which the plugin's
  platform answers for ``MambaAttentionBackendEnum.LINEAR``.

Precision: q, k and v are computed in fp32 as vLLM computes them; for a
16-bit model they enter the kernels in the model dtype (tensor-core dots),
which also stores the states (vLLM's LINEAR state dtype is the model dtype
unless ``--mamba-cache-dtype`` says otherwise). Accumulation and the carried
state inside a step are fp32.

Prefix caching (mamba_cache_mode "align") needs nothing more: vLLM's
scheduler ends every prefill step that is not the prompt's last on a block
boundary, the layer writes each row's state into the block of its last
token (the slot vLLM's builder gives) and vLLM's model runner copies a
continuing row's state into that block before the step, as for vLLM's own
LINEAR layers.

Parameters, weight loading, state shapes and dtypes, and the KV-cache spec
stay vLLM's.
"""

from __future__ import annotations

import torch
from vllm.config import get_current_vllm_config
from vllm.model_executor.layers.mamba.abstract import MambaBase
from vllm.model_executor.layers.mamba.linear.bailing_linear_attn import (
    BailingMoELinearAttention,
)
from vllm.v1.attention.backends.mamba_attn import BaseMambaAttentionMetadata

from vllm_xpu_hybrid.layers.mamba_step import (
    PAD_SLOT_ID,
    decode_state_indices,
    prefill_state_indices,
    serve_or_refuse,
    step_metadata,
    unsupported_settings,
)
from vllm_xpu_hybrid.ops.gated_rmsnorm import gated_rmsnorm
from vllm_xpu_hybrid.ops.lightning_attention import (
    MAX_KEY_HEAD_DIM,
    lightning_attention_decode,
    lightning_attention_prefill,
)

class HybridBailingLinearAttention(BailingMoELinearAttention):
    """vLLM's ``BailingMoELinearAttention`` whose attention and grouped norm
    run the plugin's kernels; refuses at construction what they cannot serve."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        serve_or_refuse(self, "linear-attention", self.configuration_problems())

    def configuration_problems(self) -> list[str]:
        """Why the plugin's kernels cannot serve this layer, each reason
        naming the value and the fix; empty when they can."""
        problems = unsupported_settings(get_current_vllm_config(), self.tp_size)
        if self.head_dim > MAX_KEY_HEAD_DIM:
            problems.append(
                f"head_dim {self.head_dim}: the lightning kernels hold a head's "
                f"key dim in one tile, up to {MAX_KEY_HEAD_DIM}"
            )
        return problems

    def get_attn_backend(self):
        """The backend vLLM's selector gives LINEAR layers: the platform's."""
        return MambaBase.get_attn_backend(self)

    def _forward(
        self,
        hidden_states: torch.Tensor,
        output: torch.Tensor,
        positions: torch.Tensor,
    ) -> None:
        """The layer's output for this step's tokens, written into
        ``output[:num_tokens]``; ``hidden_states``: [num_tokens (+ padding),
        hidden_size], ``positions``: [num_tokens (+ padding)]."""
        metadata = step_metadata(self.prefix)
        if metadata is None:
            num_tokens = hidden_states.shape[0]
        else:
            num_tokens = metadata.num_decode_tokens + metadata.num_prefill_tokens
        heads, head_dim = self.tp_heads, self.head_dim
        x = hidden_states[:num_tokens]
        q, k, v = self._attention_inputs(x, positions[:num_tokens])

        shape = (num_tokens, heads, head_dim)
        if metadata is None:
            # Profile run: the values do not matter, the shapes do.
            attention = torch.zeros(shape, dtype=q.dtype, device=q.device)
        else:
            attention = torch.empty(shape, dtype=q.dtype, device=q.device)
            self._lightning_attention(q, k, v, metadata, attention)
        # Grouped RMSNorm then the sigmoid gate, in fp32 as vLLM's gated
        # norm computes them; one cast to the model dtype at the end.
        normed = gated_rmsnorm(
            attention.view(num_tokens, heads * head_dim),
            None,
            self.g_norm.weight,
            eps=self.g_norm.eps,
            group_size=self.g_norm.group_size,
            out=torch.empty(num_tokens, heads * head_dim, dtype=torch.float32, device=q.device),
        )
        gate, _ = self.g_proj(x)
        hidden = (normed * torch.sigmoid(gate.float())).to(hidden_states.dtype)
        output[:num_tokens], _ = self.dense(hidden)

    def _attention_inputs(
        self, x: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q (scaled), k, v: [num_tokens, heads, head_dim] each, in the model
        dtype (fp32 for fp32 models), computed in fp32 as vLLM does."""
        heads, head_dim = self.tp_heads, self.head_dim
        num_tokens = x.shape[0]
        qkv, _ = self.query_key_value(x)
        qkv = qkv.float()
        if self.linear_silu:
            qkv = torch.nn.functional.silu(qkv)
        q, k, v = torch.split(
            qkv, [self.q_size_per_rank, self.kv_size_per_rank, self.kv_size_per_rank], dim=-1
        )
        if self.use_qk_norm:
            q = self.query_layernorm(q.reshape(-1, head_dim)).view(num_tokens, -1)
            k = self.key_layernorm(k.reshape(-1, head_dim)).view(num_tokens, -1)
        if self.linear_rope:
            q, k = self.rotary_emb(positions, q, k)
        kernel_dtype = x.dtype
        q = (q.reshape(num_tokens, heads, head_dim) * self.scaling).to(kernel_dtype)
        k = k.reshape(num_tokens, heads, head_dim).to(kernel_dtype)
        v = v.reshape(num_tokens, heads, head_dim).to(kernel_dtype)
        return q, k, v

    def _lightning_attention(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        metadata: BaseMambaAttentionMetadata,
        out: torch.Tensor,
    ) -> None:
        """Lightning attention of the step's rows into ``out`` (every row is
        written): decode rows first, then prefill rows (vLLM's Mamba batch
        layout)."""
        states = self.kv_cache[0]
        slopes = self.tp_slope.view(-1)
        num_decode = metadata.num_decode_tokens
        if metadata.num_prefill_tokens:
            prefill = slice(num_decode, num_decode + metadata.num_prefill_tokens)
            lightning_attention_prefill(
                q[prefill], k[prefill], v[prefill], slopes, states,
                metadata.query_start_loc_p,
                prefill_state_indices(metadata),
                metadata.has_initial_states_p,
                out=out[prefill],
                pad_slot_id=PAD_SLOT_ID,
            )
        if num_decode:
            lightning_attention_decode(
                q[:num_decode], k[:num_decode], v[:num_decode], slopes, states,
                decode_state_indices(metadata),
                out=out[:num_decode],
                pad_slot_id=PAD_SLOT_ID,
            )
