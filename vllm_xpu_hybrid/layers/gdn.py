# SPDX-License-Identifier: Apache-2.0
"""The plugin's Gated DeltaNet layer (Qwen3-Next, Qwen3.5): vLLM's
``QwenGatedDeltaNetAttention`` computing with the plugin's kernels, and
refusals for the vendor-specific GDN_ATTN layers it does not serve.

vLLM 0.32's ``QwenGatedDeltaNetAttention.forward`` dispatches by platform
(``forward_cpu`` calls vLLM's C++ CPU ops, which take bf16 only;
``forward_xpu`` calls ``vllm_xpu_kernels``). This subclass overrides:

- ``forward``: in-projections, then vLLM's custom op
  ``torch.ops.vllm.qwen_gdn_attention_core_fused_norm_packed`` (opaque to
  ``torch.compile``; its body looks the layer up and calls
  ``_forward_core_fused_norm_packed``), then the out-projection. Keeping the
  conv, the rule and the gated norm inside that one op keeps the plugin's
  Triton launches out of traced graphs.
- ``_forward_core_fused_norm_packed``: :meth:`HybridQwenGatedDeltaNet.
  gdn_forward`, the plugin's kernels: prefill tokens through
  ``causal_conv1d_varlen`` and ``gated_delta_rule_prefill``, decode tokens
  through ``causal_conv1d_update`` and ``gated_delta_rule_decode``, gates by
  ``gdn_gating``, then ``gated_rmsnorm`` (norm before the silu gate, per
  value head) over all tokens.

Parameters, weight loading (both projection layouts: Qwen3-Next's
interleaved GQA groups, Qwen3.5's flat q|k|v|z), state shapes and dtypes,
and the KV-cache spec stay vLLM's. The metadata is vLLM's GDN builder's,
reused as is (:mod:`vllm_xpu_hybrid.backends.gdn`).

Prefix caching (``mamba_cache_mode`` "align") is served: vLLM 0.32's GDN
layer declares no prefill checkpoint blocks (``MambaBase.get_kv_cache_spec``,
``num_prefill_checkpoint_blocks=0``; checkpoint.py then builds none), so the
scheduler splits prefills at block boundaries, the model runner copies the
previous state into the step's block before the step runs, and the builder
hands that block as the row's state slot (``mamba_get_block_table_tensor``):
the kernels need only read the initial state from the slot they are given
and write the final state back to it, which they do.

Speculative decoding (``num_accepted_tokens``, several tokens per decode
row), tensor parallelism and ReplaySSM are refused at construction
(``mamba_step.unsupported_settings``).
"""

from __future__ import annotations

import torch
from vllm.config import get_current_vllm_config
from vllm.model_executor.layers.mamba.gdn.kimi_gdn_linear_attn import (
    KimiGatedDeltaNetAttention,
)
from vllm.model_executor.layers.mamba.gdn.olmo_gdn_linear_attn import (
    OlmoHybridGatedDeltaNetAttention,
)
from vllm.model_executor.layers.mamba.gdn.qwen_gdn_linear_attn import (
    QwenGatedDeltaNetAttention,
)
from vllm.model_executor.models.bailing_moe_v3 import BailingMoeV3KimiDeltaAttention
from vllm.utils.torch_utils import _encode_layer_name

from vllm_xpu_hybrid.layers.mamba_step import (
    PAD_SLOT_ID,
    conv_problems,
    conv_state_view,
    refuse,
    serve_or_refuse,
    step_metadata,
    unsupported_settings,
)
from vllm_xpu_hybrid.ops.causal_conv1d import (
    causal_conv1d_update,
    causal_conv1d_varlen,
)
from vllm_xpu_hybrid.ops.gated_delta_rule import (
    MAX_HEAD_DIM,
    gated_delta_rule_decode,
    gated_delta_rule_prefill,
    gdn_gating,
)
from vllm_xpu_hybrid.ops.gated_rmsnorm import gated_rmsnorm


class HybridQwenGatedDeltaNet(QwenGatedDeltaNetAttention):
    """vLLM's ``QwenGatedDeltaNetAttention`` whose conv, gated delta rule
    and gated norm run the plugin's kernels; refuses at construction what
    they cannot serve."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        serve_or_refuse(self, "Gated DeltaNet", self.configuration_problems())

    def configuration_problems(self) -> list[str]:
        """Why the plugin's kernels cannot serve this layer, each reason
        naming the value and the fix; empty when they can."""
        problems = unsupported_settings(get_current_vllm_config(), self.tp_size)
        problems += conv_problems(
            "linear_conv_kernel_dim", self.conv_kernel_size, "hidden_act (the conv's)", self.activation
        )
        if self.norm.activation != "silu":
            problems.append(
                f"output_gate_type {self.norm.activation!r} (supported: silu, as "
                "Qwen3-Next and Qwen3.5 use)"
            )
        if max(self.head_k_dim, self.head_v_dim) > MAX_HEAD_DIM:
            problems.append(
                f"linear head dims key {self.head_k_dim}, value {self.head_v_dim} "
                f"(the kernels take at most {MAX_HEAD_DIM})"
            )
        if self.num_v_heads % self.num_k_heads:
            problems.append(
                f"linear_num_value_heads={self.num_v_heads} not a multiple of "
                f"linear_num_key_heads={self.num_k_heads}"
            )
        return problems

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """in-projections -> conv, gated delta rule, gated norm (one custom
        op) -> out-projection."""
        mixed_qkvz, _ = self.in_proj_qkvz(hidden_states)
        ba, _ = self.in_proj_ba(hidden_states)
        # Zeros, not empty: rows past the step's tokens (padding) still go
        # through the out-projection.
        normed = torch.zeros(
            hidden_states.shape[0],
            self.num_v_heads // self.tp_size,
            self.head_v_dim,
            dtype=hidden_states.dtype,
            device=hidden_states.device,
        )
        torch.ops.vllm.qwen_gdn_attention_core_fused_norm_packed(
            mixed_qkvz, ba, normed, _encode_layer_name(self.prefix)
        )
        output, _ = self.out_proj(normed.flatten(-2))
        return output

    def _forward_core_fused_norm_packed(
        self, mixed_qkvz: torch.Tensor, ba: torch.Tensor, core_attn_out: torch.Tensor
    ) -> None:
        """What vLLM's custom op calls: :meth:`gdn_forward`."""
        self.gdn_forward(mixed_qkvz, ba, core_attn_out)

    def split_projections(
        self, mixed_qkvz: torch.Tensor, ba: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mixed_qkv [tokens, q|k|v], z [tokens, HV * V], b, a [tokens, HV])
        from the in-projections, in either checkpoint layout."""
        tokens = mixed_qkvz.shape[0]
        if self.gqa_interleaved_layout:
            # Qwen3-Next: q, k, v, z interleaved per key-head group; vLLM's own
            # unpacking, then q|k|v made contiguous for the conv.
            q, k, v, z, b, a = self.fix_query_key_value_ordering(mixed_qkvz, ba)
            mixed_qkv = torch.cat(
                [q.reshape(tokens, -1), k.reshape(tokens, -1), v.reshape(tokens, -1)], dim=-1
            )
            return mixed_qkv, z.reshape(tokens, -1), b, a
        # Qwen3.5: flat [q | k | v | z] and [b | a]; column views, no copy.
        qkv_size = (self.key_dim * 2 + self.value_dim) // self.tp_size
        mixed_qkv, z = mixed_qkvz.split([qkv_size, self.value_dim // self.tp_size], dim=-1)
        b, a = self.split_ba(ba)
        return mixed_qkv, z, b, a

    def gdn_forward(
        self, mixed_qkvz: torch.Tensor, ba: torch.Tensor, output: torch.Tensor
    ) -> None:
        """Conv, gated delta rule and gated norm of this step's tokens into
        ``output [tokens, HV, V]``."""
        metadata = step_metadata(self.prefix)
        if metadata is None:
            return
        num_decode = metadata.num_decode_tokens
        num_tokens = num_decode + metadata.num_prefill_tokens
        mixed_qkv, z, b, a = self.split_projections(mixed_qkvz[:num_tokens], ba[:num_tokens])
        conv_state = conv_state_view(self.kv_cache[0])
        ssm_state = self.kv_cache[1]
        weight = self.conv1d.weight.view(self.conv1d.weight.size(0), self.conv1d.weight.size(2))
        conv_out = torch.empty_like(mixed_qkv)
        g, beta = gdn_gating(a, b, self.A_log, self.dt_bias)

        key_dim = self.key_dim // self.tp_size
        heads_k = self.num_k_heads // self.tp_size
        heads_v = self.num_v_heads // self.tp_size

        def split_heads(rows: torch.Tensor):
            n = rows.shape[0]
            return (
                rows[:, :key_dim].view(n, heads_k, self.head_k_dim),
                rows[:, key_dim : 2 * key_dim].view(n, heads_k, self.head_k_dim),
                rows[:, 2 * key_dim :].view(n, heads_v, self.head_v_dim),
            )

        y = output[:num_tokens]
        if metadata.num_prefills:
            prefill = slice(num_decode, num_tokens)
            slots = metadata.prefill_state_indices.contiguous()
            has_initial_state = metadata.prefill_has_initial_state.contiguous()
            causal_conv1d_varlen(
                mixed_qkv[prefill],
                weight,
                self.conv1d.bias,
                conv_state,
                metadata.prefill_query_start_loc,
                slots,
                has_initial_state,
                activation=self.activation,
                out=conv_out[prefill],
                pad_slot_id=PAD_SLOT_ID,
            )
            q, k, v = split_heads(conv_out[prefill])
            gated_delta_rule_prefill(
                q,
                k,
                v,
                g[prefill],
                beta[prefill],
                cu_seqlens=metadata.prefill_query_start_loc,
                chunk_indices=metadata.chunk_indices,
                chunk_offsets=metadata.chunk_offsets,
                states=ssm_state,
                state_indices=slots,
                has_initial_state=has_initial_state,
                out=y[prefill],
                qk_l2norm=True,
                pad_slot_id=PAD_SLOT_ID,
            )

        if num_decode:
            slots = metadata.non_spec_state_indices_tensor[: metadata.num_decodes].contiguous()
            causal_conv1d_update(
                mixed_qkv[:num_decode],
                conv_state,
                weight,
                self.conv1d.bias,
                slots,
                activation=self.activation,
                out=conv_out[:num_decode],
                pad_slot_id=PAD_SLOT_ID,
            )
            q, k, v = split_heads(conv_out[:num_decode])
            gated_delta_rule_decode(
                q,
                k,
                v,
                g[:num_decode],
                beta[:num_decode],
                states=ssm_state,
                state_indices=slots,
                out=y[:num_decode],
                qk_l2norm=True,
                pad_slot_id=PAD_SLOT_ID,
            )

        # RMSNorm per value head, then the silu(z) gate (norm_before_gate).
        flat = y.view(num_tokens, heads_v * self.head_v_dim)
        gated_rmsnorm(
            flat,
            z,
            self.norm.weight.repeat(heads_v),
            eps=self.norm.eps,
            group_size=self.head_v_dim,
            norm_before_gate=True,
            out=flat,
        )


def _refuse_vendor_layer(layer_class: str, what: str) -> None:
    refuse(
        "Gated DeltaNet",
        [
            (
                f"{layer_class} ({what}): the plugin's gated delta rule kernels serve "
                "Qwen's GDN layer (QwenGatedDeltaNetAttention: Qwen3-Next, Qwen3.5) "
                "only; serve this model without the plugin (leave xpu_hybrid out of "
                "VLLM_PLUGINS)"
            )
        ],
    )


class RefusedKimiGatedDeltaNet(KimiGatedDeltaNetAttention):
    """Kimi's GDN layer: refused at construction with a message."""

    def __init__(self, *args, **kwargs) -> None:
        _refuse_vendor_layer("KimiGatedDeltaNetAttention", "Kimi's vendor-specific GDN layer")


class RefusedOlmoHybridGatedDeltaNet(OlmoHybridGatedDeltaNetAttention):
    """OLMo-Hybrid's GDN layer: refused at construction with a message."""

    def __init__(self, *args, **kwargs) -> None:
        _refuse_vendor_layer(
            "OlmoHybridGatedDeltaNetAttention", "OLMo-Hybrid's vendor-specific GDN layer"
        )


class RefusedBailingMoeV3KimiDeltaAttention(BailingMoeV3KimiDeltaAttention):
    """Bailing-MoE-V3's Kimi delta attention (per-channel gates, GDN_ATTN
    state): refused at construction with a message."""

    def __init__(self, *args, **kwargs) -> None:
        _refuse_vendor_layer(
            "BailingMoeV3KimiDeltaAttention",
            "Kimi delta attention, whose gates are per channel, not per head",
        )
