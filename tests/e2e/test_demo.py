# SPDX-License-Identifier: Apache-2.0
"""The README's main command: a tiny hybrid model generated through vLLM with
the plugin, the log naming the backend of each layer type."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.slow


def test_demo_generates_with_plugin_backends(run_cli):
    done = run_cli("demo", "--max-tokens", "4", "--device", "cpu", env={"VLLM_PLUGINS": "xpu_hybrid"})
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "vllm-xpu-hybrid: attention layers -> vllm_xpu_hybrid.backends.attention.HybridAttentionBackend" in output
    assert "vllm-xpu-hybrid: MAMBA2 layers -> vllm_xpu_hybrid.backends.mamba2.HybridMamba2Backend" in output
    assert re.search(r"generated 12 tokens for 3 prompts in [0-9.]+ s: [0-9.]+ tokens/s", output)

