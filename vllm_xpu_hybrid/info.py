# SPDX-License-Identifier: Apache-2.0
"""``vllm-xpu-hybrid info``: what the plugin does on this machine, and for a
model, which backend serves each layer type and how the KV cache is paged.

The model part builds the model's layers (on the ``meta`` device: no weights
are read or allocated) in this process, exactly as a vLLM worker would, then
asks the current platform to choose the block size.
"""

from __future__ import annotations

import importlib.metadata
import os
import socket
from typing import Any

import torch


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment_report() -> dict[str, Any]:
    """Device, versions, the active platform and the backend for attention
    and for each Mamba-like layer type, with the reason for each."""
    import triton
    from vllm.platforms import current_platform
    from vllm.plugins import load_general_plugins
    from vllm.v1.attention.backends.registry import MambaAttentionBackendEnum

    from vllm_xpu_hybrid import activation
    from vllm_xpu_hybrid.platforms.hybrid import ATTENTION_BACKEND, HybridPlatformMixin

    load_general_plugins()
    active = isinstance(current_platform, HybridPlatformMixin)
    platform_cls = type(current_platform)
    xpu_reason = activation.xpu_unavailable_reason()
    report: dict[str, Any] = {
        "device": {
            "requested": activation.requested_device(),
            "xpu_available": xpu_reason is None,
            "xpu_unavailable_reason": xpu_reason,
            "cuda_available": torch.cuda.is_available(),
        },
        "versions": {
            "vllm_xpu_hybrid": _package_version("vllm-xpu-hybrid"),
            "vllm": activation.installed_vllm_version(),
            "vllm_supported": activation.vllm_version_supported(
                activation.installed_vllm_version()
            ),
            "torch": torch.__version__,
            "triton": triton.__version__,
            "vllm_xpu_kernels": _package_version("vllm-xpu-kernels"),
        },
        "platform": {
            "class": f"{platform_cls.__module__}.{platform_cls.__qualname__}",
            "plugin_active": active,
            "triton_interpret": os.environ.get("TRITON_INTERPRET") == "1",
        },
    }
    if active:
        why = f"the plugin's {current_platform.device_type} platform is current"
        attention = {"backend": ATTENTION_BACKEND, "why": why}
    else:
        why = (
            "the plugin is inactive ("
            + (
                "unsupported vLLM version"
                if not report["versions"]["vllm_supported"]
                else f"{activation.DEVICE_ENV}={activation.requested_device()}: "
                + (xpu_reason or "not selected")
            )
            + "); vLLM's own choice"
        )
        attention = {"backend": "chosen by vLLM's platform per layer", "why": why}
    report["attention"] = attention
    report["mamba"] = {
        member.name: {
            "backend": member.get_path(),
            "why": why
            if member.get_path().startswith("vllm_xpu_hybrid.") or not active
            else "the plugin does not serve this type; vLLM's default",
        }
        for member in MambaAttentionBackendEnum
        if member.value is not None
    }
    return report


def _init_single_process_group() -> None:
    """One-rank process groups, as a worker has, so model layers can be built.

    The model-parallel groups depend on the current config (an expert group
    exists only for MoE models), so they are made anew for each model.
    """
    from vllm.distributed import parallel_state

    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    else:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        parallel_state.init_distributed_environment(
            world_size=1,
            rank=0,
            local_rank=0,
            distributed_init_method=f"tcp://127.0.0.1:{port}",
            backend="gloo",
        )
    parallel_state.initialize_model_parallel(1, 1)


def model_report(model_dir: str, prefix_caching: bool, **engine_kwargs) -> dict[str, Any]:
    """Build the model's layers and report, per layer type, the backend and
    page sizes, and the block sizes the current platform chose.

    ``engine_kwargs`` go to ``vllm.EngineArgs`` (e.g. ``block_size=64``,
    ``trust_remote_code=True``).
    """
    from vllm.config.vllm import get_layers_from_vllm_config, set_current_vllm_config
    from vllm.engine.arg_utils import EngineArgs
    from vllm.model_executor.layers.attention_layer_base import AttentionLayerBase
    from vllm.model_executor.model_loader.utils import initialize_model
    from vllm.platforms import current_platform
    from vllm.v1.kv_cache_interface import MambaSpec

    from vllm_xpu_hybrid.platforms.hybrid import layer_backends

    engine_kwargs.setdefault("max_model_len", 2048)
    args = EngineArgs(
        model=model_dir,
        enable_prefix_caching=prefix_caching,
        enforce_eager=True,
        **engine_kwargs,
    )
    vllm_config = args.create_engine_config()
    with set_current_vllm_config(vllm_config):
        _init_single_process_group()
        with torch.device("meta"):
            initialize_model(vllm_config=vllm_config)
        current_platform.update_block_size_for_backend(vllm_config)
        cache = vllm_config.cache_config
        layers = []
        for name, layer in get_layers_from_vllm_config(
            vllm_config, AttentionLayerBase  # type: ignore[type-abstract]
        ).items():
            spec = layer.get_kv_cache_spec(vllm_config)
            if spec is None:
                continue
            entry: dict[str, Any] = {
                "name": name,
                "class": _class_path(type(layer)),
                "backend": _class_path(layer.get_attn_backend()),
                "page_size_bytes": spec.page_size_bytes,
            }
            if isinstance(spec, MambaSpec):
                entry["mamba_type"] = layer.mamba_type.name
                entry["state_shapes"] = [list(shape) for shape in spec.shapes]
                entry["state_dtypes"] = [str(d).removeprefix("torch.") for d in spec.dtypes]
                entry["state_bytes"] = spec.real_page_size_bytes
            else:
                entry["num_kv_heads"] = spec.num_kv_heads
                entry["head_size"] = spec.head_size
                entry["kv_dtype"] = str(spec.dtype).removeprefix("torch.")
            layers.append(entry)
        return {
            "model": model_dir,
            "architecture": vllm_config.model_config.architecture,
            "is_hybrid": vllm_config.model_config.is_hybrid,
            "prefix_caching": prefix_caching,
            "mamba_cache_mode": cache.mamba_cache_mode,
            "block_size": cache.block_size,
            "mamba_block_size": cache.mamba_block_size,
            "mamba_page_size_padded": cache.mamba_page_size_padded,
            "layer_backends": layer_backends(vllm_config),
            "layers": layers,
        }


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def format_text(report: dict[str, Any]) -> str:
    """The report as plain text for people."""
    lines = []
    env = report["environment"]
    device = env["device"]
    lines.append(
        f"device: requested {device['requested']}; XPU "
        + ("available" if device["xpu_available"] else f"unavailable ({device['xpu_unavailable_reason']})")
    )
    lines.append(
        "versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    )
    platform = env["platform"]
    lines.append(
        f"platform: {platform['class']} (plugin "
        + ("active" if platform["plugin_active"] else "inactive")
        + (", Triton interpreter" if platform["triton_interpret"] else "")
        + ")"
    )
    lines.append(f"attention: {env['attention']['backend']} ({env['attention']['why']})")
    for name, entry in env["mamba"].items():
        lines.append(f"{name}: {entry['backend']} ({entry['why']})")
    for model in report.get("models", []):
        lines.append("")
        lines.append(
            f"model {model['model']} ({model['architecture']}), prefix caching "
            + ("on" if model["prefix_caching"] else "off")
            + f" (mamba cache mode {model['mamba_cache_mode']})"
        )
        classes: dict[str, set[str]] = {}
        for layer in model["layers"]:
            classes.setdefault(layer.get("mamba_type", "attention"), set()).add(layer["class"])
        for kind, backend in model["layer_backends"].items():
            computed_by = ", ".join(sorted(classes.get(kind, ())))
            lines.append(f"  {kind} layers: {backend}" + (f" (layer {computed_by})" if computed_by else ""))
        padded = model["mamba_page_size_padded"]
        lines.append(
            f"  block size {model['block_size']}, Mamba block size "
            f"{model['mamba_block_size']}, Mamba page "
            + ("not padded" if padded is None else f"padded to {padded} bytes")
        )
        pages: dict[str, set[int]] = {}
        for layer in model["layers"]:
            kind = layer.get("mamba_type", "attention")
            pages.setdefault(kind, set()).add(layer["page_size_bytes"])
            if "state_bytes" in layer:
                pages.setdefault(f"{kind} state (unpadded)", set()).add(layer["state_bytes"])
        for kind, sizes in pages.items():
            lines.append(f"  {kind} page bytes: {', '.join(map(str, sorted(sizes)))}")
    return "\n".join(lines)
