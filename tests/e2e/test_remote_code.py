# SPDX-License-Identifier: Apache-2.0
"""Checkpoints that carry their own model code (Bailing's tiny model holds
this package's reference model as remote code): the demo trusts the code of
the tiny models it builds itself, and info loads such a checkpoint only with
--trust-remote-code."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.slow


def test_demo_trusts_the_remote_code_of_its_own_tiny_model(run_cli, plugin_cpu_env):
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
