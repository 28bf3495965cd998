# SPDX-License-Identifier: Apache-2.0
"""Kernel benchmark: every kernel family of the plugin beside its peers
(vLLM 0.32's own Triton kernels, FLA 0.6.0) in one process, on a GPU.

``vllm-xpu-hybrid bench [--family NAME ...] [--shapes PRESET] [--out DIR]``
(or ``python -m vllm_xpu_hybrid.bench``). Layout:

- ``shapes.py``: the model presets and shape sets cases are generated from;
- ``registry.py``: Case, Work (the counting rules' units), Family, Built;
- ``families/``: one module per kernel family: case generator, counting
  rule, builder (tensors, the plugin's call, the peers', the reference);
- ``timing.py``: device timing with a cache flush, host overhead, copy
  bandwidth, the device peak table;
- ``runner.py``: check each case against the reference, then time it;
- ``report.py``: JSON, Markdown and the PNG chart;
- ``command.py``: the command line.
"""

from vllm_xpu_hybrid.bench.command import add_arguments, main, run_command

__all__ = ["add_arguments", "main", "run_command"]
