# SPDX-License-Identifier: Apache-2.0
"""The plugin's replacements for vLLM's Mamba-like layers: one module per
replaced layer (:mod:`.mamba_mixer`, :mod:`.mamba_mixer2`, :mod:`.short_conv`),
each a subclass of vLLM's layer that keeps vLLM's parameters, weight loading
and state shapes and computes with the plugin's kernels; :mod:`.mamba_step`
holds what they share.

Nothing registers on import: :func:`vllm_xpu_hybrid.hooks.install` registers
these classes with ``PluggableLayer.register_oot`` only while the plugin's
platform is current.
"""
