# SPDX-License-Identifier: Apache-2.0
"""The plugin's layer replacements are registered in vLLM only while its
platform is current, idempotently, over anyone else's."""

from __future__ import annotations

import json

import pytest

REGISTRY_AFTER_PLUGINS = """
import json
from vllm.model_executor.custom_op import PluggableLayer, op_registry_oot
from vllm.model_executor.layers.mamba.short_conv import ShortConv


class SomeoneElsesShortConv(ShortConv):
    pass


PluggableLayer.register_oot(SomeoneElsesShortConv, name="ShortConv")

from vllm.plugins import load_general_plugins

load_general_plugins()
if "MambaMixer2" in op_registry_oot:
    from vllm_xpu_hybrid.hooks import register_layers

    register_layers()  # a second time: a no-op
print("REGISTRY " + json.dumps({k: v.__qualname__ for k, v in op_registry_oot.items()}))
"""


@pytest.mark.parametrize("plugin_active", [True, False], ids=["plugin-platform", "vllm-platform"])
def test_layers_replaced_only_with_plugin_platform(run_python, plugin_cpu_env, plugin_active):
    done = run_python(REGISTRY_AFTER_PLUGINS, env=plugin_cpu_env if plugin_active else None)
    assert done.returncode == 0, done.stderr[-4000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("REGISTRY "))
    registry = json.loads(line.removeprefix("REGISTRY "))
    if plugin_active:
        from vllm_xpu_hybrid.hooks import LAYERS

        assert registry == {name: path.rsplit(".", 1)[1] for name, path in LAYERS.items()}
        assert "vllm-xpu-hybrid replaces ShortConv's out-of-tree class" in done.stdout + done.stderr
    else:
        assert registry == {"ShortConv": "SomeoneElsesShortConv"}
