# SPDX-License-Identifier: Apache-2.0
"""vllm-xpu-hybrid: a vLLM platform plugin that serves hybrid attention/Mamba
models on Intel GPUs (XPU), and on the CPU through Triton's interpreter.

vLLM finds the plugin through two entry points (see pyproject.toml):

- ``vllm.platform_plugins``: :func:`register` decides whether the plugin's
  platform becomes vLLM's current platform;
- ``vllm.general_plugins``: :func:`register_hooks` runs in every vLLM process
  and, only while the plugin's platform is current, routes the Mamba-like
  layers' backends to the plugin (see :mod:`vllm_xpu_hybrid.hooks`).

This module imports nothing from vLLM at import time: the kernels under
``vllm_xpu_hybrid.ops`` stay importable without vLLM.
"""

from __future__ import annotations

__version__ = "0.1.0"


def register() -> str | None:
    """Platform-plugin entry point: the platform class qualname, or None.

    None keeps the plugin inactive, so vLLM picks its builtin platform: the
    default ``VLLM_XPU_HYBRID_DEVICE=auto`` on a machine without an XPU, or an
    unsupported vLLM version.
    """
    from vllm_xpu_hybrid.activation import platform_qualname

    return platform_qualname()


def register_hooks() -> None:
    """General-plugin entry point: install the plugin's hooks into vLLM when
    the plugin's platform is the current platform; otherwise do nothing."""
    from vllm_xpu_hybrid.hooks import install

    install()
