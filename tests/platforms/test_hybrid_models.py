# SPDX-License-Identifier: Apache-2.0
"""For a tiny model of every supported architecture, built by the real vLLM
0.32 with the plugin's CPU platform current: which backend each layer got,
and the block and page sizes the platform chose (prefix caching off and on).
"""

from __future__ import annotations

import importlib.util
import json
import math

import pytest

from vllm_xpu_hybrid.tiny_models import REMOTE_CODE_ARCHS, TINY_ARCHS

ATTENTION_BACKEND = "vllm_xpu_hybrid.backends.attention.HybridAttentionBackend"
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
CPU_DEFAULT_BLOCK_SIZE = 128  # vLLM's CPU platform sets it when none is given
KERNEL_BLOCK_MULTIPLE = 16
MAX_MODEL_LEN = 2048

# vLLM 0.32's Qwen3.5 module imports transformers' Qwen2-VL image processor,
# which imports torchvision; PyPI has no torchvision build for torch 2.13 CPU
# (the CI install removes the mismatched one). On XPU hosts it is present.
ARCHS = [
    arch
    for arch in TINY_ARCHS
    if not (arch.startswith("qwen3_5") and importlib.util.find_spec("torchvision") is None)
]
ARCH_PARAMS = [
    pytest.param(
        arch,
        marks=pytest.mark.skipif(
            arch not in ARCHS,
            reason="vLLM 0.32 imports Qwen3.5 through torchvision, which has no "
            "build for torch 2.13 CPU on PyPI",
        ),
    )
    for arch in TINY_ARCHS
]

REPORT_ALL = """
import json, sys
from vllm_xpu_hybrid.info import model_report
reports = {}
for arch, path in json.loads(sys.argv[1]).items():
    reports[arch] = [
        model_report(path, prefix_caching=c, max_model_len=%d,
                     trust_remote_code=arch in %r)
        for c in (False, True)
    ]
print("REPORTS " + json.dumps(reports))
""" % (MAX_MODEL_LEN, sorted(REMOTE_CODE_ARCHS))


@pytest.fixture(scope="module")
def reports(tiny_model, run_python, plugin_cpu_env):
    paths = {arch: tiny_model(arch) for arch in ARCHS}
    code = REPORT_ALL.replace("sys.argv[1]", repr(json.dumps(paths)))
    done = run_python(code, env=plugin_cpu_env, timeout=1200)
    assert done.returncode == 0, done.stderr[-4000:]
    line = next(l for l in done.stdout.splitlines() if l.startswith("REPORTS "))
    return json.loads(line.removeprefix("REPORTS "))


def _state_bytes(layer) -> int:
    return sum(
        math.prod(shape) * DTYPE_BYTES[dtype]
        for shape, dtype in zip(layer["state_shapes"], layer["state_dtypes"])
    )


# Mamba-like layer types whose compute the plugin's layers own.
PLUGIN_LAYER_TYPES = {"MAMBA2", "SHORT_CONV", "LINEAR"}


@pytest.mark.parametrize("arch", ARCH_PARAMS)
def test_every_layer_served_by_plugin(reports, arch):
    for report in reports[arch]:
        assert report["layers"], arch
        for layer in report["layers"]:
            if "mamba_type" in layer:
                assert layer["backend"].startswith("vllm_xpu_hybrid.backends."), layer
                if layer["mamba_type"] in PLUGIN_LAYER_TYPES:
                    assert layer["class"].startswith("vllm_xpu_hybrid.layers."), layer
            else:
                assert layer["backend"] == ATTENTION_BACKEND, layer
        for kind, backend in report["layer_backends"].items():
            assert backend.startswith("vllm_xpu_hybrid.backends."), kind


@pytest.mark.parametrize("arch", ARCH_PARAMS)
def test_page_sizes_share_one_block(reports, arch):
    for report in reports[arch]:
        attention = [l for l in report["layers"] if "mamba_type" not in l]
        mamba = [l for l in report["layers"] if "mamba_type" in l]
        block_size = report["block_size"]
        assert block_size % KERNEL_BLOCK_MULTIPLE == 0
        for layer in attention:
            per_token = 2 * layer["num_kv_heads"] * layer["head_size"] * DTYPE_BYTES[layer["kv_dtype"]]
            assert layer["page_size_bytes"] == block_size * per_token
        for layer in mamba:
            assert layer["state_bytes"] == _state_bytes(layer)
        if mamba and report["prefix_caching"]:
            assert report["mamba_cache_mode"] == "align"
            if attention:
                assert report["mamba_block_size"] == block_size
        elif mamba:
            assert report["mamba_cache_mode"] == "none"
            assert report["mamba_block_size"] == MAX_MODEL_LEN
        if not (attention and mamba):
            assert report["is_hybrid"] is False or not attention
            continue
        # Hybrid: one page size for all; the smallest block that holds the
        # largest Mamba state, in units of the CPU platform's block size.
        assert report["is_hybrid"]
        per_token = attention[0]["page_size_bytes"] // block_size
        largest_state = max(l["state_bytes"] for l in mamba)
        unit = CPU_DEFAULT_BLOCK_SIZE
        assert block_size == unit * math.ceil(largest_state / (unit * per_token))
        page = block_size * per_token
        assert {l["page_size_bytes"] for l in report["layers"]} == {page}
        assert report["mamba_page_size_padded"] in (None, page)
        assert all(l["state_bytes"] <= page for l in mamba)


@pytest.mark.parametrize(
    "overrides, args, message",
    [
        (
            {},
            ["--block-size", "40"],
            "--block-size 40 is not a multiple of 16; nearest sizes that work: 32 or 48",
        ),
        (
            {"chunk_size": 64},
            ["--block-size", "96"],
            "--block-size 96 cannot work: the plugin's kernels need a multiple of 64 "
            "(attention kernel granularity and, with prefix caching, the Mamba chunk "
            "size 64). Nearest sizes that do: 64 or 128.",
        ),
    ],
)
def test_unworkable_block_size_names_nearest(tiny_model, run_cli, plugin_cpu_env, overrides, args, message):
    done = run_cli("info", tiny_model("nemotron_h", **overrides), *args, env=plugin_cpu_env)
    assert done.returncode != 0
    assert message in done.stderr + done.stdout


def test_info_json(tiny_model, run_cli, parse_json, plugin_cpu_env):
    path = tiny_model("nemotron_h")
    done = run_cli("info", path, "--json", env=plugin_cpu_env)
    assert done.returncode == 0, done.stderr[-3000:]
    report = parse_json(done.stdout)
    env = report["environment"]
    assert env["platform"]["class"] == "vllm_xpu_hybrid.platforms.cpu.HybridCpuPlatform"
    assert env["platform"]["plugin_active"] and env["platform"]["triton_interpret"]
    assert env["versions"]["vllm"].startswith("0.32.") and env["versions"]["vllm_supported"]
    assert env["attention"]["backend"] == ATTENTION_BACKEND
    assert set(env["mamba"]) == {"MAMBA1", "MAMBA2", "SHORT_CONV", "LINEAR", "GDN_ATTN"}
    assert all(e["backend"].startswith("vllm_xpu_hybrid.backends.") for e in env["mamba"].values())
    off, on = report["models"]
    assert (off["prefix_caching"], on["prefix_caching"]) == (False, True)
    assert (off["mamba_cache_mode"], on["mamba_cache_mode"]) == ("none", "align")
    assert set(off["layer_backends"]) == {"attention", "MAMBA2"}
    assert on["mamba_block_size"] == on["block_size"]
