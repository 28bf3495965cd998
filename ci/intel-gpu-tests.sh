#!/usr/bin/env bash
# NOT RUN IN THIS PROJECT'S CI: no Intel GPU is reachable here. This is the
# job a vendor with an Intel GPU runs (ci/intel-gpu-job.yml calls it): the
# whole test suite with the plugin's XPU platform active, so every kernel test
# runs compiled on the GPU (Triton's Intel backend) and the engine tests run
# vLLM on the XPU through the plugin.
#
# Needs, in the active Python: vLLM 0.32.x built for XPU, with PyTorch for XPU
# (which brings Triton's Intel backend as pytorch-triton-xpu), on a host with
# the Intel GPU driver. The plugin is installed without dependencies: its
# `triton` requirement would pull PyPI's triton over the Intel one.
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import sys, torch; sys.exit(0 if torch.xpu.is_available() else 'no Intel GPU: torch.xpu.is_available() is False')"
python -m pip install -q --no-deps -e .
extras=$(python -c "import tomllib; e = tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']; print(' '.join(e['test'] + e['xpu']))")
# shellcheck disable=SC2086  # one requirement per word
python -m pip install -q $extras
export VLLM_XPU_HYBRID_DEVICE=xpu
vllm-xpu-hybrid info
python -m pytest -q tests
