# SPDX-License-Identifier: Apache-2.0
"""What the Mamba-2 / ShortConv parity tests share (test_parity_mamba.py,
prefix caching off; test_parity_mamba_prefix_caching.py, on): the models and
the check. Two files so that pytest-xdist runs them on two workers.

``vllm-xpu-hybrid parity``: vLLM's full engine, with the plugin's Mamba-2 /
ShortConv layers (the plugin's conv, SSD, state update and gated-norm
kernels) and the plugin's attention, gives transformers' greedy tokens
(fp32). parity's 4 prompts (lengths 1, 15, 17, 75 with its block size 16 and
per-step budget of 64 tokens) make prefill-only, mixed and decode-only
batches, and split the 75-token prompt after 31 tokens, mid-chunk (Mamba
chunk size 16), so every kernel runs with and without a carried state. Under
Triton's interpreter each run takes about a minute on two cores, so the
prompts, the tokens (4) and the layers of the larger models (2) are as few
as that coverage allows.
"""

from __future__ import annotations

import pytest

MAMBA2_LAYER = "MambaMixer2 layers -> vllm_xpu_hybrid.layers.mamba_mixer2.HybridMambaMixer2"
SHORT_CONV_LAYER = "ShortConv layers -> vllm_xpu_hybrid.layers.short_conv.HybridShortConv"

# (arch, tiny-model overrides, the layer line the plugin logs)
CASES = [
    pytest.param("mamba2", {}, MAMBA2_LAYER, id="mamba2"),
    # Two layers: one Mamba-2, one attention.
    pytest.param("granitemoehybrid", {"num_hidden_layers": 2}, MAMBA2_LAYER, id="granitemoehybrid"),
    pytest.param("nemotron_h", {}, MAMBA2_LAYER, id="nemotron_h"),
    pytest.param("falcon_h1", {}, MAMBA2_LAYER, id="falcon_h1"),
    # transformers' Zamba2 clamps dt from below at time_step_min (0.001
    # by default); vLLM's MambaMixer2, and so the plugin's, clamps at 0.
    # A floor no softplus(dt) reaches makes both compute the same model.
    # Two layers: one Mamba-2, one hybrid (shared attention block + Mamba-2).
    pytest.param("zamba2", {"time_step_min": 1e-9, "num_hidden_layers": 2}, MAMBA2_LAYER, id="zamba2"),
    # One attention head: see test_parity_lfm2_multi_head_attention.
    pytest.param("lfm2", {"num_attention_heads": 1}, SHORT_CONV_LAYER, id="lfm2"),
]


def run_parity(run_cli, env, model_dir, *extra):
    """``vllm-xpu-hybrid parity`` with 4 prompts of 4 tokens; returns the
    finished process and its whole output."""
    done = run_cli("parity", model_dir, "--prompts", "4", "--max-tokens", "4", *extra, env=env)
    return done, done.stdout + done.stderr


def check_parity(run_cli, env, model_dir, layer, *extra):
    """parity passes on every prompt, and the plugin's layer served."""
    done, output = run_parity(run_cli, env, model_dir, *extra)
    assert done.returncode == 0, output[-6000:]
    assert "parity: 8/8 prompts agree" in done.stdout
    assert f"vllm-xpu-hybrid: {layer} (the plugin's kernels)." in output
