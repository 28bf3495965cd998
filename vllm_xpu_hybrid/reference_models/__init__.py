# SPDX-License-Identifier: Apache-2.0
"""transformers implementations, in plain PyTorch, of models that vLLM 0.32
serves but transformers lacks: the references ``vllm-xpu-hybrid parity``
compares vLLM against. Each module holds a config and a causal-LM class that
the tiny-model builder saves as remote code next to the checkpoint (load it
with ``trust_remote_code=True``), as the model's authors ship theirs.
"""
