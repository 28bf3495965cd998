# SPDX-License-Identifier: Apache-2.0
"""Kernel benchmarks beside the peer kernels, in one process:
``python -m vllm_xpu_hybrid.bench [--family NAME ...]`` on a GPU (CUDA or XPU).

Every case first checks the plugin's output (against the reference, or against
the peer where a full reference run is too slow at real shapes), so a wrong
kernel is never timed. Then it times the plugin and the peer (vLLM 0.32's own
Triton kernels, importable on the GPU machine through the anchor bundle) with
``triton.testing.do_bench``. Counting rules:

- attention decode: bytes = K and V read over each sequence's context plus Q
  read and O written;
- state update (Mamba-2): bytes = the state pages read and written;
- conv update: bytes = conv states read and written plus x read and out written;
- SSD prefill: FLOPs = per head 2·L·chunk·N (C·Bᵀ) + 2·L·chunk·P (scan)
  + 4·L·P·N (chunk states in and out).

The roofline for bytes is the copy bandwidth measured in the same run; for
FLOPs, the dense bf16 peak of the device from ``PEAK_TFLOPS``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch

# Dense bf16 tensor-core peak (TFLOP/s), by device name substring.
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0}


@dataclass
class Result:
    """One timed kernel: median and spread in µs, and what it moved or did."""

    case: str
    impl: str
    median_us: float
    p20_us: float
    p80_us: float
    nbytes: float | None = None
    flops: float | None = None

    def rate(self) -> str:
        if self.nbytes:
            return f"{self.nbytes / self.median_us / 1e3:8.1f} GB/s"
        if self.flops:
            return f"{self.flops / self.median_us / 1e6:8.1f} TFLOP/s"
        return ""


def time_us(fn: Callable[[], object]) -> tuple[float, float, float]:
    """Median, 20th and 80th percentile of one call, in µs."""
    from triton.testing import do_bench

    ms = do_bench(fn, warmup=25, rep=100, quantiles=[0.5, 0.2, 0.8])
    return tuple(1e3 * v for v in ms)  # type: ignore[return-value]


def copy_bandwidth(device: str) -> float:
    """Device-to-device copy rate in GB/s, counting bytes read and written."""
    a = torch.empty(1 << 30, dtype=torch.uint8, device=device)
    b = torch.empty_like(a)
    median, _, _ = time_us(lambda: b.copy_(a))
    return 2 * a.numel() / median / 1e3


def _assert_close(name: str, got: torch.Tensor, want: torch.Tensor, atol: float, rtol: float) -> None:
    got, want = got.float().cpu(), want.float().cpu()
    if not torch.allclose(got, want, atol=atol, rtol=rtol):
        err = (got - want).abs().max().item()
        raise AssertionError(f"{name}: plugin output differs (max abs error {err:.3g}); not timed")


def bench_attention_decode(device: str) -> list[Result]:
    """Decode (one query token per sequence) over a paged bf16 KV cache:
    32 q-heads, 8 kv-heads, head 128, block 16."""
    from vllm.v1.attention.ops.triton_unified_attention import unified_attention

    from vllm_xpu_hybrid.ops.paged_attention import paged_attention
    from vllm_xpu_hybrid.ops.reference import paged_attention_reference

    num_q, num_kv, head, block = 32, 8, 128, 16
    results = []
    for batch, ctx in ((64, 2048), (64, 4096), (256, 2048), (256, 4096)):
        gen = torch.Generator(device=device).manual_seed(batch + ctx)
        blocks_per_seq = ctx // block
        # One physical tensor in vLLM's layer-compact layout [blocks, slot,
        # kv_head, K|V]; each kernel gets the view its backend makes of it.
        physical = torch.randn(batch * blocks_per_seq, block, num_kv, 2 * head,
                               device=device, dtype=torch.bfloat16, generator=gen)
        ours_cache = physical.unflatten(-1, (2, head)).permute(0, 3, 1, 2, 4)
        key_cache, value_cache = physical.split(head, dim=-1)
        query = torch.randn(batch, num_q, head, device=device, dtype=torch.bfloat16, generator=gen)
        cu = torch.arange(batch + 1, device=device, dtype=torch.int32)
        seq_lens = torch.full((batch,), ctx, device=device, dtype=torch.int32)
        table = torch.randperm(batch * blocks_per_seq, device=device, generator=gen).to(torch.int32)
        table = table.view(batch, blocks_per_seq)
        scale = head ** -0.5
        ours_out = torch.empty_like(query)
        peer_out = torch.empty_like(query)

        def ours():
            paged_attention(query, ours_cache, ours_out, cu, seq_lens, table, scale=scale,
                            max_query_len=1, max_seq_len=ctx)

        def peer():
            unified_attention(query, key_cache, value_cache, peer_out, cu, 1, seq_lens, ctx,
                              scale, True, (-1, -1), table, 0, None, None, None)

        ours()
        peer()
        check = slice(0, 4)
        want = paged_attention_reference(
            query[check], ours_cache, cu[:5], seq_lens[check], table[check], scale=scale
        )
        _assert_close("attention decode vs reference", ours_out[check], want, 2e-2, 2e-2)
        _assert_close("attention decode vs vLLM", ours_out, peer_out, 2e-2, 2e-2)
        nbytes = batch * ctx * num_kv * head * 2 * 2 + 2 * query.numel() * 2
        case = f"attention decode B={batch} ctx={ctx} Hq={num_q} Hkv={num_kv} D={head} bf16"
        for impl, fn in (("plugin", ours), ("vLLM unified_attention", peer)):
            results.append(Result(case, impl, *time_us(fn), nbytes=nbytes))
    return results


def bench_state_update(device: str) -> list[Result]:
    """Mamba-2 decode state update at Mamba2-2.7B shapes (80 heads x 64,
    state 128, 1 group), fp32 and bf16 states."""
    from vllm.model_executor.layers.mamba.ops.mamba_ssm import selective_state_update as peer_ssu

    from vllm_xpu_hybrid.ops.reference import selective_state_update_reference
    from vllm_xpu_hybrid.ops.selective_state_update import selective_state_update

    heads, headdim, dstate, groups = 80, 64, 128, 1
    results = []
    for batch in (1, 64, 256):
        for state_dtype in (torch.float32, torch.bfloat16):
            gen = torch.Generator(device=device).manual_seed(batch)
            state = torch.randn(batch, heads, headdim, dstate, device=device, dtype=state_dtype, generator=gen)
            x = torch.randn(batch, heads, headdim, device=device, dtype=torch.bfloat16, generator=gen)
            dt = torch.randn(batch, heads, device=device, dtype=torch.bfloat16, generator=gen)
            A = -torch.rand(heads, device=device, generator=gen).exp()
            B = torch.randn(batch, groups, dstate, device=device, dtype=torch.bfloat16, generator=gen)
            C = torch.randn_like(B)
            D = torch.randn(heads, device=device, generator=gen)
            dt_bias = torch.randn(heads, device=device, generator=gen)
            z = torch.randn_like(x)
            idx = torch.arange(batch, device=device, dtype=torch.int32)
            out = torch.empty_like(x)

            check_state = state.clone()
            got = selective_state_update(check_state, x, dt, A, B, C, idx, D=D, z=z,
                                         dt_bias=dt_bias, dt_softplus=True, out=out.clone())
            # The references run on the CPU, in float64.
            ref_state = state.cpu()
            want = selective_state_update_reference(
                ref_state, x.cpu(), dt.cpu(), A.cpu(), B.cpu(), C.cpu(), idx.cpu(),
                D=D.cpu(), z=z.cpu(), dt_bias=dt_bias.cpu(), dt_softplus=True)
            _assert_close("state update output", got, want, 5e-2, 5e-2)
            _assert_close("state update state", check_state, ref_state, 5e-2, 5e-2)

            # vLLM's kernel takes per-(head, headdim) parameters as tied views.
            dt_p = dt[:, :, None].expand(-1, -1, headdim)
            A_p = A[:, None, None].expand(-1, headdim, dstate)
            D_p = D[:, None].expand(-1, headdim)
            bias_p = dt_bias[:, None].expand(-1, headdim)

            def ours():
                selective_state_update(state, x, dt, A, B, C, idx, D=D, z=z, dt_bias=dt_bias,
                                       dt_softplus=True, out=out)

            def peer():
                peer_ssu(state, x, dt_p, A_p, B, C, D_p, bias_p, z=z, dt_softplus=True,
                         state_batch_indices=idx, out=out)

            case = f"mamba2 state update B={batch} H={heads} P={headdim} N={dstate} state={str(state_dtype)[6:]}"
            nbytes = 2 * state.numel() * state.element_size()
            for impl, fn in (("plugin", ours), ("vLLM selective_state_update", peer)):
                results.append(Result(case, impl, *time_us(fn), nbytes=nbytes))
    return results


def bench_conv_update(device: str) -> list[Result]:
    """Causal conv1d decode update at Mamba2-2.7B's conv width (d = 2·80·64 +
    2·128, kernel 4), bf16."""
    from vllm.model_executor.layers.mamba.ops.causal_conv1d import causal_conv1d_update as peer_update

    from vllm_xpu_hybrid.ops.causal_conv1d import causal_conv1d_update
    from vllm_xpu_hybrid.ops.reference import causal_conv1d_update_reference

    dim, width = 2 * 80 * 64 + 2 * 128, 4
    results = []
    for batch in (1, 64, 256):
        gen = torch.Generator(device=device).manual_seed(batch)
        x = torch.randn(batch, dim, device=device, dtype=torch.bfloat16, generator=gen)
        # The layer's view of vLLM's "SD" pages: [slots, dim, width-1] with dim contiguous.
        states = torch.randn(batch, width - 1, dim, device=device, dtype=torch.bfloat16,
                             generator=gen).transpose(1, 2)
        weight = torch.randn(dim, width, device=device, dtype=torch.bfloat16, generator=gen)
        idx = torch.arange(batch, device=device, dtype=torch.int32)
        out = torch.empty_like(x)

        check = states.clone()
        got = causal_conv1d_update(x, check, weight, None, idx, activation="silu")
        ref_states = states.cpu()
        want = causal_conv1d_update_reference(x.cpu(), ref_states, weight.cpu(), None, idx.cpu(),
                                        activation="silu")
        _assert_close("conv update output", got, want, 5e-2, 5e-2)
        _assert_close("conv update state", check, ref_states, 1e-2, 1e-2)

        def ours():
            causal_conv1d_update(x, states, weight, None, idx, activation="silu", out=out)

        def peer():
            peer_update(x, states, weight, None, activation="silu", conv_state_indices=idx)

        case = f"conv1d update B={batch} D={dim} K={width} bf16"
        nbytes = 2 * states.numel() * 2 + 2 * x.numel() * 2
        for impl, fn in (("plugin", ours), ("vLLM causal_conv1d_update", peer)):
            results.append(Result(case, impl, *time_us(fn), nbytes=nbytes))
    return results


def bench_ssd_prefill(device: str) -> list[Result]:
    """Mamba-2 SSD prefill of one sequence at Mamba2-2.7B shapes (80 heads x
    64, state 128, 1 group, chunk 256), bf16, fp32 states."""
    from vllm.model_executor.layers.mamba.ops.ssd_combined import mamba_chunk_scan_combined_varlen

    from vllm_xpu_hybrid.ops.ssd import ssd_chunk_metadata, ssd_chunk_scan

    heads, headdim, dstate, groups, chunk = 80, 64, 128, 1, 256
    results = []
    for length in (4096, 16384):
        gen = torch.Generator(device=device).manual_seed(length)
        x = torch.randn(length, heads, headdim, device=device, dtype=torch.bfloat16, generator=gen)
        dt = torch.randn(length, heads, device=device, dtype=torch.bfloat16, generator=gen)
        A = -torch.rand(heads, device=device, generator=gen).exp()
        B = torch.randn(length, groups, dstate, device=device, dtype=torch.bfloat16, generator=gen)
        C = torch.randn_like(B)
        cu = torch.tensor([0, length], device=device, dtype=torch.int32)
        cu_chunks, last_chunks = ssd_chunk_metadata(cu, chunk, device=device)[:2]
        seq_idx = torch.zeros(cu_chunks.numel() - 1, device=device, dtype=torch.int32)
        states = torch.zeros(1, heads, headdim, dstate, device=device, dtype=torch.float32)
        idx = torch.zeros(1, device=device, dtype=torch.int32)
        no_initial = torch.zeros(1, device=device, dtype=torch.bool)
        ours_out = torch.empty_like(x)
        peer_out = torch.empty_like(x)

        def ours():
            ssd_chunk_scan(x, dt, A, B, C, chunk_size=chunk, cu_chunk_seqlens=cu_chunks,
                           last_chunk_indices=last_chunks, ssm_states=states, state_indices=idx,
                           has_initial_state=no_initial, out=ours_out, dt_softplus=True)

        def peer():
            return mamba_chunk_scan_combined_varlen(
                x, dt, A, B, C, chunk, cu, cu_chunks, last_chunks, seq_idx, peer_out,
                D=None, dt_softplus=True, state_dtype=torch.float32)

        ours()
        peer_states = peer()
        _assert_close("SSD output vs vLLM", ours_out, peer_out, 5e-2, 5e-2)
        _assert_close("SSD final state vs vLLM", states[0], peer_states[0], 5e-2, 5e-2)
        flops = heads * (2 * length * chunk * dstate + 2 * length * chunk * headdim
                         + 4 * length * headdim * dstate)
        case = f"SSD prefill L={length} H={heads} P={headdim} N={dstate} chunk={chunk} bf16"
        for impl, fn in (("plugin", ours), ("vLLM mamba_chunk_scan_combined_varlen", peer)):
            results.append(Result(case, impl, *time_us(fn), flops=flops))
    return results


FAMILIES = {
    "attention": bench_attention_decode,
    "state_update": bench_state_update,
    "conv_update": bench_conv_update,
    "ssd": bench_ssd_prefill,
}


def format_table(results: list[Result], copy_gbps: float, peak_tflops: float | None) -> str:
    """A Markdown table: one row per (case, implementation), with the fraction
    of the roofline and the peer's time over the plugin's."""
    plugin_us = {r.case: r.median_us for r in results if r.impl == "plugin"}
    lines = [
        f"copy bandwidth (read+write): {copy_gbps:.0f} GB/s; bf16 peak: {peak_tflops} TFLOP/s",
        "",
        "| case | implementation | median µs | p20–p80 µs | rate | roofline | plugin speed-up |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if r.nbytes:
            roof = f"{100 * r.nbytes / r.median_us / 1e3 / copy_gbps:.0f}%"
        elif r.flops and peak_tflops:
            roof = f"{100 * r.flops / r.median_us / 1e6 / peak_tflops:.1f}%"
        else:
            roof = ""
        speedup = "" if r.impl == "plugin" else f"{r.median_us / plugin_us[r.case]:.2f}×"
        lines.append(
            f"| {r.case} | {r.impl} | {r.median_us:.1f} | {r.p20_us:.1f}–{r.p80_us:.1f} | "
            f"{r.rate().strip()} | {roof} | {speedup} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen families and print the Markdown table."""
    parser = argparse.ArgumentParser(prog="python -m vllm_xpu_hybrid.bench")
    parser.add_argument("--family", action="append", choices=sorted(FAMILIES))
    args = parser.parse_args(argv)
    if torch.cuda.is_available():
        device = "cuda"
    elif hasattr(torch, "xpu") and torch.xpu.is_available():
        device = "xpu"
    else:
        raise SystemExit("vllm_xpu_hybrid.bench needs a GPU (CUDA or XPU); none is visible.")
    name = torch.cuda.get_device_name() if device == "cuda" else torch.xpu.get_device_name()
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    import triton

    print(f"device {name}; torch {torch.__version__}; triton {triton.__version__}")
    copy_gbps = copy_bandwidth(device)
    results: list[Result] = []
    for family in args.family or list(FAMILIES):
        try:
            results += FAMILIES[family](device)
        except Exception as exc:  # one family's failure must not hide the others' numbers
            print(f"family {family} FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
    print(format_table(results, copy_gbps, peak))
    return 0


if __name__ == "__main__":
    sys.exit(main())
