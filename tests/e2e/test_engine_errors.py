# SPDX-License-Identifier: Apache-2.0
"""Models the plugin's attention cannot serve are refused when the engine
starts, with a message naming the value and what is accepted."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

START_ENGINE = """
import sys
from vllm_xpu_hybrid.engine import start_llm
if __name__ == "__main__":
    start_llm(sys.argv[1], **eval(sys.argv[2]))
"""


def test_unsupported_head_size_refused_at_engine_start(tiny_model, run_python, plugin_cpu_env):
    path = tiny_model("llama", head_dim=16)
    code = START_ENGINE.replace("sys.argv[1]", repr(path)).replace("sys.argv[2]", repr("{}"))
    done = run_python(code, env=plugin_cpu_env)
    assert done.returncode != 0
    assert "head size 16 is not supported (supported: 64, 80, 96, 128, 256)" in done.stdout + done.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--kv-cache-dtype", "fp8"], "--kv-cache-dtype fp8 is not supported (supported: auto, float16, bfloat16)"),
        (["--block-size", "24"], "--block-size 24 is not a multiple of 16; nearest sizes that work: 16 or 32"),
    ],
)
def test_unsupported_cache_settings_refused(tiny_model, run_cli, plugin_cpu_env, args, message):
    done = run_cli("info", tiny_model("llama"), *args, env=plugin_cpu_env)
    assert done.returncode != 0
    assert message in done.stdout + done.stderr
