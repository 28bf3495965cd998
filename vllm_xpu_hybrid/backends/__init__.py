# SPDX-License-Identifier: Apache-2.0
"""The plugin's vLLM backends: one module per backend (attention, and one
per Mamba-like layer type). The platform names them by class path."""
