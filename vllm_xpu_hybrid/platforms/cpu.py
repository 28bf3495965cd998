# SPDX-License-Identifier: Apache-2.0
"""The plugin's platform on the CPU: vLLM's CPU platform with the plugin's
backends, whose Triton kernels run under Triton's interpreter."""

from __future__ import annotations

import os

# Triton reads TRITON_INTERPRET when a kernel is decorated, so it is set here,
# before any of the plugin's kernel modules is imported; worker processes
# inherit it.
os.environ["TRITON_INTERPRET"] = "1"

from vllm.platforms.cpu import CpuPlatform  # noqa: E402

from vllm_xpu_hybrid.platforms.hybrid import HybridPlatformMixin  # noqa: E402


class HybridCpuPlatform(HybridPlatformMixin, CpuPlatform):
    """vLLM's CPU platform, with attention and every Mamba-like layer served
    by the plugin's backends (Triton kernels, interpreted)."""
