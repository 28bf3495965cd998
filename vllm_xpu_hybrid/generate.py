# SPDX-License-Identifier: Apache-2.0
"""``vllm-xpu-hybrid generate``: greedy generation through vLLM with the
plugin. The engine's log says, once at start, which backend serves each layer
type and why (``vllm-xpu-hybrid: ... layers -> ...``); this prints the
completions and the speed."""

from __future__ import annotations

import time

DEFAULT_PROMPTS = (
    "The quick brown fox",
    "Intel GPUs run hybrid models when",
    "Once upon a time, in a small village by the sea,",
)


def run_generate(model_dir: str, prompts: list[str], max_tokens: int,
                 trust_remote_code: bool = False) -> int:
    """Generate ``max_tokens`` greedy tokens for each prompt (one batch) and
    print the completions and tokens per second. Returns the exit code.
    ``trust_remote_code`` loads the model's own code (vLLM's flag)."""
    from vllm import SamplingParams

    from vllm_xpu_hybrid.engine import start_llm

    llm = start_llm(model_dir, trust_remote_code=trust_remote_code)
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True)
    start = time.perf_counter()
    outputs = llm.generate(list(prompts), params, use_tqdm=False)
    elapsed = time.perf_counter() - start
    generated = 0
    for output in outputs:
        completion = output.outputs[0]
        generated += len(completion.token_ids)
        print(f"prompt   {output.prompt!r}\n  -> {completion.text!r}")
    print(
        f"generated {generated} tokens for {len(outputs)} prompts in "
        f"{elapsed:.2f} s: {generated / elapsed:.1f} tokens/s"
    )
    return 0
