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
