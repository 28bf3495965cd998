# SPDX-License-Identifier: Apache-2.0
"""Host-side launch arithmetic shared by the kernel launchers.

Triton 3.6 and later define ``triton.cdiv`` and ``triton.next_power_of_2``
as constexpr functions, whose wrapper costs microseconds per call from host
code (about 3 µs each on the development CPU); a decode launcher makes
several such calls per step, against a host budget of 20 µs per call. These
are the same integer functions in plain Python.
"""

from __future__ import annotations


def cdiv(a: int, b: int) -> int:
    """ceil(a / b) for integers, b > 0."""
    return -(-a // b)


def next_power_of_2(n: int) -> int:
    """The smallest power of two >= n for n >= 1; 0 for n = 0 (as Triton's)."""
    return 1 << (n - 1).bit_length() if n > 0 else 0


def dot_block(size: int) -> int:
    """A tile covering size elements along a tl.dot dimension: size padded to
    a power of two, at least 16 (the smallest dot dimension)."""
    return max(16, next_power_of_2(size))


# A launch grid's second and third dimensions hold at most 65535 programs on
# CUDA; the launchers put counts there that a vLLM setting bounds.
MAX_GRID_YZ = 65535


def check_grid_dim(name: str, count: int, what: str, fix: str) -> None:
    """Refuse a call whose ``count`` (of ``what``, from argument ``name``)
    would overflow a grid dimension, naming the vLLM setting that bounds it."""
    if count > MAX_GRID_YZ:
        raise ValueError(
            f"{name}: {count} {what} in one call; at most {MAX_GRID_YZ} "
            f"(a launch grid dimension): {fix}"
        )
