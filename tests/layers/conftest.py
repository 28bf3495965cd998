# SPDX-License-Identifier: Apache-2.0
"""Layer-test fixtures, each running a script in a fresh interpreter with the
plugin's CPU platform current:

- ``run_layer_script``: vLLM's layer and the plugin's replacement built side
  by side with the same weights and state pages, run on one hand-made batch;
- ``layer_builds``: every tiny model's layers built as a vLLM worker builds
  them (the plugin's hooks installed), or the error the build raised.
"""

from __future__ import annotations

import json

import pytest

# What every layer script starts with: a one-rank vLLM config current, and
# helpers: bind_random_pages() gives a layer vLLM-style state pages (one raw
# page per slot holding every state back to back, as the engine allocates
# them) filled with random values.
PRELUDE = """
import json
import torch
from vllm.config import CacheConfig, VllmConfig, set_current_vllm_config
from vllm.forward_context import set_forward_context
from vllm.platforms import current_platform
from vllm_xpu_hybrid.info import _init_single_process_group

# Resolving the platform imports the plugin's CPU platform, which switches
# Triton's interpreter on before any kernel module is imported.
assert type(current_platform).__name__ == "HybridCpuPlatform"

torch.manual_seed(0)
vllm_config = VllmConfig(cache_config=CacheConfig())
config_context = set_current_vllm_config(vllm_config)  # kept for the whole script
config_context.__enter__()
_init_single_process_group()


def bind_random_pages(layer, num_slots, seed):
    # The state dtype needs a model config; these layers run fp32.
    layer.get_state_dtype = lambda: (torch.float32,) * len(layer.get_state_shape())
    floats = sum(torch.Size(s).numel() for s in layer.get_state_shape())
    generator = torch.Generator().manual_seed(seed)
    pages = torch.randn(num_slots, floats, generator=generator) * 0.5
    layer.bind_kv_cache(pages.view(torch.int8).view(num_slots, 1, 1, -1))
    return pages


def randomize(layer):
    with torch.no_grad():
        for name, param in layer.named_parameters():
            param.normal_(0.0, 0.3)
            if name == "A":
                param.copy_(-torch.exp(param))


def mamba_batch_fields(decode_slots, prefill, decode_seq_lens):
    # The fields of vLLM's BaseMambaAttentionMetadata for one mixed batch:
    # decode rows in decode_slots (sequence lengths decode_seq_lens), then
    # prefill rows given as (slot, tokens computed before, new tokens).
    computed = torch.tensor([c for _, c, _ in prefill])
    new = torch.tensor([n for _, _, n in prefill])
    qsl = torch.cat([torch.zeros(1, dtype=torch.int64), new.cumsum(0)]).to(torch.int32)
    return dict(
        num_prefills=len(prefill),
        num_prefill_tokens=int(qsl[-1]),
        num_decodes=len(decode_slots),
        num_decode_tokens=len(decode_slots),
        num_reqs=len(decode_slots) + len(prefill),
        has_initial_states_p=computed > 0,
        query_start_loc_p=qsl,
        state_indices_tensor_p=torch.tensor([s for s, _, _ in prefill], dtype=torch.int32),
        state_indices_tensor_d=torch.tensor(decode_slots, dtype=torch.int32)[:, None],
        query_start_loc_d=None,
        num_accepted_tokens=None,
        seq_lens=torch.tensor(list(decode_seq_lens) + (computed + new).tolist()),
    )


def finish_loading(layer):
    # What vLLM's loader does after reading weights (the CPU linear layers
    # choose their GEMM here).
    for module in layer.modules():
        if getattr(module, "quant_method", None) is not None:
            module.quant_method.process_weights_after_loading(module)
"""


@pytest.fixture
def run_layer_script(run_python, plugin_cpu_env):
    """``run_layer_script(body) -> dict``: run PRELUDE + body in a fresh
    interpreter with the plugin's CPU platform current (its general plugins
    not loaded: vLLM's layer classes stay vLLM's); the body prints
    ``RESULT <json>``."""

    def run(body: str) -> dict:
        done = run_python(PRELUDE + body, env=plugin_cpu_env)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
        line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
        return json.loads(line.removeprefix("RESULT "))

    return run


# Builds each model's layers on the meta device (no weights read), as a vLLM
# worker would, with the plugin's general plugins loaded; prints, per case,
# the class of every Mamba-like layer or the error the build raised.
BUILD_MODELS = """
import json, sys
import torch
from vllm.config.vllm import set_current_vllm_config
from vllm.engine.arg_utils import EngineArgs
from vllm.model_executor.layers.mamba.abstract import MambaBase
from vllm.model_executor.model_loader.utils import initialize_model
from vllm.plugins import load_general_plugins
from vllm_xpu_hybrid.info import _init_single_process_group

load_general_plugins()
results = {}
for case, (path, engine_kwargs) in json.loads(sys.argv[1]).items():
    args = EngineArgs(model=path, enforce_eager=True, max_model_len=2048, **engine_kwargs)
    vllm_config = args.create_engine_config()
    try:
        with set_current_vllm_config(vllm_config):
            _init_single_process_group()
            with torch.device("meta"):
                model = initialize_model(vllm_config=vllm_config)
    except ValueError as error:
        results[case] = {"error": str(error)}
        continue
    results[case] = {"classes": sorted({
        f"{type(m).__module__}.{type(m).__qualname__}"
        for m in model.modules() if isinstance(m, MambaBase)
    })}
print("BUILDS " + json.dumps(results))
"""

ARCHS = (
    "mamba2", "granitemoehybrid", "nemotron_h", "falcon_h1", "zamba2", "lfm2",
    "mamba", "falcon_mamba", "jamba",
)
NGRAM_SPECULATION = {
    "speculative_config": {
        "method": "ngram", "num_speculative_tokens": 2, "prompt_lookup_max": 3,
        "prompt_lookup_min": 1,
    }
}
# Bailing V2.5's tiny model carries its transformers code (remote code).
REMOTE_CODE = {"trust_remote_code": True}
# (arch, engine kwargs) per case; the plugin's layers refuse the "+" cases.
BUILD_CASES = {
    **{arch: (arch, {}) for arch in ARCHS},
    "bailing_hybrid": ("bailing_hybrid", REMOTE_CODE),
    "qwen3_next": ("qwen3_next", {}),
    "qwen3_next+spec": ("qwen3_next", NGRAM_SPECULATION),
    "nemotron_h+spec": ("nemotron_h", NGRAM_SPECULATION),
    "nemotron_h+replayssm": ("nemotron_h", {"use_replayssm": True}),
    "lfm2+spec": ("lfm2", NGRAM_SPECULATION),
    "mamba+spec": ("mamba", NGRAM_SPECULATION),
    "bailing_hybrid+spec": ("bailing_hybrid", {**REMOTE_CODE, **NGRAM_SPECULATION}),
}


@pytest.fixture(scope="session")
def layer_builds(tiny_model, run_python, plugin_cpu_env) -> dict[str, dict]:
    """Per case of :data:`BUILD_CASES`: ``{"classes": [...]}``, the class
    paths of the model's Mamba-like layers, or ``{"error": message}``."""
    cases = {case: (tiny_model(arch), kwargs) for case, (arch, kwargs) in BUILD_CASES.items()}
    code = BUILD_MODELS.replace("sys.argv[1]", repr(json.dumps(cases)))
    done = run_python(code, env=plugin_cpu_env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("BUILDS "))
    return json.loads(line.removeprefix("BUILDS "))
