# SPDX-License-Identifier: Apache-2.0
"""``vllm-xpu-hybrid parity``: the same greedy prompts through vLLM (with the
plugin) and through ``transformers``, both fp32, compared token by token.

The prompts, one batch, have lengths that hit the paging edges: 1, a block
size minus one and plus one, one longer than the per-step token budget (so
vLLM prefills it in chunks), and others in between. The batch runs twice
through vLLM, so with prefix caching the second pass reads cached blocks and
Mamba states.

For an architecture transformers lacks, the tiny model carries its
transformers implementation as remote code (vllm_xpu_hybrid.reference_models):
``--trust-remote-code`` lets transformers and vLLM load it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SOURCE_TEXT = (
    "Hybrid language models interleave attention layers with state space "
    "layers. The attention layers keep a cache of keys and values for every "
    "token, split into fixed-size blocks, while the state space layers carry "
    "a small recurrent state from one token to the next. Serving such a model "
    "means paging both kinds of memory from one pool, scheduling prompts of "
    "very different lengths together, and resuming a long prompt from where "
    "the previous step stopped. A small model with random weights is enough "
    "to check that every kernel computes the same numbers as the reference "
    "implementation, because any mistake in masking, paging or state handling "
    "changes the greedy tokens within a few steps. "
)


@dataclass
class PromptResult:
    """One prompt's comparison: tokens from both engines and, at the first
    divergence, transformers' logit margin between its token and vLLM's."""

    prompt_len: int
    vllm_tokens: list[int]
    hf_tokens: list[int]
    margin: float | None = None

    @property
    def first_divergence(self) -> int | None:
        for step, (a, b) in enumerate(zip(self.vllm_tokens, self.hf_tokens)):
            if a != b:
                return step
        return None if len(self.vllm_tokens) == len(self.hf_tokens) else 0


def prompt_lengths(num_prompts: int, block_size: int, chunk_budget: int) -> list[int]:
    """Prompt lengths: 1, block_size - 1, block_size + 1, one longer than the
    per-step budget, then lengths spread between (``num_prompts`` >= 4)."""
    if num_prompts < 4:
        raise ValueError("--prompts must be at least 4 (lengths 1, B-1, B+1 and a chunked one)")
    lengths = [1, block_size - 1, block_size + 1, chunk_budget + block_size // 2 + 3]
    generator = torch.Generator().manual_seed(0)
    while len(lengths) < num_prompts:
        lengths.append(int(torch.randint(2, 2 * block_size + 8, (1,), generator=generator)))
    return lengths[:num_prompts]


def build_prompts(tokenizer, lengths: list[int]) -> list[list[int]]:
    """Token-id prompts of the given lengths, cut from a fixed English text
    at different offsets."""
    ids = tokenizer(SOURCE_TEXT, add_special_tokens=False)["input_ids"]
    while len(ids) < max(lengths) + 2 * len(lengths):
        ids = ids + ids
    return [ids[i * 2 : i * 2 + n] for i, n in enumerate(lengths)]


def hf_greedy(
    model_dir: str, prompts: list[list[int]], max_tokens: int, trust_remote_code: bool = False
):
    """transformers' greedy tokens (fp32) and per-step scores for each prompt."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, trust_remote_code=trust_remote_code
    )
    model.eval()
    results = []
    for prompt in prompts:
        input_ids = torch.tensor([prompt])
        with torch.no_grad():
            out = model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=max_tokens,
                min_new_tokens=max_tokens,
                do_sample=False,
                output_scores=True,
                return_dict_in_generate=True,
            )
        tokens = out.sequences[0, len(prompt) :].tolist()
        results.append((tokens, [s[0] for s in out.scores]))
    return results


def run_parity(
    model_dir: str,
    num_prompts: int = 6,
    max_tokens: int = 16,
    block_size: int = 16,
    chunk_budget: int = 64,
    prefix_caching: bool = False,
    trust_remote_code: bool = False,
) -> list[PromptResult]:
    """Compare vLLM with the plugin against transformers; see the module.
    ``trust_remote_code`` lets both load a checkpoint's own model code (the
    tiny models of architectures transformers lacks carry theirs)."""
    from transformers import AutoTokenizer
    from vllm import SamplingParams, TokensPrompt

    from vllm_xpu_hybrid.engine import start_llm

    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    prompts = build_prompts(tokenizer, prompt_lengths(num_prompts, block_size, chunk_budget))
    llm = start_llm(
        model_dir,
        dtype="float32",
        block_size=block_size,
        enable_prefix_caching=prefix_caching,
        trust_remote_code=trust_remote_code,
        enable_chunked_prefill=True,
        max_num_batched_tokens=chunk_budget,
        max_num_seqs=max(num_prompts, 8),
    )
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True)
    batch = [TokensPrompt(prompt_token_ids=p) for p in prompts]
    passes = [llm.generate(batch, params, use_tqdm=False) for _ in range(2)]
    reference = hf_greedy(model_dir, prompts, max_tokens, trust_remote_code)

    results = []
    for outputs in passes:
        for prompt, output, (hf_tokens, scores) in zip(prompts, outputs, reference):
            result = PromptResult(len(prompt), list(output.outputs[0].token_ids), hf_tokens)
            step = result.first_divergence
            if step is not None and step < len(scores):
                logits = scores[step]
                result.margin = float(
                    logits[hf_tokens[step]] - logits[result.vllm_tokens[step]]
                )
            results.append(result)
    return results


def format_results(results: list[PromptResult]) -> str:
    """One line per prompt and pass, and a summary line."""
    lines = []
    per_pass = len(results) // 2
    for i, r in enumerate(results):
        label = f"pass {i // per_pass + 1} prompt {i % per_pass} (len {r.prompt_len:4d})"
        step = r.first_divergence
        if step is None:
            lines.append(f"{label}: {len(r.vllm_tokens)}/{len(r.hf_tokens)} tokens agree")
        else:
            margin = "" if r.margin is None else f" (transformers' logit margin {r.margin:.4g})"
            lines.append(
                f"{label}: DIVERGES at step {step}: vLLM {r.vllm_tokens[step:step + 4]} vs "
                f"transformers {r.hf_tokens[step:step + 4]}{margin}"
            )
    agree = sum(r.first_divergence is None for r in results)
    lines.append(f"parity: {agree}/{len(results)} prompts agree")
    return "\n".join(lines)
