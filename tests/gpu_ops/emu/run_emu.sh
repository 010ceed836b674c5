#!/usr/bin/env bash
# Build and run the attention kernels on the CPU emulator (no GPU needed).
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=${OH_EMU_OUT:-/tmp/oh_attention_emu}
mkdir -p "$out"
EMU="-DOH_EMU -include kernels/cuda/dev/emu/cuda_emu.h"
# OH_EMU_ASAN=1: AddressSanitizer, device buffers of exact size (overruns are reported)
LASAN=""
if [ "${OH_EMU_ASAN:-0}" = 1 ]; then
  EMU="$EMU -fsanitize=address -fno-omit-frame-pointer -DOH_EMU_EXACT_ALLOC" LASAN=-fsanitize=address out=$out-asan
  mkdir -p "$out"
  export ASAN_OPTIONS=detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS} # the emulator keeps its fiber stacks
fi
CBLAS_INC=$(ls -d /usr/include/x86_64-linux-gnu/openblas-pthread /usr/include/openblas 2>/dev/null | head -1 || true)
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
g++ $LASAN -o "$out/attention_emu" "$out/attention_emu.o" "$out/attention.o" $common
g++ $LASAN -o "$out/ops_emu" "$out/ops_emu.o" "$out/norms.o" "$out/elementwise.o" "$out/adamw.o" "$out/cross_entropy.o" $common
"$out/attention_emu"
"$out/ops_emu"
