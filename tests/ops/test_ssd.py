# SPDX-License-Identifier: Apache-2.0
"""ssd_chunk_scan against the sequential per-token recurrence in
ops/reference.py, plus the prefill -> decode chain of a Mamba-2 layer
(conv + SSD prefill, then conv update + selective state update)."""

from __future__ import annotations

import pytest
import torch

from vllm_xpu_hybrid.ops import reference as ref
from vllm_xpu_hybrid.ops import ssd as ssd_module
from vllm_xpu_hybrid.ops.causal_conv1d import causal_conv1d_update, causal_conv1d_varlen
from vllm_xpu_hybrid.ops.launch import MAX_GRID_YZ
from vllm_xpu_hybrid.ops.selective_state_update import selective_state_update
from vllm_xpu_hybrid.ops.ssd import ssd_chunk_metadata, ssd_chunk_scan

TOLERANCES = {
    torch.float32: {"atol": 2e-4, "rtol": 2e-4},
    torch.float16: {"atol": 3e-2, "rtol": 3e-2},
    torch.bfloat16: {"atol": 1.5e-1, "rtol": 5e-2},
}


def _skip_unsupported(device: str, *dtypes: torch.dtype) -> None:
    if device == "cpu" and torch.bfloat16 in dtypes:
        pytest.skip("bf16 is checked on a GPU only (Triton's interpreter lacks bf16)")


def _qsl(lens, device):
    return torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int32, device=device)


def _inputs(gen, total, nheads, headdim, ngroups, dstate, dtype, device):
    """Random layer inputs; x, B, C are strided column slices of one
    projection, as MambaMixer2 hands them over."""
    width = nheads * headdim + 2 * ngroups * dstate + nheads
    proj = torch.randn(total, width, generator=gen).to(dtype).to(device)
    x = proj[:, : nheads * headdim].view(total, nheads, headdim)
    B = proj[:, nheads * headdim : nheads * headdim + ngroups * dstate].view(total, ngroups, dstate)
    C = proj[:, nheads * headdim + ngroups * dstate : -nheads].view(total, ngroups, dstate)
    dt = (proj[:, -nheads:].float() * 0.5 - 1.0).to(dtype)
    A = -torch.exp(torch.rand(nheads, generator=gen)).to(device)
    dt_bias = (torch.rand(nheads, generator=gen) - 0.5).to(device)
    return x, dt, A, B, C, dt_bias


def _ssm_pool(gen, num_slots, nheads, headdim, dstate, dtype, device):
    """State pool whose slot stride is not the page size (vLLM's state pages
    hold the conv state too)."""
    page = nheads * headdim * dstate
    raw = torch.randn(num_slots, page + 11, generator=gen).to(dtype).to(device)
    return raw[:, :page].view(num_slots, nheads, headdim, dstate)


def _run_both(x, dt, A, B, C, chunk_size, qsl, states, idx, has_init,
              computed=None, pad_slot_id=-1, **kw):
    """Kernel and reference on the same inputs; returns (out, expected,
    expected_states); the kernel updates ``states`` in place."""
    expected_states = states.cpu().clone()
    expected = ref.ssd_scan_reference(
        x.cpu(), dt.cpu(), A.cpu(), B.cpu(), C.cpu(), qsl.cpu(), expected_states,
        idx.cpu(), has_init.cpu(), pad_slot_id=pad_slot_id,
        **{k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()},
    )
    cu, last = ssd_chunk_metadata(qsl.cpu(), chunk_size, computed, device=x.device)
    out = torch.empty_like(x)
    ssd_chunk_scan(
        x, dt, A, B, C, chunk_size=chunk_size, cu_chunk_seqlens=cu, last_chunk_indices=last,
        ssm_states=states, state_indices=idx, has_initial_state=has_init, out=out,
        pad_slot_id=pad_slot_id, **kw,
    )
    return out, expected, expected_states


@pytest.mark.parametrize("ngroups,headdim,dstate,chunk_size,dtype,state_dtype,d_kind", [
    (1, 80, 16, 16, torch.float32, torch.float32, "head"),
    (2, 80, 16, 16, torch.float16, torch.float16, "head_dim"),
    (2, 64, 32, 32, torch.float32, torch.float16, None),
    (1, 16, 16, 16, torch.float16, torch.float32, "head"),
    (2, 80, 16, 16, torch.bfloat16, torch.float32, "head"),
    (1, 64, 128, 32, torch.bfloat16, torch.bfloat16, "head_dim"),
    (2, 64, 128, 128, torch.float32, torch.float32, "head"),
])
def test_matches_reference(device, ngroups, headdim, dstate, chunk_size, dtype, state_dtype, d_kind):
    """One call mixing sequences shorter than, equal to and longer than the
    chunk, continuing sequences whose first chunk is partial (chunk ends on
    chunk_size-aligned absolute positions), a padded row and an empty one."""
    _skip_unsupported(device, dtype, state_dtype)
    gen = torch.Generator().manual_seed(headdim + dstate + chunk_size)
    nheads, L = 4, chunk_size
    lens = [5, L, 2 * L + 7, 1, 0, L + 3]
    computed = [0, 0, 3, 9, 0, L - 2]
    has_init = torch.tensor([c > 0 for c in computed], device=device)
    has_init[1] = True  # a sequence with a state that starts chunk-aligned
    idx = torch.tensor([3, 0, 5, 6, 1, -1], dtype=torch.int32, device=device)
    x, dt, A, B, C, dt_bias = _inputs(gen, sum(lens), nheads, headdim, ngroups, dstate, dtype, device)
    D = {None: None, "head": torch.randn(nheads, generator=gen),
         "head_dim": torch.randn(nheads, headdim, generator=gen)}[d_kind]
    states = _ssm_pool(gen, 8, nheads, headdim, dstate, state_dtype, device)
    out, expected, expected_states = _run_both(
        x, dt, A, B, C, L, _qsl(lens, device), states, idx, has_init, computed,
        D=None if D is None else D.to(device), dt_bias=dt_bias, dt_softplus=True,
    )
    torch.testing.assert_close(out.cpu(), expected, **TOLERANCES[dtype])
    torch.testing.assert_close(states.cpu(), expected_states,
                               **TOLERANCES[max(dtype, state_dtype, key=lambda d: TOLERANCES[d]["atol"])])


def test_dt_limit_without_softplus(device):
    gen = torch.Generator().manual_seed(5)
    nheads, headdim, ngroups, dstate, L = 4, 32, 2, 16, 16
    lens = [21, 4]
    x, _, A, B, C, _ = _inputs(gen, sum(lens), nheads, headdim, ngroups, dstate, torch.float32, device)
    dt = torch.rand(sum(lens), nheads, generator=gen).to(device)
    states = _ssm_pool(gen, 2, nheads, headdim, dstate, torch.float32, device)
    out, expected, expected_states = _run_both(
        x, dt, A, B, C, L, _qsl(lens, device), states,
        torch.tensor([1, 0], dtype=torch.int32, device=device),
        torch.tensor([True, False], device=device), dt_limit=(0.2, 0.7),
    )
    torch.testing.assert_close(out.cpu(), expected, **TOLERANCES[torch.float32])
    torch.testing.assert_close(states.cpu(), expected_states, **TOLERANCES[torch.float32])


def _check_random_case(device, seed, L=16):
    gen = torch.Generator().manual_seed(2000 + seed)
    ngroups = [1, 2, 4][seed]
    nheads = 4
    headdim = [80, 48, 16][seed]
    dstate = [16, 32, 8][seed]
    num_seqs = int(torch.randint(1, 5, (1,), generator=gen))
    lens = torch.randint(1, 3 * L, (num_seqs,), generator=gen).tolist()
    computed = torch.randint(0, 2 * L, (num_seqs,), generator=gen).tolist()
    has_init = torch.tensor([c > 0 for c in computed], device=device)
    idx = torch.randperm(num_seqs + 1, generator=gen)[:num_seqs].to(torch.int32).to(device)
    x, dt, A, B, C, dt_bias = _inputs(gen, sum(lens), nheads, headdim, ngroups, dstate, torch.float32, device)
    states = _ssm_pool(gen, num_seqs + 1, nheads, headdim, dstate, torch.float32, device)
    out, expected, expected_states = _run_both(
        x, dt, A, B, C, L, _qsl(lens, device), states, idx, has_init, computed,
        D=torch.randn(nheads, generator=gen).to(device), dt_bias=dt_bias, dt_softplus=True,
    )
    torch.testing.assert_close(out.cpu(), expected, **TOLERANCES[torch.float32])
    torch.testing.assert_close(states.cpu(), expected_states, **TOLERANCES[torch.float32])


@pytest.mark.parametrize("seed", range(3))
def test_random_sweep(device, seed):
    _check_random_case(device, seed)


@pytest.mark.parametrize("unroll_chunk", [True, False])
@pytest.mark.parametrize("seed", range(3))
def test_tiles_smaller_than_the_problem(device, monkeypatch, seed, unroll_chunk):
    """Tiles that split headdim, dstate and a chunk's tokens, whatever this
    device's configuration, with the chunk-states token loop in both forms."""
    small = {
        "chunk_scan": {"BLOCK_M": 16, "BLOCK_P": 16, "BLOCK_N": 16, "BLOCK_K": 16,
                       "num_warps": 4, "num_stages": 1},
        "chunk_states": {"BLOCK_P": 16, "BLOCK_N": 16, "BLOCK_K": 16, "num_warps": 4, "num_stages": 1,
                         "UNROLL_CHUNK": unroll_chunk},
    }
    assert small.keys() <= ssd_module.LAUNCH_CONFIGS[device].keys()
    for name, config in small.items():
        monkeypatch.setitem(ssd_module.LAUNCH_CONFIGS[device], name, config)
    _check_random_case(device, seed, L=64)


def test_chunked_prefill_continues_saved_state(device):
    """A prefill split in two calls (chunk ends from vLLM's layout for the
    continuation) equals one prefill of the whole sequences."""
    gen = torch.Generator().manual_seed(21)
    nheads, headdim, ngroups, dstate, L = 4, 80, 2, 16, 16
    x, dt, A, B, C, dt_bias = _inputs(gen, 60, nheads, headdim, ngroups, dstate, torch.float32, device)
    D = torch.randn(nheads, generator=gen).to(device)
    idx = torch.tensor([2, 0], dtype=torch.int32, device=device)
    whole = _ssm_pool(gen, 3, nheads, headdim, dstate, torch.float32, device)
    split = whole.clone()
    kw = dict(D=D, dt_bias=dt_bias, dt_softplus=True)

    def run(rows, lens, states, has_init, computed):
        cu, last = ssd_chunk_metadata(lens_to_qsl(lens), L, computed, device=device)
        out = torch.empty_like(x[rows])
        ssd_chunk_scan(x[rows], dt[rows], A, B[rows], C[rows], chunk_size=L,
                       cu_chunk_seqlens=cu, last_chunk_indices=last, ssm_states=states,
                       state_indices=idx, has_initial_state=torch.tensor(has_init, device=device),
                       out=out, **kw)
        return out

    def lens_to_qsl(lens):
        return torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist())

    # Sequence 0: 41 tokens = 21 + 20; sequence 1: 19 tokens = 5 + 14.
    rows_whole = torch.arange(60, device=device)
    out_whole = run(rows_whole, [41, 19], whole, [False, False], None)
    first = torch.cat([torch.arange(0, 21), torch.arange(41, 46)]).to(device)
    second = torch.cat([torch.arange(21, 41), torch.arange(46, 60)]).to(device)
    out1 = run(first, [21, 5], split, [False, False], None)
    out2 = run(second, [20, 14], split, [True, True], [21, 5])
    out_split = torch.empty_like(out_whole)
    out_split[first] = out1
    out_split[second] = out2
    torch.testing.assert_close(out_split.cpu(), out_whole.cpu(), **TOLERANCES[torch.float32])
    torch.testing.assert_close(split.cpu(), whole.cpu(), **TOLERANCES[torch.float32])


def test_prefill_checkpoint_states(device):
    """Prefix caching (vLLM 0.32's align mode): each sequence's state after
    its first ``offset`` tokens lands in a checkpoint page. vLLM's builder
    splits a checkpointed sequence into two segments so that a chunk ends on
    the checkpoint; the chunk layout here is built the same way. Outputs and
    final states are unaffected; a declined row (padding page) writes nothing."""
    gen = torch.Generator().manual_seed(23)
    nheads, headdim, ngroups, dstate, L = 4, 48, 2, 16, 16
    lens, offsets, computed = [37, 20, 9], [21, 16, 0], [0, 5, 0]
    total = sum(lens)
    x, dt, A, B, C, dt_bias = _inputs(gen, total, nheads, headdim, ngroups, dstate, torch.float32, device)
    kw = dict(D=torch.randn(nheads, generator=gen).to(device), dt_bias=dt_bias, dt_softplus=True)
    qsl = _qsl(lens, device)
    states = _ssm_pool(gen, 7, nheads, headdim, dstate, torch.float32, device)
    idx = torch.tensor([1, 2, 3], dtype=torch.int32, device=device)
    has_init = torch.tensor([False, True, False], device=device)
    checkpoint_idx = torch.tensor([4, 5, 0], dtype=torch.int32, device=device)
    before = states.clone()

    # Segments: [offset, rest] per checkpointed sequence, as vLLM's builder.
    segment_lens, segment_computed, final_segment, checkpoint_segment = [], [], [], []
    for n, k, c in zip(lens, offsets, computed):
        if k:
            checkpoint_segment.append(len(segment_lens))
            segment_lens.append(k)
            segment_computed.append(c)
        else:
            checkpoint_segment.append(None)
        final_segment.append(len(segment_lens))
        segment_lens.append(n - k)
        segment_computed.append(c + k)
    cu, segment_last = ssd_chunk_metadata(_qsl(segment_lens, "cpu"), L, segment_computed, device=device)
    last = segment_last[final_segment].contiguous()
    checkpoint_chunk = torch.tensor(
        [0 if s is None else int(segment_last[s]) for s in checkpoint_segment],
        dtype=torch.int32, device=device,
    )
    out = torch.empty_like(x)
    ssd_chunk_scan(x, dt, A, B, C, chunk_size=L, cu_chunk_seqlens=cu, last_chunk_indices=last,
                   ssm_states=states, state_indices=idx, has_initial_state=has_init, out=out,
                   pad_slot_id=0, checkpoint_chunk_indices=checkpoint_chunk,
                   checkpoint_state_indices=checkpoint_idx, **kw)

    ref_kw = {k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in kw.items()}
    expected_states = before.cpu().clone()
    expected = ref.ssd_scan_reference(x.cpu(), dt.cpu(), A.cpu(), B.cpu(), C.cpu(), qsl.cpu(),
                                      expected_states, idx.cpu(), has_init.cpu(), pad_slot_id=0,
                                      **ref_kw)
    # The checkpoint oracle: the reference over each sequence's first tokens,
    # starting from the sequence's initial state (copied to its checkpoint page).
    prefix_rows = torch.cat([torch.arange(s, s + k) for s, k in zip(qsl.tolist(), offsets)])
    prefix_states = before.cpu().clone()
    prefix_states[5] = before[2].cpu()
    ref.ssd_scan_reference(x.cpu()[prefix_rows], dt.cpu()[prefix_rows], A.cpu(),
                           B.cpu()[prefix_rows], C.cpu()[prefix_rows], _qsl(offsets, "cpu"),
                           prefix_states, checkpoint_idx.cpu(), has_init.cpu(), pad_slot_id=0,
                           **ref_kw)
    tol = TOLERANCES[torch.float32]
    torch.testing.assert_close(out.cpu(), expected, **tol)
    torch.testing.assert_close(states.cpu()[[1, 2, 3]], expected_states[[1, 2, 3]], **tol)
    torch.testing.assert_close(states.cpu()[[4, 5]], prefix_states[[4, 5]], **tol)
    assert torch.equal(states[[0, 6]], before[[0, 6]])


@pytest.mark.parametrize("dtype,state_dtype", [
    (torch.float32, torch.float32),
    (torch.float16, torch.float32),
    (torch.bfloat16, torch.bfloat16),
])
def test_prefill_then_decode_equals_one_prefill(device, dtype, state_dtype):
    """A Mamba-2 layer's conv + SSD path: prefill P tokens, then N decode steps
    (conv update + selective state update) equals one prefill of P + N."""
    _skip_unsupported(device, dtype, state_dtype)
    gen = torch.Generator().manual_seed(31)
    nheads, headdim, ngroups, dstate, L, width = 4, 80, 2, 16, 16, 4
    prompt, steps = 19, 4
    total = prompt + steps
    conv_dim = nheads * headdim + 2 * ngroups * dstate
    xBC = torch.randn(total, conv_dim, generator=gen).to(dtype).to(device)
    dt = (torch.randn(total, nheads, generator=gen) * 0.5 - 1.0).to(dtype).to(device)
    A = -torch.exp(torch.rand(nheads, generator=gen)).to(device)
    D = torch.randn(nheads, generator=gen).to(device)
    dt_bias = (torch.rand(nheads, generator=gen) - 0.5).to(device)
    conv_w = (torch.randn(conv_dim, width, generator=gen) * 0.5).to(dtype).to(device)
    conv_b = torch.randn(conv_dim, generator=gen).to(dtype).to(device)
    idx = torch.tensor([1], dtype=torch.int32, device=device)
    no_state = torch.tensor([False], device=device)

    def split_xbc(h):
        x = h[:, : nheads * headdim].reshape(-1, nheads, headdim)
        B = h[:, nheads * headdim : nheads * headdim + ngroups * dstate].reshape(-1, ngroups, dstate)
        C = h[:, nheads * headdim + ngroups * dstate :].reshape(-1, ngroups, dstate)
        return x, B, C

    def prefill(rows, conv_states, ssm_states):
        n = rows.stop - rows.start
        qsl = torch.tensor([0, n], dtype=torch.int32, device=device)
        h = causal_conv1d_varlen(xBC[rows], conv_w, conv_b, conv_states, qsl, idx, no_state, "silu")
        x, B, C = split_xbc(h)
        cu, last = ssd_chunk_metadata([0, n], L, device=device)
        out = torch.empty_like(x)
        ssd_chunk_scan(x, dt[rows], A, B, C, chunk_size=L, cu_chunk_seqlens=cu,
                       last_chunk_indices=last, ssm_states=ssm_states, state_indices=idx,
                       has_initial_state=no_state, out=out, D=D, dt_bias=dt_bias, dt_softplus=True)
        return out

    conv_whole = torch.zeros(2, width - 1, conv_dim, dtype=dtype, device=device).transpose(1, 2)
    ssm_whole = torch.zeros(2, nheads, headdim, dstate, dtype=state_dtype, device=device)
    conv_steps, ssm_steps = conv_whole.clone(), ssm_whole.clone()
    out_whole = prefill(slice(0, total), conv_whole, ssm_whole)

    outs = [prefill(slice(0, prompt), conv_steps, ssm_steps)]
    for t in range(prompt, total):
        h = causal_conv1d_update(xBC[t : t + 1], conv_steps, conv_w, conv_b, idx, "silu")
        x, B, C = split_xbc(h)
        outs.append(selective_state_update(
            ssm_steps, x, dt[t : t + 1], A, B, C, idx, D=D, dt_bias=dt_bias, dt_softplus=True,
        ))
    tol = TOLERANCES[max(dtype, state_dtype, key=lambda d: TOLERANCES[d]["atol"])]
    torch.testing.assert_close(torch.cat(outs).cpu(), out_whole.cpu(), **tol)
    torch.testing.assert_close(ssm_steps.cpu(), ssm_whole.cpu(), **tol)
    assert torch.equal(conv_steps.cpu(), conv_whole.cpu())


@pytest.mark.parametrize("pad_slot_id", [-1, 0])
def test_padding_leaves_pages_bit_identical(device, pad_slot_id):
    gen = torch.Generator().manual_seed(41)
    nheads, headdim, ngroups, dstate, L = 4, 16, 1, 16, 16
    lens = [7, 20, 3]
    x, dt, A, B, C, _ = _inputs(gen, sum(lens), nheads, headdim, ngroups, dstate, torch.float16, device)
    states = _ssm_pool(gen, 4, nheads, headdim, dstate, torch.float16, device)
    before = states.clone()
    idx = torch.tensor([pad_slot_id, 2, -1], dtype=torch.int32, device=device)
    has_init = torch.tensor([True, True, True], device=device)
    out, expected, _ = _run_both(x, dt, A, B, C, L, _qsl(lens, device), states, idx, has_init,
                                 pad_slot_id=pad_slot_id, dt_softplus=True)
    untouched = [s for s in range(4) if s != 2]
    assert torch.equal(states[untouched], before[untouched])
    # Padded rows are computed from a zero state.
    torch.testing.assert_close(out.cpu(), expected, **TOLERANCES[torch.float16])


def test_chunk_metadata_follows_vllm_layout():
    """Chunks as vLLM 0.32's _compute_chunk_metadata lays them out: a
    continuing sequence first fills up to the next multiple of chunk_size of
    its absolute position; an empty sequence repeats the previous index."""
    cu, last = ssd_chunk_metadata([0, 5, 45, 45, 46], 16, [0, 10, 3, 31])
    assert cu.tolist() == [0, 5, 11, 27, 43, 45, 46]
    assert last.tolist() == [0, 4, 4, 5]
    cu, last = ssd_chunk_metadata(torch.tensor([0, 32, 33]), 16)
    assert cu.tolist() == [0, 16, 32, 33] and last.tolist() == [1, 2]
    assert cu.dtype == torch.int32 and last.dtype == torch.int32


def test_bad_arguments(device):
    gen = torch.Generator().manual_seed(0)
    x, dt, A, B, C, _ = _inputs(gen, 8, 4, 16, 2, 16, torch.float32, device)
    cu, last = ssd_chunk_metadata([0, 8], 16, device=device)
    good = dict(chunk_size=16, cu_chunk_seqlens=cu, last_chunk_indices=last,
                ssm_states=torch.zeros(2, 4, 16, 16, device=device),
                state_indices=torch.tensor([0], dtype=torch.int32, device=device),
                has_initial_state=torch.tensor([False], device=device), out=torch.empty_like(x))
    with pytest.raises(ValueError, match="ngroups=3 must divide nheads=4"):
        Bc = torch.zeros(8, 3, 16, device=device)
        ssd_chunk_scan(x, dt, A, Bc, Bc, **good)
    with pytest.raises(ValueError, match="chunk_size: 24 unsupported; accepted: powers of two >= 16"):
        ssd_chunk_scan(x, dt, A, B, C, **{**good, "chunk_size": 24})
    with pytest.raises(ValueError, match="B, C: dtype must equal x.dtype"):
        ssd_chunk_scan(x, dt, A, B.half(), C.half(), **good)
    with pytest.raises(ValueError, match="ssm_states: expected .*headdim=16"):
        ssd_chunk_scan(x, dt, A, B, C, **{**good, "ssm_states": torch.zeros(2, 4, 15, 16, device=device)})
    with pytest.raises(ValueError, match=r"D: expected shape \(4,\) or \(4, 16\)"):
        ssd_chunk_scan(x, dt, A, B, C, D=torch.ones(16, device=device), **good)
    with pytest.raises(ValueError, match="dt: expected shape"):
        ssd_chunk_scan(x, dt[:, :2], A, B, C, **good)
    with pytest.raises(ValueError, match=r"state_indices: expected a contiguous tensor of shape \(1,\)"):
        ssd_chunk_scan(x, dt, A, B, C, **{**good, "state_indices": torch.zeros(1, device=device)})
    with pytest.raises(ValueError, match=r"last_chunk_indices: expected a contiguous tensor of shape \(1,\)"):
        ssd_chunk_scan(x, dt, A, B, C, **{**good, "last_chunk_indices": last.repeat(2)})
    with pytest.raises(ValueError, match="checkpoint_chunk_indices, checkpoint_state_indices: "
                       "pass both or neither"):
        ssd_chunk_scan(x, dt, A, B, C, checkpoint_chunk_indices=last, **good)
    with pytest.raises(ValueError, match=r"checkpoint_state_indices: expected a contiguous tensor "
                       r"of shape \(1,\)"):
        ssd_chunk_scan(x, dt, A, B, C, checkpoint_chunk_indices=last,
                       checkpoint_state_indices=last.repeat(2), **good)


def test_too_many_chunks_is_refused(device):
    """More chunks than a launch grid dimension holds: a message naming the
    fix, before any kernel runs."""
    gen = torch.Generator().manual_seed(0)
    tokens = MAX_GRID_YZ + 1
    x, dt, A, B, C, _ = _inputs(gen, tokens, 2, 16, 1, 16, torch.float32, device)
    cu = torch.arange(tokens + 1, dtype=torch.int32, device=device)
    last = torch.tensor([tokens - 1], dtype=torch.int32, device=device)
    with pytest.raises(ValueError, match="65536 chunks in one call; at most 65535 .*max_num_batched_tokens"):
        ssd_chunk_scan(x, dt, A, B, C, chunk_size=16, cu_chunk_seqlens=cu, last_chunk_indices=last,
                       ssm_states=torch.zeros(1, 2, 16, 16, device=device),
                       state_indices=torch.zeros(1, dtype=torch.int32, device=device),
                       has_initial_state=torch.tensor([False], device=device), out=torch.empty_like(x))
