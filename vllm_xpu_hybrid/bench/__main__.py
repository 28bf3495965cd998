# SPDX-License-Identifier: Apache-2.0
import sys

from vllm_xpu_hybrid.bench.command import main

sys.exit(main())
