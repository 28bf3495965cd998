# SPDX-License-Identifier: Apache-2.0
"""How the plugin reaches into vLLM, through vLLM's own extension points.

Attention: the platform answers ``get_attn_backend_cls``; vLLM's attention
layer also looks its backend's name up in ``AttentionBackendEnum``, so
:func:`install` registers the plugin's backend name there.

Mamba-like layers:
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
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vllm.logger import init_logger

if TYPE_CHECKING:
    from vllm_xpu_hybrid.platforms.hybrid import HybridPlatformMixin

logger = init_logger(f"vllm.{__name__}")


def install() -> None:
    """Route Mamba-like backends to the plugin when its platform is current."""
    from vllm.platforms import current_platform

    from vllm_xpu_hybrid.platforms.hybrid import HybridPlatformMixin

    if not isinstance(current_platform, HybridPlatformMixin):
        return
    register_attention_backend()
    route_mamba_backends(current_platform)


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
