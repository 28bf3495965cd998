# SPDX-License-Identifier: Apache-2.0
"""gated_rmsnorm against the reference in ops/reference.py."""

from __future__ import annotations

import pytest
import torch

from vllm_xpu_hybrid.ops import gated_rmsnorm as gated_rmsnorm_module
from vllm_xpu_hybrid.ops import reference as ref
from vllm_xpu_hybrid.ops.gated_rmsnorm import gated_rmsnorm

TOLERANCES = {
    torch.float32: {"atol": 1e-5, "rtol": 1e-5},
    torch.float16: {"atol": 4e-3, "rtol": 4e-3},
    torch.bfloat16: {"atol": 3e-2, "rtol": 2e-2},
}


def _inputs(gen, tokens, hidden, dtype, device):
    """x and z as MambaMixer2 has them: z is a column slice of the projection
    (strided rows), x a contiguous buffer."""
    proj = torch.randn(tokens, 2 * hidden + 6, generator=gen).to(dtype).to(device)
    z = proj[:, :hidden]
    x = torch.randn(tokens, hidden, generator=gen).to(dtype).to(device)
    weight = (1 + 0.1 * torch.randn(hidden, generator=gen)).to(dtype).to(device)
    return x, z, weight


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("ngroups", [1, 4])
@pytest.mark.parametrize("use_z,norm_before_gate", [(True, False), (True, True), (False, False)])
def test_matches_reference(device, dtype, ngroups, use_z, norm_before_gate):
    if device == "cpu" and dtype == torch.bfloat16:
        pytest.skip("bf16 is checked on a GPU only (Triton's interpreter lacks bf16)")
    gen = torch.Generator().manual_seed(ngroups)
    hidden = 320  # 4 groups of 80: not a power of two
    x, z, weight = _inputs(gen, 9, hidden, dtype, device)
    z = z if use_z else None
    group_size = hidden // ngroups
    expected = ref.gated_rmsnorm_reference(x.cpu(), None if z is None else z.cpu(), weight.cpu(),
                                     1e-5, group_size, norm_before_gate)
    out = gated_rmsnorm(x, z, weight, 1e-5, group_size, norm_before_gate)
    torch.testing.assert_close(out.cpu(), expected, **TOLERANCES[dtype])


@pytest.mark.parametrize("norm_before_gate", [False, True])
def test_groups_wider_than_one_block(device, monkeypatch, norm_before_gate):
    """Groups wider than MAX_BLOCK take the two-pass path."""
    monkeypatch.setitem(gated_rmsnorm_module.LAUNCH_CONFIGS[device], "MAX_BLOCK", 32)
    gen = torch.Generator().manual_seed(5)
    x, z, weight = _inputs(gen, 5, 200, torch.float32, device)
    expected = ref.gated_rmsnorm_reference(x.cpu(), z.cpu(), weight.cpu(), 1e-6, 100, norm_before_gate)
    out = gated_rmsnorm(x, z, weight, 1e-6, 100, norm_before_gate)
    torch.testing.assert_close(out.cpu(), expected, **TOLERANCES[torch.float32])


@pytest.mark.parametrize("tokens,warps", [(3, 2), (9, 1)])
def test_small_grid_warps(device, monkeypatch, launch_spy, tokens, warps):
    """A grid of fewer programs than SMALL_GRID's below_programs (here 2
    groups x 3 tokens < 8) takes its warps per block width; 9 tokens keep
    the base's."""
    monkeypatch.setitem(gated_rmsnorm_module.LAUNCH_CONFIGS[device], "BLOCK_T", 1)
    monkeypatch.setitem(gated_rmsnorm_module.LAUNCH_CONFIGS[device], "num_warps", {8192: 1})
    monkeypatch.setitem(gated_rmsnorm_module.LAUNCH_CONFIGS[device], "SMALL_GRID",
                        {"below_programs": 8, "num_warps": {8192: 2}})
    spy = launch_spy(gated_rmsnorm_module, "_launch_gated_rmsnorm")
    gen = torch.Generator().manual_seed(7)
    x, z, weight = _inputs(gen, tokens, 96, torch.float32, device)
    expected = ref.gated_rmsnorm_reference(x.cpu(), z.cpu(), weight.cpu(), 1e-6, 48, False)
    out = gated_rmsnorm(x, z, weight, 1e-6, 48, False)
    torch.testing.assert_close(out.cpu(), expected, **TOLERANCES[torch.float32])
    assert [call[-1]["num_warps"] for call in spy.calls] == [warps]


@pytest.mark.parametrize("max_block", [8192, 32])
def test_token_tiles_with_a_partial_last_tile(device, monkeypatch, max_block):
    """Several tokens per program (BLOCK_T), the last tile part-empty, in the
    one-pass and the two-pass path."""
    monkeypatch.setitem(gated_rmsnorm_module.LAUNCH_CONFIGS[device], "BLOCK_T", 4)
    monkeypatch.setitem(gated_rmsnorm_module.LAUNCH_CONFIGS[device], "MAX_BLOCK", max_block)
    gen = torch.Generator().manual_seed(6)
    x, z, weight = _inputs(gen, 11, 160, torch.float32, device)
    expected = ref.gated_rmsnorm_reference(x.cpu(), z.cpu(), weight.cpu(), 1e-6, 80, False)
    out = torch.full_like(x, float("nan"))
    gated_rmsnorm(x, z, weight, 1e-6, 80, False, out=out)
    torch.testing.assert_close(out.cpu(), expected, **TOLERANCES[torch.float32])


@pytest.mark.parametrize("seed", range(3))
def test_random_sweep(device, seed):
    gen = torch.Generator().manual_seed(4000 + seed)
    ngroups = int(torch.randint(1, 5, (1,), generator=gen))
    group_size = int(torch.randint(1, 300, (1,), generator=gen))
    tokens = int(torch.randint(1, 12, (1,), generator=gen))
    x, z, weight = _inputs(gen, tokens, ngroups * group_size, torch.float32, device)
    expected = ref.gated_rmsnorm_reference(x.cpu(), z.cpu(), weight.cpu(), 1e-6, group_size, seed == 1)
    out = gated_rmsnorm(x, z, weight, 1e-6, group_size, seed == 1)
    torch.testing.assert_close(out.cpu(), expected, **TOLERANCES[torch.float32])


def test_in_place(device):
    gen = torch.Generator().manual_seed(6)
    x, z, weight = _inputs(gen, 4, 64, torch.float16, device)
    expected = ref.gated_rmsnorm_reference(x.cpu(), z.cpu(), weight.cpu(), 1e-6, 32)
    out = gated_rmsnorm(x, z, weight, 1e-6, 32, out=x)
    assert out is x
    torch.testing.assert_close(x.cpu(), expected, **TOLERANCES[torch.float16])


def test_bad_arguments(device):
    x = torch.randn(3, 64, device=device)
    w = torch.ones(64, device=device)
    with pytest.raises(ValueError, match="group_size: 48 must be positive and divide hidden=64"):
        gated_rmsnorm(x, x, w, group_size=48)
    with pytest.raises(ValueError, match=r"z: expected shape \(3, 64\)"):
        gated_rmsnorm(x, x[:, :32], w)
    with pytest.raises(ValueError, match=r"weight: expected contiguous shape \(64,\)"):
        gated_rmsnorm(x, x, torch.ones(32, device=device))
    with pytest.raises(ValueError, match="x: expected \\[num_tokens, hidden\\]"):
        gated_rmsnorm(x[None], None, w)
    with pytest.raises(ValueError, match="x: dtype"):
        gated_rmsnorm(x.to(torch.int32), None, w)
