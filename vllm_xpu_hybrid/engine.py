# SPDX-License-Identifier: Apache-2.0
"""Starting vLLM's engine with the plugin, for ``generate`` and ``parity``."""

from __future__ import annotations

from typing import Any

# The CPU platform sizes its KV cache from free memory on NUMA node 0 unless
# told; tiny models need little, and a fixed size keeps runs comparable.
TINY_KV_CACHE_BYTES = 256 * 1024 * 1024


def start_llm(model_dir: str, **engine_kwargs: Any):
    """A ``vllm.LLM`` for ``model_dir`` on the current platform.

    Defaults suit small models on any machine (eager, a fixed 256 MiB KV cache,
    2048 positions); ``engine_kwargs`` override them and go to ``vllm.LLM``.
    """
    from vllm import LLM

    kwargs: dict[str, Any] = {
        "enforce_eager": True,
        "kv_cache_memory_bytes": TINY_KV_CACHE_BYTES,
        "max_model_len": 2048,
        "seed": 0,
    }
    kwargs.update(engine_kwargs)
    return LLM(model=model_dir, **kwargs)


def served_layer_types(llm) -> dict[str, str]:
    """Backend class path per layer type of the running model ("attention",
    and each Mamba type name), from the worker's KV-cache specs and this
    process's selection (the same platform and hooks as the worker's)."""
    from vllm.platforms import current_platform
    from vllm.v1.attention.selector import get_mamba_attn_backend
    from vllm.v1.kv_cache_interface import MambaSpec

    from vllm_xpu_hybrid.platforms.hybrid import ATTENTION_BACKEND, HybridPlatformMixin

    specs = llm.collective_rpc("get_kv_cache_spec")[0]
    served: dict[str, str] = {}
    for spec in specs.values():
        if isinstance(spec, MambaSpec):
            backend = get_mamba_attn_backend(spec.mamba_type)
            path = f"{backend.__module__}.{backend.__qualname__}"
            served.setdefault(spec.mamba_type.name, path)
        elif isinstance(current_platform, HybridPlatformMixin):
            served.setdefault("attention", ATTENTION_BACKEND)
        else:
            served.setdefault("attention", f"{type(current_platform).__name__}'s choice")
    return served
