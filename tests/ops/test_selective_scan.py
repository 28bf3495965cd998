# SPDX-License-Identifier: Apache-2.0
"""selective_scan (Mamba-1 prefill) against the sequential per-token
recurrence in ops/reference.py, plus the prefill -> decode chain of a
Mamba-1 layer (conv + selective scan, then conv update + selective state
update on Mamba-1's per-channel state)."""

from __future__ import annotations

import pytest
import torch

from vllm_xpu_hybrid.ops import reference as ref
from vllm_xpu_hybrid.ops.causal_conv1d import causal_conv1d_update, causal_conv1d_varlen
from vllm_xpu_hybrid.ops.selective_scan import selective_scan
from vllm_xpu_hybrid.ops.selective_state_update import selective_state_update_per_channel

TOLERANCES = {
    torch.float32: {"atol": 1e-4, "rtol": 1e-4},
    torch.float16: {"atol": 2e-2, "rtol": 2e-2},
    torch.bfloat16: {"atol": 1e-1, "rtol": 5e-2},
}


def _skip_unsupported(device: str, *dtypes: torch.dtype) -> None:
    if device == "cpu" and torch.bfloat16 in dtypes:
        pytest.skip("bf16 is checked on a GPU only (Triton's interpreter lacks bf16)")


def _loosest(*dtypes):
    return TOLERANCES[max(dtypes, key=lambda d: TOLERANCES[d]["atol"])]


def _qsl(lens, device):
    return torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int32, device=device)


def _inputs(gen, total, dim, ngroups, dstate, dtype, device):
    """Random layer inputs as vLLM's MambaMixer hands them over: x and z are
    column slices of the in-projection, dt a separate [tokens, dim] output,
    B and C column slices of x_proj's output; A and dt_bias fp32."""
    proj = torch.randn(total, 2 * dim, generator=gen).to(dtype).to(device)
    x, z = proj[:, :dim], proj[:, dim:]
    ssm_params = torch.randn(total, 3 + 2 * ngroups * dstate, generator=gen).to(dtype).to(device)
    B = ssm_params[:, 3 : 3 + ngroups * dstate].view(total, ngroups, dstate)
    C = ssm_params[:, 3 + ngroups * dstate :].view(total, ngroups, dstate)
    dt = (torch.randn(total, dim, generator=gen) * 0.5 - 1.0).to(dtype).to(device)
    A = -torch.exp(torch.rand(dim, dstate, generator=gen) * 2.0).to(device)
    dt_bias = (torch.rand(dim, generator=gen) - 0.5).to(device)
    D = torch.randn(dim, generator=gen).to(device)
    return x, z, dt, A, B, C, dt_bias, D


def _ssm_pool(gen, num_slots, dim, dstate, dtype, device):
    """State pool whose slot stride is not the page size (vLLM's state pages
    hold the conv state too)."""
    page = dim * dstate
    raw = torch.randn(num_slots, page + 7, generator=gen).to(dtype).to(device)
    return raw[:, :page].view(num_slots, dim, dstate)


def _reference(x, dt, A, B, C, qsl, states, idx, has_init, **kw):
    """The reference on CPU copies; ``states`` (a CPU tensor) is updated."""
    return ref.selective_scan_reference(
        x.cpu(), dt.cpu(), A.cpu(), B.cpu(), C.cpu(), qsl.cpu(), states, idx.cpu(), has_init.cpu(),
        **{k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in kw.items()},
    )


def _run_both(x, dt, A, B, C, qsl, states, idx, has_init, pad_slot_id=-1, **kw):
    """Kernel and reference on the same inputs; returns (out, expected,
    expected_states); the kernel updates ``states`` in place."""
    expected_states = states.cpu().clone()
    expected = _reference(
        x, dt, A, B, C, qsl, expected_states, idx, has_init, pad_slot_id=pad_slot_id,
        **{k: v for k, v in kw.items() if k != "chunk_size"},
    )
    out = selective_scan(
        x, dt, A, B, C, query_start_loc=qsl, ssm_states=states, state_indices=idx,
        has_initial_state=has_init, pad_slot_id=pad_slot_id, **kw,
    )
    return out, expected, expected_states


@pytest.mark.parametrize("dim,dstate,ngroups,chunk_size,dtype,state_dtype", [
    (48, 16, 1, 16, torch.float32, torch.float32),
    (48, 16, 1, 7, torch.float16, torch.float32),
    (64, 32, 2, 16, torch.float32, torch.float16),
    (40, 8, 1, None, torch.float32, torch.float32),
    (48, 5, 3, 16, torch.float32, torch.float32),
    (48, 16, 1, 16, torch.bfloat16, torch.float32),
    (64, 16, 1, 32, torch.bfloat16, torch.bfloat16),
])
def test_matches_reference(device, dim, dstate, ngroups, chunk_size, dtype, state_dtype):
    """One call mixing sequences shorter than, equal to and several times
    longer than a chunk, single tokens, an empty sequence (it writes back its
    initial state), sequences with and without initial states and a padded
    one."""
    _skip_unsupported(device, dtype, state_dtype)
    gen = torch.Generator().manual_seed(dim + dstate)
    lens = [5, 16, 53, 1, 0, 17, 3]
    has_init = torch.tensor([False, True, True, True, True, False, True], device=device)
    idx = torch.tensor([3, 0, 5, 6, 1, 7, -1], dtype=torch.int32, device=device)
    x, z, dt, A, B, C, dt_bias, D = _inputs(gen, sum(lens), dim, ngroups, dstate, dtype, device)
    states = _ssm_pool(gen, 9, dim, dstate, state_dtype, device)
    before = states.clone()
    out, expected, expected_states = _run_both(
        x, dt, A, B, C, _qsl(lens, device), states, idx, has_init,
        D=D, z=z, dt_bias=dt_bias, dt_softplus=True, chunk_size=chunk_size,
    )
    torch.testing.assert_close(out.cpu(), expected, **TOLERANCES[dtype])
    torch.testing.assert_close(states.cpu(), expected_states, **_loosest(dtype, state_dtype))
    assert torch.equal(states[[2, 4, 8]], before[[2, 4, 8]])  # unused slots


@pytest.mark.parametrize("options", [
    {},
    {"D": True},
    {"z": True, "dt_softplus": True},
    {"dt_bias": True, "dt_softplus": True},
])
def test_optional_inputs(device, options):
    """Without D, z, dt_bias or softplus (dt used as given, negative values
    included)."""
    gen = torch.Generator().manual_seed(11)
    dim, dstate, lens = 24, 16, [9, 30]
    x, z, dt, A, B, C, dt_bias, D = _inputs(gen, sum(lens), dim, 1, dstate, torch.float32, device)
    if not options.get("dt_softplus"):
        dt = dt.abs() * 0.3
    kw = {"D": D, "z": z, "dt_bias": dt_bias}
    states = _ssm_pool(gen, 2, dim, dstate, torch.float32, device)
    out, expected, expected_states = _run_both(
        x, dt, A, B, C, _qsl(lens, device), states,
        torch.tensor([1, 0], dtype=torch.int32, device=device),
        torch.tensor([True, False], device=device),
        **{k: v for k, v in kw.items() if options.get(k)},
        dt_softplus=options.get("dt_softplus", False), chunk_size=8,
    )
    torch.testing.assert_close(out.cpu(), expected, **TOLERANCES[torch.float32])
    torch.testing.assert_close(states.cpu(), expected_states, **TOLERANCES[torch.float32])


def test_chunk_size_changes_rounding_only(device):
    """A long sequence scanned with chunks of 1, 13 tokens and the device
    default gives the same output and final state."""
    gen = torch.Generator().manual_seed(12)
    dim, dstate, lens = 32, 16, [70]
    x, z, dt, A, B, C, dt_bias, D = _inputs(gen, sum(lens), dim, 1, dstate, torch.float32, device)
    initial = _ssm_pool(gen, 1, dim, dstate, torch.float32, device)
    results = []
    for chunk_size in (1, 13, None):
        states = initial.clone()
        out = selective_scan(
            x, dt, A, B, C, query_start_loc=_qsl(lens, device), ssm_states=states,
            state_indices=torch.tensor([0], dtype=torch.int32, device=device),
            has_initial_state=torch.tensor([True], device=device),
            D=D, z=z, dt_bias=dt_bias, dt_softplus=True, chunk_size=chunk_size,
        )
        results.append((out, states))
    for out, states in results[1:]:
        torch.testing.assert_close(out, results[0][0], **TOLERANCES[torch.float32])
        torch.testing.assert_close(states, results[0][1], **TOLERANCES[torch.float32])


def test_continued_prefill_equals_one_prefill(device):
    """A prefill split in two calls (the second starting from the saved
    states, mid-chunk) equals one prefill of the whole sequences."""
    gen = torch.Generator().manual_seed(21)
    dim, dstate = 40, 16
    x, z, dt, A, B, C, dt_bias, D = _inputs(gen, 60, dim, 1, dstate, torch.float32, device)
    idx = torch.tensor([2, 0], dtype=torch.int32, device=device)
    whole = _ssm_pool(gen, 3, dim, dstate, torch.float32, device)
    split = whole.clone()

    def run(rows, lens, states, has_init):
        return selective_scan(
            x[rows], dt[rows], A, B[rows], C[rows], query_start_loc=_qsl(lens, device),
            ssm_states=states, state_indices=idx, has_initial_state=torch.tensor(has_init, device=device),
            D=D, z=z[rows], dt_bias=dt_bias, dt_softplus=True, chunk_size=16,
        )

    # Sequence 0: 41 tokens = 21 + 20; sequence 1: 19 tokens = 5 + 14.
    out_whole = run(torch.arange(60, device=device), [41, 19], whole, [False, False])
    first = torch.cat([torch.arange(0, 21), torch.arange(41, 46)]).to(device)
    second = torch.cat([torch.arange(21, 41), torch.arange(46, 60)]).to(device)
    out_split = torch.empty_like(out_whole)
    out_split[first] = run(first, [21, 5], split, [False, False])
    out_split[second] = run(second, [20, 14], split, [True, True])
    torch.testing.assert_close(out_split, out_whole, **TOLERANCES[torch.float32])
    torch.testing.assert_close(split, whole, **TOLERANCES[torch.float32])


@pytest.mark.parametrize("dtype,state_dtype", [
    (torch.float32, torch.float32),
    (torch.float16, torch.float32),
    (torch.bfloat16, torch.bfloat16),
])
def test_prefill_then_decode_equals_one_prefill(device, dtype, state_dtype):
    """A Mamba-1 layer's conv + SSM path: prefill P tokens, then N decode
    steps (conv update + the per-channel state update the layer calls)
    equals one prefill of P + N."""
    _skip_unsupported(device, dtype, state_dtype)
    gen = torch.Generator().manual_seed(31)
    dim, dstate, width, prompt, steps = 48, 16, 4, 19, 4
    total = prompt + steps
    x, z, dt, A, B, C, dt_bias, D = _inputs(gen, total, dim, 1, dstate, dtype, device)
    conv_w = (torch.randn(dim, width, generator=gen) * 0.5).to(dtype).to(device)
    conv_b = torch.randn(dim, generator=gen).to(dtype).to(device)
    idx = torch.tensor([1], dtype=torch.int32, device=device)
    no_state = torch.tensor([False], device=device)

    def prefill(rows, conv_states, ssm_states):
        qsl = torch.tensor([0, rows.stop - rows.start], dtype=torch.int32, device=device)
        h = causal_conv1d_varlen(x[rows], conv_w, conv_b, conv_states, qsl, idx, no_state, "silu")
        return selective_scan(
            h, dt[rows], A, B[rows], C[rows], query_start_loc=qsl, ssm_states=ssm_states,
            state_indices=idx, has_initial_state=no_state, D=D, z=z[rows], dt_bias=dt_bias,
            dt_softplus=True, chunk_size=8,
        )

    conv_whole = torch.zeros(2, width - 1, dim, dtype=dtype, device=device).transpose(1, 2)
    ssm_whole = torch.zeros(2, dim, dstate, dtype=state_dtype, device=device)
    conv_steps, ssm_steps = conv_whole.clone(), ssm_whole.clone()
    out_whole = prefill(slice(0, total), conv_whole, ssm_whole)

    outs = [prefill(slice(0, prompt), conv_steps, ssm_steps)]
    for t in range(prompt, total):
        h = causal_conv1d_update(x[t : t + 1], conv_steps, conv_w, conv_b, idx, "silu")
        rows = slice(t, t + 1)
        outs.append(selective_state_update_per_channel(
            ssm_steps, h, dt[rows], A, B[rows, 0], C[rows, 0], idx, D=D, z=z[rows],
            dt_bias=dt_bias, dt_softplus=True,
        ))
    tol = _loosest(dtype, state_dtype)
    torch.testing.assert_close(torch.cat(outs), out_whole, **tol)
    torch.testing.assert_close(ssm_steps, ssm_whole, **tol)
    assert torch.equal(conv_steps, conv_whole)


@pytest.mark.parametrize("pad_slot_id", [-1, 0])
def test_padding_leaves_pages_bit_identical(device, pad_slot_id):
    """Padded sequences (pad_slot_id, or any negative index) read and write
    no page, with or without has_initial_state; their outputs come from a
    zero state."""
    gen = torch.Generator().manual_seed(41)
    dim, dstate, lens = 24, 16, [7, 20, 3, 11]
    x, z, dt, A, B, C, dt_bias, D = _inputs(gen, sum(lens), dim, 1, dstate, torch.float16, device)
    states = _ssm_pool(gen, 4, dim, dstate, torch.float16, device)
    before = states.clone()
    idx = torch.tensor([pad_slot_id, 2, -1, pad_slot_id], dtype=torch.int32, device=device)
    has_init = torch.tensor([True, True, True, False], device=device)
    out, expected, _ = _run_both(x, dt, A, B, C, _qsl(lens, device), states, idx, has_init,
                                 pad_slot_id=pad_slot_id, D=D, z=z, dt_bias=dt_bias,
                                 dt_softplus=True, chunk_size=8)
    untouched = [s for s in range(4) if s != 2]
    assert torch.equal(states[untouched], before[untouched])
    assert not torch.equal(states[2], before[2])
    torch.testing.assert_close(out.cpu(), expected, **TOLERANCES[torch.float16])


def test_in_place_output(device):
    """out may be x itself (vLLM's ops allow in-place replacement)."""
    gen = torch.Generator().manual_seed(51)
    dim, dstate, lens = 24, 16, [30, 6]
    x, z, dt, A, B, C, dt_bias, D = _inputs(gen, sum(lens), dim, 1, dstate, torch.float32, device)
    states = _ssm_pool(gen, 2, dim, dstate, torch.float32, device)
    idx = torch.tensor([0, 1], dtype=torch.int32, device=device)
    has_init = torch.tensor([True, False], device=device)
    kw = dict(D=D, z=z, dt_bias=dt_bias, dt_softplus=True)
    expected = _reference(x, dt, A, B, C, _qsl(lens, device), states.cpu().clone(), idx, has_init, **kw)
    selective_scan(x, dt, A, B, C, query_start_loc=_qsl(lens, device), ssm_states=states,
                   state_indices=idx, has_initial_state=has_init, out=x, chunk_size=8, **kw)
    torch.testing.assert_close(x.cpu(), expected, **TOLERANCES[torch.float32])


def test_bad_arguments(device):
    gen = torch.Generator().manual_seed(0)
    x, z, dt, A, B, C, _, _ = _inputs(gen, 8, 16, 2, 16, torch.float32, device)
    good = dict(query_start_loc=_qsl([8], device), ssm_states=torch.zeros(2, 16, 16, device=device),
                state_indices=torch.tensor([0], dtype=torch.int32, device=device),
                has_initial_state=torch.tensor([False], device=device))
    with pytest.raises(ValueError, match="ngroups=3 must divide dim=16"):
        Bc = torch.zeros(8, 3, 16, device=device)
        selective_scan(x, dt, A, Bc, Bc, **good)
    with pytest.raises(ValueError, match=r"A: expected shape \(16, 16\) \(\[dim, dstate\]\)"):
        selective_scan(x, dt, A[:, :8], B, C, **good)
    with pytest.raises(ValueError, match=r"dt: expected shape \(8, 16\)"):
        selective_scan(x, dt[:, :4], A, B, C, **good)
    with pytest.raises(ValueError, match=r"z: expected shape \(8, 16\)"):
        selective_scan(x, dt, A, B, C, z=z[:4], **good)
    with pytest.raises(ValueError, match=r"D: expected shape \(16,\)"):
        selective_scan(x, dt, A, B, C, D=torch.ones(4, device=device), **good)
    with pytest.raises(ValueError, match=r"ssm_states: expected \[num_slots, dim=16, dstate=16\]"):
        selective_scan(x, dt, A, B, C, **{**good, "ssm_states": torch.zeros(2, 1, 16, 16, device=device)})
    with pytest.raises(ValueError, match=r"query_start_loc: expected a contiguous tensor of shape \(2,\)"):
        selective_scan(x, dt, A, B, C, **{**good, "query_start_loc": _qsl([4, 4], device)})
    with pytest.raises(ValueError, match=r"has_initial_state: expected .* dtype in"):
        selective_scan(x, dt, A, B, C, **{**good, "has_initial_state": torch.zeros(1, device=device)})
    with pytest.raises(ValueError, match="chunk_size: 0 unsupported"):
        selective_scan(x, dt, A, B, C, chunk_size=0, **good)
    with pytest.raises(ValueError, match="x: dtype"):
        selective_scan(x.to(torch.int32), dt, A, B, C, **good)
