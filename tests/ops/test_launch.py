# SPDX-License-Identifier: Apache-2.0
"""The launchers' host-side integer helpers equal Triton's own."""

from __future__ import annotations

import triton

from vllm_xpu_hybrid.ops.launch import cdiv, next_power_of_2


def test_next_power_of_2_equals_triton():
    for n in [*range(0, 4100), 2**31 - 1, 2**31, 2**31 + 1, 10**12]:
        assert next_power_of_2(n) == triton.next_power_of_2(n), n


def test_cdiv_equals_triton():
    for a in [*range(0, 300), 2**31 + 5, 10**12 + 3]:
        for b in (1, 2, 3, 16, 64, 127, 256):
            assert cdiv(a, b) == triton.cdiv(a, b), (a, b)
