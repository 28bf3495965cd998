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


def test_demo_trusts_the_remote_code_of_its_own_tiny_model(run_cli, plugin_cpu_env):
    """Bailing's tiny model carries this package's reference model as remote
    code; the demo loads it without asking for --trust-remote-code."""
    done = run_cli("demo", "--arch", "bailing_hybrid", "--max-tokens", "2", env=plugin_cpu_env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "LINEAR layers -> vllm_xpu_hybrid.backends.linear.HybridLinearBackend" in output
    assert re.search(r"generated 6 tokens for 3 prompts", output)


def test_info_reports_a_remote_code_model_with_the_flag(tiny_model, run_cli, plugin_cpu_env):
    model = tiny_model("bailing_hybrid")
    refused = run_cli("info", model, env=plugin_cpu_env)
    assert refused.returncode != 0
    assert "trust_remote_code" in refused.stdout + refused.stderr
    done = run_cli("info", model, "--trust-remote-code", env=plugin_cpu_env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert "HybridLinearBackend" in done.stdout
