# SPDX-License-Identifier: Apache-2.0
"""The settings every plugin Mamba-like layer refuses, each named with its
fix (the engine-level refusals are in test_mamba_mixer2 / test_short_conv)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest


def _config(num_speculative_tokens=0, use_replayssm=False):
    return SimpleNamespace(
        num_speculative_tokens=num_speculative_tokens,
        cache_config=SimpleNamespace(use_replayssm=use_replayssm),
    )


def test_supported_settings_raise_nothing():
    from vllm_xpu_hybrid.layers.mamba_step import refuse, unsupported_settings

    assert unsupported_settings(_config(), tp_size=1) == []
    refuse("Mamba-2", [])


def test_every_unsupported_setting_is_named_with_its_fix():
    from vllm_xpu_hybrid.layers.mamba_step import refuse, unsupported_settings

    config = _config(num_speculative_tokens=3, use_replayssm=True)
    problems = unsupported_settings(config, tp_size=2)
    assert problems == [
        "speculative decoding (num_speculative_tokens=3): the kernels take one "
        "token per decode row; drop --speculative-config",
        "tensor parallelism (tensor_parallel_size=2): the layers are built for "
        "one rank; use --tensor-parallel-size 1",
        "ReplaySSM (--use-replayssm): the decode kernels store the full state "
        "every step; drop --use-replayssm",
    ]
    with pytest.raises(ValueError, match=r"^vllm-xpu-hybrid's ShortConv layer cannot serve "
                       r"this configuration: speculative decoding .*; tensor parallelism .*\.$"):
        refuse("ShortConv", problems[:2])


def test_conv_limits_are_named_by_the_model_setting():
    from vllm_xpu_hybrid.layers.mamba_step import conv_problems

    assert conv_problems("conv_L_cache", 3) == []
    assert conv_problems("conv kernel width", 4, "conv activation", "swish") == []
    assert conv_problems("conv kernel width", 5, "conv activation", "gelu") == [
        "conv kernel width 5 (supported: 2, 3, 4)",
        "conv activation 'gelu' (supported: silu, swish)",
    ]
