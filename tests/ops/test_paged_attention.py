# SPDX-License-Identifier: Apache-2.0
"""reshape_and_cache / paged_attention against the references in ops/reference.py."""

from __future__ import annotations

import random

import pytest
import torch
import triton

from vllm_xpu_hybrid.ops import paged_attention as pa_module
from vllm_xpu_hybrid.ops.paged_attention import paged_attention, reshape_and_cache
from vllm_xpu_hybrid.ops.reference import paged_attention_reference, reshape_and_cache_reference

TOLERANCES = {
    torch.float32: {"atol": 1e-4, "rtol": 1e-4},
    torch.float16: {"atol": 1e-2, "rtol": 1e-2},
    torch.bfloat16: {"atol": 3e-2, "rtol": 3e-2},
}

# (q_len, seq_len): prefill, chunked prefill over a cached prefix, decodes;
# no length is a multiple of the block size.
MIXED_BATCH = [(37, 37), (19, 53), (1, 40), (1, 17), (5, 70)]


def _skip_unsupported(device: str, dtype: torch.dtype) -> None:
    if device == "cpu" and dtype == torch.bfloat16:
        # Measured with triton 3.9: a 16x16 bf16 tl.dot returns values off by
        # ~1e10 under the interpreter.
        pytest.skip("bf16 is checked compiled on a GPU only (Triton's interpreter "
                    "mis-computes bf16)")


@pytest.fixture
def split_kv_spy(launch_spy):
    return launch_spy(pa_module, "_launch_split_kv")


def _force_split_kv(monkeypatch, device: str, enabled: bool) -> None:
    """Make the launcher take (or never take) the split-KV decode path."""
    entry = dict(pa_module.LAUNCH_CONFIGS[device]["split_kv"])
    entry["min_seq_len"] = 1 if enabled else 1 << 30
    entry["max_programs"] = dict.fromkeys(entry["max_programs"], 1 << 30)
    monkeypatch.setitem(pa_module.LAUNCH_CONFIGS[device], "split_kv", entry)


def _make_batch(gen, seqs, num_q_heads, num_kv_heads, head_size, block_size, dtype, device,
                *, index_dtype=torch.int32, num_padding_tokens=0):
    """A paged batch: random cache (garbage in every unused slot), block tables
    mapping each sequence to a random permutation of physical blocks, padded
    with unrelated blocks past each sequence's end."""
    blocks_per_seq = [-(-seq_len // block_size) for _, seq_len in seqs]
    max_blocks = max(blocks_per_seq) + 1
    num_blocks = sum(blocks_per_seq) + 4
    physical = torch.randperm(num_blocks, generator=gen)
    block_table = torch.randint(0, num_blocks, (len(seqs), max_blocks), generator=gen)
    used = 0
    for i, n in enumerate(blocks_per_seq):
        block_table[i, :n] = physical[used:used + n]
        used += n
    q_lens = [q_len for q_len, _ in seqs]
    num_tokens = sum(q_lens) + num_padding_tokens
    return {
        "query": torch.randn(num_tokens, num_q_heads, head_size, generator=gen).to(dtype).to(device),
        "kv_cache": torch.randn(num_blocks, 2, block_size, num_kv_heads, head_size,
                                generator=gen).to(dtype).to(device),
        "query_start_loc": torch.tensor([0] + torch.tensor(q_lens).cumsum(0).tolist(),
                                        dtype=torch.int32, device=device),
        "seq_lens": torch.tensor([s for _, s in seqs], dtype=index_dtype, device=device),
        "block_table": block_table.to(index_dtype).to(device),
        "max_query_len": max(q_lens),
        "max_seq_len": max(s for _, s in seqs),
    }


def _run_and_check(batch, *, dtype, sliding_window=None, softcap=0.0, sinks=None):
    query = batch["query"]
    scale = query.shape[-1] ** -0.5
    out = torch.full_like(query, 123.0)
    result = paged_attention(
        query, batch["kv_cache"], out, batch["query_start_loc"], batch["seq_lens"],
        batch["block_table"], scale=scale, max_query_len=batch["max_query_len"],
        max_seq_len=batch["max_seq_len"], sliding_window=sliding_window, softcap=softcap,
        sinks=sinks)
    assert result is out
    expected = paged_attention_reference(
        query.cpu(), batch["kv_cache"].cpu(), batch["query_start_loc"].cpu(),
        batch["seq_lens"].cpu(), batch["block_table"].cpu(), scale=scale,
        sliding_window=sliding_window, softcap=softcap,
        sinks=None if sinks is None else sinks.cpu())
    num_real = int(batch["query_start_loc"][-1])
    torch.testing.assert_close(out[:num_real].cpu().double(), expected[:num_real],
                               **TOLERANCES[dtype])
    # Padding tokens past query_start_loc[B] are documented as untouched.
    assert bool((out[num_real:] == 123.0).all())
    return out


# ---------------------------------------------------------------------------
# reshape_and_cache
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype,cache_dtype,slot_dtype", [
    (torch.float32, torch.float32, torch.int64),
    (torch.float16, torch.float16, torch.int32),
    (torch.float32, torch.float16, torch.int32),
])
def test_reshape_and_cache_matches_reference(device, dtype, cache_dtype, slot_dtype):
    gen = torch.Generator().manual_seed(0)
    num_tokens, num_kv_heads, head_size, block_size, num_blocks = 23, 3, 80, 16, 6
    # key and value as strided views of a fused QKV projection.
    qkv = torch.randn(num_tokens, 4 * num_kv_heads, head_size, generator=gen).to(dtype).to(device)
    key, value = qkv[:, num_kv_heads:2 * num_kv_heads], qkv[:, 3 * num_kv_heads:]
    slots = torch.randperm(num_blocks * block_size, generator=gen)[:num_tokens]
    slots[[2, 7, 8, 20]] = -1
    # Entries past T must be ignored, whatever they hold.
    slot_mapping = torch.cat([slots, torch.tensor([0, 1, 2])]).to(slot_dtype).to(device)
    kv_cache = torch.randn(num_blocks, 2, block_size, num_kv_heads, head_size,
                           generator=gen).to(cache_dtype).to(device)
    before = kv_cache.clone()

    reshape_and_cache(key, value, kv_cache, slot_mapping)

    expected = before.cpu()
    reshape_and_cache_reference(key.cpu(), value.cpu(), expected, slot_mapping.cpu())
    assert torch.equal(kv_cache.cpu(), expected)
    # Every slot not named by a real token keeps its old bytes.
    written = torch.zeros(num_blocks * block_size, dtype=torch.bool)
    written[slots[slots >= 0]] = True
    written = written.view(num_blocks, 1, block_size).expand(num_blocks, 2, block_size)
    assert torch.equal(kv_cache.cpu()[~written], before.cpu()[~written])


def test_cache_write_then_attention(device):
    """K/V written by reshape_and_cache are what paged_attention reads."""
    gen = torch.Generator().manual_seed(1)
    seqs, num_q_heads, num_kv_heads, head_size, block_size = MIXED_BATCH[:3], 4, 2, 64, 16
    batch = _make_batch(gen, seqs, num_q_heads, num_kv_heads, head_size, block_size,
                        torch.float32, device)
    kv_cache = torch.zeros_like(batch["kv_cache"])
    # Write every position of every sequence, interleaved with padding tokens.
    keys, values, slots = [], [], []
    for i, (_, seq_len) in enumerate(seqs):
        positions = torch.arange(seq_len)
        blocks = batch["block_table"][i].cpu().long()[positions // block_size]
        slots.append(blocks * block_size + positions % block_size)
        keys.append(torch.randn(seq_len, num_kv_heads, head_size, generator=gen))
        values.append(torch.randn(seq_len, num_kv_heads, head_size, generator=gen))
        slots.append(torch.tensor([-1]))
        keys.append(torch.full((1, num_kv_heads, head_size), 99.0))
        values.append(torch.full((1, num_kv_heads, head_size), 99.0))
    reshape_and_cache(torch.cat(keys).to(device), torch.cat(values).to(device), kv_cache,
                      torch.cat(slots).to(device))
    assert not bool((kv_cache == 99.0).any())
    batch["kv_cache"] = kv_cache
    _run_and_check(batch, dtype=torch.float32)


# ---------------------------------------------------------------------------
# paged_attention: unified path
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("head_size,q_per_kv,dtype,block_size", [
    (64, 1, torch.float32, 16),
    (64, 4, torch.float16, 32),
    (80, 8, torch.float32, 16),
    (96, 4, torch.float16, 16),
    (128, 1, torch.float16, 64),
    (128, 8, torch.float32, 48),
    (64, 4, torch.float32, 80),
    (256, 4, torch.float32, 16),
    (256, 1, torch.float16, 32),
    (128, 4, torch.bfloat16, 16),
])
def test_mixed_batch_matches_reference(device, head_size, q_per_kv, dtype, block_size):
    _skip_unsupported(device, dtype)
    gen = torch.Generator().manual_seed(head_size * 10 + q_per_kv)
    num_kv_heads = 2 if q_per_kv < 8 else 1
    batch = _make_batch(gen, MIXED_BATCH, q_per_kv * num_kv_heads, num_kv_heads, head_size,
                        block_size, dtype, device, num_padding_tokens=3)
    _run_and_check(batch, dtype=dtype)


@pytest.mark.parametrize("sliding_window", [1, 6, 33, 1000])
def test_sliding_window(device, sliding_window):
    gen = torch.Generator().manual_seed(sliding_window)
    batch = _make_batch(gen, MIXED_BATCH, 4, 1, 64, 16, torch.float32, device)
    _run_and_check(batch, dtype=torch.float32, sliding_window=sliding_window)


@pytest.mark.parametrize("softcap", [0.0, 5.0])
@pytest.mark.parametrize("use_sinks", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_softcap_and_sinks(device, softcap, use_sinks, dtype):
    gen = torch.Generator().manual_seed(int(softcap) + 2 * use_sinks)
    batch = _make_batch(gen, MIXED_BATCH, 8, 2, 64, 16, dtype, device)
    # Scale queries up so that the softcap bends the logits noticeably.
    batch["query"] = batch["query"] * 4
    sinks = (torch.randn(8, generator=gen) * 2).to(device) if use_sinks else None
    _run_and_check(batch, dtype=dtype, softcap=softcap, sinks=sinks)


def test_window_softcap_sinks_together(device):
    gen = torch.Generator().manual_seed(7)
    batch = _make_batch(gen, MIXED_BATCH, 6, 2, 96, 16, torch.float16, device)
    sinks = torch.randn(6, generator=gen).to(device)
    _run_and_check(batch, dtype=torch.float16, sliding_window=9, softcap=20.0, sinks=sinks)


def test_random_sweep(device):
    """Seeded random batches over every option at once."""
    rng = random.Random(1234)
    for case in range(10):
        gen = torch.Generator().manual_seed(case)
        block_size = rng.choice([16, 32, 48, 64])
        seqs = []
        for _ in range(rng.randint(1, 4)):
            seq_len = rng.randint(1, 90)
            kind = rng.choice(["prefill", "chunked", "decode"])
            q_len = {"prefill": seq_len, "chunked": rng.randint(1, seq_len), "decode": 1}[kind]
            seqs.append((q_len, seq_len))
        num_kv_heads = rng.choice([1, 2])
        q_per_kv = rng.choice([1, 2, 3, 4, 8])
        dtype = rng.choice([torch.float32, torch.float16])
        batch = _make_batch(gen, seqs, num_kv_heads * q_per_kv, num_kv_heads,
                            rng.choice([64, 80, 96, 128, 256]), block_size, dtype, device,
                            index_dtype=rng.choice([torch.int32, torch.int64]),
                            num_padding_tokens=rng.randint(0, 2))
        sinks = (torch.randn(num_kv_heads * q_per_kv, generator=gen).to(device)
                 if rng.random() < 0.5 else None)
        _run_and_check(batch, dtype=dtype,
                       sliding_window=rng.choice([None, rng.randint(1, 100)]),
                       softcap=rng.choice([0.0, 8.0]), sinks=sinks)


# ---------------------------------------------------------------------------
# paged_attention: split-KV decode path
# ---------------------------------------------------------------------------

# All decodes; long and short sequences together, so that some splits of the
# short ones see no key.
LONG_DECODE_BATCH = [(1, 300), (1, 257), (1, 511), (1, 1), (1, 20)]


@pytest.mark.parametrize("head_size,q_per_kv,dtype,sliding_window,softcap,use_sinks", [
    (128, 4, torch.float32, None, 0.0, False),
    (80, 8, torch.float16, None, 10.0, True),
    (64, 1, torch.float32, 100, 0.0, True),
    (256, 1, torch.float16, 1000, 0.0, False),
    (96, 2, torch.bfloat16, None, 0.0, True),
])
def test_split_kv_decode_matches_reference(device, monkeypatch, split_kv_spy, head_size,
                                           q_per_kv, dtype, sliding_window, softcap,
                                           use_sinks):
    _skip_unsupported(device, dtype)
    _force_split_kv(monkeypatch, device, True)
    gen = torch.Generator().manual_seed(head_size + q_per_kv)
    num_q_heads = 2 * q_per_kv
    batch = _make_batch(gen, LONG_DECODE_BATCH, num_q_heads, 2, head_size, 16, dtype, device,
                        num_padding_tokens=2)
    sinks = torch.randn(num_q_heads, generator=gen).to(device) if use_sinks else None
    _run_and_check(batch, dtype=dtype, sliding_window=sliding_window, softcap=softcap,
                   sinks=sinks)
    assert split_kv_spy.launches == 1


def test_split_kv_taken_by_default_for_long_decode(device, split_kv_spy):
    """With the shipped configuration, a long pure-decode batch splits and a
    batch with a prefill does not."""
    gen = torch.Generator().manual_seed(3)
    min_seq_len = pa_module.LAUNCH_CONFIGS[device]["split_kv"]["min_seq_len"]
    batch = _make_batch(gen, [(1, min_seq_len + 5), (1, 30)], 4, 1, 64, 16, torch.float32, device)
    _run_and_check(batch, dtype=torch.float32)
    assert split_kv_spy.launches == 1
    batch = _make_batch(gen, [(2, 60), (1, 30)], 4, 1, 64, 16, torch.float32, device)
    _run_and_check(batch, dtype=torch.float32)
    assert split_kv_spy.launches == 1
    # Enough sequences fill the device: the unified kernel is faster there.
    max_programs = pa_module.LAUNCH_CONFIGS[device]["split_kv"]["max_programs"][128]
    many = [(1, min_seq_len + 5)] * (max_programs + 1)
    batch = _make_batch(gen, many, 4, 1, 128, 16, torch.float32, device)
    _run_and_check(batch, dtype=torch.float32)
    assert split_kv_spy.launches == 1


@pytest.mark.parametrize("split_tokens,expected", [
    # Parts of up to 8 x min_tokens_per_split: one split would do, so the
    # programs floor sets the count.
    (8, [5, 3, 2, 1, 1]),
    # Parts of up to 2 x min_tokens_per_split: at least 3 splits.
    (2, [5, 3, 3, 3, 3]),
])
def test_split_count_follows_the_grid(device, monkeypatch, split_kv_spy, split_tokens, expected):
    """Splits per sequence: enough for parts of at most tokens_per_split,
    more while sequences x KV heads x splits is below min_programs (12 here),
    never parts shorter than min_tokens_per_split."""
    entry = dict(pa_module.LAUNCH_CONFIGS[device]["split_kv"])
    min_tokens = entry["min_tokens_per_split"]
    entry["tokens_per_split"] = dict.fromkeys(entry["tokens_per_split"], split_tokens * min_tokens)
    entry["min_programs"] = 12
    monkeypatch.setitem(pa_module.LAUNCH_CONFIGS[device], "split_kv", entry)
    gen = torch.Generator().manual_seed(11)
    # 5 parts of min_tokens_per_split at most.
    seq_len = max(entry["min_seq_len"], min_tokens * 5 - 3)
    for (num_seqs, num_kv_heads), splits in zip([(1, 1), (2, 2), (3, 2), (4, 3), (13, 1)],
                                                expected):
        seqs = [(1, seq_len)] + [(1, seq_len - 7)] * (num_seqs - 1)
        batch = _make_batch(gen, seqs, 2 * num_kv_heads, num_kv_heads, 64, 16, torch.float32,
                            device)
        _run_and_check(batch, dtype=torch.float32)
        assert split_kv_spy.grid == (num_seqs, num_kv_heads, splits)


def test_decode_paths_agree(device, monkeypatch):
    """The unified and split-KV kernels give the same decode output."""
    gen = torch.Generator().manual_seed(5)
    batch = _make_batch(gen, LONG_DECODE_BATCH, 8, 2, 128, 32, torch.float32, device)
    sinks = torch.randn(8, generator=gen).to(device)
    outputs = []
    for split in (False, True):
        _force_split_kv(monkeypatch, device, split)
        outputs.append(_run_and_check(batch, dtype=torch.float32, sliding_window=200,
                                      sinks=sinks))
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------


def _attention_args(device, *, num_q_heads=4, num_kv_heads=2, head_size=64, block_size=16,
                    dtype=torch.float32):
    gen = torch.Generator().manual_seed(0)
    batch = _make_batch(gen, [(3, 3)], num_q_heads, num_kv_heads, head_size, block_size, dtype,
                        device)
    return batch


def _call(batch, **overrides):
    args = dict(batch)
    args.update(overrides)
    out = args.pop("out", torch.empty_like(args["query"]))
    return paged_attention(args.pop("query"), args.pop("kv_cache"), out,
                           args.pop("query_start_loc"), args.pop("seq_lens"),
                           args.pop("block_table"), scale=0.125, **args)


def test_attention_rejects_bad_dtype(device):
    batch = _attention_args(device)
    with pytest.raises(ValueError, match=r"query: dtype torch.float64 unsupported; accepted: "
                                         r"\(torch.float16, torch.bfloat16, torch.float32\)"):
        _call(batch, query=batch["query"].double())
    with pytest.raises(ValueError, match=r"kv_cache: dtype torch.float16 must equal query's"):
        _call(batch, kv_cache=batch["kv_cache"].half())
    with pytest.raises(ValueError, match=r"block_table: dtype torch.float32 unsupported"):
        _call(batch, block_table=batch["block_table"].float())


def test_attention_rejects_bad_head_size(device):
    batch = _attention_args(device)
    with pytest.raises(ValueError, match=r"head_size 72 not supported; accepted: "
                                         r"\[64, 80, 96, 128, 256\]"):
        _call(_attention_args(device, head_size=72))
    with pytest.raises(ValueError, match=r"query: head_size 32 not supported"):
        _call(batch, query=batch["query"][..., :32])


def test_attention_rejects_bad_head_ratio(device):
    with pytest.raises(ValueError, match=r"num_q_heads \(6\) must be a multiple of "
                                         r"kv_cache's num_kv_heads \(4\)"):
        _call(_attention_args(device, num_q_heads=6, num_kv_heads=4))


def test_attention_rejects_bad_layout_and_options(device):
    batch = _attention_args(device)
    with pytest.raises(ValueError, match=r"block_size \(dim 2\) must be a multiple of 16"):
        _call(_attention_args(device, block_size=8))
    with pytest.raises(ValueError, match=r"block_size \(dim 2\) must be a multiple of 16"):
        _call(_attention_args(device, block_size=24))
    with pytest.raises(ValueError, match=r"query: last dimension must be contiguous"):
        _call(batch, query=batch["query"].transpose(0, 2).contiguous().transpose(0, 2))
    with pytest.raises(ValueError, match=r"sliding_window: expected None or an int > 0"):
        _call(batch, sliding_window=0)
    with pytest.raises(ValueError, match=r"softcap: expected a float >= 0"):
        _call(batch, softcap=-1.0)
    with pytest.raises(ValueError, match=r"sinks: expected \[num_q_heads\] = \[4\]"):
        _call(batch, sinks=torch.zeros(2, device=device))
    with pytest.raises(ValueError, match=r"seq_lens: expected \[B\] = \[1\]"):
        _call(batch, seq_lens=batch["seq_lens"].repeat(2))


def test_attention_rejects_tensors_on_another_device(device):
    batch = _attention_args(device)
    with pytest.raises(ValueError, match=rf"block_table: on device meta, expected {device}"):
        _call(batch, block_table=batch["block_table"].to("meta"))
    with pytest.raises(ValueError, match=rf"sinks: on device meta, expected {device}"):
        _call(batch, sinks=torch.zeros(4, device="meta"))


def test_attention_and_cache_write_refuse_a_device_without_launch_configuration(device):
    batch = {name: t.to("meta") if isinstance(t, torch.Tensor) else t
             for name, t in _attention_args(device).items()}
    accepted = r"accepted: \['cpu', 'cuda', 'xpu'\]"
    with pytest.raises(ValueError, match=rf"query: device type 'meta' unsupported; {accepted}"):
        _call(batch)
    key = torch.zeros(4, 2, 64, device="meta")
    with pytest.raises(ValueError, match=rf"key: device type 'meta' unsupported; {accepted}"):
        reshape_and_cache(key, key, torch.zeros(2, 2, 16, 2, 64, device="meta"),
                          torch.arange(4, device="meta"))


def _compiled_stand_in(x_ptr):
    pass


def test_cpu_tensors_need_the_interpreter(device, monkeypatch):
    if device != "cpu":
        pytest.skip("the CPU path without Triton's interpreter")
    # As if the kernels had been decorated without TRITON_INTERPRET=1.
    monkeypatch.setattr(pa_module, "reshape_and_cache_kernel",
                        triton.runtime.JITFunction(_compiled_stand_in))
    with pytest.raises(RuntimeError, match="CPU tensors need Triton's interpreter: set "
                                           "TRITON_INTERPRET=1 before importing"):
        _call(_attention_args(device))


def test_reshape_and_cache_rejects_bad_arguments(device):
    key = torch.zeros(4, 2, 64, device=device)
    kv_cache = torch.zeros(2, 2, 16, 2, 64, device=device)
    slots = torch.arange(4, device=device)
    with pytest.raises(ValueError, match=r"key: dtype torch.float64 unsupported"):
        reshape_and_cache(key.double(), key.double(), kv_cache, slots)
    with pytest.raises(ValueError, match=r"slot_mapping: dtype torch.float32 unsupported; "
                                         r"accepted: \(torch.int32, torch.int64\)"):
        reshape_and_cache(key, key, kv_cache, slots.float())
    with pytest.raises(ValueError, match=r"slot_mapping: expected 1-D with >= 4 entries"):
        reshape_and_cache(key, key, kv_cache, slots[:3])
    with pytest.raises(ValueError, match=r"slot_mapping: last dimension must be contiguous"):
        reshape_and_cache(key, key, kv_cache, torch.arange(8, device=device)[::2])
    with pytest.raises(ValueError, match=r"kv_cache: \(num_kv_heads, head_size\) = \(2, 64\) "
                                         r"does not match key's \(1, 64\)"):
        reshape_and_cache(key[:, :1], key[:, :1], kv_cache, slots)
    with pytest.raises(ValueError, match=r"kv_cache: head_size 48 not supported"):
        reshape_and_cache(key[..., :48], key[..., :48], kv_cache[..., :48], slots)
    with pytest.raises(ValueError, match=rf"slot_mapping: on device meta, expected {device}"):
        reshape_and_cache(key, key, kv_cache, slots.to("meta"))
