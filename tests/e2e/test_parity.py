# SPDX-License-Identifier: Apache-2.0
"""``vllm-xpu-hybrid parity``: vLLM's full engine with every attention layer
computed by the plugin's kernels gives transformers' greedy tokens (fp32)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "arch, extra",
    [
        ("llama", []),
        ("qwen3", ["--prefix-caching"]),
    ],
)
def test_parity_attention_models(tiny_model, run_cli, plugin_cpu_env, arch, extra):
    done = run_cli(
        "parity", tiny_model(arch), "--prompts", "5", "--max-tokens", "8", *extra,
        env=plugin_cpu_env,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "parity: 10/10 prompts agree" in done.stdout
