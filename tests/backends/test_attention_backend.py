# SPDX-License-Identifier: Apache-2.0
"""The platform refuses attention layers the plugin's backend cannot serve,
naming the value and what is accepted (checked where vLLM selects the
backend, before any kernel runs)."""

from __future__ import annotations

import pytest
import torch
from vllm.v1.attention.selector import AttentionSelectorConfig

from vllm_xpu_hybrid.platforms.hybrid import ATTENTION_BACKEND, HybridPlatformMixin


def _select(**overrides):
    config = AttentionSelectorConfig(
        **{"head_size": 64, "dtype": torch.float16, "kv_cache_dtype": "auto", "block_size": None, **overrides}
    )
    return HybridPlatformMixin.get_attn_backend_cls(None, attn_selector_config=config)


def test_supported_layer_gets_plugin_backend():
    assert _select() == ATTENTION_BACKEND
    assert _select(head_size=80, dtype=torch.float32, block_size=48, has_sink=True,
                   has_sliding_window=True) == ATTENTION_BACKEND


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"use_mla": True}, "vllm-xpu-hybrid does not serve MLA"),
        ({"use_sparse": True}, "vllm-xpu-hybrid does not serve sparse attention"),
        ({"head_size": 16}, "head size 16 is not supported (supported: 64, 80, 96, 128, 256)"),
        ({"dtype": torch.float64}, "dtype float64 is not supported; pass --dtype float16, bfloat16 or float32"),
        ({"kv_cache_dtype": "fp8"}, "--kv-cache-dtype fp8 is not supported (supported: auto, float16, bfloat16)"),
        ({"block_size": 40}, "--block-size 40 is not a multiple of 16; nearest sizes that work: 32 or 48"),
        ({"attn_type": "encoder_only"}, "attention type encoder_only is not supported (decoder self-attention only)"),
    ],
)
def test_unservable_layer_refused_with_reason(overrides, message):
    with pytest.raises(ValueError) as error:
        _select(**overrides)
    assert message in str(error.value)
