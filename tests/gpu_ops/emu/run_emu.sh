#!/usr/bin/env bash
# Build and run the attention kernels on the CPU emulator (no GPU needed).
set -euo pipefail
cd "$(dirname "$0")/../../.."
. kernels/cuda/dev/emu/emu_env.sh
out=${OH_EMU_OUT:-/tmp/oh_attention_emu$EMU_SUFFIX}
mkdir -p "$out"
EMU="-DOH_EMU -include kernels/cuda/dev/emu/cuda_emu.h $EMU_ASAN_CFLAGS"
CBLAS_INC=$(cblas_dir)
CXX="g++ -std=c++17 -O1 -g -fno-strict-aliasing -Wall -Wno-unknown-pragmas -I. $EMU"
for f in attention ops_common norms elementwise adamw cross_entropy; do
  $CXX -x c++ -c "kernels/cuda/$f.cu" -o "$out/$f.o"
done
for f in kernels/cpu/cpu_ops_f32.c util/util.c; do
  gcc -std=c11 -O2 -D_GNU_SOURCE -I. ${CBLAS_INC:+-I$CBLAS_INC} -c "$f" -o "$out/$(basename "$f").o"
done
$CXX -c tests/gpu_ops/emu/attention_emu.cpp -o "$out/attention_emu.o"
$CXX -c tests/gpu_ops/emu/ops_emu.cpp -o "$out/ops_emu.o"
common="$out/ops_common.o $out/cpu_ops_f32.c.o $out/util.c.o -lopenblas -lm"
g++ $EMU_ASAN_LDFLAGS -o "$out/attention_emu" "$out/attention_emu.o" "$out/attention.o" $common
g++ $EMU_ASAN_LDFLAGS -o "$out/ops_emu" "$out/ops_emu.o" "$out/norms.o" "$out/elementwise.o" "$out/adamw.o" "$out/cross_entropy.o" $common
"$out/attention_emu"
"$out/ops_emu"
