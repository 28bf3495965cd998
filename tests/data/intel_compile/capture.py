# SPDX-License-Identifier: Apache-2.0
"""Regenerates this folder's captured compiler output (run in the Intel
compile environment, ci/intel-compile-env.sh, from the repository root, with
CC=g++): one 32x32 bf16 tile product (2 warps) compiled by Triton's Intel
backend for PVC and DG2 (TTGIR), and by ocloc for PVC at 128 registers (it
spills; IGC retries, so the dump holds two listings) and at 256 (no spill),
with IGC's shader dump. Listings are stored xz-compressed."""

import glob
import lzma
import os
import shutil
import subprocess
import tempfile

import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget

from vllm_xpu_hybrid.intel_compile import LARGE_GRF_FLAG, TARGETS

HERE = os.path.dirname(os.path.abspath(__file__))


@triton.jit
def tile_product_kernel(a_ptr, b_ptr, c_ptr, K, T: tl.constexpr):
    rows = tl.arange(0, T)
    acc = tl.zeros((T, T), dtype=tl.float32)
    for k in range(0, K, T):
        a = tl.load(a_ptr + rows[:, None] * K + k + rows[None, :])
        b = tl.load(b_ptr + (k + rows[:, None]) * T + rows[None, :])
        acc += tl.dot(a, b)
    tl.store(c_ptr + rows[:, None] * T + rows[None, :], acc)


def compile_for(target: str):
    source = triton.compiler.ASTSource(
        fn=tile_product_kernel,
        signature={"a_ptr": "*bf16", "b_ptr": "*bf16", "c_ptr": "*fp32", "K": "i32", "T": "constexpr"},
        constexprs={"T": 32},
    )
    return triton.compile(source, target=GPUTarget("xpu", TARGETS[target].properties, 32),
                          options={"num_warps": 2})


def main() -> None:
    for target in ("pvc", "dg2"):
        ttgir = compile_for(target).asm["ttgir"]
        with open(os.path.join(HERE, f"tile_product_{target}.ttgir"), "w") as f:
            f.write("\n".join(line for line in ttgir.splitlines() if not line.startswith("#loc")) + "\n")
    spirv = compile_for("pvc").asm["spv"]
    for folder, flags in (("pvc_128grf", ""), ("pvc_256grf", LARGE_GRF_FLAG)):
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "k.spv"), "wb") as f:
                f.write(spirv)
            env = {**os.environ, "IGC_ShaderDumpEnable": "1", "IGC_DumpToCustomDir": os.path.join(tmp, "dump")}
            log = subprocess.run(["ocloc", "compile", "-file", "k.spv", "-spirv_input", "-device", "pvc",
                                  "-options", flags, "-output", "k"], cwd=tmp, env=env, check=True,
                                 capture_output=True, text=True).stdout
            out = os.path.join(HERE, folder)
            shutil.rmtree(out, ignore_errors=True)
            os.makedirs(out)
            with open(os.path.join(out, "ocloc.log"), "w") as f:
                f.write(log)
            for listing in glob.glob(os.path.join(tmp, "dump", "*_simd*.asm")):
                with open(listing, "rb") as src, lzma.open(os.path.join(out, os.path.basename(listing) + ".xz"), "wb",
                                                           preset=9 | lzma.PRESET_EXTREME) as dst:
                    shutil.copyfileobj(src, dst)


if __name__ == "__main__":
    main()
