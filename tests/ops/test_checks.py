# SPDX-License-Identifier: Apache-2.0
"""The launchers' shared argument checks name the argument and the fix."""

from __future__ import annotations

import pytest
import torch

from vllm_xpu_hybrid.ops import selective_state_update as ssu_module
from vllm_xpu_hybrid.ops.checks import check_dtype, check_shape, launch_config


def test_launch_config_picks_the_tensor_device_type():
    table = {"cpu": {"BLOCK": 4}, "cuda": {"BLOCK": 8}}
    assert launch_config(table, "x", torch.zeros(1)) is table["cpu"]


def test_launch_config_refuses_a_device_type_without_configuration():
    with pytest.raises(ValueError, match=r"x: device type 'meta' unsupported; accepted: \['cpu', 'cuda'\]"):
        launch_config({"cpu": {}, "cuda": {}}, "x", torch.zeros(1, device="meta"))


def test_a_launcher_refuses_a_device_without_configuration():
    x = torch.zeros(1, 2, 4, device="meta")
    with pytest.raises(ValueError, match=r"x: device type 'meta' unsupported; accepted: \['cpu', 'cuda', 'xpu'\]"):
        ssu_module.selective_state_update(x, x, x, x, x, x, x)


def test_check_dtype_and_shape_name_the_argument():
    with pytest.raises(ValueError, match=r"dt: dtype torch.int32 unsupported; accepted: \(torch.float16"):
        check_dtype("dt", torch.zeros(2, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"A: expected shape \(3,\) \(\[nheads\]\), got \(2,\)"):
        check_shape("A", torch.zeros(2), (3,), "[nheads]")
    check_dtype("dt", torch.zeros(2, dtype=torch.bfloat16))
    check_shape("A", torch.zeros(3), (3,), "[nheads]")
