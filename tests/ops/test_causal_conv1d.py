# SPDX-License-Identifier: Apache-2.0
"""causal_conv1d_varlen / causal_conv1d_update against the per-token
references in ops/reference.py."""

from __future__ import annotations

import pytest
import torch

from vllm_xpu_hybrid.ops import causal_conv1d as conv_module
from vllm_xpu_hybrid.ops import reference as ref
from vllm_xpu_hybrid.ops.causal_conv1d import causal_conv1d_update, causal_conv1d_varlen

TOLERANCES = {
    torch.float32: {"atol": 1e-5, "rtol": 1e-5},
    torch.float16: {"atol": 2e-3, "rtol": 2e-3},
    torch.bfloat16: {"atol": 2e-2, "rtol": 2e-2},
}


def _skip_unsupported(device: str, *dtypes: torch.dtype) -> None:
    if device == "cpu" and torch.bfloat16 in dtypes:
        pytest.skip("bf16 is checked on a GPU only (Triton's interpreter lacks bf16)")


def _conv_pool(gen, num_slots, dim, state_len, dtype, layout, device):
    """Conv-state pool as vLLM hands it to the layer: a [num_slots, dim,
    state_len] view. "SD" stores (state_len, dim) pages (vLLM's default) and
    transposes; "DS" stores (dim, state_len). Pages are padded so that the slot
    stride is not the page size, as in vLLM's shared state pages."""
    page = state_len * dim
    raw = torch.randn(num_slots, page + 5, generator=gen).to(dtype).to(device)[:, :page]
    if layout == "SD":
        return raw.view(num_slots, state_len, dim).transpose(1, 2)
    return raw.view(num_slots, dim, state_len)


def _packed(gen, lens, dim, dtype, device, row_pad=3):
    """[total_tokens, dim] with strided rows, like a slice of the projection."""
    total = sum(lens)
    x = torch.randn(total, dim + row_pad, generator=gen).to(dtype).to(device)[:, :dim]
    qsl = torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int32, device=device)
    return x, qsl


def _assert_close(actual, expected, dtype):
    torch.testing.assert_close(actual.cpu(), expected.cpu(), **TOLERANCES[dtype])


@pytest.mark.parametrize("width", [2, 3, 4])
@pytest.mark.parametrize("dtype,state_dtype", [
    (torch.float32, torch.float32),
    (torch.float16, torch.float16),
    (torch.float32, torch.float16),
    (torch.bfloat16, torch.float32),
])
@pytest.mark.parametrize("layout", ["SD", "DS"])
def test_varlen_matches_reference(device, width, dtype, state_dtype, layout):
    _skip_unsupported(device, dtype, state_dtype)
    gen = torch.Generator().manual_seed(width * 100 + len(layout))
    dim = 48
    # Shorter than, equal to and longer than the state (width - 1), one empty,
    # and (on a GPU) long enough to straddle the kernel's token tiles.
    lens = [1, width - 1, 2, 0, 70, width + 1]
    x, qsl = _packed(gen, lens, dim, dtype, device)
    weight = torch.randn(dim, width, generator=gen).to(dtype).to(device)
    bias = torch.randn(dim, generator=gen).to(dtype).to(device)
    states = _conv_pool(gen, 9, dim, width - 1, state_dtype, layout, device)
    state_indices = torch.tensor([4, 0, -1, 7, 2, 5], dtype=torch.int32, device=device)
    has_initial_state = torch.tensor([True, True, True, False, False, True], device=device)
    activation = "silu" if width != 3 else None
    expected_states = states.cpu().clone()
    expected = ref.causal_conv1d_varlen_reference(
        x.cpu(), weight.cpu(), bias.cpu(), expected_states, qsl.cpu(),
        state_indices.cpu(), has_initial_state.cpu(), activation,
    )
    out = causal_conv1d_varlen(
        x, weight, bias, states, qsl, state_indices, has_initial_state, activation
    )
    _assert_close(out, expected, dtype)
    # States are copies of inputs: exact.
    assert torch.equal(states.cpu(), expected_states)


@pytest.mark.parametrize("seed", range(4))
def test_varlen_random_sweep(device, seed):
    gen = torch.Generator().manual_seed(1000 + seed)
    width = [2, 3, 4][seed % 3]
    dim = int(torch.randint(8, 80, (1,), generator=gen))
    num_seqs = int(torch.randint(1, 7, (1,), generator=gen))
    lens = torch.randint(0, 40, (num_seqs,), generator=gen).tolist()
    x, qsl = _packed(gen, lens, dim, torch.float32, device)
    weight = torch.randn(dim, width, generator=gen).to(device)
    bias = None if seed % 2 else torch.randn(dim, generator=gen).to(device)
    states = _conv_pool(gen, num_seqs + 2, dim, width - 1, torch.float32, "SD", device)
    state_indices = torch.randperm(num_seqs + 2, generator=gen)[:num_seqs].to(torch.int32).to(device)
    has_initial_state = (torch.rand(num_seqs, generator=gen) < 0.5).to(device)
    expected_states = states.cpu().clone()
    expected = ref.causal_conv1d_varlen_reference(
        x.cpu(), weight.cpu(), None if bias is None else bias.cpu(), expected_states,
        qsl.cpu(), state_indices.cpu(), has_initial_state.cpu(), "silu",
    )
    out = causal_conv1d_varlen(x, weight, bias, states, qsl, state_indices, has_initial_state, "silu")
    _assert_close(out, expected, torch.float32)
    assert torch.equal(states.cpu(), expected_states)


@pytest.mark.parametrize("width", [2, 3, 4])
def test_varlen_tiles_smaller_than_the_problem(device, monkeypatch, width):
    """Token tiles of 4 and channel tiles of 16 over 40 channels: tiles that
    begin inside a sequence, sequences (and empty ones) that begin on a tile
    boundary, several sequences in one tile, a partial last channel tile."""
    monkeypatch.setitem(conv_module.LAUNCH_CONFIGS[device], "varlen",
                        dict(conv_module.LAUNCH_CONFIGS[device]["varlen"], BLOCK_T=4, BLOCK_D=16))
    gen = torch.Generator().manual_seed(20 + width)
    dim = 40
    lens = [3, 0, 5, 1, 0, 0, 8, 2, 1]
    x, qsl = _packed(gen, lens, dim, torch.float32, device)
    weight = torch.randn(dim, width, generator=gen).to(device)
    bias = torch.randn(dim, generator=gen).to(device)
    states = _conv_pool(gen, 10, dim, width - 1, torch.float32, "SD", device)
    state_indices = torch.tensor([9, 0, 1, 2, 3, 4, 5, -1, 7], dtype=torch.int32, device=device)
    has_initial_state = torch.tensor([True, True, False, True, True, False, True, True, True],
                                     device=device)
    expected_states = states.cpu().clone()
    expected = ref.causal_conv1d_varlen_reference(
        x.cpu(), weight.cpu(), bias.cpu(), expected_states, qsl.cpu(),
        state_indices.cpu(), has_initial_state.cpu(), "silu",
    )
    out = causal_conv1d_varlen(x, weight, bias, states, qsl, state_indices, has_initial_state,
                               "silu")
    _assert_close(out, expected, torch.float32)
    assert torch.equal(states.cpu(), expected_states)


@pytest.mark.parametrize("width", [2, 3, 4])
@pytest.mark.parametrize("dtype,state_dtype", [
    (torch.float32, torch.float32),
    (torch.float16, torch.float16),
    (torch.float16, torch.float32),
    (torch.bfloat16, torch.bfloat16),
])
def test_update_matches_reference(device, width, dtype, state_dtype):
    _skip_unsupported(device, dtype, state_dtype)
    gen = torch.Generator().manual_seed(width)
    dim, batch = 40, 5
    x = torch.randn(batch, dim, generator=gen).to(dtype).to(device)
    weight = torch.randn(dim, width, generator=gen).to(dtype).to(device)
    bias = torch.randn(dim, generator=gen).to(dtype).to(device)
    states = _conv_pool(gen, 8, dim, width - 1, state_dtype, "SD", device)
    state_indices = torch.tensor([3, -1, 0, 6, 1], dtype=torch.int32, device=device)
    expected_states = states.cpu().clone()
    expected = ref.causal_conv1d_update_reference(
        x.cpu(), expected_states, weight.cpu(), bias.cpu(), state_indices.cpu(), "silu"
    )
    out = causal_conv1d_update(x, states, weight, bias, state_indices, "silu")
    _assert_close(out, expected, dtype)
    assert torch.equal(states.cpu(), expected_states)


def test_update_in_place(device):
    gen = torch.Generator().manual_seed(7)
    dim, width = 24, 4
    x = torch.randn(3, dim, generator=gen).to(device)
    weight = torch.randn(dim, width, generator=gen).to(device)
    states = _conv_pool(gen, 4, dim, width - 1, torch.float32, "DS", device)
    state_indices = torch.tensor([2, 0, 3], dtype=torch.int32, device=device)
    expected = ref.causal_conv1d_update_reference(
        x.cpu(), states.cpu().clone(), weight.cpu(), None, state_indices.cpu()
    )
    out = causal_conv1d_update(x, states, weight, None, state_indices, out=x)
    assert out is x
    _assert_close(x, expected, torch.float32)


@pytest.mark.parametrize("width", [2, 4])
def test_chunked_prefill_continues_saved_state(device, width):
    """Prefill in two calls (the second from the saved state) equals one call."""
    gen = torch.Generator().manual_seed(11)
    dim = 32
    # Sequence 0: 45 tokens = 20 + 25; sequence 1: 9 tokens = 1 + 8.
    x, qsl = _packed(gen, [45, 9], dim, torch.float32, device, row_pad=0)
    weight = torch.randn(dim, width, generator=gen).to(device)
    bias = torch.randn(dim, generator=gen).to(device)
    state_indices = torch.tensor([1, 3], dtype=torch.int32, device=device)
    states_whole = _conv_pool(gen, 4, dim, width - 1, torch.float32, "SD", device)
    states_split = states_whole.clone()

    out_whole = causal_conv1d_varlen(
        x, weight, bias, states_whole, qsl, state_indices,
        torch.tensor([False, False], device=device), "silu",
    )
    first = torch.cat([x[0:20], x[45:46]])
    second = torch.cat([x[20:45], x[46:54]])
    qsl1 = torch.tensor([0, 20, 21], dtype=torch.int32, device=device)
    qsl2 = torch.tensor([0, 25, 33], dtype=torch.int32, device=device)
    out1 = causal_conv1d_varlen(
        first, weight, bias, states_split, qsl1, state_indices,
        torch.tensor([False, False], device=device), "silu",
    )
    out2 = causal_conv1d_varlen(
        second, weight, bias, states_split, qsl2, state_indices,
        torch.tensor([True, True], device=device), "silu",
    )
    out_split = torch.cat([out1[:20], out2[:25], out1[20:], out2[25:]])
    _assert_close(out_split, out_whole, torch.float32)
    assert torch.equal(states_split.cpu(), states_whole.cpu())


@pytest.mark.parametrize("width", [3, 4])
def test_prefill_checkpoint_states(device, width):
    """Prefix caching (vLLM 0.32's align mode): each sequence's conv state
    after its first ``offset`` tokens lands in a checkpoint page, including
    an offset shorter than the state (its history comes from the initial
    state, which the final store then overwrites). A declined row (padding
    page) writes nothing; outputs and final states are unaffected."""
    gen = torch.Generator().manual_seed(14)
    dim = 40
    lens, offsets = [30, 12, 7], [16, 1, 0]
    x, qsl = _packed(gen, lens, dim, torch.float32, device)
    weight = torch.randn(dim, width, generator=gen).to(device)
    bias = torch.randn(dim, generator=gen).to(device)
    states = _conv_pool(gen, 7, dim, width - 1, torch.float32, "SD", device)
    idx = torch.tensor([1, 2, 3], dtype=torch.int32, device=device)
    has_init = torch.tensor([False, True, True], device=device)
    checkpoint_offsets = torch.tensor(offsets, dtype=torch.int32, device=device)
    checkpoint_idx = torch.tensor([4, 5, 0], dtype=torch.int32, device=device)
    before = states.cpu().clone()

    out = causal_conv1d_varlen(x, weight, bias, states, qsl, idx, has_init, "silu",
                               pad_slot_id=0, checkpoint_offsets=checkpoint_offsets,
                               checkpoint_state_indices=checkpoint_idx)

    expected_states = before.clone()
    expected = ref.causal_conv1d_varlen_reference(
        x.cpu(), weight.cpu(), bias.cpu(), expected_states, qsl.cpu(), idx.cpu(),
        has_init.cpu(), "silu", pad_slot_id=0,
    )
    # The checkpoint oracle: the reference over each sequence's first tokens,
    # starting from its initial state (copied to its checkpoint page).
    prefix_rows = torch.cat([torch.arange(s, s + k) for s, k in zip(qsl.tolist(), offsets)])
    prefix_states = before.clone()
    prefix_states[5] = before[2]
    ref.causal_conv1d_varlen_reference(
        x.cpu()[prefix_rows], weight.cpu(), bias.cpu(), prefix_states,
        torch.tensor([0] + torch.tensor(offsets).cumsum(0).tolist()), checkpoint_idx.cpu(),
        has_init.cpu(), "silu", pad_slot_id=0,
    )
    _assert_close(out, expected, torch.float32)
    _assert_close(states[[1, 2, 3]], expected_states[[1, 2, 3]], torch.float32)
    _assert_close(states[[4, 5]], prefix_states[[4, 5]], torch.float32)
    assert torch.equal(states.cpu()[[0, 6]], before[[0, 6]])


@pytest.mark.parametrize("width", [3, 4])
def test_decode_after_prefill_equals_one_prefill(device, width):
    gen = torch.Generator().manual_seed(12)
    dim, prompt, steps = 24, 6, 5
    x, qsl = _packed(gen, [prompt + steps], dim, torch.float32, device, row_pad=0)
    weight = torch.randn(dim, width, generator=gen).to(device)
    bias = torch.randn(dim, generator=gen).to(device)
    idx = torch.tensor([2], dtype=torch.int32, device=device)
    no_state = torch.tensor([False], device=device)
    states_whole = _conv_pool(gen, 3, dim, width - 1, torch.float32, "SD", device)
    states_steps = states_whole.clone()
    out_whole = causal_conv1d_varlen(x, weight, bias, states_whole, qsl, idx, no_state, "silu")
    outs = [causal_conv1d_varlen(
        x[:prompt], weight, bias, states_steps,
        torch.tensor([0, prompt], dtype=torch.int32, device=device), idx, no_state, "silu",
    )]
    for t in range(prompt, prompt + steps):
        outs.append(causal_conv1d_update(x[t:t + 1], states_steps, weight, bias, idx, "silu"))
    _assert_close(torch.cat(outs), out_whole, torch.float32)
    assert torch.equal(states_steps.cpu(), states_whole.cpu())


def test_null_block_padding_leaves_page_untouched(device):
    """vLLM 0.32 pads decode rows with NULL_BLOCK_ID = 0: with pad_slot_id=0,
    page 0 is neither read nor written, and -1 stays padding too."""
    gen = torch.Generator().manual_seed(13)
    dim, width = 16, 4
    weight = torch.randn(dim, width, generator=gen).to(device)
    states = _conv_pool(gen, 4, dim, width - 1, torch.float16, "SD", device)
    before = states.clone()
    x = torch.randn(3, dim, generator=gen).to(device)
    idx = torch.tensor([0, -1, 2], dtype=torch.int32, device=device)
    out = causal_conv1d_update(x, states, weight, None, idx, pad_slot_id=0)
    assert torch.equal(states[0], before[0]) and torch.equal(states[1], before[1])
    assert torch.equal(states[3], before[3])
    assert not torch.equal(states[2], before[2])
    # Padded rows see a zero state: only the newest tap contributes.
    _assert_close(out[:2], x[:2] * weight[:, -1], torch.float32)

    xp, qsl = _packed(gen, [5, 2], dim, torch.float32, device)
    before = states.clone()
    causal_conv1d_varlen(
        xp, weight, None, states, qsl, torch.tensor([0, 3], dtype=torch.int32, device=device),
        torch.tensor([True, True], device=device), pad_slot_id=0,
    )
    assert torch.equal(states[:3], before[:3])


def test_bad_arguments(device):
    dim = 8
    x = torch.randn(6, dim, device=device)
    w = torch.randn(dim, 4, device=device)
    states = torch.randn(2, dim, 3, device=device)
    qsl = torch.tensor([0, 6], dtype=torch.int32, device=device)
    idx = torch.tensor([0], dtype=torch.int32, device=device)
    init = torch.tensor([False], device=device)
    with pytest.raises(ValueError, match=r"weight: .*width in \(2, 3, 4\)"):
        causal_conv1d_varlen(x, torch.randn(dim, 5, device=device), None,
                             torch.randn(2, dim, 4, device=device), qsl, idx, init)
    with pytest.raises(ValueError, match="conv_states: expected"):
        causal_conv1d_varlen(x, w, None, torch.randn(2, 3, dim, device=device), qsl, idx, init)
    with pytest.raises(ValueError, match="x: dtype"):
        causal_conv1d_varlen(x.to(torch.int32), w, None, states, qsl, idx, init)
    with pytest.raises(ValueError, match="activation: 'relu' unsupported"):
        causal_conv1d_varlen(x, w, None, states, qsl, idx, init, activation="relu")
    with pytest.raises(ValueError, match=r"query_start_loc: expected a contiguous tensor of shape \(2,\)"):
        causal_conv1d_varlen(x, w, None, states, qsl[:1], idx, init)
    with pytest.raises(ValueError, match="out: must not alias x"):
        causal_conv1d_varlen(x, w, None, states, qsl, idx, init, out=x)
    with pytest.raises(ValueError, match="checkpoint_offsets, checkpoint_state_indices: "
                       "pass both or neither"):
        causal_conv1d_varlen(x, w, None, states, qsl, idx, init, checkpoint_state_indices=idx)
    with pytest.raises(ValueError, match=r"checkpoint_offsets: expected a contiguous tensor of "
                       r"shape \(1,\)"):
        causal_conv1d_varlen(x, w, None, states, qsl, idx, init,
                             checkpoint_offsets=qsl, checkpoint_state_indices=idx)
    with pytest.raises(ValueError, match=r"bias: expected a contiguous tensor of shape \(8,\)"):
        causal_conv1d_update(x, states, w, torch.randn(dim + 1, device=device),
                             torch.zeros(6, dtype=torch.int32, device=device))
    with pytest.raises(ValueError, match=r"state_indices: expected a contiguous tensor of shape \(6,\)"):
        causal_conv1d_update(x, states, w, None, idx)
    # vLLM's decode indices are [B, 1 + num_spec]: a column view is strided.
    with pytest.raises(ValueError, match=r"state_indices: .* stride \(2,\)"):
        causal_conv1d_update(x, states, w, None,
                             torch.zeros(6, 2, dtype=torch.int32, device=device)[:, 0])
