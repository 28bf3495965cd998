# SPDX-License-Identifier: Apache-2.0
"""Dtypes and argument checks shared by the kernel launchers (run once per
call, before any kernel launches)."""

from __future__ import annotations

import torch

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
INDEX_DTYPES = (torch.int32, torch.int64)
FLAG_DTYPES = (torch.bool, torch.int32)


def check_dtype(name: str, t: torch.Tensor, accepted: tuple = SUPPORTED_DTYPES) -> None:
    """t's dtype is one of accepted (by default a float operand's)."""
    if t.dtype not in accepted:
        raise ValueError(f"{name}: dtype {t.dtype} unsupported; accepted: {accepted}")


def check_shape(name: str, t: torch.Tensor, expected: tuple, what: str) -> None:
    """t's shape is expected (described as what in the message)."""
    if t.shape != expected:
        raise ValueError(f"{name}: expected shape {tuple(expected)} ({what}), got {tuple(t.shape)}")


def device_type(t: torch.Tensor) -> str:
    """t.device.type, without building the device object for CUDA and XPU
    tensors (a decode launcher's host budget is 20 µs; ``t.device.type``
    takes about 0.25 µs, ``t.is_cuda`` 0.04 µs on the development CPU)."""
    return "cuda" if t.is_cuda else "xpu" if t.is_xpu else t.device.type


def launch_config(table: dict[str, dict], name: str, t: torch.Tensor) -> dict:
    """A kernel module's LAUNCH_CONFIGS entry for the device type of t
    (argument name), or a ValueError naming the device types it has."""
    config = table.get(device_type(t))
    if config is None:
        raise ValueError(
            f"{name}: device type {t.device.type!r} unsupported; accepted: {sorted(table)}"
        )
    return config


def check_vector(name: str, t: torch.Tensor, length: int, dtypes: tuple) -> None:
    """Per-sequence or per-chunk metadata: the kernels read it with stride 1."""
    if t.dtype not in dtypes or t.shape != (length,) or (length > 1 and t.stride(0) != 1):
        raise ValueError(
            f"{name}: expected a contiguous tensor of shape ({length},) and dtype in {dtypes}, "
            f"got shape {tuple(t.shape)} stride {tuple(t.stride())} {t.dtype}"
        )


def check_checkpoints(
    positions_name: str,
    positions: torch.Tensor | None,
    state_indices: torch.Tensor | None,
    num_seqs: int,
) -> None:
    """Prefix-caching checkpoints: a position per sequence (a token count or
    a chunk index) and the state page each is written to, both or neither."""
    if (positions is None) != (state_indices is None):
        raise ValueError(f"{positions_name}, checkpoint_state_indices: pass both or neither")
    if positions is not None:
        check_vector(positions_name, positions, num_seqs, INDEX_DTYPES)
        check_vector("checkpoint_state_indices", state_indices, num_seqs, INDEX_DTYPES)
