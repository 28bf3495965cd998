# SPDX-License-Identifier: Apache-2.0
"""The models whose layer shapes the benchmark uses, and the shape presets.

Each model lists only the dimensions the kernels see (one tensor-parallel
rank, TP = 1), from its published ``config.json``. A family takes the models
that have its kind of layer; models with identical kernel shapes share one
case.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Attention:
    """Softmax attention layer: query heads, KV heads, head size."""

    q_heads: int
    kv_heads: int
    head_dim: int


@dataclass(frozen=True)
class Mamba2:
    """Mamba-2 mixer: heads x head_dim channels, state size, B/C groups,
    SSD chunk size and conv width."""

    heads: int
    head_dim: int
    state: int
    groups: int
    chunk: int
    conv_width: int = 4

    @property
    def inner(self) -> int:
        return self.heads * self.head_dim

    @property
    def conv_dim(self) -> int:
        """Channels of the causal conv: x, B and C."""
        return self.inner + 2 * self.groups * self.state


@dataclass(frozen=True)
class Mamba1:
    """Mamba-1 mixer: inner channels, state size, conv width."""

    inner: int
    state: int
    conv_width: int = 4


@dataclass(frozen=True)
class GatedDeltaNet:
    """Gated DeltaNet layer: key heads x key dim, value heads x value dim."""

    k_heads: int
    v_heads: int
    k_dim: int
    v_dim: int
    conv_width: int = 4

    @property
    def conv_dim(self) -> int:
        """Channels of the causal conv: q, k and v."""
        return 2 * self.k_heads * self.k_dim + self.v_heads * self.v_dim


@dataclass(frozen=True)
class Lightning:
    """Lightning (linear) attention layer: heads x head dim, per-head decay."""

    heads: int
    head_dim: int


@dataclass(frozen=True)
class ShortConv:
    """LFM2's gated short convolution: channels and conv width, no bias."""

    dim: int
    width: int


@dataclass(frozen=True)
class Model:
    """A model's kernel-visible layer shapes (None: the model has no such layer)."""

    name: str
    attention: Attention | None = None
    mamba2: Mamba2 | None = None
    mamba1: Mamba1 | None = None
    gdn: GatedDeltaNet | None = None
    lightning: Lightning | None = None
    short_conv: ShortConv | None = None


MODELS: dict[str, Model] = {
    m.name: m
    for m in (
        Model("Mamba2-2.7B", mamba2=Mamba2(heads=80, head_dim=64, state=128, groups=1, chunk=256)),
        Model("Granite-4.0-H-Small", attention=Attention(32, 8, 128),
              mamba2=Mamba2(heads=128, head_dim=64, state=128, groups=1, chunk=256)),
        Model("Nemotron-H-8B", attention=Attention(32, 8, 128),
              mamba2=Mamba2(heads=128, head_dim=64, state=128, groups=8, chunk=128)),
        Model("Nemotron-Nano-9B-v2", attention=Attention(40, 8, 128),
              mamba2=Mamba2(heads=128, head_dim=80, state=128, groups=8, chunk=128)),
        Model("Falcon-Mamba-7B", mamba1=Mamba1(inner=8192, state=16)),
        Model("Qwen3-Next-80B-A3B", attention=Attention(16, 2, 256),
              gdn=GatedDeltaNet(k_heads=16, v_heads=32, k_dim=128, v_dim=128)),
        Model("LFM2-1.2B", attention=Attention(32, 8, 64), short_conv=ShortConv(dim=2048, width=3)),
        Model("Llama-3-8B", attention=Attention(32, 8, 128)),
        # vLLM 0.32's lightning kernels were written for MiniMax-Text-01.
        Model("MiniMax-Text-01", lightning=Lightning(heads=64, head_dim=128)),
    )
}


@dataclass(frozen=True)
class ShapeSet:
    """What every family generates its cases from.

    prefill_tokens: tokens of one prefilled sequence per case;
    decode_batches: sequences per decode step (one token each);
    decode_context: cached tokens per sequence for attention decode;
    block_size: KV-cache block size of the attention cases;
    dtype: activations, weights and KV cache (a torch dtype name).
    """

    models: tuple[Model, ...]
    prefill_tokens: tuple[int, ...] = (4096, 16384)
    decode_batches: tuple[int, ...] = (1, 64, 256)
    decode_context: int = 4096
    block_size: int = 16
    dtype: str = "bfloat16"

    @property
    def elt(self) -> int:
        """Bytes per element of ``dtype``."""
        return getattr(torch, self.dtype).itemsize

    def state_dtypes(self) -> tuple[str, ...]:
        """SSM state dtypes to run: fp32 and the activation dtype."""
        return tuple(dict.fromkeys(("float32", self.dtype)))

    def having(self, layer: str) -> list[tuple[tuple[str, ...], object]]:
        """The distinct ``layer`` shapes (attribute of Model) among the
        models, each with the names of the models that have it, in order."""
        groups: dict[object, list[str]] = {}
        for model in self.models:
            dims = getattr(model, layer)
            if dims is not None:
                groups.setdefault(dims, []).append(model.name)
        return [(tuple(names), dims) for dims, names in groups.items()]


SHAPE_PRESETS: dict[str, ShapeSet] = {
    # Every model above at prefill 4k/16k and decode batch 1/64/256.
    "models": ShapeSet(tuple(MODELS.values())),
    # One model per layer type, prefill 4k, decode batch 1 and 256: a smoke run.
    "quick": ShapeSet(
        tuple(MODELS[n] for n in ("Nemotron-H-8B", "Falcon-Mamba-7B", "Qwen3-Next-80B-A3B",
                                  "LFM2-1.2B", "MiniMax-Text-01")),
        prefill_tokens=(4096,),
        decode_batches=(1, 256),
    ),
}
