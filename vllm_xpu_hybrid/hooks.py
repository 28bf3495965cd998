# SPDX-License-Identifier: Apache-2.0
"""How the plugin reaches into vLLM, through vLLM's own extension points.

Attention: the platform answers ``get_attn_backend_cls``; vLLM's attention
layer also looks its backend's name up in ``AttentionBackendEnum``, so
:func:`install` registers the plugin's backend name there.

Mamba-like layers' backends:
vLLM 0.32 never asks the platform for a Mamba-like layer's backend:
``MambaBase.get_attn_backend()`` calls
``vllm.v1.attention.selector.get_mamba_attn_backend(mamba_type)``, which
resolves ``mamba_type.get_class()``, and that honours overrides made with
``register_backend(..., is_mamba=True)``. So, in every vLLM process and only
while the plugin's platform is current, :func:`install` asks the platform's
``get_mamba_backend_cls`` for each type and registers its answer as that
type's override. The order the selector then follows is: the platform's
answer, else an override registered explicitly by someone else, else vLLM's
default class. ``platform/`` holds the upstream change (the selector asking
the platform directly) that would retire this hook.

Mamba-like layers' compute: vLLM's backends only build metadata; the layers
(``PluggableLayer`` subclasses) compute. :func:`install` registers the
plugin's layer classes (:data:`LAYERS`) with ``PluggableLayer.register_oot``,
vLLM's own out-of-tree replacement point: a model that builds vLLM's
``MambaMixer``, ``MambaMixer2`` or ``ShortConv`` then gets the plugin's
subclass, which keeps vLLM's parameters, weight loading and state shapes and
calls the plugin's kernels. Registering only here keeps vLLM's layers in processes where the
plugin's platform is not current; importing the layer modules registers
nothing. A replacement someone else registered for the same layer is
replaced, with a warning: the platform owns the kernels its layers run. This
is vLLM's intended extension point; no upstream change is needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vllm.logger import init_logger

if TYPE_CHECKING:
    from vllm_xpu_hybrid.platforms.hybrid import HybridPlatformMixin

logger = init_logger(f"vllm.{__name__}")

# vLLM layer class name -> the plugin's replacement (class path).
LAYERS = {
    "MambaMixer": "vllm_xpu_hybrid.layers.mamba_mixer.HybridMambaMixer",
    "MambaMixer2": "vllm_xpu_hybrid.layers.mamba_mixer2.HybridMambaMixer2",
    "ShortConv": "vllm_xpu_hybrid.layers.short_conv.HybridShortConv",
    "BailingMoELinearAttention": (
        "vllm_xpu_hybrid.layers.linear_attention.HybridBailingLinearAttention"
    ),
    # PluggableLayer.__new__ looks replacements up by the class name, not by
    # the name the layer registered with ("qwen_gated_delta_net_attention").
    "QwenGatedDeltaNetAttention": "vllm_xpu_hybrid.layers.gdn.HybridQwenGatedDeltaNet",
    "KimiGatedDeltaNetAttention": "vllm_xpu_hybrid.layers.gdn.RefusedKimiGatedDeltaNet",
    "OlmoHybridGatedDeltaNetAttention": "vllm_xpu_hybrid.layers.gdn.RefusedOlmoHybridGatedDeltaNet",
    "BailingMoeV3KimiDeltaAttention": "vllm_xpu_hybrid.layers.gdn.RefusedBailingMoeV3KimiDeltaAttention",
}


def install() -> None:
    """When the plugin's platform is current: register its attention
    backend, route Mamba-like backends to it and replace Mamba-like layers."""
    from vllm.platforms import current_platform

    from vllm_xpu_hybrid.platforms.hybrid import HybridPlatformMixin

    if not isinstance(current_platform, HybridPlatformMixin):
        return
    register_attention_backend()
    route_mamba_backends(current_platform)
    register_layers()


def register_attention_backend() -> None:
    """Make the plugin's attention backend a member of AttentionBackendEnum."""
    from vllm.v1.attention.backends.registry import (
        AttentionBackendEnum,
        register_backend,
    )

    from vllm_xpu_hybrid.platforms.hybrid import ATTENTION_BACKEND, ATTENTION_BACKEND_NAME

    if ATTENTION_BACKEND_NAME not in AttentionBackendEnum.__members__:
        register_backend(ATTENTION_BACKEND_NAME, ATTENTION_BACKEND)


def route_mamba_backends(platform: HybridPlatformMixin) -> dict[str, str]:
    """Register the platform's backend for every Mamba-like type it serves.

    Returns the routing made, type name -> backend class path.
    """
    from vllm.v1.attention.backends.registry import (
        MambaAttentionBackendEnum,
        register_backend,
    )
    from vllm.v1.attention.selector import _cached_get_mamba_attn_backend

    routed = {}
    for mamba_type in MambaAttentionBackendEnum:
        if mamba_type.value is None:  # CUSTOM: a slot for third parties
            continue
        explicit = mamba_type.get_path() if mamba_type.is_overridden() else None
        path = platform.get_mamba_backend_cls(mamba_type, selected_backend=explicit)
        if path is None:
            continue
        register_backend(mamba_type, path, is_mamba=True)
        routed[mamba_type.name] = path
    # A selection made before the routing would otherwise stay cached.
    _cached_get_mamba_attn_backend.cache_clear()
    logger.debug("vllm-xpu-hybrid routes Mamba-like backends: %s", routed)
    return routed


def register_layers() -> dict[str, type]:
    """Register the plugin's replacement for each vLLM layer in
    :data:`LAYERS` (idempotent). Returns layer name -> class registered."""
    from vllm.model_executor.custom_op import PluggableLayer, op_registry_oot
    from vllm.utils.import_utils import resolve_obj_by_qualname

    registered = {}
    for name, path in LAYERS.items():
        layer_cls = resolve_obj_by_qualname(path)
        previous = op_registry_oot.get(name)
        if previous is not layer_cls:
            if previous is not None:
                logger.warning(
                    "vllm-xpu-hybrid replaces %s's out-of-tree class %s with %s: "
                    "the plugin's platform runs its own kernels.",
                    name,
                    f"{previous.__module__}.{previous.__qualname__}",
                    path,
                )
                del op_registry_oot[name]
            PluggableLayer.register_oot(layer_cls, name=name)
        registered[name] = layer_cls
    logger.debug("vllm-xpu-hybrid replaces layers: %s", registered)
    return registered
