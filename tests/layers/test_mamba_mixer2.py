# SPDX-License-Identifier: Apache-2.0
"""The plugin's Mamba-2 mixer against vLLM's own ``MambaMixer2`` (vLLM's CPU
kernels), with the same weights and state pages, on one mixed batch: decode
rows first, then prefill rows that continue a sequence (mid-chunk and
chunk-aligned) or start one over a stale page, then padding tokens."""

from __future__ import annotations

import pytest

MIXED_BATCH = """
from types import SimpleNamespace
from vllm.model_executor.layers.mamba.mamba_mixer2 import MambaMixer2
from vllm.model_executor.layers.mamba.ops.ssu_dispatch import initialize_mamba_ssu_backend
from vllm.v1.kv_cache_interface import MambaSpec
from vllm.v1.attention.backends.mamba2_attn import Mamba2AttentionMetadata
from vllm.v1.attention.backends.mamba_attn import BaseMambaAttentionMetadataBuilder
from vllm_xpu_hybrid.layers.mamba_mixer2 import HybridMambaMixer2

CHUNK = 16
NUM_SLOTS = 8
USE_RMS_NORM, N_GROUPS = PARAMS
shape = dict(
    hidden_size=64, ssm_state_size=16, conv_kernel_size=4, intermediate_size=128,
    use_conv_bias=True, use_bias=False, n_groups=N_GROUPS, num_heads=8, head_dim=16,
    rms_norm_eps=1e-5, activation="silu", use_rms_norm=USE_RMS_NORM,
    cache_config=vllm_config.cache_config,
)
vllm_layer = MambaMixer2(prefix="vllm", **shape)
plugin_layer = HybridMambaMixer2(prefix="plugin", **shape)
assert type(vllm_layer) is MambaMixer2
randomize(vllm_layer)
plugin_layer.load_state_dict(vllm_layer.state_dict())
finish_loading(vllm_layer)
finish_loading(plugin_layer)
pages = [bind_random_pages(layer, NUM_SLOTS, seed=1) for layer in (vllm_layer, plugin_layer)]
initial_pages = pages[0].clone()
# What vLLM's model runner does once the cache exists; vLLM's decode path
# dispatches through it.
spec = MambaSpec(
    block_size=CHUNK, shapes=tuple(vllm_layer.get_state_shape()),
    dtypes=vllm_layer.get_state_dtype(),
)
initialize_mamba_ssu_backend(
    vllm_config.mamba_config, SimpleNamespace(kv_cache_groups=[SimpleNamespace(kv_cache_spec=spec)])
)

# Decode rows in slots 3 and 5; prefill rows: slot 1 continues after 5 tokens
# (its first chunk fills to the chunk boundary), slot 2 starts fresh over a
# stale page, slot 4 continues after 16 tokens (three chunks).
decode_slots = [3, 5]
prefill = [(1, 5, 20), (2, 0, 7), (4, 16, 40)]  # (slot, computed, new tokens)
fields = mamba_batch_fields(decode_slots, prefill, [9, 9])
cu_chunks, seq_idx, last_chunks, _ = BaseMambaAttentionMetadataBuilder._compute_chunk_metadata(
    CHUNK, len(prefill), torch.tensor([c for _, c, _ in prefill]), fields["query_start_loc_p"]
)
num_decode, num_prefill, num_padding = fields["num_decodes"], fields["num_prefill_tokens"], 3
metadata = Mamba2AttentionMetadata(
    **fields,
    cu_chunk_seqlen_p=torch.tensor(cu_chunks, dtype=torch.int32),
    last_chunk_indices_p=torch.tensor(last_chunks, dtype=torch.int32),
    seq_idx_p=torch.tensor(seq_idx, dtype=torch.int32),
    prep_initial_states=True,
    chunk_size=CHUNK,
)
assert len(cu_chunks) - 1 == 6  # 11 + 9 | 7 | 16 + 16 + 8

num_tokens = num_decode + num_prefill
hidden = torch.randn(num_tokens + num_padding, 64)
with set_forward_context({"vllm": metadata, "plugin": metadata}, vllm_config):
    expected = vllm_layer(hidden)[:num_tokens]
    got = plugin_layer(hidden)[:num_tokens]

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


@pytest.mark.parametrize(
    "n_groups, use_rms_norm",
    [(2, True), (1, False)],
    ids=["2-groups-gated-norm", "1-group-gate-only"],
)
def test_mixed_batch_matches_vllm_layer(run_layer_script, n_groups, use_rms_norm):
    result = run_layer_script(f"PARAMS = {(use_rms_norm, n_groups)!r}\n" + MIXED_BATCH)
    assert result["plugin_class"] == "HybridMambaMixer2"
    tolerance = 1e-4 * max(1.0, result["output_scale"])
    assert result["output_err"] < tolerance, result
    assert result["decode_err"] < tolerance, result
    assert result["state_err"] < 1e-4, result
    assert result["states_changed"] and result["unused_untouched"], result


@pytest.mark.parametrize(
    "arch", ["mamba2", "granitemoehybrid", "nemotron_h", "falcon_h1", "zamba2"]
)
def test_models_build_the_plugin_layer(layer_builds, arch):
    assert layer_builds[arch] == {
        "classes": ["vllm_xpu_hybrid.layers.mamba_mixer2.HybridMambaMixer2"]
    }


@pytest.mark.parametrize(
    "case, message",
    [
        (
            "nemotron_h+spec",
            "vllm-xpu-hybrid's Mamba-2 layer cannot serve this configuration: "
            "speculative decoding (num_speculative_tokens=2): the kernels take one "
            "token per decode row; drop --speculative-config.",
        ),
        (
            "nemotron_h+replayssm",
            "vllm-xpu-hybrid's Mamba-2 layer cannot serve this configuration: "
            "ReplaySSM (--use-replayssm): the decode kernels store the full state "
            "every step; drop --use-replayssm.",
        ),
    ],
)
def test_unsupported_settings_refused_at_construction(layer_builds, case, message):
    assert layer_builds[case] == {"error": message}
