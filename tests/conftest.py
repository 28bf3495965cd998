# SPDX-License-Identifier: Apache-2.0
"""Shared test set-up.

Without a GPU the plugin's Triton kernels run under Triton's interpreter,
which must be switched on before any kernel module is imported: Triton
decides at decoration time whether a ``@triton.jit`` function is interpreted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch


def _gpu_device_type() -> str | None:
    if torch.cuda.is_available():
        return "cuda"
    if hasattr(torch, "xpu") and torch.xpu.is_available():
        return "xpu"
    return None


if _gpu_device_type() is None:
    os.environ["TRITON_INTERPRET"] = "1"


@pytest.fixture
def device() -> str:
    """"cuda" or "xpu" when a GPU is present, else "cpu" (Triton's interpreter)."""
    return _gpu_device_type() or "cpu"


class LaunchSpy:
    """Stands in for a module's kernel launcher: passes every call on and
    keeps its arguments (the grid first)."""

    def __init__(self, launch):
        self.launch = launch
        self.calls: list[tuple] = []

    def __call__(self, *args):
        self.calls.append(args)
        return self.launch(*args)

    @property
    def launches(self) -> int:
        return len(self.calls)

    @property
    def grid(self):
        """The last launch's grid."""
        return self.calls[-1][0]


@pytest.fixture
def launch_spy(monkeypatch):
    """launch_spy(module, name): module.name replaced by a LaunchSpy of it
    for the test; returns the spy."""

    def install(module, name: str) -> LaunchSpy:
        spy = LaunchSpy(getattr(module, name))
        monkeypatch.setattr(module, name, spy)
        return spy

    return install


def _run_python(code: str, env: dict[str, str] | None = None, timeout: int = 600):
    full_env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("VLLM_PLUGINS", "VLLM_XPU_HYBRID_"))
    }
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", code],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _run_cli(*args: str, env: dict[str, str] | None = None, timeout: int = 900):
    code = (
        "import sys; from vllm_xpu_hybrid.cli import main; "
        f"sys.exit(main({list(args)!r}))"
    )
    return _run_python(code, env=env, timeout=timeout)


@pytest.fixture(scope="session")
def run_python():
    """Run Python code in a fresh interpreter (vLLM resolves its platform once
    per process): ``run_python(code, env=None, timeout=600)`` adds ``env`` to
    a copy of the environment cleared of the plugin's variables and returns
    the completed process, stdout and stderr as text."""
    return _run_python


@pytest.fixture(scope="session")
def run_cli():
    """``run_cli(*args, env=None, timeout=900)``: ``vllm-xpu-hybrid ARGS`` in
    a fresh interpreter, as ``run_python`` runs code."""
    return _run_cli


@pytest.fixture(scope="session")
def plugin_cpu_env() -> dict[str, str]:
    """The environment that makes the plugin's CPU platform current."""
    return {"VLLM_PLUGINS": "xpu_hybrid", "VLLM_XPU_HYBRID_DEVICE": "cpu"}


@pytest.fixture(scope="session")
def parse_json():
    """``parse_json(stdout)``: the JSON document a command printed last, after
    any log lines."""

    def parse(stdout: str):
        start = stdout.rfind("\n{\n")
        return json.loads(stdout[start + 1 :] if start >= 0 else stdout)

    return parse


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """``tiny_model(arch, **overrides) -> str``: the directory of a tiny
    random-weight model with a local tokenizer, built once per session for
    each (arch, overrides)."""
    from vllm_xpu_hybrid.tiny_models import build_tiny_model

    root = tmp_path_factory.mktemp("tiny-models")
    built: dict[tuple, str] = {}

    def get(arch: str, **overrides) -> str:
        key = (arch, tuple(sorted(overrides.items())))
        if key not in built:
            name = "-".join([arch, *(f"{k}={v}" for k, v in key[1])])
            built[key] = str(build_tiny_model(arch, root / name, overrides or None))
        return built[key]

    return get
