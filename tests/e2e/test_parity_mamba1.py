# SPDX-License-Identifier: Apache-2.0
"""``vllm-xpu-hybrid parity`` for the Mamba-1 models: vLLM's full engine, with
the plugin's ``MambaMixer`` (the plugin's conv, selective scan and state
update kernels) and, for Jamba, the plugin's attention, gives transformers'
greedy tokens (fp32).

parity's 4 prompts (lengths 1, 15, 17, 75 with block size 16 and a per-step
budget of 64 tokens) make prefill-only, mixed and decode-only batches and
split the 75-token prompt across steps, so every kernel runs with and
without a carried state. With prefix caching (``mamba_cache_mode="align"``)
the second pass starts the 17- and 75-token prompts from cached Mamba states
(16 and 64 cached tokens) and the first pass runs uncached, block-aligned.

Under Triton's interpreter each run takes about a minute on two cores, so
the prompts and tokens are as few as that coverage allows. Falcon-Mamba is
Mamba-1 plus RMS-normalised dt, B and C; Jamba mixes Mamba-1, attention and
MoE layers.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

MAMBA1_LAYER = "MambaMixer layers -> vllm_xpu_hybrid.layers.mamba_mixer.HybridMambaMixer"


@pytest.mark.parametrize("extra", [[], ["--prefix-caching"]], ids=["no-prefix-caching", "prefix-caching"])
@pytest.mark.parametrize("arch", ["mamba", "falcon_mamba", "jamba"])
def test_parity_with_plugin_layers(tiny_model, run_cli, plugin_cpu_env, arch, extra):
    done = run_cli(
        "parity", tiny_model(arch), "--prompts", "4", "--max-tokens", "4", *extra,
        env=plugin_cpu_env,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert "parity: 8/8 prompts agree" in done.stdout
    assert f"vllm-xpu-hybrid: {MAMBA1_LAYER} (the plugin's kernels)." in output
