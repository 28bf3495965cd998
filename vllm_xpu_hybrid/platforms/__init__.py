# SPDX-License-Identifier: Apache-2.0
"""The plugin's platforms: :class:`~.cpu.HybridCpuPlatform` and
:class:`~.xpu.HybridXpuPlatform`, both built on :class:`~.hybrid.HybridPlatformMixin`.

Nothing is imported here: the XPU module imports vLLM's XPU platform, which
imports ``vllm_xpu_kernels`` at import time.
"""
