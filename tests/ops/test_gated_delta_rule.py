# SPDX-License-Identifier: Apache-2.0
"""The gated delta rule kernels against the sequential per-token recurrence
in ops/reference.py: chunked prefill over packed sequences (chunk-boundary
lengths, carried and fresh states, padding slots, GQA heads, head dims that
are not powers of two, strided inputs), continued prefill against one long
prefill, decode after prefill, and the gates."""

from __future__ import annotations

import textwrap

import pytest
import torch

from vllm_xpu_hybrid.ops import gated_delta_rule as gdr_module
from vllm_xpu_hybrid.ops import reference as ref
from vllm_xpu_hybrid.ops.gated_delta_rule import (
    CHUNK_SIZE,
    gated_delta_rule_chunk_metadata,
    gated_delta_rule_decode,
    gated_delta_rule_prefill,
    gdn_gating,
)
from vllm_xpu_hybrid.ops.launch import MAX_GRID_YZ

TOLERANCES = {
    torch.float32: {"atol": 1e-4, "rtol": 1e-4},
    torch.float16: {"atol": 2e-2, "rtol": 2e-2},
    torch.bfloat16: {"atol": 8e-2, "rtol": 5e-2},
}


def _skip_unsupported(device: str, *dtypes: torch.dtype) -> None:
    if device == "cpu" and torch.bfloat16 in dtypes:
        pytest.skip("bf16 is checked on a GPU only (Triton's interpreter lacks bf16)")


def _cu(lens, device):
    return torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int32, device=device)


def _inputs(gen, total, H, HV, K, V, dtype, device):
    """q, k, v as strided column slices of one projection (as the layer hands
    the conv output over), and gates from the layer's gating.

    Keys share a common direction per head (pairwise cosines near 0.8) and
    the decay is mild (about exp(-0.03) per token), so the in-chunk system
    (I + A) couples every pair of tokens strongly: independent random keys
    would leave A's higher powers, and with them most of the inverse, below
    the tolerance."""
    proj = torch.randn(total, 2 * H * K + HV * V + 3, generator=gen)
    shared = torch.randn(H * K, generator=gen)
    proj[:, H * K : 2 * H * K] = shared + 0.5 * proj[:, H * K : 2 * H * K]
    proj = proj.to(dtype).to(device)
    q = proj[:, : H * K].view(total, H, K)
    k = proj[:, H * K : 2 * H * K].view(total, H, K)
    v = proj[:, 2 * H * K : 2 * H * K + HV * V].view(total, HV, V)
    a = torch.randn(total, HV, generator=gen) * 0.5 - 3.0
    b = torch.randn(total, HV, generator=gen) + 1.0
    A_log = torch.rand(HV, generator=gen) - 0.5
    dt_bias = torch.rand(HV, generator=gen)
    g, beta = ref.gdn_gating_reference(a, b, A_log, dt_bias)
    return q, k, v, g.to(device), beta.to(device)


def _state_pool(gen, num_slots, HV, V, K, dtype, device):
    """State pool whose slot stride is not the page size (vLLM's state pages
    hold the conv state too)."""
    page = HV * V * K
    raw = torch.randn(num_slots, page + 5, generator=gen).to(dtype).to(device)
    return raw[:, :page].view(num_slots, HV, V, K)


def _prefill(q, k, v, g, beta, lens, states, idx, has_init, **kw):
    """Kernel on the device, reference on the host copies; returns (out,
    expected, expected_states)."""
    cu = _cu(lens, q.device)
    expected_states = states.cpu().clone()
    expected = ref.gated_delta_rule_reference(
        q.cpu(), k.cpu(), v.cpu(), g.cpu(), beta.cpu(), cu.cpu(), expected_states,
        idx.cpu(), has_init.cpu(), **kw,
    )
    chunk_indices, chunk_offsets = gated_delta_rule_chunk_metadata(cu.cpu(), device=q.device)
    out = gated_delta_rule_prefill(
        q, k, v, g, beta, cu_seqlens=cu, chunk_indices=chunk_indices,
        chunk_offsets=chunk_offsets, states=states, state_indices=idx,
        has_initial_state=has_init, **kw,
    )
    return out, expected, expected_states


@pytest.mark.parametrize("H, HV, K, V, dtype, state_dtype", [
    (1, 2, 32, 16, torch.float32, torch.float32),
    (2, 4, 24, 20, torch.float32, torch.float32),
    (1, 2, 32, 32, torch.float16, torch.float32),
    (2, 4, 128, 128, torch.bfloat16, torch.float32),
    (2, 4, 128, 128, torch.bfloat16, torch.bfloat16),
], ids=["fp32", "fp32-gqa-odd-dims", "fp16", "bf16-qwen-dims", "bf16-state-bf16"])
def test_prefill_varlen_matches_reference(device, H, HV, K, V, dtype, state_dtype):
    _skip_unsupported(device, dtype, state_dtype)
    _check_varlen_prefill(device, H, HV, K, V, dtype, state_dtype)


@pytest.mark.parametrize("form", ["ieee", "tf32x3", "elementwise"])
def test_prefill_inverse_product_forms(device, monkeypatch, form):
    """Each form of the inverse's fp32 block products (one is configured
    per device kind) gives fp32 results, whatever this device's choice."""
    entry = dict(gdr_module.LAUNCH_CONFIGS[device]["inverse"], inverse_products=form)
    monkeypatch.setitem(gdr_module.LAUNCH_CONFIGS[device], "inverse", entry)
    _check_varlen_prefill(device, 1, 2, 32, 16, torch.float32, torch.float32)


def test_prefill_state_split_in_value_tiles(device, monkeypatch):
    """The chunk scan split over value rows, the last tile partly past V
    (V = 20 in tiles of 16), as the GPU configurations split it."""
    entry = dict(gdr_module.LAUNCH_CONFIGS[device]["scan"], BV=16)
    monkeypatch.setitem(gdr_module.LAUNCH_CONFIGS[device], "scan", entry)
    _check_varlen_prefill(device, 2, 4, 24, 20, torch.float32, torch.float32)


def _check_varlen_prefill(device, H, HV, K, V, dtype, state_dtype):
    gen = torch.Generator().manual_seed(0)
    # Chunk-boundary lengths 63, 64, 65 and a one-token sequence; the
    # 65-token one continues a state, the others start fresh over stale pages.
    lens = [63, 1, 65, 64]
    q, k, v, g, beta = _inputs(gen, sum(lens), H, HV, K, V, dtype, device)
    states = _state_pool(gen, 6, HV, V, K, state_dtype, device)
    idx = torch.tensor([4, 1, 2, 5], dtype=torch.int32, device=device)
    has_init = torch.tensor([False, True, True, False], device=device)
    initial = states.clone()
    out, expected, expected_states = _prefill(
        q, k, v, g, beta, lens, states, idx, has_init, qk_l2norm=True,
    )
    tol = TOLERANCES[dtype]
    torch.testing.assert_close(out.cpu().float(), expected.float(), **tol)
    torch.testing.assert_close(states.cpu().float(), expected_states.float(), **tol)
    untouched = [0, 3]
    assert torch.equal(states[untouched], initial[untouched])


def test_prefill_padding_slots_and_plain_qk(device):
    """Rows whose slot is padding (negative, or pad_slot_id) start from zero
    and write nothing; without qk_l2norm and with an explicit scale."""
    gen = torch.Generator().manual_seed(1)
    lens = [17, 70, 3]
    H, HV, K, V = 1, 1, 16, 16
    q, k, v, g, beta = _inputs(gen, sum(lens), H, HV, K, V, torch.float32, device)
    # Keys of norm well below 1 keep the un-normalised rule stable.
    k = k * 0.2
    states = _state_pool(gen, 4, HV, V, K, torch.float32, device)
    idx = torch.tensor([-1, 2, 0], dtype=torch.int32, device=device)
    has_init = torch.tensor([True, True, True], device=device)
    initial = states.clone()
    out, expected, expected_states = _prefill(
        q, k, v, g, beta, lens, states, idx, has_init, scale=0.3, pad_slot_id=0,
    )
    torch.testing.assert_close(out.cpu(), expected, **TOLERANCES[torch.float32])
    torch.testing.assert_close(states.cpu(), expected_states, **TOLERANCES[torch.float32])
    assert torch.equal(states[[0, 1, 3]], initial[[0, 1, 3]])


def test_continued_prefill_equals_one_long_prefill(device):
    """A 150-token sequence in one prefill, and as 70 + 80 tokens (the second
    part starting mid-chunk from the first part's state): same outputs and
    final state, both equal to the reference."""
    gen = torch.Generator().manual_seed(2)
    H, HV, K, V = 1, 1, 32, 16
    total = 150
    q, k, v, g, beta = _inputs(gen, total, H, HV, K, V, torch.float32, device)
    states = _state_pool(gen, 3, HV, V, K, torch.float32, device)
    one_shot = states.clone()
    idx = torch.tensor([1], dtype=torch.int32, device=device)
    fresh = torch.tensor([False], device=device)
    out_long, expected, expected_states = _prefill(
        q, k, v, g, beta, [total], one_shot, idx, fresh, qk_l2norm=True,
    )
    tol = TOLERANCES[torch.float32]
    torch.testing.assert_close(out_long.cpu(), expected, **tol)

    first, second = slice(0, 70), slice(70, total)
    out_a, _, _ = _prefill(
        q[first], k[first], v[first], g[first], beta[first], [70], states, idx, fresh,
        qk_l2norm=True,
    )
    out_b, _, _ = _prefill(
        q[second], k[second], v[second], g[second], beta[second], [80], states, idx,
        torch.tensor([True], device=device), qk_l2norm=True,
    )
    torch.testing.assert_close(torch.cat([out_a, out_b]), out_long, **tol)
    torch.testing.assert_close(states[1], one_shot[1], **tol)
    torch.testing.assert_close(states.cpu()[1], expected_states[1], **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_decode_after_prefill_matches_reference(device, dtype):
    """Prefill two sequences, then three decode steps in a batch that also
    holds padding rows (pad_slot_id 0, vLLM's null block, and -1): each
    sequence's outputs equal the reference over its whole token stream."""
    _skip_unsupported(device, dtype)
    gen = torch.Generator().manual_seed(3)
    H, HV, K, V = 1, 2, 32, 16
    lens, steps = [66, 9], 3
    total = sum(lens) + steps * 2
    q, k, v, g, beta = _inputs(gen, total, H, HV, K, V, dtype, device)
    states = _state_pool(gen, 5, HV, V, K, torch.float32, device)
    initial = states.clone()
    slots = torch.tensor([3, 1], dtype=torch.int32, device=device)
    p = sum(lens)
    cu = _cu(lens, device)
    chunk_indices, chunk_offsets = gated_delta_rule_chunk_metadata(cu.cpu(), device=device)
    outs = [gated_delta_rule_prefill(
        q[:p], k[:p], v[:p], g[:p], beta[:p], cu_seqlens=cu, chunk_indices=chunk_indices,
        chunk_offsets=chunk_offsets, states=states, state_indices=slots,
        has_initial_state=torch.tensor([False, False], device=device), qk_l2norm=True,
    )]
    # Decode rows: sequence 1, padding (null block 0), sequence 0, padding (-1).
    decode_slots = torch.tensor([1, 0, 3, -1], dtype=torch.int32, device=device)
    for step in range(steps):
        rows = [p + 2 * step, p + 2 * step, p + 2 * step + 1, p + 2 * step]
        out = gated_delta_rule_decode(
            q[rows], k[rows], v[rows], g[rows], beta[rows], states=states,
            state_indices=decode_slots, qk_l2norm=True, pad_slot_id=0,
        )
        outs.append(out[[2, 0]])

    # The reference: each sequence's tokens back to back from a zero state.
    order = [
        list(range(lens[0])) + [p + 2 * s + 1 for s in range(steps)],
        list(range(lens[0], p)) + [p + 2 * s for s in range(steps)],
    ]
    tokens = order[0] + order[1]
    expected_states = initial.cpu().clone()
    expected = ref.gated_delta_rule_reference(
        q[tokens].cpu(), k[tokens].cpu(), v[tokens].cpu(), g[tokens].cpu(), beta[tokens].cpu(),
        _cu([len(order[0]), len(order[1])], "cpu"), expected_states, slots.cpu(),
        torch.tensor([False, False]), qk_l2norm=True,
    )
    got = torch.empty_like(expected)
    got[:lens[0]] = outs[0][:lens[0]].cpu()
    got[len(order[0]):len(order[0]) + lens[1]] = outs[0][lens[0]:].cpu()
    for s in range(steps):
        got[lens[0] + s] = outs[1 + s][0].cpu()
        got[len(order[0]) + lens[1] + s] = outs[1 + s][1].cpu()
    tol = TOLERANCES[dtype]
    torch.testing.assert_close(got.float(), expected.float(), **tol)
    torch.testing.assert_close(states.cpu(), expected_states, **tol)
    # Padding rows read and wrote nothing: slots 0, 2 and 4 are as they were.
    assert torch.equal(states[[0, 2, 4]], initial[[0, 2, 4]])


def test_decode_padding_rows_compute_from_zero_state(device):
    gen = torch.Generator().manual_seed(4)
    H, HV, K, V = 1, 2, 16, 16
    q, k, v, g, beta = _inputs(gen, 3, H, HV, K, V, torch.float32, device)
    states = _state_pool(gen, 3, HV, V, K, torch.float32, device)
    initial = states.clone()
    idx = torch.tensor([-1, 2, -1], dtype=torch.int32, device=device)
    expected_states = states.cpu().clone()
    expected = ref.gated_delta_rule_decode_reference(
        q.cpu(), k.cpu(), v.cpu(), g.cpu(), beta.cpu(), expected_states, idx.cpu(), qk_l2norm=True,
    )
    out = gated_delta_rule_decode(q, k, v, g, beta, states=states, state_indices=idx, qk_l2norm=True)
    torch.testing.assert_close(out.cpu(), expected, **TOLERANCES[torch.float32])
    torch.testing.assert_close(states.cpu(), expected_states, **TOLERANCES[torch.float32])
    assert torch.equal(states[[0, 1]], initial[[0, 1]])


def test_decode_too_many_rows_is_refused(device):
    """More decode rows than the launch grid's batch dimension holds: a
    message naming the fix, before any kernel runs."""
    gen = torch.Generator().manual_seed(0)
    rows = MAX_GRID_YZ + 1
    q, k, v, g, beta = _inputs(gen, rows, 1, 1, 16, 16, torch.float32, device)
    idx = torch.zeros(rows, dtype=torch.int32, device=device)
    with pytest.raises(ValueError, match="q: 65536 decode rows in one call; at most 65535 .*max_num_seqs"):
        gated_delta_rule_decode(q, k, v, g, beta, states=_state_pool(gen, 1, 1, 16, 16, torch.float32, device),
                                state_indices=idx)


def test_gdn_gating_matches_reference(device):
    gen = torch.Generator().manual_seed(5)
    ab = (torch.randn(37, 2 * 6, generator=gen) * 8).to(device)
    a, b = ab[:, :6], ab[:, 6:]  # strided, as the layer splits [b | a]
    A_log = torch.randn(6, generator=gen).to(device)
    dt_bias = torch.randn(6, generator=gen).to(device)
    g, beta = gdn_gating(a, b, A_log, dt_bias)
    g_ref, beta_ref = ref.gdn_gating_reference(a.cpu(), b.cpu(), A_log.cpu(), dt_bias.cpu())
    torch.testing.assert_close(g.cpu(), g_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(beta.cpu(), beta_ref, atol=1e-6, rtol=1e-6)


_INVERSE_PRODUCT_PROGRAM = textwrap.dedent("""
    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from vllm_xpu_hybrid.ops.gated_delta_rule import _mm


    @triton.jit
    def product(a_ptr, b_ptr, o_ptr):
        r = tl.arange(0, 16)
        tile = r[:, None] * 16 + r[None, :]
        tl.store(o_ptr + tile, _mm(tl.load(a_ptr + tile), tl.load(b_ptr + tile), "elementwise"))


    source = ASTSource(fn=product, constexprs={},
                       signature={"a_ptr": "*fp32", "b_ptr": "*fp32", "o_ptr": "*fp32"})
    print(triton.compile(source, target=GPUTarget("cuda", 90, 32)).asm["ttir"])
""")


def test_inverse_block_products_compile_without_dots(tmp_path, run_python):
    """The inverse's 16 x 16 fp32 products in their "elementwise" form (the
    Intel configuration) stay elementwise fp32 when compiled. Triton's combine pass turns sum(a[:, :, None] * b[None, :, :],
    1) into a tl.dot, which Triton 3.6 ran as tf32 on an H100 (2e-3 errors in
    fp32 outputs). Compiled for sm_90 up to its Triton IR; no GPU needed."""
    pytest.importorskip("triton.backends.nvidia")
    program = tmp_path / "inverse_product.py"
    program.write_text(_INVERSE_PRODUCT_PROGRAM)
    proc = run_python(f"import runpy; runpy.run_path({str(program)!r})",
                      env={"TRITON_INTERPRET": "0"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "tt.reduce" in proc.stdout and "tt.dot" not in proc.stdout


def test_chunk_metadata_layout():
    chunk_indices, chunk_offsets = gated_delta_rule_chunk_metadata([0, 63, 127, 192, 193])
    assert CHUNK_SIZE == 64
    assert chunk_indices.tolist() == [[0, 0], [1, 0], [2, 0], [2, 1], [3, 0]]
    assert chunk_offsets.tolist() == [0, 1, 2, 4, 5]


@pytest.mark.parametrize("change, message", [
    ({"v_heads": 3}, "num_v_heads=3 must be a multiple of num_k_heads=2"),
    ({"state_shape": (4, 4, 16, 8)}, "states: expected [num_slots, num_v_heads=4, head_v_dim=16, head_k_dim=16]"),
    ({"v_dtype": torch.float64}, "v: dtype torch.float64 unsupported"),
    ({"k_dim": 512}, "head dims K=512, V=16: the kernels take at most 256"),
])
def test_bad_arguments_refused(change, message):
    H, K = 2, change.get("k_dim", 16)
    HV = change.get("v_heads", 4)
    q = torch.zeros(5, H, K)
    v = torch.zeros(5, HV, 16, dtype=change.get("v_dtype", torch.float32))
    gates = torch.zeros(5, HV)
    states = torch.zeros(change.get("state_shape", (4, HV, 16, K)))
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        gated_delta_rule_decode(
            q, q, v, gates, gates, states=states,
            state_indices=torch.zeros(5, dtype=torch.int32),
        )
