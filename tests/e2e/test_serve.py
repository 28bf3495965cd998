# SPDX-License-Identifier: Apache-2.0
"""``vllm-xpu-hybrid serve`` (vLLM's own ``vllm serve``) answers OpenAI
requests over real HTTP on localhost with the plugin's CPU platform."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
import requests

pytestmark = pytest.mark.slow

STARTUP_SECONDS = 600


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(tiny_model, tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_XPU_HYBRID_")}
    env["VLLM_PLUGINS"] = "xpu_hybrid"
    log = open(tmp_path / "server.log", "w")
    process = subprocess.Popen(
        [
            sys.executable, "-m", "vllm_xpu_hybrid.cli", "serve", tiny_model("llama"),
            "--device", "cpu", "--host", "127.0.0.1", "--port", str(port),
            "--enforce-eager", "--max-model-len", "512", "--kv-cache-memory-bytes", "268435456",
            "--served-model-name", "tiny-llama",
        ],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_SECONDS
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited with {process.returncode}:\n" + (tmp_path / "server.log").read_text()[-4000:])
            try:
                if requests.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("server did not become healthy:\n" + (tmp_path / "server.log").read_text()[-4000:])
            time.sleep(2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def test_completions_over_http(server):
    response = requests.post(
        f"{server}/v1/completions",
        json={"model": "tiny-llama", "prompt": "The quick brown fox", "max_tokens": 8,
              "temperature": 0.0, "ignore_eos": True},
        timeout=300,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "tiny-llama"
    assert body["usage"]["completion_tokens"] == 8
    assert isinstance(body["choices"][0]["text"], str) and body["choices"][0]["text"]
