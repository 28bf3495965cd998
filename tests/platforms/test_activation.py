# SPDX-License-Identifier: Apache-2.0
"""Which platform vLLM 0.32 gets with the plugin installed, in fresh
processes with the real vLLM (no mocks of vLLM)."""

from __future__ import annotations

import json

import pytest
import torch

from vllm_xpu_hybrid import activation

REPORT_PLATFORM = """
import json, os
from vllm.platforms import current_platform
from vllm.plugins import load_general_plugins
load_general_plugins()
from vllm.v1.attention.backends.registry import MambaAttentionBackendEnum
from vllm.v1.attention.selector import get_mamba_attn_backend
backends = {
    m.name: get_mamba_attn_backend(m).__module__
    for m in MambaAttentionBackendEnum if m.value is not None
}
cls = type(current_platform)
print(json.dumps({
    "platform": cls.__module__ + "." + cls.__qualname__,
    "interpret": os.environ.get("TRITON_INTERPRET"),
    "mamba": backends,
}))
"""


def _report(run_python, env):
    done = run_python(REPORT_PLATFORM, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_plugin_cpu_platform_is_current(run_python, plugin_cpu_env):
    report = _report(run_python, plugin_cpu_env)
    assert report["platform"] == activation.CPU_PLATFORM
    assert report["interpret"] == "1"
    assert set(report["mamba"]) == {"MAMBA1", "MAMBA2", "SHORT_CONV", "LINEAR", "GDN_ATTN"}
    for name, module in report["mamba"].items():
        assert module.startswith("vllm_xpu_hybrid.backends."), name


@pytest.mark.skipif(
    hasattr(torch, "xpu") and torch.xpu.is_available(), reason="machine has an XPU"
)
def test_inactive_without_device_request(run_python):
    """Installed but not asked for, on a machine with no XPU: vLLM unchanged."""
    report = _report(run_python, {})
    assert report["platform"] == "vllm.platforms.cpu.CpuPlatform"
    for name, module in report["mamba"].items():
        assert module.startswith("vllm.v1.attention.backends."), name


def test_invalid_device_value_lists_choices(run_python):
    done = run_python(REPORT_PLATFORM, env={"VLLM_XPU_HYBRID_DEVICE": "gpu"})
    assert done.returncode != 0
    assert "VLLM_XPU_HYBRID_DEVICE='gpu' is not valid; choose one of auto, xpu, cpu" in done.stderr


@pytest.mark.skipif(
    hasattr(torch, "xpu") and torch.xpu.is_available(), reason="machine has an XPU"
)
def test_xpu_requested_without_xpu_names_cause(run_python):
    done = run_python(REPORT_PLATFORM, env={"VLLM_XPU_HYBRID_DEVICE": "xpu"})
    assert done.returncode != 0
    assert "VLLM_XPU_HYBRID_DEVICE=xpu, but no Intel GPU is visible to PyTorch" in done.stderr
    assert "VLLM_XPU_HYBRID_DEVICE=cpu" in done.stderr


def test_missing_xpu_kernels_names_install_command(monkeypatch):
    monkeypatch.setattr(torch, "xpu", type("FakeXpu", (), {"is_available": staticmethod(lambda: True)}))
    monkeypatch.setattr(activation.importlib.util, "find_spec", lambda name: None)
    reason = activation.xpu_unavailable_reason()
    assert "vllm_xpu_kernels is not installed" in reason
    assert "pip install 'vllm-xpu-hybrid[xpu]'" in reason


@pytest.mark.parametrize("version", ["0.31.2", "0.33.0", None])
def test_unsupported_vllm_version_stays_inactive(monkeypatch, caplog, version):
    monkeypatch.setenv(activation.DEVICE_ENV, "cpu")
    monkeypatch.setattr(activation, "installed_vllm_version", lambda: version)
    assert activation.platform_qualname() is None
    assert "vllm-xpu-hybrid stays inactive: it supports vLLM 0.32.x" in caplog.text


@pytest.mark.parametrize(
    "version, supported",
    [("0.32.0", True), ("0.32.7+cpu", True), ("0.32.0rc1", True), ("0.3.2", False), ("1.32.0", False)],
)
def test_version_series(version, supported):
    assert activation.vllm_version_supported(version) is supported
