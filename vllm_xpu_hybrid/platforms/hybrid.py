# SPDX-License-Identifier: Apache-2.0
"""The hybrid-model logic shared by the plugin's CPU and XPU platforms.

The mixin answers vLLM's platform questions for attention, for every
Mamba-like layer type and for the KV-cache block size. It knows the plugin's
backends by class path only: no backend or kernel module is imported before
vLLM asks for one.
"""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING

from vllm.logger import init_logger

if TYPE_CHECKING:
    from vllm.config import VllmConfig
    from vllm.v1.attention.backend import AttentionBackend
    from vllm.v1.attention.backends.registry import (
        AttentionBackendEnum,
        MambaAttentionBackendEnum,
    )
    from vllm.v1.attention.selector import AttentionSelectorConfig

logger = init_logger(f"vllm.{__name__}")

ATTENTION_BACKEND = "vllm_xpu_hybrid.backends.attention.HybridAttentionBackend"
ATTENTION_BACKEND_NAME = "XPU_HYBRID_ATTN"

# Keyed by MambaAttentionBackendEnum member name.
MAMBA_BACKENDS = {
    "MAMBA1": "vllm_xpu_hybrid.backends.mamba1.HybridMamba1Backend",
    "MAMBA2": "vllm_xpu_hybrid.backends.mamba2.HybridMamba2Backend",
    "SHORT_CONV": "vllm_xpu_hybrid.backends.short_conv.HybridShortConvBackend",
    "LINEAR": "vllm_xpu_hybrid.backends.linear.HybridLinearBackend",
    "GDN_ATTN": "vllm_xpu_hybrid.backends.gdn.HybridGdnBackend",
}

# Mamba layer types whose prefill kernels carry state from chunk to chunk:
# with prefix caching (mamba_cache_mode "align") a state is saved at every
# block boundary, so a block must end on a chunk boundary.
CHUNKED_MAMBA_TYPES = ("MAMBA2",)


class HybridPlatformMixin:
    """Platform methods that hand attention and every Mamba-like layer to the
    plugin's backends and align the block size with the plugin's kernels.

    Mixed in before vLLM's platform class (``class P(HybridPlatformMixin,
    CpuPlatform)``), so ``super()`` reaches vLLM's own behaviour.
    """

    @classmethod
    def pre_register_and_update(cls, parser=None) -> None:
        """Give vLLM's argument parser ``--device {xpu,cpu}`` back (vLLM 0.32
        dropped it); it must name the device of the platform that is active,
        which ``VLLM_XPU_HYBRID_DEVICE`` chose before arguments are parsed."""
        super().pre_register_and_update(parser)  # type: ignore[misc]
        if parser is None or "--device" in parser._option_string_actions:
            return
        parser.add_argument(
            "--device",
            type=str.lower,
            choices=("xpu", "cpu"),
            action=_DeviceMatchesPlatform,
            platform_device=cls.device_type,  # type: ignore[attr-defined]
            help="vllm-xpu-hybrid's device; must match VLLM_XPU_HYBRID_DEVICE "
            "(`vllm-xpu-hybrid serve --device X` sets both).",
        )

    @classmethod
    def get_attn_backend_cls(
        cls,
        selected_backend: AttentionBackendEnum | None,
        attn_selector_config: AttentionSelectorConfig,
        num_heads: int | None = None,
    ) -> str:
        """The plugin's attention backend, after checking the layer fits it."""
        if attn_selector_config.use_mla or attn_selector_config.use_sparse:
            kind = "sparse attention" if attn_selector_config.use_sparse else "MLA"
            raise ValueError(
                f"vllm-xpu-hybrid does not serve {kind} (DeepSeek-style models "
                "are out of its scope); serve this model without the plugin "
                "(unset VLLM_PLUGINS or VLLM_XPU_HYBRID_DEVICE)."
            )
        from vllm.utils.import_utils import resolve_obj_by_qualname

        backend = resolve_obj_by_qualname(ATTENTION_BACKEND)
        problems = backend.configuration_problems(attn_selector_config)
        if problems:
            raise ValueError(
                "vllm-xpu-hybrid's attention backend cannot serve this model: "
                + "; ".join(problems)
                + "."
            )
        if selected_backend is not None and selected_backend.name != ATTENTION_BACKEND_NAME:
            logger.warning_once(
                "vllm-xpu-hybrid ignores the requested attention backend %s: "
                "its platform serves attention with its own kernels.",
                selected_backend.name,
            )
        return ATTENTION_BACKEND

    @classmethod
    def get_mamba_backend_cls(
        cls,
        mamba_type: MambaAttentionBackendEnum,
        selected_backend: MambaAttentionBackendEnum | str | None = None,
    ) -> str | None:
        """The plugin's backend class path for a Mamba-like layer type, or
        None for a type the plugin does not serve (vLLM's choice then stands).

        The plugin serves every type it knows, whatever ``selected_backend``
        says: as the platform it owns the kernels the layers run.
        """
        return MAMBA_BACKENDS.get(mamba_type.name)

    @classmethod
    def update_block_size_for_backend(cls, vllm_config: VllmConfig) -> None:
        """vLLM's alignment of attention and Mamba pages, then the plugin's
        kernel constraints, then a check that every page fits the block."""
        cache_config = vllm_config.cache_config
        model_config = vllm_config.model_config
        if model_config is None:
            return
        attention_backends = cls._find_non_ssm_backends(vllm_config)
        multiple = required_block_multiple(vllm_config, attention_backends)
        if cache_config.user_specified_block_size and (
            cache_config.block_size % multiple
        ):
            raise ValueError(
                block_size_error(vllm_config, cache_config.block_size, multiple)
            )

        super().update_block_size_for_backend(vllm_config)  # type: ignore[misc]

        if attention_backends and cache_config.block_size % multiple:
            # vLLM's alignment uses the current block size as its unit, so
            # rounding up first and aligning again keeps the Mamba padding right.
            cache_config.block_size = math.lcm(cache_config.block_size, multiple)
            if model_config.is_hybrid:
                cls._align_hybrid_block_size(vllm_config, attention_backends[0])
        check_pages_fit(vllm_config)
        log_layer_backends(vllm_config)


class _DeviceMatchesPlatform(argparse.Action):
    """``--device`` that errors out when it names another device than the
    active platform's: the platform was chosen before parsing."""

    def __init__(self, *args, platform_device: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.platform_device = platform_device

    def __call__(self, parser, namespace, value, option_string=None) -> None:
        if value != self.platform_device:
            parser.error(
                f"--device {value}: the active vllm-xpu-hybrid platform is "
                f"{self.platform_device}; set VLLM_XPU_HYBRID_DEVICE={value} or "
                f"run `vllm-xpu-hybrid serve MODEL --device {value}`."
            )
        setattr(namespace, self.dest, value)


def _mamba_layers(vllm_config: VllmConfig) -> dict:
    from vllm.config.vllm import get_layers_from_vllm_config
    from vllm.model_executor.layers.mamba.abstract import MambaBase

    return get_layers_from_vllm_config(vllm_config, MambaBase)  # type: ignore[type-abstract]


def required_block_multiple(
    vllm_config: VllmConfig, attention_backends: list[type[AttentionBackend]]
) -> int:
    """The number every KV-cache block size must be a multiple of: the
    attention kernels' block granularity and, with prefix caching of chunked
    Mamba layers, their chunk size."""
    from vllm.config.vllm import set_current_vllm_config
    from vllm.v1.attention.backend import MultipleOf

    multiple = 1
    with set_current_vllm_config(vllm_config):
        for backend in attention_backends:
            sizes = backend.get_supported_kernel_block_sizes()
            if sizes:
                multiple = math.lcm(
                    multiple,
                    min(s.base if isinstance(s, MultipleOf) else s for s in sizes),
                )
    if vllm_config.cache_config.mamba_cache_mode == "align" and any(
        layer.mamba_type.name in CHUNKED_MAMBA_TYPES
        for layer in _mamba_layers(vllm_config).values()
    ):
        multiple = math.lcm(multiple, vllm_config.model_config.get_mamba_chunk_size())
    return multiple


def nearest_multiples(value: int, multiple: int) -> str:
    """The multiples of ``multiple`` nearest to ``value``, for messages:
    "32 or 48"."""
    lower = max(multiple, value // multiple * multiple)
    upper = -(-value // multiple) * multiple
    return " or ".join(map(str, sorted({lower, upper})))


def block_size_error(vllm_config: VllmConfig, block_size: int, multiple: int) -> str:
    """The message for a user block size that the plugin's kernels reject."""
    reason = f"the plugin's kernels need a multiple of {multiple}"
    if vllm_config.cache_config.mamba_cache_mode == "align":
        reason += (
            " (attention kernel granularity and, with prefix caching, the Mamba "
            f"chunk size {vllm_config.model_config.get_mamba_chunk_size()})"
        )
    return (
        f"--block-size {block_size} cannot work: {reason}. Nearest sizes that "
        f"do: {nearest_multiples(block_size, multiple)}."
    )


def layer_page_sizes(vllm_config: VllmConfig) -> dict[str, list[int]]:
    """Page bytes of every KV-cache layer, grouped as "attention" and
    "mamba", from the layers' own KV-cache specs."""
    from vllm.config.vllm import get_layers_from_vllm_config
    from vllm.model_executor.layers.attention_layer_base import AttentionLayerBase
    from vllm.v1.kv_cache_interface import MambaSpec

    pages: dict[str, list[int]] = {"attention": [], "mamba": []}
    layers = get_layers_from_vllm_config(vllm_config, AttentionLayerBase)  # type: ignore[type-abstract]
    for layer in layers.values():
        spec = layer.get_kv_cache_spec(vllm_config)
        if spec is None:
            continue
        kind = "mamba" if isinstance(spec, MambaSpec) else "attention"
        pages[kind].append(spec.page_size_bytes)
    return pages


def check_pages_fit(vllm_config: VllmConfig) -> None:
    """Raise unless attention and Mamba pages share one page size.

    vLLM keeps one block pool for both: every Mamba page (its state, padded)
    must equal the attention page of the chosen block size.
    """
    pages = layer_page_sizes(vllm_config)
    if not (pages["attention"] and pages["mamba"]):
        return
    sizes = set(pages["attention"]) | set(pages["mamba"])
    if len(sizes) != 1:
        raise ValueError(
            "vllm-xpu-hybrid: attention pages "
            f"{sorted(set(pages['attention']))} and Mamba pages "
            f"{sorted(set(pages['mamba']))} (bytes) do not share one size at "
            f"block size {vllm_config.cache_config.block_size}; pass a larger "
            "--block-size."
        )


def layer_backends(
    vllm_config: VllmConfig,
) -> dict[str, str]:
    """The backend class path serving each layer type of the built model:
    "attention" and each Mamba type's name (e.g. "MAMBA2")."""
    from vllm.config.vllm import get_layers_from_vllm_config
    from vllm.model_executor.layers.attention_layer_base import AttentionLayerBase

    chosen: dict[str, str] = {}
    layers = get_layers_from_vllm_config(vllm_config, AttentionLayerBase)  # type: ignore[type-abstract]
    for layer in layers.values():
        backend = layer.get_attn_backend()
        mamba_type = getattr(layer, "mamba_type", None)
        kind = mamba_type.name if mamba_type is not None else "attention"
        chosen.setdefault(kind, f"{backend.__module__}.{backend.__qualname__}")
    return chosen


def log_layer_backends(vllm_config: VllmConfig) -> None:
    """Say once which backend each layer type of the model got, and why."""
    cache_config = vllm_config.cache_config
    for kind, path in layer_backends(vllm_config).items():
        why = (
            "the plugin's platform is active"
            if path.startswith("vllm_xpu_hybrid.")
            else "the plugin does not serve this layer type"
        )
        logger.info_once(
            "vllm-xpu-hybrid: %s layers -> %s (%s).", kind, path, why
        )
    if cache_config.mamba_block_size is None:
        logger.info_once("vllm-xpu-hybrid: KV-cache block size %d.", cache_config.block_size)
    else:
        padded = cache_config.mamba_page_size_padded
        logger.info_once(
            "vllm-xpu-hybrid: KV-cache block size %d, Mamba block size %d, %s.",
            cache_config.block_size,
            cache_config.mamba_block_size,
            "Mamba page not padded" if padded is None else f"Mamba page padded to {padded} bytes",
        )
