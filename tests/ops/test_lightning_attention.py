# SPDX-License-Identifier: Apache-2.0
"""lightning_attention_prefill / lightning_attention_decode against the
token-by-token recurrence in ops/reference.py: varlen batches with lengths
around the chunk (C - 1, C, C + 1, several chunks), carried states, padding
rows, a continued prefill equal to one long prefill, decode after prefill."""

from __future__ import annotations

import pytest
import torch

from vllm_xpu_hybrid.ops import lightning_attention as lightning_module
from vllm_xpu_hybrid.ops import reference as ref
from vllm_xpu_hybrid.ops.launch import MAX_GRID_YZ
from vllm_xpu_hybrid.ops.lightning_attention import (
    lightning_attention_decode,
    lightning_attention_prefill,
)

TOLERANCES = {
    torch.float32: {"atol": 2e-4, "rtol": 2e-4},
    torch.float16: {"atol": 3e-2, "rtol": 3e-2},
    torch.bfloat16: {"atol": 1.5e-1, "rtol": 5e-2},
}
# From a fast decay (a state forgets within a few tokens) to a slow one
# (remembers hundreds), as Bailing's ALiBi-style slopes spread them.
SLOPES = (0.9, 0.25, 0.05, 0.004)


def _skip_unsupported(device: str, *dtypes: torch.dtype) -> None:
    if device == "cpu" and torch.bfloat16 in dtypes:
        pytest.skip("bf16 is checked on a GPU only (Triton's interpreter lacks bf16)")


def _qsl(lens, device):
    return torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int32, device=device)


def _qkv(gen, total, nheads, key_dim, value_dim, dtype, device):
    """q, k, v as strided column slices of one projection, as the layers
    hand them over; q carries the layer's key_dim ** -0.5 scale."""
    width = nheads * (2 * key_dim + value_dim)
    proj = torch.randn(total, width, generator=gen)
    proj[:, : nheads * key_dim] *= key_dim**-0.5
    proj = proj.to(dtype).to(device)
    q = proj[:, : nheads * key_dim].view(total, nheads, key_dim)
    k = proj[:, nheads * key_dim : 2 * nheads * key_dim].view(total, nheads, key_dim)
    v = proj[:, 2 * nheads * key_dim :].view(total, nheads, value_dim)
    return q, k, v


def _state_pool(gen, num_slots, nheads, key_dim, value_dim, dtype, device):
    """State pool whose slot stride is not the state size (vLLM pads pages)."""
    size = nheads * key_dim * value_dim
    raw = torch.randn(num_slots, size + 13, generator=gen) * 0.3
    return raw.to(dtype).to(device)[:, :size].view(num_slots, nheads, key_dim, value_dim)


def _slopes(nheads, device):
    return torch.tensor(SLOPES[:nheads], device=device)


def _prefill_both(q, k, v, slopes, states, qsl, idx, has_init, pad_slot_id=-1, chunk_size=None):
    """Kernel and reference on the same inputs; returns (out, expected,
    expected_states); the kernel updates ``states`` in place."""
    expected_states = states.cpu().clone()
    expected = ref.lightning_attention_reference(
        q.cpu(), k.cpu(), v.cpu(), slopes.cpu(), expected_states, qsl.cpu(), idx.cpu(),
        has_init.cpu(), pad_slot_id=pad_slot_id,
    )
    out = lightning_attention_prefill(
        q, k, v, slopes, states, qsl, idx, has_init, pad_slot_id=pad_slot_id,
        chunk_size=chunk_size,
    )
    return out, expected, expected_states


@pytest.mark.parametrize("key_dim,value_dim,chunk_size,dtype,state_dtype", [
    (64, 64, 64, torch.float32, torch.float32),
    (48, 80, 16, torch.float32, torch.float16),
    (16, 32, 32, torch.float16, torch.float32),
    (64, 64, 16, torch.float16, torch.float16),
    (128, 128, 64, torch.bfloat16, torch.float32),
    (64, 64, 64, torch.bfloat16, torch.bfloat16),
])
def test_prefill_matches_reference(device, key_dim, value_dim, chunk_size, dtype, state_dtype):
    """One call: lengths C - 1, C, C + 1 and 2C + 5 (with and without an
    initial state), a one-token sequence, an empty one with a state (its
    state is stored back unchanged) and a padding row."""
    _skip_unsupported(device, dtype, state_dtype)
    gen = torch.Generator().manual_seed(key_dim + value_dim + chunk_size)
    nheads, C = 4, chunk_size
    lens = [C - 1, C, C + 1, 2 * C + 5, 1, 0, 7]
    has_init = torch.tensor([False, True, True, False, True, True, True], device=device)
    idx = torch.tensor([3, 0, 5, 6, 1, 2, -1], dtype=torch.int32, device=device)
    q, k, v = _qkv(gen, sum(lens), nheads, key_dim, value_dim, dtype, device)
    states = _state_pool(gen, 8, nheads, key_dim, value_dim, state_dtype, device)
    untouched = states[[4, 7]].clone()
    out, expected, expected_states = _prefill_both(
        q, k, v, _slopes(nheads, device), states, _qsl(lens, device), idx, has_init,
        chunk_size=C,
    )
    tol = TOLERANCES[max(dtype, state_dtype, key=lambda d: TOLERANCES[d]["atol"])]
    torch.testing.assert_close(out.cpu(), expected, **tol)
    torch.testing.assert_close(states.cpu(), expected_states, **tol)
    assert torch.equal(states[[4, 7]], untouched)


def test_prefill_default_chunk_and_pad_slot_id(device):
    """The device's configured chunk; vLLM's padding convention (the null
    block 0 as pad_slot_id): row 1 reads and writes no page."""
    gen = torch.Generator().manual_seed(3)
    nheads, key_dim, value_dim = 2, 32, 32
    lens = [70, 9, 130]
    q, k, v = _qkv(gen, sum(lens), nheads, key_dim, value_dim, torch.float32, device)
    states = _state_pool(gen, 4, nheads, key_dim, value_dim, torch.float32, device)
    page0 = states[0].clone()
    out, expected, expected_states = _prefill_both(
        q, k, v, _slopes(nheads, device), states, _qsl(lens, device),
        torch.tensor([2, 0, 3], dtype=torch.int64, device=device),
        torch.tensor([1, 1, 0], dtype=torch.int32, device=device), pad_slot_id=0,
    )
    torch.testing.assert_close(out.cpu(), expected, **TOLERANCES[torch.float32])
    torch.testing.assert_close(states.cpu(), expected_states, **TOLERANCES[torch.float32])
    assert torch.equal(states[0], page0)


def test_continued_prefill_equals_one_prefill(device):
    """Prefill split in two calls (split points off the chunk grid, the
    second call starting from the saved states) equals one prefill."""
    gen = torch.Generator().manual_seed(11)
    nheads, key_dim, value_dim, C = 4, 64, 64, 16
    q, k, v = _qkv(gen, 90, nheads, key_dim, value_dim, torch.float32, device)
    slopes = _slopes(nheads, device)
    idx = torch.tensor([2, 0], dtype=torch.int32, device=device)
    whole = _state_pool(gen, 3, nheads, key_dim, value_dim, torch.float32, device)
    split = whole.clone()

    def run(rows, lens, states, has_init):
        return lightning_attention_prefill(
            q[rows], k[rows], v[rows], slopes, states, _qsl(lens, device), idx,
            torch.tensor(has_init, device=device), chunk_size=C,
        )

    # Sequence 0: 61 tokens = 21 + 40; sequence 1: 29 tokens = 5 + 24.
    out_whole = run(torch.arange(90, device=device), [61, 29], whole, [False, True])
    first = torch.cat([torch.arange(0, 21), torch.arange(61, 66)]).to(device)
    second = torch.cat([torch.arange(21, 61), torch.arange(66, 90)]).to(device)
    out_split = torch.empty_like(out_whole)
    out_split[first] = run(first, [21, 5], split, [False, True])
    out_split[second] = run(second, [40, 24], split, [True, True])
    torch.testing.assert_close(out_split.cpu(), out_whole.cpu(), **TOLERANCES[torch.float32])
    torch.testing.assert_close(split.cpu(), whole.cpu(), **TOLERANCES[torch.float32])


@pytest.mark.parametrize("dtype,state_dtype", [
    (torch.float32, torch.float32),
    (torch.float16, torch.float32),
    (torch.float32, torch.float16),
    (torch.bfloat16, torch.bfloat16),
])
def test_decode_matches_reference(device, dtype, state_dtype):
    """Rows in shuffled slots, a negative index and a pad_slot_id row: the
    padding rows read and write no page and see a zero state."""
    _skip_unsupported(device, dtype, state_dtype)
    _check_decode(device, dtype, state_dtype)


@pytest.mark.parametrize("below_programs,value_tiles", [(1 << 20, 5), (1, 2)])
def test_decode_small_grid_entries(monkeypatch, launch_spy, device, below_programs, value_tiles):
    """A grid with fewer programs than SMALL_GRID's below_programs takes its
    entries (16 value columns per program instead of 64); both match the
    reference."""
    entries = {**lightning_module.LAUNCH_CONFIGS[device]["decode"], "BLOCK_V": 64,
               "SMALL_GRID": {"below_programs": below_programs, "BLOCK_V": 16}}
    monkeypatch.setitem(lightning_module.LAUNCH_CONFIGS[device], "decode", entries)
    spy = launch_spy(lightning_module, "_launch_decode")
    _check_decode(device, torch.float32, torch.float32)
    assert [call[0] for call in spy.calls] == [(value_tiles, 4, 5)]


def _check_decode(device, dtype, state_dtype):
    gen = torch.Generator().manual_seed(7)
    nheads, key_dim, value_dim, pad = 4, 48, 80, 0
    idx = torch.tensor([5, -1, 2, pad, 3], dtype=torch.int32, device=device)
    batch = idx.numel()
    q, k, v = _qkv(gen, batch, nheads, key_dim, value_dim, dtype, device)
    slopes = _slopes(nheads, device)
    states = _state_pool(gen, 6, nheads, key_dim, value_dim, state_dtype, device)
    untouched = states[[0, 1, 4]].clone()
    expected_states = states.cpu().clone()
    expected = ref.lightning_attention_reference(
        q.cpu(), k.cpu(), v.cpu(), slopes.cpu(), expected_states,
        torch.arange(batch + 1), idx.cpu(), torch.ones(batch, dtype=torch.bool), pad_slot_id=pad,
    )
    out = torch.full((batch, nheads, value_dim), float("nan"), dtype=dtype, device=device)
    lightning_attention_decode(q, k, v, slopes, states, idx, out=out, pad_slot_id=pad)
    tol = TOLERANCES[max(dtype, state_dtype, key=lambda d: TOLERANCES[d]["atol"])]
    torch.testing.assert_close(out.cpu(), expected, **tol)
    torch.testing.assert_close(states.cpu(), expected_states, **tol)
    assert torch.equal(states[[0, 1, 4]], untouched)


def test_decode_after_prefill_equals_one_prefill(device):
    """Prefill, then three decode steps on the saved states, equals one
    prefill of the prompts plus the decoded tokens."""
    gen = torch.Generator().manual_seed(13)
    nheads, key_dim, value_dim, steps = 4, 32, 64, 3
    prompt_lens = [17, 40]
    lens = [n + steps for n in prompt_lens]
    q, k, v = _qkv(gen, sum(lens), nheads, key_dim, value_dim, torch.float32, device)
    slopes = _slopes(nheads, device)
    idx = torch.tensor([1, 3], dtype=torch.int32, device=device)
    no_state = torch.tensor([False, False], device=device)
    whole = _state_pool(gen, 4, nheads, key_dim, value_dim, torch.float32, device)
    chained = whole.clone()
    out_whole = lightning_attention_prefill(
        q, k, v, slopes, whole, _qsl(lens, device), idx, no_state, chunk_size=16,
    )

    starts = _qsl(lens, device)[:-1].cpu()
    prompt_rows = torch.cat([torch.arange(s, s + n) for s, n in zip(starts, prompt_lens)]).to(device)
    out_chained = torch.empty_like(out_whole)
    out_chained[prompt_rows] = lightning_attention_prefill(
        q[prompt_rows], k[prompt_rows], v[prompt_rows], slopes, chained,
        _qsl(prompt_lens, device), idx, no_state, chunk_size=16,
    )
    for step in range(steps):
        rows = (starts + torch.tensor(prompt_lens) + step).to(device)
        out_chained[rows] = lightning_attention_decode(q[rows], k[rows], v[rows], slopes, chained, idx)
    torch.testing.assert_close(out_chained.cpu(), out_whole.cpu(), **TOLERANCES[torch.float32])
    torch.testing.assert_close(chained.cpu(), whole.cpu(), **TOLERANCES[torch.float32])


def test_bad_arguments_name_the_fix(device):
    gen = torch.Generator().manual_seed(0)
    q, k, v = _qkv(gen, 4, 2, 16, 16, torch.float32, device)
    slopes = _slopes(2, device)
    states = _state_pool(gen, 2, 2, 16, 16, torch.float32, device)
    qsl = _qsl([4], device)
    idx = torch.tensor([1], dtype=torch.int32, device=device)
    has_init = torch.tensor([True], device=device)
    with pytest.raises(ValueError, match=r"q: dtype torch.float64 unsupported"):
        lightning_attention_decode(q.double(), k, v, slopes, states, idx)
    with pytest.raises(ValueError, match=r"k, v: dtype must equal q.dtype"):
        lightning_attention_prefill(q, k.half(), v, slopes, states, qsl, idx, has_init)
    with pytest.raises(ValueError, match=r"slopes: expected shape \(2,\)"):
        lightning_attention_prefill(q, k, v, slopes[:, None], states, qsl, idx, has_init)
    with pytest.raises(ValueError, match=r"states: expected \[num_slots, nheads=2, key_dim=16"):
        lightning_attention_prefill(q, k, v, slopes, states.transpose(2, 3)[..., :8], qsl, idx, has_init)
    with pytest.raises(ValueError, match=r"chunk_size: 24 unsupported"):
        lightning_attention_prefill(q, k, v, slopes, states, qsl, idx, has_init, chunk_size=24)
    with pytest.raises(ValueError, match=r"has_initial_state: expected a contiguous tensor"):
        lightning_attention_prefill(q, k, v, slopes, states, qsl, idx, has_init.float())
    wide = torch.zeros(1, 1, 512, device=device)
    with pytest.raises(ValueError, match=r"key head dim 512 unsupported; accepted: up to 256"):
        lightning_attention_decode(wide, wide, wide, slopes[:1], torch.zeros(1, 1, 512, 512, device=device),
                                   idx)


def test_decode_too_many_rows_is_refused(device):
    """More decode rows than the launch grid's batch dimension holds: a
    message naming the fix, before any kernel runs."""
    gen = torch.Generator().manual_seed(0)
    rows = MAX_GRID_YZ + 1
    q, k, v = _qkv(gen, rows, 1, 16, 16, torch.float32, device)
    idx = torch.zeros(rows, dtype=torch.int32, device=device)
    with pytest.raises(ValueError, match="q: 65536 decode rows in one call; at most 65535 .*max_num_seqs"):
        lightning_attention_decode(q, k, v, _slopes(1, device), _state_pool(gen, 1, 1, 16, 16, torch.float32, device),
                                   idx)
