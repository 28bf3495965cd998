# SPDX-License-Identifier: Apache-2.0
"""selective_state_update against the per-step reference in
ops/reference.py."""

from __future__ import annotations

import pytest
import torch

from vllm_xpu_hybrid.ops import reference as ref
from vllm_xpu_hybrid.ops import selective_state_update as ssu_module
from vllm_xpu_hybrid.ops.launch import MAX_GRID_YZ
from vllm_xpu_hybrid.ops.selective_state_update import (
    selective_state_update,
    selective_state_update_per_channel,
)

TOLERANCES = {
    torch.float32: {"atol": 1e-4, "rtol": 1e-4},
    torch.float16: {"atol": 1e-2, "rtol": 1e-2},
    torch.bfloat16: {"atol": 6e-2, "rtol": 2e-2},
}


def _skip_unsupported(device: str, *dtypes: torch.dtype) -> None:
    if device == "cpu" and torch.bfloat16 in dtypes:
        pytest.skip("bf16 is checked on a GPU only (Triton's interpreter lacks bf16)")


def _loosest(*dtypes):
    return TOLERANCES[max(dtypes, key=lambda d: TOLERANCES[d]["atol"])]


def _inputs(gen, batch, nheads, headdim, ngroups, dstate, dtype, device):
    x = torch.randn(batch, nheads, headdim, generator=gen).to(dtype).to(device)
    dt = (torch.randn(batch, nheads, generator=gen) * 0.5 - 1.0).to(dtype).to(device)
    A = -torch.exp(torch.rand(nheads, generator=gen)).to(device)
    B = torch.randn(batch, ngroups, dstate, generator=gen).to(dtype).to(device)
    C = torch.randn(batch, ngroups, dstate, generator=gen).to(dtype).to(device)
    D = torch.randn(nheads, generator=gen).to(device)
    dt_bias = (torch.rand(nheads, generator=gen) - 0.5).to(device)
    z = torch.randn(batch, nheads, headdim, generator=gen).to(dtype).to(device)
    return x, dt, A, B, C, D, dt_bias, z


def _pool(gen, num_slots, nheads, headdim, dstate, dtype, device):
    page = nheads * headdim * dstate
    raw = torch.randn(num_slots, page + 3, generator=gen).to(dtype).to(device)
    return raw[:, :page].view(num_slots, nheads, headdim, dstate)


def _check(states, idx, args, kwargs, dtype, state_dtype, pad_slot_id=-1):
    expected_states = states.cpu().clone()
    cpu = lambda v: v.cpu() if isinstance(v, torch.Tensor) else v  # noqa: E731
    expected = ref.selective_state_update_reference(
        expected_states, *[cpu(a) for a in args], idx.cpu(), pad_slot_id=pad_slot_id,
        **{k: cpu(v) for k, v in kwargs.items()},
    )
    out = selective_state_update(states, *args, idx, pad_slot_id=pad_slot_id, **kwargs)
    torch.testing.assert_close(out.cpu(), expected, **TOLERANCES[dtype])
    torch.testing.assert_close(states.cpu(), expected_states, **_loosest(dtype, state_dtype))
    return out


@pytest.mark.parametrize("ngroups,headdim,dstate", [(1, 80, 16), (2, 64, 128), (4, 16, 8)])
@pytest.mark.parametrize("dtype,state_dtype", [
    (torch.float32, torch.float32),
    (torch.float16, torch.float16),
    (torch.float16, torch.float32),
    (torch.bfloat16, torch.float32),
])
@pytest.mark.parametrize("use_z", [False, True])
def test_matches_reference(device, ngroups, headdim, dstate, dtype, state_dtype, use_z):
    _skip_unsupported(device, dtype, state_dtype)
    gen = torch.Generator().manual_seed(headdim * dstate + ngroups)
    nheads, batch = 4, 5
    x, dt, A, B, C, D, dt_bias, z = _inputs(gen, batch, nheads, headdim, ngroups, dstate, dtype, device)
    states = _pool(gen, 7, nheads, headdim, dstate, state_dtype, device)
    idx = torch.tensor([4, -1, 0, 6, 2], dtype=torch.int32, device=device)
    _check(states, idx, (x, dt, A, B, C),
           dict(D=D, z=z if use_z else None, dt_bias=dt_bias, dt_softplus=True), dtype, state_dtype)


def test_vllm_expanded_views(device):
    """MambaMixer2 passes dt, dt_bias and D expanded over headdim and A over
    (headdim, dstate) with stride-0 views (mamba_mixer2.py:963-970): same
    result as the per-head forms."""
    gen = torch.Generator().manual_seed(3)
    nheads, headdim, ngroups, dstate, batch = 4, 80, 2, 16, 3
    x, dt, A, B, C, D, dt_bias, _ = _inputs(gen, batch, nheads, headdim, ngroups, dstate, torch.float32, device)
    states = _pool(gen, 4, nheads, headdim, dstate, torch.float32, device)
    states_expanded = states.clone()
    idx = torch.tensor([3, 1, 0], dtype=torch.int32, device=device)
    out = selective_state_update(states, x, dt, A, B, C, idx, D=D, dt_bias=dt_bias, dt_softplus=True)
    out_expanded = selective_state_update(
        states_expanded, x, dt[:, :, None].expand(-1, -1, headdim),
        A[:, None, None].expand(-1, headdim, dstate), B, C, idx,
        D=D[:, None].expand(-1, headdim), dt_bias=dt_bias[:, None].expand(-1, headdim),
        dt_softplus=True,
    )
    torch.testing.assert_close(out_expanded, out, **TOLERANCES[torch.float32])
    torch.testing.assert_close(states_expanded, states, **TOLERANCES[torch.float32])


@pytest.mark.parametrize("dtype,state_dtype", [
    (torch.float32, torch.float32),
    (torch.float16, torch.float32),
    (torch.float16, torch.float16),
    (torch.bfloat16, torch.bfloat16),
])
def test_mamba1_per_channel_layout(device, dtype, state_dtype):
    """Mamba-1's per-channel state [slots, d_inner, dstate], per-channel dt
    and a per-element A, as HybridMambaMixer passes them: x, z column slices
    of one projection, B, C column slices of another; the reference runs it
    as one head of headdim d_inner. A row padded with the null block (slot 0)
    leaves page 0 bit-identical."""
    _skip_unsupported(device, dtype, state_dtype)
    gen = torch.Generator().manual_seed(4)
    d_inner, dstate, batch = 200, 16, 4
    states = torch.randn(5, d_inner * dstate + 3, generator=gen)[:, : d_inner * dstate]
    states = states.to(state_dtype).to(device).view(5, d_inner, dstate)
    before = states.clone()
    proj = torch.randn(batch, 2 * d_inner, generator=gen).to(dtype).to(device)
    x, z = proj[:, :d_inner], proj[:, d_inner:]
    ssm_params = torch.randn(batch, 4 + 2 * dstate, generator=gen).to(dtype).to(device)
    B, C = ssm_params[:, 4 : 4 + dstate], ssm_params[:, 4 + dstate :]
    dt = torch.randn(batch, d_inner, generator=gen).to(dtype).to(device)
    A = -torch.exp(torch.rand(d_inner, dstate, generator=gen)).to(device)
    D = torch.randn(d_inner, generator=gen).to(device)
    dt_bias = torch.randn(d_inner, generator=gen).to(device)
    idx = torch.tensor([4, 0, 2, 1], dtype=torch.int32, device=device)
    expected_states = states.cpu().clone().unsqueeze(1)
    expected = ref.selective_state_update_reference(
        expected_states, x.cpu().unsqueeze(1), dt.cpu().unsqueeze(1), A.cpu().unsqueeze(0),
        B.cpu().unsqueeze(1), C.cpu().unsqueeze(1), idx.cpu(), pad_slot_id=0,
        D=D.cpu().unsqueeze(0), z=z.cpu().unsqueeze(1), dt_bias=dt_bias.cpu().unsqueeze(0),
        dt_softplus=True,
    )[:, 0]
    out = selective_state_update_per_channel(states, x, dt, A, B, C, idx, D=D, z=z,
                                             dt_bias=dt_bias, dt_softplus=True, pad_slot_id=0)
    torch.testing.assert_close(out.cpu(), expected, **TOLERANCES[dtype])
    torch.testing.assert_close(states.cpu(), expected_states[:, 0], **_loosest(dtype, state_dtype))
    assert torch.equal(states[[0, 3]], before[[0, 3]])


@pytest.mark.parametrize("layout", ["per_head_A", "per_state_A"])
@pytest.mark.parametrize("below_programs,small", [(1 << 20, True), (1, False)])
def test_small_grid_entries(monkeypatch, launch_spy, device, layout, below_programs, small):
    """A grid with fewer programs than SMALL_GRID's below_programs takes its
    entries (here 16 headdim rows, 2 warps and D and z loaded early), a
    larger one keeps the layout's own; both match the reference."""
    entries = {**ssu_module.LAUNCH_CONFIGS[device][layout], "BLOCK_P": 64, "STATE_TILE_BYTES": 0,
               "num_warps": 1, "EARLY_GATE": False,
               "SMALL_GRID": {"below_programs": below_programs, "BLOCK_P": 16, "num_warps": 2,
                              "EARLY_GATE": True}}
    monkeypatch.setitem(ssu_module.LAUNCH_CONFIGS[device], layout, entries)
    spy = launch_spy(ssu_module, "_launch_state_update")
    gen = torch.Generator().manual_seed(9)
    nheads, headdim, dstate, batch = 2, 64, 16, 3
    x, dt, A, B, C, D, dt_bias, z = _inputs(gen, batch, nheads, headdim, 1, dstate, torch.float32, device)
    if layout == "per_state_A":
        A = -torch.exp(torch.rand(nheads, headdim, dstate, generator=gen)).to(device)
    states = _pool(gen, batch + 1, nheads, headdim, dstate, torch.float32, device)
    idx = torch.tensor([3, -1, 1], dtype=torch.int32, device=device)
    _check(states, idx, (x, dt, A, B, C), dict(D=D, z=z, dt_bias=dt_bias, dt_softplus=True),
           torch.float32, torch.float32)
    grid, _, _, constexprs, options = spy.calls[-1]
    assert grid[0] == (4 if small else 1)
    assert constexprs["BLOCK_P"] == (16 if small else 64)
    assert options["num_warps"] == (2 if small else 1)
    assert constexprs["EARLY_GATE"] is small


def test_dt_limit(device):
    gen = torch.Generator().manual_seed(6)
    x, dt, A, B, C, D, dt_bias, _ = _inputs(gen, 2, 4, 32, 1, 16, torch.float32, device)
    states = _pool(gen, 2, 4, 32, 16, torch.float32, device)
    idx = torch.tensor([1, 0], dtype=torch.int32, device=device)
    _check(states, idx, (x, dt, A, B, C), dict(dt_limit=(0.3, 0.4)), torch.float32, torch.float32)


@pytest.mark.parametrize("seed", range(3))
def test_random_sweep(device, seed):
    gen = torch.Generator().manual_seed(3000 + seed)
    nheads = [4, 8, 2][seed]
    ngroups = [1, 2, 2][seed]
    headdim = int(torch.randint(1, 100, (1,), generator=gen))
    dstate = int(torch.randint(1, 70, (1,), generator=gen))
    batch = int(torch.randint(1, 6, (1,), generator=gen))
    x, dt, A, B, C, D, dt_bias, z = _inputs(gen, batch, nheads, headdim, ngroups, dstate, torch.float32, device)
    states = _pool(gen, batch + 2, nheads, headdim, dstate, torch.float32, device)
    idx = torch.randperm(batch + 2, generator=gen)[:batch].to(torch.int32).to(device)
    _check(states, idx, (x, dt, A, B, C), dict(D=D, z=z, dt_bias=dt_bias, dt_softplus=bool(seed % 2)),
           torch.float32, torch.float32)


def test_null_block_padding(device):
    """vLLM 0.32 pads decode rows with NULL_BLOCK_ID = 0: with pad_slot_id=0
    page 0 stays bit-identical and the row's output comes from a zero state."""
    gen = torch.Generator().manual_seed(8)
    nheads, headdim, ngroups, dstate = 4, 80, 2, 16
    x, dt, A, B, C, D, dt_bias, z = _inputs(gen, 3, nheads, headdim, ngroups, dstate, torch.float16, device)
    states = _pool(gen, 3, nheads, headdim, dstate, torch.float16, device)
    before = states.clone()
    idx = torch.tensor([0, 2, -1], dtype=torch.int32, device=device)
    out = _check(states, idx, (x, dt, A, B, C), dict(D=D, z=z, dt_bias=dt_bias, dt_softplus=True),
                 torch.float16, torch.float16, pad_slot_id=0)
    assert torch.equal(states[:2], before[:2])
    from_zero = ref.selective_state_update_reference(
        torch.zeros(1, nheads, headdim, dstate), x[:1].cpu(), dt[:1].cpu(), A.cpu(), B[:1].cpu(),
        C[:1].cpu(), torch.tensor([0]), D=D.cpu(), z=z[:1].cpu(), dt_bias=dt_bias.cpu(),
        dt_softplus=True,
    )
    torch.testing.assert_close(out[:1].cpu(), from_zero, **TOLERANCES[torch.float16])


def test_bad_arguments(device):
    gen = torch.Generator().manual_seed(0)
    x, dt, A, B, C, D, dt_bias, z = _inputs(gen, 2, 4, 16, 2, 8, torch.float32, device)
    states = torch.zeros(3, 4, 16, 8, device=device)
    idx = torch.tensor([0, 1], dtype=torch.int32, device=device)
    with pytest.raises(ValueError, match="ngroups=3 must divide nheads=4"):
        Bc = torch.zeros(2, 3, 8, device=device)
        selective_state_update(states, x, dt, A, Bc, Bc, idx)
    with pytest.raises(ValueError, match=r"A: expected shape \(4,\) or \(4, 16, 8\)"):
        selective_state_update(states, x, dt, A[:2], B, C, idx)
    with pytest.raises(ValueError, match=r"dt: expected shape \(2, 4\) or \(2, 4, 16\)"):
        selective_state_update(states, x, dt[:, :3], A, B, C, idx)
    with pytest.raises(ValueError, match=r"dt_bias: expected shape \(4,\) or \(4, 16\)"):
        selective_state_update(states, x, dt, A, B, C, idx, dt_bias=torch.zeros(5, device=device))
    with pytest.raises(ValueError, match="ssm_states: expected"):
        selective_state_update(states[:, :, :8], x, dt, A, B, C, idx)
    with pytest.raises(ValueError, match=r"state_indices: expected a contiguous tensor of shape \(2,\)"):
        selective_state_update(states, x, dt, A, B, C, idx.float())
    with pytest.raises(ValueError, match=r"state_indices: .* stride \(2,\)"):
        selective_state_update(states, x, dt, A, B, C,
                               torch.zeros(2, 2, dtype=torch.int32, device=device)[:, 0])
    with pytest.raises(ValueError, match="x: dtype"):
        selective_state_update(states, x.to(torch.int64), dt, A, B, C, idx)


def test_per_channel_bad_arguments(device):
    x, dt, z = (torch.zeros(2, 16, device=device) for _ in range(3))
    A = torch.zeros(16, 8, device=device)
    B, C = (torch.zeros(2, 8, device=device) for _ in range(2))
    states = torch.zeros(3, 16, 8, device=device)
    idx = torch.tensor([0, 1], dtype=torch.int32, device=device)
    with pytest.raises(ValueError, match=r"x: expected \[B, dim\]"):
        selective_state_update_per_channel(states, x[:, None], dt, A, B, C, idx)
    with pytest.raises(ValueError, match=r"A: expected shape \(16, 8\) \(\[dim, dstate\]\)"):
        selective_state_update_per_channel(states, x, dt, A[:, :4], B, C, idx)
    with pytest.raises(ValueError, match=r"B: expected \[B=2, dstate\]"):
        selective_state_update_per_channel(states, x, dt, A, B[:1], C, idx)
    with pytest.raises(ValueError, match=r"C: expected shape \(2, 8\) \(same as B\)"):
        selective_state_update_per_channel(states, x, dt, A, B, C[:1], idx)
    with pytest.raises(ValueError, match=r"dt: expected shape \(2, 16\) \(same as x\)"):
        selective_state_update_per_channel(states, x, dt[:, :8], A, B, C, idx)
    with pytest.raises(ValueError, match=r"ssm_states: expected \[num_slots, dim=16, dstate=8\]"):
        selective_state_update_per_channel(states[:, :8], x, dt, A, B, C, idx)
    with pytest.raises(ValueError, match=r"dt_bias: expected shape \(16,\)"):
        selective_state_update_per_channel(states, x, dt, A, B, C, idx,
                                           dt_bias=torch.zeros(1, 16, device=device))
    with pytest.raises(ValueError, match="z: expected shape"):
        selective_state_update_per_channel(states, x, dt, A, B, C, idx, z=z[:1])
    with pytest.raises(ValueError, match="D: dtype"):
        selective_state_update_per_channel(states, x, dt, A, B, C, idx,
                                           D=torch.zeros(16, dtype=torch.int32, device=device))


def test_too_many_rows_is_refused(device):
    """More decode rows than the launch grid's batch dimension holds: a
    message naming the fix, before any kernel runs."""
    gen = torch.Generator().manual_seed(0)
    rows = MAX_GRID_YZ + 1
    x, dt, A, B, C, D, dt_bias, z = _inputs(gen, rows, 1, 1, 1, 1, torch.float32, device)
    idx = torch.zeros(rows, dtype=torch.int32, device=device)
    with pytest.raises(ValueError, match="x: 65536 decode rows in one call; at most 65535 .*max_num_seqs"):
        selective_state_update(torch.zeros(1, 1, 1, 1, device=device), x, dt, A, B, C, idx)
