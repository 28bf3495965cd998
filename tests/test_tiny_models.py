# SPDX-License-Identifier: Apache-2.0
"""Tests for vllm_xpu_hybrid.tiny_models: every tiny architecture builds,
loads and runs in transformers, tokenizes offline, and parses in vLLM; the
``--set`` overrides change the config or fail naming the field."""

from __future__ import annotations

import json
import pathlib
import re

import pytest

from vllm_xpu_hybrid.tiny_models import (
    REMOTE_CODE_ARCHS,
    TINY_ARCHS,
    build_tiny_config,
    build_tiny_model,
    parse_override,
)

# model_type -> (architecture in config.json, vLLM class it resolves to)
VLLM_CLASSES = {
    "llama": ("LlamaForCausalLM", "LlamaForCausalLM"),
    "qwen3": ("Qwen3ForCausalLM", "Qwen3ForCausalLM"),
    "mamba2": ("Mamba2ForCausalLM", "Mamba2ForCausalLM"),
    "granitemoehybrid": ("GraniteMoeHybridForCausalLM", "GraniteMoeHybridForCausalLM"),
    "nemotron_h": ("NemotronHForCausalLM", "NemotronHForCausalLM"),
    "falcon_h1": ("FalconH1ForCausalLM", "FalconH1ForCausalLM"),
    "zamba2": ("Zamba2ForCausalLM", "Zamba2ForCausalLM"),
    "mamba": ("MambaForCausalLM", "MambaForCausalLM"),
    "falcon_mamba": ("FalconMambaForCausalLM", "MambaForCausalLM"),
    "jamba": ("JambaForCausalLM", "JambaForCausalLM"),
    "lfm2": ("Lfm2ForCausalLM", "Lfm2ForCausalLM"),
    "qwen3_next": ("Qwen3NextForCausalLM", "Qwen3NextForCausalLM"),
    "qwen3_5_text": ("Qwen3_5ForCausalLM", "Qwen3_5ForCausalLM"),
    "bailing_hybrid": ("BailingMoeV2_5ForCausalLM", "BailingMoeV25ForCausalLM"),
}
ATTENTION_FREE = {"mamba", "mamba2", "falcon_mamba"}
ATTENTION_ONLY = {"llama", "qwen3"}
HYBRID = set(VLLM_CLASSES) - ATTENTION_FREE - ATTENTION_ONLY
ATTENTION_LAYER_TYPES = {"full_attention", "attention", "hybrid"}

SENTENCE = "Hello, world! The mayor counted 12 votes; why is the road still broken?"


def test_every_arch_is_covered():
    assert set(TINY_ARCHS) == set(VLLM_CLASSES)


@pytest.fixture
def tiny_model_dir(tiny_model):
    """``tiny_model_dir(arch) -> Path``: conftest's session-wide build."""
    return lambda arch: pathlib.Path(tiny_model(arch))


@pytest.mark.parametrize("arch", list(TINY_ARCHS))
def test_transformers_loads_and_runs(arch, tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tiny_model_dir(arch)
    remote_code = arch in REMOTE_CODE_ARCHS
    model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=remote_code)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=remote_code)
    config = model.config
    assert config.model_type == arch
    assert config.architectures == [VLLM_CLASSES[arch][0]]
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert json.loads((path / "config.json").read_text())["dtype"] == "float32"
    assert (path / "model.safetensors").is_file()

    assert config.vocab_size >= len(tokenizer)
    assert config.bos_token_id == tokenizer.bos_token_id
    assert config.eos_token_id == tokenizer.eos_token_id
    assert config.pad_token_id == tokenizer.pad_token_id

    input_ids = torch.tensor([[tokenizer.bos_token_id, 40, 41, 42]])
    with torch.no_grad():
        logits = model(input_ids, attention_mask=torch.ones_like(input_ids)).logits
    assert logits.shape == (1, 4, config.vocab_size)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("arch", list(TINY_ARCHS))
def test_tokenizer_round_trip(arch, tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        tiny_model_dir(arch), trust_remote_code=arch in REMOTE_CODE_ARCHS
    )
    ids = tokenizer(SENTENCE).input_ids
    assert ids[0] == tokenizer.bos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == SENTENCE
    assert {tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token} <= set(
        tokenizer.get_vocab()
    )
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt.endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize("arch", sorted(HYBRID - {"falcon_h1", "bailing_hybrid"}))
def test_hybrid_defaults_have_both_layer_kinds(arch):
    # Falcon-H1 runs attention and Mamba-2 side by side in every layer;
    # Bailing V2.5's full-attention layers are MLA, out of the plugin's scope.
    layer_types = set(build_tiny_config(arch).layer_types)
    assert layer_types & ATTENTION_LAYER_TYPES, layer_types
    assert layer_types - ATTENTION_LAYER_TYPES, layer_types


def _torchvision_importable() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:
        return False
    return True


@pytest.mark.parametrize("arch", list(TINY_ARCHS))
def test_vllm_parses(arch, tiny_model_dir, monkeypatch):
    pytest.importorskip("vllm")
    if arch == "qwen3_5_text" and not _torchvision_importable():
        pytest.skip(
            "vLLM 0.32 imports Qwen3.5 through qwen3_vl, which needs torchvision"
        )
    from vllm.config import ModelConfig
    from vllm.model_executor.models import ModelRegistry, registry

    # vLLM inspects a model class in a fresh interpreter (to keep CUDA out of
    # the parent) unless its cache has it: ~15 s per architecture on a cold
    # cache. Nothing here initialises a device, so inspect in this process.
    monkeypatch.setattr(registry, "_run_in_subprocess", lambda fn: fn())

    model_config = ModelConfig(
        model=str(tiny_model_dir(arch)), dtype="float32",
        trust_remote_code=arch in REMOTE_CODE_ARCHS,
    )
    architecture, class_name = VLLM_CLASSES[arch]
    model_cls, resolved = ModelRegistry.resolve_model_cls(
        model_config.architectures, model_config
    )
    assert resolved == architecture
    assert model_cls.__name__ == class_name
    assert model_config.is_hybrid == (arch in HYBRID)
    assert model_config.is_attention_free == (arch in ATTENTION_FREE)
    if arch not in ATTENTION_FREE:
        assert model_config.get_head_size() == 64
    assert model_config.get_vocab_size() == model_config.hf_config.vocab_size


def test_lfm2_writes_what_vllm_reads(tiny_model_dir):
    config = json.loads((tiny_model_dir("lfm2") / "config.json").read_text())
    assert config["conv_dim"] == config["hidden_size"]
    assert config["block_dim"] == config["hidden_size"]
    assert config["tie_word_embeddings"] is True


@pytest.mark.parametrize(
    "text, expected",
    [
        ("n_groups=4", ("n_groups", 4)),
        ("tie_word_embeddings=true", ("tie_word_embeddings", True)),
        ("rms_norm_eps=1e-5", ("rms_norm_eps", 1e-5)),
        ('layer_types=["conv", "full_attention"]', ("layer_types", ["conv", "full_attention"])),
        ("hybrid_override_pattern=M*M-", ("hybrid_override_pattern", "M*M-")),
        (" hidden_act = gelu", ("hidden_act", "gelu")),
        ("name=a=b", ("name", "a=b")),
    ],
)
def test_parse_override(text, expected):
    assert parse_override(text) == expected


@pytest.mark.parametrize("text", ["n_groups", "=4", ""])
def test_parse_override_rejects_text_without_key(text):
    with pytest.raises(ValueError, match=re.escape(repr(text))):
        parse_override(text)


def test_override_changes_config_field(tmp_path):
    path = build_tiny_model("mamba2", tmp_path, dict([parse_override("n_groups=4")]))
    assert json.loads((path / "config.json").read_text())["n_groups"] == 4


@pytest.mark.parametrize(
    "arch, overrides, field, value",
    [
        # the layer list follows num_hidden_layers ...
        ("granitemoehybrid", {"num_hidden_layers": 5}, "layer_types",
         ["linear_attention", "full_attention", "linear_attention",
          "linear_attention", "full_attention"]),
        ("nemotron_h", {"num_hidden_layers": 6}, "hybrid_override_pattern", "M*M-M*"),
        ("qwen3_next", {"full_attention_interval": 2}, "layer_types",
         ["linear_attention", "full_attention"] * 2),
        # ... and num_hidden_layers follows an explicit layer list
        ("lfm2", {"layer_types": ["conv", "full_attention"]}, "num_hidden_layers", 2),
        ("nemotron_h", {"hybrid_override_pattern": "M-*"}, "num_hidden_layers", 3),
        # derived sizes follow the sizes they derive from
        ("lfm2", {"hidden_size": 256}, "conv_dim", 256),
        ("mamba2", {"hidden_size": 128}, "num_heads", 16),
        ("mamba2", {"chunk_size": 8}, "chunk_size", 8),
    ],
)
def test_override_and_derived_fields(arch, overrides, field, value):
    assert getattr(build_tiny_config(arch, overrides), field) == value


def test_qwen3_5_alias_builds_text_config():
    assert build_tiny_config("qwen3_5").model_type == "qwen3_5_text"


def test_unknown_override_field_raises_naming_it():
    with pytest.raises(ValueError, match="n_grups.*did you mean n_groups"):
        build_tiny_config("mamba2", {"n_grups": 2})


@pytest.mark.parametrize(
    "arch, overrides, field",
    [
        ("mamba2", {"n_groups": 3}, "n_groups"),  # 8 heads
        ("nemotron_h", {"n_groups": 3}, "n_groups"),
        ("mamba2", {"num_heads": 6}, "num_heads"),  # 6 * 16 != 2 * 64
        ("jamba", {"num_attention_heads": 3}, "num_attention_heads"),  # 128 % 3
        ("llama", {"num_key_value_heads": 3}, "num_key_value_heads"),
        ("qwen3_next", {"linear_num_key_heads": 3}, "linear_num_key_heads"),
        ("lfm2", {"conv_dim": 64}, "conv_dim"),
        ("lfm2", {"tie_word_embeddings": False}, "tie_word_embeddings"),
        ("zamba2", {"head_dim": 32}, "head_dim"),  # Zamba2 derives it
        ("granitemoehybrid", {"layer_types": ["mamba2", "attention"]}, "layer_types"),
        ("lfm2", {"num_hidden_layers": 3, "layer_types": ["conv"]}, "num_hidden_layers"),
        ("falcon_h1", {"num_hidden_layers": 0}, "num_hidden_layers"),
        ("nemotron_h", {"hybrid_override_pattern": "MX"}, "hybrid_override_pattern"),
        ("qwen3", {"vocab_size": 100}, "vocab_size"),  # tokenizer has 512
        ("qwen3", {"dtype": "bfloat16"}, "dtype"),  # weights are fp32
        ("qwen3", {"eos_token_id": 7}, "eos_token_id"),  # the tokenizer's
        ("bailing_hybrid", {"layer_group_size": 2}, "layer_group_size"),  # an MLA layer
        ("bailing_hybrid", {"num_experts": 4}, "num_experts"),
        ("bailing_hybrid", {"group_norm_size": 3}, "group_norm_size"),
    ],
)
def test_impossible_override_raises_naming_field(arch, overrides, field):
    with pytest.raises(ValueError, match=field):
        build_tiny_config(arch, overrides)


def test_unknown_arch_lists_supported():
    with pytest.raises(ValueError) as info:
        build_tiny_config("gpt_neox")
    message = str(info.value)
    assert "gpt_neox" in message
    assert all(arch in message for arch in TINY_ARCHS)
