# SPDX-License-Identifier: Apache-2.0
"""The upstream change in platform/ applies to vLLM 0.32.0 and makes the core
selector ask the platform for Mamba-like backends by itself."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

PATCH = Path(__file__).resolve().parents[2] / "platform" / "0001-platform-get-mamba-backend-cls.patch"
PATCHED_FILES = ("vllm/platforms/interface.py", "vllm/v1/attention/selector.py")

# Resolves backends through the selector alone: no general plugin is loaded,
# so nothing is registered with register_backend.
SELECT = """
import json, vllm
from vllm.platforms import current_platform
from vllm.v1.attention.backends.registry import MambaAttentionBackendEnum
from vllm.v1.attention.selector import get_mamba_attn_backend
print(json.dumps({
    "vllm": vllm.__file__,
    "backends": {m.name: get_mamba_attn_backend(m).__module__
                 for m in MambaAttentionBackendEnum if m.value is not None},
    "overridden": [m.name for m in MambaAttentionBackendEnum if m.is_overridden()],
}))
"""


def _patched_copy(root: Path) -> Path:
    """A copy of the installed vllm package (files linked, the patched ones
    copied) with the patch applied; returns the directory to put on PYTHONPATH."""
    installed = Path(importlib.util.find_spec("vllm").submodule_search_locations[0])
    site = root / "site"
    shutil.copytree(
        installed,
        site / "vllm",
        copy_function=os.symlink,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    for rel in PATCHED_FILES:
        (site / rel).unlink()
        shutil.copyfile(installed.parent / rel, site / rel)
    subprocess.run(["patch", "-p1", "--quiet", "-i", str(PATCH)], cwd=site, check=True)
    return site


def test_patched_selector_asks_platform(tmp_path, run_python, plugin_cpu_env):
    site = _patched_copy(tmp_path)
    done = run_python(SELECT, env={**plugin_cpu_env, "PYTHONPATH": str(site)})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["vllm"].startswith(str(site))
    assert result["overridden"] == []
    assert set(result["backends"]) == {"MAMBA1", "MAMBA2", "SHORT_CONV", "LINEAR", "GDN_ATTN"}
    for name, module in result["backends"].items():
        assert module.startswith("vllm_xpu_hybrid.backends."), name


def test_patched_selector_keeps_defaults_for_other_platforms(tmp_path, run_python):
    site = _patched_copy(tmp_path)
    done = run_python(SELECT, env={"PYTHONPATH": str(site)})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for name, module in result["backends"].items():
        assert module.startswith("vllm.v1.attention.backends."), name


def test_unpatched_selector_ignores_platform(run_python, plugin_cpu_env):
    """Why the plugin needs its hook until the change lands upstream."""
    done = run_python(SELECT, env=plugin_cpu_env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert all(m.startswith("vllm.v1.") for m in result["backends"].values())
