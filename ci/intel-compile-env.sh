#!/usr/bin/env bash
# Build the Intel compile environment into VENV (default .venv-intel): what
# `python -m vllm_xpu_hybrid.intel_compile` needs to compile the plugin's
# Triton kernels for Intel GPUs on a machine without one.
#
# - Debian packages: intel-opencl-icd (ocloc, Intel's graphics compiler IGC)
#   and libze-dev (Level Zero headers that Intel's Triton driver includes).
# - A venv of its own, because Intel's Triton backend (PyPI `triton-xpu`)
#   installs the `triton` package itself and must never sit beside vLLM's:
#   CPU torch (Intel's driver module imports it), triton-xpu and
#   intel-sycl-rt (the SYCL headers of the driver's C++ helper), numpy (torch
#   warns without it). Not this package: the gate imports it from the source
#   tree (PYTHONPATH), without vLLM.
#
# Idempotent and cache-friendly: apt runs only when ocloc or the headers are
# missing; the venv is reused while its stamp matches the pins below (pip's
# wheel cache serves a rebuild). Run the gate with CC=g++: the driver's helper
# is C++, which gcc does not link.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv-intel}
PINS=(torch==2.13.0+cpu triton-xpu==3.3.0b1 intel-sycl-rt==2025.3.3 numpy)

if ! command -v ocloc >/dev/null || [ ! -e /usr/include/level_zero/ze_api.h ]; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    intel-opencl-icd libze-dev g++ >/dev/null
fi

stamp="$VENV/.intel-compile-pins"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "${PINS[*]}" ]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q "${PINS[@]}"
  echo "${PINS[*]}" > "$stamp"
fi
"$VENV/bin/python" -c "import importlib.metadata as m; print('intel compile env:', ', '.join(f'{p} {m.version(p)}' for p in ('torch', 'triton-xpu')))"
