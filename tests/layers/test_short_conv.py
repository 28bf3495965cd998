# SPDX-License-Identifier: Apache-2.0
"""The plugin's ShortConv (LFM2) against vLLM's own ``ShortConv`` (its
PyTorch path, which vLLM runs on CPU platforms), with the same weights and
state pages, on one mixed batch: decode rows first, then prefill rows that
continue a sequence (shorter and longer than the conv state) or start one
over a stale page, then padding tokens."""

from __future__ import annotations

MIXED_BATCH = """
from types import SimpleNamespace
from vllm.model_executor.layers.mamba.short_conv import ShortConv
from vllm.v1.attention.backends.short_conv_attn import ShortConvAttentionMetadata
from vllm_xpu_hybrid.layers.short_conv import HybridShortConv

DIM = 64
NUM_SLOTS = 8
config = SimpleNamespace(conv_L_cache=3, conv_bias=True)
shape = dict(config=config, dim=DIM, layer_idx=0, cache_config=vllm_config.cache_config)
vllm_layer = ShortConv(prefix="vllm", **shape)
plugin_layer = HybridShortConv(prefix="plugin", **shape)
assert type(vllm_layer) is ShortConv
randomize(vllm_layer)
plugin_layer.load_state_dict(vllm_layer.state_dict())
finish_loading(vllm_layer)
finish_loading(plugin_layer)
pages = [bind_random_pages(layer, NUM_SLOTS, seed=1) for layer in (vllm_layer, plugin_layer)]
initial_pages = pages[0].clone()

# Decode rows in slots 3, 6, 5; prefill rows: slot 1 continues with 1 token
# (shorter than the 2-entry state), slot 2 starts fresh over a stale page,
# slot 4 continues with 30 tokens.
decode_slots = [3, 6, 5]
prefill = [(1, 7, 1), (2, 0, 9), (4, 12, 30)]  # (slot, computed, new tokens)
metadata = ShortConvAttentionMetadata(**mamba_batch_fields(decode_slots, prefill, [9, 9, 9]))
num_decode, num_prefill, num_padding = metadata.num_decodes, metadata.num_prefill_tokens, 5

num_tokens = num_decode + num_prefill
hidden = torch.randn(num_tokens + num_padding, DIM)
outputs = [torch.zeros(num_tokens + num_padding, DIM) for _ in range(2)]
with set_forward_context({"vllm": metadata, "plugin": metadata}, vllm_config):
    vllm_layer(hidden, outputs[0])
    plugin_layer(hidden, outputs[1])
expected, got = (out[:num_tokens] for out in outputs)

used = decode_slots + [s for s, _, _ in prefill]
unused = [s for s in range(NUM_SLOTS) if s not in used]
print("RESULT " + json.dumps({
    "plugin_class": type(plugin_layer).__name__,
    "output_err": (got - expected).abs().max().item(),
    "output_scale": expected.abs().max().item(),
    "decode_err": (got[:num_decode] - expected[:num_decode]).abs().max().item(),
    "state_err": (pages[1][used] - pages[0][used]).abs().max().item(),
    "states_changed": bool((pages[1][used] != initial_pages[used]).any(dim=1).all()),
    "unused_untouched": bool(torch.equal(pages[1][unused], initial_pages[unused])),
}))
"""


def test_mixed_batch_matches_vllm_layer(run_layer_script):
    result = run_layer_script(MIXED_BATCH)
    assert result["plugin_class"] == "HybridShortConv"
    tolerance = 1e-5 * max(1.0, result["output_scale"])
    assert result["output_err"] < tolerance, result
    assert result["decode_err"] < tolerance, result
    assert result["state_err"] < 1e-6, result
    assert result["states_changed"] and result["unused_untouched"], result


def test_lfm2_builds_the_plugin_layer(layer_builds):
    assert layer_builds["lfm2"] == {
        "classes": ["vllm_xpu_hybrid.layers.short_conv.HybridShortConv"]
    }


def test_speculative_decoding_refused_at_construction(layer_builds):
    assert layer_builds["lfm2+spec"] == {
        "error": "vllm-xpu-hybrid's ShortConv layer cannot serve this configuration: "
        "speculative decoding (num_speculative_tokens=2): the kernels take one token "
        "per decode row; drop --speculative-config."
    }
