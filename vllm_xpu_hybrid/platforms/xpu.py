# SPDX-License-Identifier: Apache-2.0
"""The plugin's platform on Intel GPUs: vLLM's XPU platform with the plugin's
backends, whose Triton kernels compile for the GPU.

Imported only after :mod:`vllm_xpu_hybrid.activation` found an XPU and
``vllm_xpu_kernels`` (vLLM's XPU platform imports it at import time).
"""

from __future__ import annotations

from vllm.platforms.xpu import XPUPlatform

from vllm_xpu_hybrid.platforms.hybrid import HybridPlatformMixin


class HybridXpuPlatform(HybridPlatformMixin, XPUPlatform):
    """vLLM's XPU platform, with attention and every Mamba-like layer served
    by the plugin's backends."""
