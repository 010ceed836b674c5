#!/usr/bin/env bash
# Build everything, run the CPU test suite, then the CUDA kernels under the CPU
# emulator (the README's test command).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
./build/oh_tests --jobs 2 "$@"
# The CUDA kernels under the CPU emulator (kernels/cuda/dev/emu): every kernel's
# indexing, masking and synchronisation against the CPU reference, no GPU
# needed (about 2 min on 2 cores; OH_SKIP_EMU=1 skips it).  The ops and the
# GDN gates/convs run under AddressSanitizer with device buffers of exact size
# (OH_EMU_ASAN=1); the GDN recurrence runs without it here (8 min with it:
# OH_EMU_ASAN=1 bash scripts/gpu_check.sh --emu).  Their GPU runs:
# scripts/gpu_bench_all.sh on the GPU machine (README).
if [ "${OH_SKIP_EMU:-0}" != 1 ]; then
  echo "== GDN kernels under the CPU emulator"
  bash scripts/gpu_check.sh --emu | tail -3
  echo "== attention, norms, SwiGLU, embedding, AdamW, cross-entropy under the CPU emulator + AddressSanitizer"
  OH_EMU_ASAN=1 bash tests/gpu_ops/emu/run_emu.sh | tail -1
  echo "== GDN gates and convs under the CPU emulator + AddressSanitizer"
  OH_EMU_ASAN=1 bash scripts/gpu_mixer_check.sh --emu | tail -1
fi
