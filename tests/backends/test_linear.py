# SPDX-License-Identifier: Apache-2.0
"""The LINEAR backend's builder serves only the plugin's lightning-attention
layers and refuses any other LINEAR layer at engine start, naming its class
(the engine-level path is tests/e2e/test_parity_linear.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from vllm_xpu_hybrid.backends.linear import check_layers_served
from vllm_xpu_hybrid.layers.linear_attention import HybridBailingLinearAttention


class OutOfTreeLinearAttention:
    """Stands for a LINEAR layer the plugin does not compute (vLLM's
    MiniMax-Text-01 layer, or someone else's)."""


def _config(layers: dict) -> SimpleNamespace:
    return SimpleNamespace(compilation_config=SimpleNamespace(static_forward_context=layers))


def test_plugin_layers_are_served():
    plugin_layer = object.__new__(HybridBailingLinearAttention)
    check_layers_served(_config({"model.layers.0.self_attn": plugin_layer}),
                        ["model.layers.0.self_attn"])


def test_other_linear_layers_are_refused_by_class():
    layers = {
        "model.layers.0.self_attn": object.__new__(HybridBailingLinearAttention),
        "model.layers.1.self_attn": OutOfTreeLinearAttention(),
    }
    with pytest.raises(ValueError, match=r"serves Bailing V2.5's linear-attention layers only .*"
                       r"this model builds test_linear.OutOfTreeLinearAttention, which the plugin "
                       r"does not compute"):
        check_layers_served(_config(layers), list(layers))
