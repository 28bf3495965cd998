# SPDX-License-Identifier: Apache-2.0
"""Parity of the Mamba-2 and ShortConv models with prefix caching on
(mamba_cache_mode "align"): pass 1 writes the block-boundary checkpoint
states (Mamba-2: inside the prefill, by the conv and SSD kernels), pass 2
resumes from them. The cases and the check: mamba_parity_cases.py."""

from __future__ import annotations

import pytest
from mamba_parity_cases import CASES, check_parity

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("arch, overrides, layer", CASES)
def test_parity_with_plugin_layers(tiny_model, run_cli, plugin_cpu_env, arch, overrides, layer):
    check_parity(
        run_cli, plugin_cpu_env, tiny_model(arch, **overrides), layer, "--prefix-caching"
    )
