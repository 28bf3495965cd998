# SPDX-License-Identifier: Apache-2.0
"""What the plugin's Mamba-like layers share: the step's metadata as vLLM's
builders made it, the state views and slot indices the plugin's kernels take,
and the settings the kernels cannot serve.

Batch layout (vLLM 0.32's Mamba builders, ``BaseMambaAttentionMetadataBuilder.
_compute_common_metadata``): the ``num_decode_tokens`` decode tokens come
first, then the ``num_prefill_tokens`` prefill tokens; rows past their sum
are padding. Decode rows use ``state_indices_tensor_d[:, 0]`` (the other
columns are speculative-decoding slots), prefill rows
``state_indices_tensor_p``. Both come from the Mamba group's block table, where
vLLM reserves block 0 as the null block and pads decode rows with it
(``NULL_BLOCK_ID``, mamba_attn.py ``_update_metadata_for_cudagraph_capture``);
a real request never owns block 0, so :data:`PAD_SLOT_ID` marks padding for
prefill and decode rows alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from vllm.forward_context import get_forward_context
from vllm.logger import init_logger
from vllm.model_executor.layers.mamba.mamba_utils import is_conv_state_dim_first
from vllm.v1.attention.backends.utils import NULL_BLOCK_ID

from vllm_xpu_hybrid.ops.causal_conv1d import SUPPORTED_WIDTHS

if TYPE_CHECKING:
    from vllm.config import VllmConfig
    from vllm.v1.attention.backends.mamba_attn import BaseMambaAttentionMetadata

logger = init_logger(f"vllm.{__name__}")

# The conv activations the conv kernels apply ("swish" is silu).
CONV_ACTIVATIONS = ("silu", "swish")

# The kernels' pad_slot_id: rows with this state index read and write no state.
PAD_SLOT_ID = NULL_BLOCK_ID


def step_metadata(layer_name: str) -> BaseMambaAttentionMetadata | None:
    """The layer's metadata for this step, or None in vLLM's profile run
    (no metadata: the output's values do not matter)."""
    per_layer = get_forward_context().attn_metadata
    if per_layer is None:
        return None
    assert isinstance(per_layer, dict)
    return per_layer.get(layer_name)


def conv_state_view(conv_pages: torch.Tensor) -> torch.Tensor:
    """The ``[num_slots, dim, width - 1]`` view of a layer's conv-state pages
    that the conv kernels take, whichever layout vLLM stores them in
    (``VLLM_SSM_CONV_STATE_LAYOUT``: "SD", the default, or "DS")."""
    return conv_pages if is_conv_state_dim_first() else conv_pages.transpose(-1, -2)


def decode_state_indices(metadata: BaseMambaAttentionMetadata) -> torch.Tensor:
    """Contiguous ``[num_decodes]`` state slots of the decode rows."""
    assert metadata.state_indices_tensor_d is not None
    return metadata.state_indices_tensor_d[: metadata.num_decodes, 0].contiguous()


def prefill_state_indices(metadata: BaseMambaAttentionMetadata) -> torch.Tensor:
    """Contiguous ``[num_prefills]`` state slots of the prefill rows."""
    assert metadata.state_indices_tensor_p is not None
    return metadata.state_indices_tensor_p.contiguous()


def unsupported_settings(vllm_config: VllmConfig, tp_size: int) -> list[str]:
    """Engine settings no plugin Mamba-like layer serves yet, each naming the
    value and the fix; empty when none is set."""
    problems = []
    num_spec = vllm_config.num_speculative_tokens
    if num_spec:
        problems.append(
            f"speculative decoding (num_speculative_tokens={num_spec}): the "
            "kernels take one token per decode row; drop --speculative-config"
        )
    if tp_size != 1:
        problems.append(
            f"tensor parallelism (tensor_parallel_size={tp_size}): the layers "
            "are built for one rank; use --tensor-parallel-size 1"
        )
    if vllm_config.cache_config.use_replayssm:
        problems.append(
            "ReplaySSM (--use-replayssm): the decode kernels store the full "
            "state every step; drop --use-replayssm"
        )
    return problems


def refuse(layer_kind: str, problems: list[str]) -> None:
    """Raise one error listing every problem, if there is any."""
    if problems:
        raise ValueError(
            f"vllm-xpu-hybrid's {layer_kind} layer cannot serve this "
            "configuration: " + "; ".join(problems) + "."
        )


def serve_or_refuse(layer: object, layer_kind: str, problems: list[str]) -> None:
    """At a plugin layer's construction: raise one error listing every
    problem, if there is any; else say once which class computes the layers
    of the vLLM class it replaces."""
    refuse(layer_kind, problems)
    cls = type(layer)
    logger.info_once(
        "vllm-xpu-hybrid: %s layers -> %s.%s (the plugin's kernels).",
        cls.__bases__[0].__name__,
        cls.__module__,
        cls.__qualname__,
    )


def conv_problems(
    width_setting: str, width: int, activation_setting: str | None = None, activation=None
) -> list[str]:
    """What the conv kernels cannot serve: a width outside SUPPORTED_WIDTHS,
    an activation other than silu; each named by its model setting."""
    problems = []
    if width not in SUPPORTED_WIDTHS:
        problems.append(
            f"{width_setting} {width} (supported: {', '.join(map(str, SUPPORTED_WIDTHS))})"
        )
    if activation_setting is not None and activation not in CONV_ACTIVATIONS:
        problems.append(
            f"{activation_setting} {activation!r} (supported: {', '.join(CONV_ACTIVATIONS)})"
        )
    return problems
