# SPDX-License-Identifier: Apache-2.0
"""The plugin's Gated DeltaNet layer against the same layer computed from the
references in ops/reference.py (vLLM's own CPU GDN ops take bf16 only), with
the same weights and state pages, on one mixed batch: decode rows first,
then prefill rows that continue a sequence (mid-chunk, and across a 64-token
chunk boundary) or start one over a stale page, then padding tokens. Both
projection layouts: Qwen3-Next's interleaved GQA groups and Qwen3.5's flat
q|k|v|z. The chunk layout is made by vLLM's own helpers, as its GDN
builder makes it."""

from __future__ import annotations

import pytest

MIXED_BATCH = """
from vllm.config import set_current_vllm_config
from vllm.engine.arg_utils import EngineArgs
from vllm.third_party.flash_linear_attention.ops.index import (
    prepare_chunk_indices, prepare_chunk_offsets,
)
from vllm.v1.attention.backends.gdn_attn import GDNAttentionMetadata
from vllm_xpu_hybrid.layers.gdn import HybridQwenGatedDeltaNet
from vllm_xpu_hybrid.layers.mamba_step import conv_state_view
from vllm_xpu_hybrid.ops import reference as ref

MODEL_DIR, INTERLEAVED = PARAMS
NUM_SLOTS = 8
gdn_config = EngineArgs(
    model=MODEL_DIR, enforce_eager=True, max_model_len=256, dtype="float32"
).create_engine_config()
gdn_context = set_current_vllm_config(gdn_config)  # kept for the whole script
gdn_context.__enter__()
hf = gdn_config.model_config.hf_text_config
layer, twin = (
    HybridQwenGatedDeltaNet(hf, gdn_config, prefix=name, gqa_interleaved_layout=INTERLEAVED)
    for name in ("layers.0.plugin", "layers.1.reference")
)
randomize(layer)
with torch.no_grad():
    layer.A_log.uniform_(-1.0, 0.5)  # decays exp(-exp(A_log) * softplus) of both kinds
twin.load_state_dict(layer.state_dict())
finish_loading(layer)
finish_loading(twin)
pages, ref_pages = (bind_random_pages(l, NUM_SLOTS, seed=1) for l in (layer, twin))
initial_pages = pages.clone()

H, HV = hf.linear_num_key_heads, hf.linear_num_value_heads
K, V = hf.linear_key_head_dim, hf.linear_value_head_dim
r = HV // H

# Decode rows in slots 3 and 5; prefill rows: slot 1 continues after 5 tokens,
# slot 2 starts fresh over a stale page, slot 4 continues with 70 tokens
# (two chunks).
decode_slots = [3, 5]
prefill = [(1, 5, 20), (2, 0, 7), (4, 16, 70)]  # (slot, computed, new tokens)
qsl_p = torch.tensor([0, 20, 27, 97], dtype=torch.int32)
num_decode, num_prefill, num_padding = len(decode_slots), int(qsl_p[-1]), 3
metadata = GDNAttentionMetadata(
    num_prefills=len(prefill),
    num_prefill_tokens=num_prefill,
    num_decodes=num_decode,
    num_decode_tokens=num_decode,
    num_spec_decodes=0,
    num_spec_decode_tokens=0,
    num_actual_tokens=num_decode + num_prefill,
    # vLLM's builder hands block-table columns (strided) for both.
    non_spec_state_indices_tensor=torch.tensor(
        [[s, 0] for s in decode_slots + [s for s, _, _ in prefill]], dtype=torch.int32
    )[:, 0],
    prefill_query_start_loc=qsl_p,
    prefill_state_indices=torch.tensor(
        [[s, 0] for s, _, _ in prefill], dtype=torch.int32
    )[:, 0],
    prefill_has_initial_state=torch.tensor([c > 0 for _, c, _ in prefill]),
    chunk_indices=prepare_chunk_indices(qsl_p, 64),
    chunk_offsets=prepare_chunk_offsets(qsl_p, 64),
)
assert metadata.chunk_indices.shape[0] == 4

num_tokens = num_decode + num_prefill
hidden = torch.randn(num_tokens + num_padding, hf.hidden_size)
with set_forward_context({"layers.0.plugin": metadata}, gdn_config):
    got = layer(hidden)[:num_tokens]


def expected_output():
    # The layer's linear layers, then the references on the twin's pages.
    qkvz = twin.in_proj_qkvz(hidden)[0][:num_tokens]
    ba = twin.in_proj_ba(hidden)[0][:num_tokens]
    T = num_tokens
    if INTERLEAVED:  # per key head: q (K) | k (K) | v (r V) | z (r V), and b (r) | a (r)
        grouped = qkvz.view(T, H, 2 * K + 2 * r * V)
        q, k = grouped[..., :K], grouped[..., K : 2 * K]
        v = grouped[..., 2 * K : 2 * K + r * V].reshape(T, HV * V)
        z = grouped[..., 2 * K + r * V :].reshape(T, HV * V)
        ba = ba.view(T, H, 2 * r)
        b, a = ba[..., :r].reshape(T, HV), ba[..., r:].reshape(T, HV)
    else:  # q | k | v | z and b | a
        q, k = qkvz[:, : H * K], qkvz[:, H * K : 2 * H * K]
        v, z = qkvz[:, 2 * H * K : 2 * H * K + HV * V], qkvz[:, 2 * H * K + HV * V :]
        b, a = ba[:, :HV], ba[:, HV:]
    mixed = torch.cat([q.reshape(T, -1), k.reshape(T, -1), v], dim=-1)
    weight = twin.conv1d.weight.view(twin.conv1d.weight.size(0), -1)
    conv_states, states = conv_state_view(twin.kv_cache[0]), twin.kv_cache[1]
    d_slots = torch.tensor(decode_slots)
    p_slots = torch.tensor([s for s, _, _ in prefill])
    conv = torch.cat([
        ref.causal_conv1d_update_reference(mixed[:num_decode], conv_states, weight, None, d_slots, "silu"),
        ref.causal_conv1d_varlen_reference(
            mixed[num_decode:], weight, None, conv_states, qsl_p, p_slots,
            metadata.prefill_has_initial_state, "silu",
        ),
    ])
    g, beta = ref.gdn_gating_reference(a, b, twin.A_log, twin.dt_bias)
    q = conv[:, : H * K].reshape(T, H, K)
    k = conv[:, H * K : 2 * H * K].reshape(T, H, K)
    v = conv[:, 2 * H * K :].reshape(T, HV, V)
    d, p = slice(0, num_decode), slice(num_decode, T)
    core = torch.cat([
        ref.gated_delta_rule_decode_reference(
            q[d], k[d], v[d], g[d], beta[d], states, d_slots, qk_l2norm=True),
        ref.gated_delta_rule_reference(
            q[p], k[p], v[p], g[p], beta[p], qsl_p, states, p_slots,
            metadata.prefill_has_initial_state, qk_l2norm=True),
    ])
    normed = ref.gated_rmsnorm_reference(
        core.reshape(T * HV, V), z.reshape(T * HV, V), twin.norm.weight,
        eps=twin.norm.eps, norm_before_gate=True,
    )
    return twin.out_proj(normed.reshape(T, HV * V))[0]


expected = expected_output()
used = decode_slots + [s for s, _, _ in prefill]
unused = [s for s in range(NUM_SLOTS) if s not in used]
print("RESULT " + json.dumps({
    "output_err": (got - expected).abs().max().item(),
    "output_scale": expected.abs().max().item(),
    "decode_err": (got[:num_decode] - expected[:num_decode]).abs().max().item(),
    "state_err": (pages[used] - ref_pages[used]).abs().max().item(),
    "states_changed": bool((pages[used] != initial_pages[used]).any(dim=1).all()),
    "unused_untouched": bool(torch.equal(pages[unused], initial_pages[unused])),
}))
"""


@pytest.mark.parametrize("interleaved", [True, False], ids=["qwen3-next-layout", "qwen3.5-layout"])
def test_mixed_batch_matches_references(run_layer_script, tiny_model, interleaved):
    model_dir = tiny_model(
        "qwen3_next", hidden_size=32, linear_key_head_dim=16, linear_value_head_dim=16,
        head_dim=16,
    )
    result = run_layer_script(f"PARAMS = {(model_dir, interleaved)!r}\n" + MIXED_BATCH)
    tolerance = 1e-4 * max(1.0, result["output_scale"])
    assert result["output_err"] < tolerance, result
    assert result["decode_err"] < tolerance, result
    assert result["state_err"] < 1e-4, result
    assert result["states_changed"] and result["unused_untouched"], result


VENDOR_LAYERS = """
from vllm_xpu_hybrid.layers import gdn

messages = {}
for name in ("RefusedKimiGatedDeltaNet", "RefusedOlmoHybridGatedDeltaNet",
             "RefusedBailingMoeV3KimiDeltaAttention"):
    try:
        getattr(gdn, name)()
    except ValueError as error:
        messages[name] = str(error)
print("RESULT " + json.dumps(messages))
"""


def test_vendor_gdn_layers_refused(run_layer_script):
    messages = run_layer_script(VENDOR_LAYERS)
    assert set(messages) == {
        "RefusedKimiGatedDeltaNet",
        "RefusedOlmoHybridGatedDeltaNet",
        "RefusedBailingMoeV3KimiDeltaAttention",
    }
    assert messages["RefusedKimiGatedDeltaNet"] == (
        "vllm-xpu-hybrid's Gated DeltaNet layer cannot serve this configuration: "
        "KimiGatedDeltaNetAttention (Kimi's vendor-specific GDN layer): the plugin's "
        "gated delta rule kernels serve Qwen's GDN layer (QwenGatedDeltaNetAttention: "
        "Qwen3-Next, Qwen3.5) only; serve this model without the plugin (leave "
        "xpu_hybrid out of VLLM_PLUGINS)."
    )
    assert "per channel, not per head" in messages["RefusedBailingMoeV3KimiDeltaAttention"]


def test_qwen3_next_builds_the_plugin_layer(layer_builds):
    assert layer_builds["qwen3_next"] == {
        "classes": ["vllm_xpu_hybrid.layers.gdn.HybridQwenGatedDeltaNet"]
    }


def test_speculative_decoding_refused_at_construction(layer_builds):
    assert layer_builds["qwen3_next+spec"] == {
        "error": "vllm-xpu-hybrid's Gated DeltaNet layer cannot serve this configuration: "
        "speculative decoding (num_speculative_tokens=2): the kernels take one token per "
        "decode row; drop --speculative-config."
    }
