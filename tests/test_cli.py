# SPDX-License-Identifier: Apache-2.0
"""The command line's argument handling, including ``--device`` given back to
vLLM's own ``serve`` parser."""

from __future__ import annotations

import pytest

from vllm_xpu_hybrid.cli import main, split_device_flag

SERVE_PARSER = """
from vllm.entrypoints.launchers.cli_args import make_arg_parser
from vllm.utils.argparse_utils import FlexibleArgumentParser
parser = make_arg_parser(FlexibleArgumentParser())
args = parser.parse_args(["--model", "m", "--device", %r])
print("DEVICE", args.device)
"""


@pytest.mark.parametrize(
    "argv, device, rest",
    [
        (["m", "--device", "cpu", "--port", "1"], "cpu", ["m", "--port", "1"]),
        (["m", "--device=XPU"], "xpu", ["m"]),
        (["m", "--port", "1"], None, ["m", "--port", "1"]),
    ],
)
def test_split_device_flag(argv, device, rest):
    assert split_device_flag(argv) == (device, rest)


def test_invalid_device_flag_lists_choices():
    with pytest.raises(SystemExit, match="--device 'cuda' is not valid; choose one of xpu, cpu"):
        split_device_flag(["m", "--device", "cuda"])


def test_tiny_model_list(capsys):
    assert main(["tiny-model", "--list"]) == 0
    listed = capsys.readouterr().out.split()
    for arch in ("llama", "nemotron_h", "mamba", "jamba", "lfm2", "qwen3_next"):
        assert arch in listed


def test_serve_parser_accepts_device_of_active_platform(run_python, plugin_cpu_env):
    done = run_python(SERVE_PARSER % "cpu", env=plugin_cpu_env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "DEVICE cpu" in done.stdout


def test_serve_parser_rejects_other_device(run_python, plugin_cpu_env):
    done = run_python(SERVE_PARSER % "xpu", env=plugin_cpu_env)
    assert done.returncode != 0
    assert (
        "--device xpu: the active vllm-xpu-hybrid platform is cpu; set "
        "VLLM_XPU_HYBRID_DEVICE=xpu or run `vllm-xpu-hybrid serve MODEL --device xpu`"
    ) in done.stderr
