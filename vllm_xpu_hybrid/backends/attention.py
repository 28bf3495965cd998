# SPDX-License-Identifier: Apache-2.0
"""The plugin's attention backend: paged attention with its own Triton kernels
(:mod:`vllm_xpu_hybrid.ops.paged_attention`) for decoder self-attention.

The KV cache is vLLM's logical per-layer view ``[num_blocks, num_kv_heads,
block_size, 2 * head_size]`` (K then V in the last dimension), in whichever
physical layout vLLM resolved; the kernels follow its strides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from vllm.v1.attention.backend import (
    AttentionBackend,
    AttentionCGSupport,
    AttentionImpl,
    AttentionLayer,
    AttentionMetadataBuilder,
    AttentionType,
    CommonAttentionMetadata,
    MultipleOf,
)
from vllm.v1.kv_cache_layout import KVCacheLayout

from vllm_xpu_hybrid.ops.paged_attention import paged_attention, reshape_and_cache
from vllm_xpu_hybrid.platforms.hybrid import ATTENTION_BACKEND_NAME, nearest_multiples

if TYPE_CHECKING:
    from vllm.config import VllmConfig
    from vllm.config.cache import CacheDType
    from vllm.v1.kv_cache_interface import AttentionSpec
    from vllm.v1.attention.selector import AttentionSelectorConfig

SUPPORTED_HEAD_SIZES = (64, 80, 96, 128, 256)
KERNEL_BLOCK_MULTIPLE = 16


@dataclass
class HybridAttentionMetadata:
    """What the kernels need for one step; host-side ints are read by the
    launcher to pick a kernel path without a device sync."""

    num_actual_tokens: int
    max_query_len: int
    max_seq_len: int
    query_start_loc: torch.Tensor  # [num_reqs + 1] int32
    seq_lens: torch.Tensor  # [num_reqs] int32, context including new tokens
    block_table: torch.Tensor  # [num_reqs, max_blocks] int32
    slot_mapping: torch.Tensor  # [num_tokens] int64, -1 for padding


class HybridAttentionMetadataBuilder(AttentionMetadataBuilder[HybridAttentionMetadata]):
    """Takes vLLM's common metadata as it is: the kernels consume the same
    query_start_loc / seq_lens / block_table tensors."""

    # The launcher sizes the split-KV decode grid from max_seq_len on the host,
    # which a captured graph would freeze; attention stays outside graphs.
    _cudagraph_support: ClassVar[AttentionCGSupport] = AttentionCGSupport.NEVER

    def __init__(
        self,
        kv_cache_spec: AttentionSpec,
        layer_names: list[str],
        vllm_config: VllmConfig,
        device: torch.device,
    ) -> None:
        super().__init__(kv_cache_spec, layer_names, vllm_config, device)

    def build(
        self,
        common_prefix_len: int,
        common_attn_metadata: CommonAttentionMetadata,
        fast_build: bool = False,
    ) -> HybridAttentionMetadata:
        common = common_attn_metadata
        return HybridAttentionMetadata(
            num_actual_tokens=common.num_actual_tokens,
            max_query_len=common.max_query_len,
            max_seq_len=common.max_seq_len,
            query_start_loc=common.query_start_loc,
            seq_lens=common.seq_lens,
            block_table=common.block_table_tensor,
            slot_mapping=common.slot_mapping,
        )


class HybridAttentionBackend(AttentionBackend):
    """Decoder self-attention over a paged KV cache: GQA/MQA, sliding window,
    logits soft-cap and attention sinks; fp16, bf16 and fp32."""

    supported_dtypes: ClassVar[list[torch.dtype]] = [
        torch.float16,
        torch.bfloat16,
        torch.float32,
    ]
    supported_kv_cache_dtypes: ClassVar[list[CacheDType]] = [
        "auto",
        "float16",
        "bfloat16",
    ]
    forward_includes_kv_cache_update: bool = False

    @staticmethod
    def get_name() -> str:
        return ATTENTION_BACKEND_NAME

    @staticmethod
    def get_impl_cls() -> type[HybridAttentionImpl]:
        return HybridAttentionImpl

    @staticmethod
    def get_builder_cls() -> type[HybridAttentionMetadataBuilder]:
        return HybridAttentionMetadataBuilder

    @staticmethod
    def get_supported_kernel_block_sizes(kv_cache_spec=None) -> list[int | MultipleOf]:
        return [MultipleOf(KERNEL_BLOCK_MULTIPLE)]

    @classmethod
    def get_supported_head_sizes(cls) -> list[int]:
        return list(SUPPORTED_HEAD_SIZES)

    @classmethod
    def supports_sink(cls) -> bool:
        return True

    @classmethod
    def supports_sliding_window(cls) -> bool:
        return True

    @classmethod
    def supported_kv_cache_layouts(cls) -> tuple[KVCacheLayout, ...]:
        # Layer-compact layouts keep a block's K and V of one layer together;
        # the kernels take any strides, so the order is only a preference.
        return (KVCacheLayout.LBNHC, KVCacheLayout.LBHNC)

    @classmethod
    def configuration_problems(cls, config: AttentionSelectorConfig) -> list[str]:
        """Why this backend cannot serve a layer, each reason naming the
        offending value and what is accepted; empty when it can."""
        problems = []
        if not cls.supports_head_size(config.head_size):
            problems.append(
                f"head size {config.head_size} is not supported (supported: "
                f"{', '.join(map(str, SUPPORTED_HEAD_SIZES))})"
            )
        if not cls.supports_dtype(config.dtype):
            problems.append(
                f"dtype {str(config.dtype).removeprefix('torch.')} is not "
                "supported; pass --dtype float16, bfloat16 or float32"
            )
        if not cls.supports_kv_cache_dtype(config.kv_cache_dtype):
            problems.append(
                f"--kv-cache-dtype {config.kv_cache_dtype} is not supported "
                f"(supported: {', '.join(cls.supported_kv_cache_dtypes)})"
            )
        if not cls.supports_block_size(config.block_size):
            problems.append(
                f"--block-size {config.block_size} is not a multiple of "
                f"{KERNEL_BLOCK_MULTIPLE}; nearest sizes that work: "
                f"{nearest_multiples(config.block_size, KERNEL_BLOCK_MULTIPLE)}"
            )
        if config.attn_type != AttentionType.DECODER:
            problems.append(
                f"attention type {config.attn_type} is not supported (decoder "
                "self-attention only)"
            )
        detailed = ("head_size", "dtype", "kv_cache_dtype", "block_size", "attention type")
        problems += [
            reason
            for reason in cls.validate_configuration(
                device_capability=None, **config._asdict()
            )
            if not reason.startswith(detailed)
        ]
        return problems


class HybridAttentionImpl(AttentionImpl[HybridAttentionMetadata]):
    """Writes new K/V into the paged cache, then attends over it."""

    def __init__(
        self,
        num_heads: int,
        head_size: int,
        scale: float,
        num_kv_heads: int,
        alibi_slopes: list[float] | None,
        sliding_window: int | None,
        kv_cache_dtype: str,
        logits_soft_cap: float | None = None,
        attn_type: str = AttentionType.DECODER,
        kv_sharing_target_layer_name: str | None = None,
        sinks: torch.Tensor | None = None,
    ) -> None:
        if alibi_slopes is not None:
            raise ValueError("vllm-xpu-hybrid's attention does not support ALiBi.")
        self.num_heads = num_heads
        self.head_size = head_size
        self.scale = float(scale)
        self.num_kv_heads = num_kv_heads
        self.sliding_window = sliding_window
        self.kv_cache_dtype = kv_cache_dtype
        self.logits_soft_cap = float(logits_soft_cap or 0.0)
        self.attn_type = attn_type
        self.kv_sharing_target_layer_name = kv_sharing_target_layer_name
        self.sinks = sinks

    def _paged_view(self, kv_cache: torch.Tensor) -> torch.Tensor:
        """vLLM's ``[blocks, kv_heads, block_size, 2 * head]`` cache as the
        kernels' ``[blocks, 2, block_size, kv_heads, head]`` (a view)."""
        return kv_cache.unflatten(-1, (2, self.head_size)).permute(0, 3, 2, 1, 4)

    def do_kv_cache_update(
        self,
        layer: AttentionLayer,
        key: torch.Tensor,
        value: torch.Tensor,
        kv_cache: torch.Tensor,
        slot_mapping: torch.Tensor,
    ) -> None:
        reshape_and_cache(key, value, self._paged_view(kv_cache), slot_mapping)

    def forward(
        self,
        layer: AttentionLayer,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        kv_cache: torch.Tensor,
        attn_metadata: HybridAttentionMetadata,
        output: torch.Tensor,
        output_scale: torch.Tensor | None = None,
        output_block_scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """query/output: ``[num_tokens, num_heads, head_size]``."""
        if output_scale is not None or output_block_scale is not None:
            raise NotImplementedError(
                "vllm-xpu-hybrid's attention does not fuse output quantization."
            )
        if attn_metadata is None:  # profiling run: no KV cache yet
            return output.fill_(0)
        num_tokens = attn_metadata.num_actual_tokens
        paged_attention(
            query[:num_tokens],
            self._paged_view(kv_cache),
            output[:num_tokens],
            attn_metadata.query_start_loc,
            attn_metadata.seq_lens,
            attn_metadata.block_table,
            scale=self.scale,
            max_query_len=attn_metadata.max_query_len,
            max_seq_len=attn_metadata.max_seq_len,
            sliding_window=self.sliding_window,
            softcap=self.logits_soft_cap,
            sinks=self.sinks,
        )
        return output
