# SPDX-License-Identifier: Apache-2.0
"""The launchers' host-side integer helpers equal Triton's own."""

from __future__ import annotations

import triton

from vllm_xpu_hybrid.ops.launch import cdiv, dot_block, next_power_of_2


def test_next_power_of_2_equals_triton():
    for n in [*range(4100), 2**31 - 1, 2**31, 2**31 + 1, 10**12]:
        assert next_power_of_2(n) == triton.next_power_of_2(n), n


def test_cdiv_equals_triton():
    for a in [*range(300), 2**31 + 5, 10**12 + 3]:
        for b in (1, 2, 3, 16, 64, 127, 256):
            assert cdiv(a, b) == triton.cdiv(a, b), (a, b)


def test_dot_block_is_a_power_of_two_of_at_least_16():
    assert [dot_block(n) for n in (1, 16, 17, 64, 80, 128, 129)] == [16, 16, 32, 64, 128, 128, 256]
