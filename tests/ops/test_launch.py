# SPDX-License-Identifier: Apache-2.0
"""The launchers' host-side integer helpers equal Triton's own; the cached
launch goes through Triton's path whenever Triton's specialisation may
differ."""

from __future__ import annotations

import pytest
import torch
import triton
import triton.language as tl
from triton.compiler import CompiledKernel

from vllm_xpu_hybrid.ops import launch as launch_module
from vllm_xpu_hybrid.ops.launch import CachedLaunch, cdiv, dot_block, next_power_of_2


def test_next_power_of_2_equals_triton():
    for n in [*range(4100), 2**31 - 1, 2**31, 2**31 + 1, 10**12]:
        assert next_power_of_2(n) == triton.next_power_of_2(n), n


def test_cdiv_equals_triton():
    for a in [*range(300), 2**31 + 5, 10**12 + 3]:
        for b in (1, 2, 3, 16, 64, 127, 256):
            assert cdiv(a, b) == triton.cdiv(a, b), (a, b)


def test_dot_block_is_a_power_of_two_of_at_least_16():
    assert [dot_block(n) for n in (1, 16, 17, 64, 80, 128, 129)] == [16, 16, 32, 64, 128, 128, 256]


class _FakeCompiled(CompiledKernel):
    """A compiled kernel that records its launches instead of running: those
    through its launcher (``run``) and those through ``[grid]``."""

    def __init__(self):
        self.module = None
        self.function = "function-handle"
        self.packed_metadata = "packed-metadata"
        self.launches = []
        self.hooked_launches = []

    def run(self, grid_x, grid_y, grid_z, stream, function, packed_metadata, launch_metadata,
            enter_hook, exit_hook, *args):
        assert (function, packed_metadata) == (self.function, self.packed_metadata)
        assert launch_metadata is None and enter_hook is None and exit_hook is None
        self.launches.append(((grid_x, grid_y, grid_z), args, stream))

    def __getitem__(self, grid):
        return lambda *args, stream: self.hooked_launches.append((grid, args, stream))


class _FakeKernel:
    """A @triton.jit kernel's launch interface, counting Triton's path."""

    arg_names = ["a_ptr", "b_ptr", "n", "eps", "BLOCK"]

    def __init__(self):
        self.compiled = _FakeCompiled()
        self.triton_calls = []

    def __getitem__(self, grid):
        def run(*args, **kwargs):
            self.triton_calls.append((grid, args, kwargs))
            return self.compiled
        return run


class _OnGpu(torch.Tensor):
    """A CPU tensor that says it is on CUDA, so CachedLaunch caches it."""

    is_cuda = True


def _gpu_tensor(numel=64, dtype=torch.float32, offset=0):
    return torch.Tensor._make_subclass(_OnGpu, torch.zeros(numel + offset, dtype=dtype)[offset:])


@pytest.fixture
def current_device(monkeypatch):
    device = [0]
    monkeypatch.setattr(launch_module, "_device_queries",
                        lambda: (lambda: device[0], lambda index: 100 + index))
    return device


def _launch(cached, a, b=None, n=8, eps=1e-5, block=16, num_warps=4, grid=(2, 3)):
    cached(grid, (a, b), (n, eps), {"BLOCK": block}, {"num_warps": num_warps})


def test_cached_launch_skips_triton_for_a_repeated_key(current_device):
    kernel = _FakeKernel()
    cached = CachedLaunch(kernel)
    a, b = _gpu_tensor(), _gpu_tensor()
    _launch(cached, a, b)
    _launch(cached, a, b)
    _launch(cached, _gpu_tensor(), _gpu_tensor())
    assert kernel.triton_calls == [((2, 3), (a, b, 8, 1e-5), {"BLOCK": 16, "num_warps": 4})]
    assert len(kernel.compiled.launches) == 2
    grid, args, stream = kernel.compiled.launches[0]
    assert grid == (2, 3, 1) and stream == 100
    assert args[2:] == (8, 1e-5, 16) and args[0] is a and args[1] is b


@pytest.mark.parametrize("change", [
    {"n": 9}, {"n": 16}, {"eps": 1e-6}, {"block": 32}, {"num_warps": 8},
    {"a": "bfloat16"}, {"a": "misaligned"}, {"b": None}, {"device": 1},
])
def test_cached_launch_takes_triton_when_the_specialisation_may_differ(current_device, change):
    kernel = _FakeKernel()
    cached = CachedLaunch(kernel)
    _launch(cached, _gpu_tensor(), _gpu_tensor())
    kwargs = {"a": _gpu_tensor(), "b": _gpu_tensor()}
    for name, value in change.items():
        if name == "device":
            current_device[0] = value
        elif value == "bfloat16":
            kwargs[name] = _gpu_tensor(dtype=torch.bfloat16)
        elif value == "misaligned":
            kwargs[name] = _gpu_tensor(offset=1)
        else:
            kwargs[name] = value
    _launch(cached, **kwargs)
    assert len(kernel.triton_calls) == 2 and kernel.compiled.launches == []


def _set_launch_hook(patch, name, hook):
    """Sets Triton's launch hook name ("launch_enter_hook" or
    "launch_exit_hook") to hook until patch is undone: a HookChain's calls on
    Triton 3.4 and later, the CompiledKernel attribute on 3.3."""
    holder = launch_module._launch_hook_holder()
    current = getattr(holder, name)
    if hasattr(current, "calls"):
        patch.setattr(current, "calls", [hook])
    else:
        patch.setattr(holder, name, hook)


def test_cached_launch_calls_registered_launch_hooks(current_device, monkeypatch):
    kernel = _FakeKernel()
    cached = CachedLaunch(kernel)
    a = _gpu_tensor()
    _launch(cached, a)
    for name in ("launch_enter_hook", "launch_exit_hook"):
        with monkeypatch.context() as patch:
            _set_launch_hook(patch, name, lambda metadata: None)
            _launch(cached, a)
        assert len(kernel.compiled.hooked_launches) == (1 if name == "launch_enter_hook" else 2)
    _launch(cached, a)
    assert len(kernel.compiled.launches) == 1 and len(kernel.triton_calls) == 1
    grid, args, stream = kernel.compiled.hooked_launches[0]
    assert grid == (2, 3, 1) and stream == 100 and args[0] is a


def test_cached_launch_never_caches_cpu_tensors_or_other_backends(current_device, monkeypatch):
    kernel = _FakeKernel()
    cached = CachedLaunch(kernel)
    _launch(cached, torch.zeros(4))
    _launch(cached, torch.zeros(4))
    monkeypatch.setattr(launch_module, "_device_queries", lambda: None)
    _launch(cached, _gpu_tensor())
    _launch(cached, _gpu_tensor())
    assert len(kernel.triton_calls) == 4 and kernel.compiled.launches == []


def test_cached_launch_empties_a_full_table(current_device, monkeypatch):
    monkeypatch.setattr(CachedLaunch, "MAX_ENTRIES", 3)
    kernel = _FakeKernel()
    cached = CachedLaunch(kernel)
    a = _gpu_tensor()
    for n in range(2, 6):
        _launch(cached, a, n=n)
    assert len(cached._compiled) == 1
    _launch(cached, a, n=5)
    assert len(kernel.compiled.launches) == 1


def test_cached_launch_refuses_arguments_out_of_signature_order(current_device):
    with pytest.raises(TypeError, match="3 scalars, then the constexprs"):
        CachedLaunch(_FakeKernel())((1,), (_gpu_tensor(), None), (8, 1e-5, 3), {"BLOCK": 16}, {})
    with pytest.raises(TypeError, match="constexprs \\['BLOCK', 'OTHER'\\]"):
        CachedLaunch(_FakeKernel())((1,), (_gpu_tensor(),), (None, 8, 1e-5),
                                    {"BLOCK": 16, "OTHER": 1}, {})


@triton.jit
def _scale_kernel(x_ptr, out_ptr, n, factor, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    tl.store(out_ptr + offsets, tl.load(x_ptr + offsets, mask=mask) * factor, mask=mask)


def test_cached_launch_runs_a_compiled_kernel_and_its_hooks(device, monkeypatch):
    if device == "cpu":
        pytest.skip("needs a GPU: under the interpreter every launch takes Triton's path")
    cached = CachedLaunch(_scale_kernel)
    x = torch.randn(1000, device=device)

    def scale(factor):
        out = torch.full_like(x, float("nan"))
        cached((cdiv(x.numel(), 256),), (x, out), (x.numel(), factor), {"BLOCK": 256},
               {"num_warps": 4})
        torch.testing.assert_close(out, x * factor)

    for factor in (2.0, 2.0, 3.0, 3.0):
        scale(factor)
    assert len(cached._compiled) == 2
    calls = []
    with monkeypatch.context() as patch:
        _set_launch_hook(patch, "launch_enter_hook", calls.append)
        scale(3.0)
    scale(3.0)
    assert len(calls) == 1 and calls[0] is not None
