# SPDX-License-Identifier: Apache-2.0
"""The plugin's Mamba-1 mixer against vLLM's own ``MambaMixer``, with the
same weights and state pages, on one mixed batch: decode rows first (one
padded with the null block), then prefill rows that continue a sequence or
start one over a stale page, then padding tokens.

vLLM's CPU build has no Mamba-1 SSM kernels (``selective_scan_fwd`` is a
CUDA op; its CPU state update takes Mamba-2's layout only), so vLLM's layer
runs here with both replaced by the sequential references of
ops/reference.py behind vLLM's own call conventions (channel-major tensors
for the scan); its in/out projections, dt/B/C transform and conv are vLLM's.
What this compares is the plugin layer's wiring (splits, layouts, dt bias,
D, gate, slots, padding) and kernels against vLLM's."""

from __future__ import annotations

import pytest

MIXED_BATCH = """
import vllm.model_executor.layers.mamba.mamba_mixer as vllm_mamba_mixer
from vllm.model_executor.layers.mamba.mamba_mixer import MambaMixer
from vllm.v1.attention.backends.mamba1_attn import Mamba1AttentionMetadata
from vllm_xpu_hybrid.layers.mamba_mixer import HybridMambaMixer
from vllm_xpu_hybrid.layers.mamba_step import PAD_SLOT_ID
from vllm_xpu_hybrid.ops import reference


def reference_selective_scan_fn(u, ssm_states, delta, A, B, C, D=None, z=None,
                                delta_bias=None, delta_softplus=False, query_start_loc=None,
                                cache_indices=None, has_initial_state=None, **unused):
    # vLLM's convention: u, delta, z [dim, tokens]; B, C [dstate, tokens].
    y = reference.selective_scan_reference(
        u.t(), delta.t(), A, B.t()[:, None, :], C.t()[:, None, :], query_start_loc,
        ssm_states, cache_indices, has_initial_state, D=D, z=z.t(), dt_bias=delta_bias,
        dt_softplus=delta_softplus, pad_slot_id=PAD_SLOT_ID,
    )
    return y.t()


def reference_selective_state_update(state, x, dt, A, B, C, D, dt_bias, *, z, dt_softplus,
                                     state_batch_indices, out, **unused):
    # vLLM's convention: state [slots, dim, dstate]; x, dt, z [rows, dim];
    # B, C [rows, dstate]; slots [rows, 1]. As one head of headdim dim.
    y = reference.selective_state_update_reference(
        state.unsqueeze(1), x.unsqueeze(1), dt.unsqueeze(1), A.unsqueeze(0), B.unsqueeze(1),
        C.unsqueeze(1), state_batch_indices[:, 0], D=D.unsqueeze(0), z=z.unsqueeze(1),
        dt_bias=dt_bias.unsqueeze(0), dt_softplus=dt_softplus, pad_slot_id=PAD_SLOT_ID,
    )
    out.copy_(y.squeeze(1))


vllm_mamba_mixer.selective_scan_fn = reference_selective_scan_fn
vllm_mamba_mixer.selective_state_update = reference_selective_state_update

NUM_SLOTS = 8
# Decode rows in slots 3 and 5 and one padded with the null block; prefill
# rows: slot 1 continues after 5 tokens, slot 2 starts fresh over a stale
# page, slot 4 continues after 16 tokens.
decode_slots = [3, 5, PAD_SLOT_ID]
prefill = [(1, 5, 20), (2, 0, 7), (4, 16, 40)]  # (slot, computed, new tokens)
metadata = Mamba1AttentionMetadata(**mamba_batch_fields(decode_slots, prefill, [9, 9, 1]))
num_decode, num_prefill, num_padding = metadata.num_decodes, metadata.num_prefill_tokens, 3
num_tokens = num_decode + num_prefill
# The padded decode row's output is not compared: vLLM's CPU conv update
# reads the null block's page for it, the plugin's kernels a zero state.
real_rows = [row for row in range(num_tokens) if row != 2]
used = [3, 5, 1, 2, 4]
unused = [s for s in range(NUM_SLOTS) if s not in used]

results = {}
for variant, (use_rms_norm, rms_norm_has_weight) in VARIANTS.items():
    shape = dict(
        hidden_size=32, ssm_state_size=16, conv_kernel_size=4, intermediate_size=64,
        time_step_rank=4, use_conv_bias=True, use_bias=False, use_rms_norm=use_rms_norm,
        rms_norm_has_weight=rms_norm_has_weight, activation="silu",
        cache_config=vllm_config.cache_config,
    )
    # is_lora_enabled only makes vLLM's layer copy its channel-major scan
    # output to token-major before out_proj, as vLLM's CPU GEMM requires.
    vllm_layer = MambaMixer(prefix=f"vllm-{variant}", is_lora_enabled=True, **shape)
    plugin_layer = HybridMambaMixer(prefix=f"plugin-{variant}", **shape)
    assert type(vllm_layer) is MambaMixer
    randomize(vllm_layer)
    plugin_layer.load_state_dict(vllm_layer.state_dict())
    finish_loading(vllm_layer)
    finish_loading(plugin_layer)
    pages = [bind_random_pages(layer, NUM_SLOTS, seed=1) for layer in (vllm_layer, plugin_layer)]
    initial_pages = pages[0].clone()

    hidden = torch.randn(num_tokens + num_padding, 32)
    outputs = [torch.zeros(num_tokens + num_padding, 32) for _ in range(2)]
    per_layer = {vllm_layer.prefix: metadata, plugin_layer.prefix: metadata}
    with set_forward_context(per_layer, vllm_config):
        vllm_layer.forward_impl(hidden, outputs[0])
        plugin_layer.forward_impl(hidden, outputs[1])
    expected, got = (out[real_rows] for out in outputs)
    results[variant] = {
        "plugin_class": type(plugin_layer).__name__,
        "output_err": (got - expected).abs().max().item(),
        "output_scale": expected.abs().max().item(),
        "decode_err": (got[:2] - expected[:2]).abs().max().item(),
        "state_err": (pages[1][used] - pages[0][used]).abs().max().item(),
        "states_changed": bool((pages[1][used] != initial_pages[used]).any(dim=1).all()),
        "unused_untouched": bool(torch.equal(pages[1][unused], initial_pages[unused])),
    }
print("RESULT " + json.dumps(results))
"""


# (use_rms_norm, rms_norm_has_weight) as the models build their mixers.
VARIANTS = {"mamba": (False, True), "falcon_mamba": (True, False), "jamba": (True, True)}


def test_mixed_batch_matches_vllm_layer(run_layer_script):
    results = run_layer_script(f"VARIANTS = {VARIANTS!r}\n" + MIXED_BATCH)
    assert sorted(results) == sorted(VARIANTS)
    for variant, result in results.items():
        assert result["plugin_class"] == "HybridMambaMixer", variant
        tolerance = 1e-4 * max(1.0, result["output_scale"])
        assert result["output_err"] < tolerance, (variant, result)
        assert result["decode_err"] < tolerance, (variant, result)
        assert result["state_err"] < 1e-4, (variant, result)
        assert result["states_changed"] and result["unused_untouched"], (variant, result)


@pytest.mark.parametrize("arch", ["mamba", "falcon_mamba", "jamba"])
def test_models_build_the_plugin_layer(layer_builds, arch):
    assert layer_builds[arch] == {
        "classes": ["vllm_xpu_hybrid.layers.mamba_mixer.HybridMambaMixer"]
    }


def test_unsupported_settings_refused_at_construction(layer_builds):
    assert layer_builds["mamba+spec"] == {
        "error": "vllm-xpu-hybrid's Mamba-1 layer cannot serve this configuration: "
        "speculative decoding (num_speculative_tokens=2): the kernels take one "
        "token per decode row; drop --speculative-config."
    }
