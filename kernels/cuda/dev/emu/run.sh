#!/usr/bin/env bash
# Build the GDN kernels for the CPU emulator and run the checks (no GPU needed).
# usage: kernels/cuda/dev/emu/run.sh [emu_gdn arguments]   (OUT dir: $EMU_OUT or /tmp/oh_emu)
set -euo pipefail
cd "$(dirname "$0")/../../../.."
out="${EMU_OUT:-/tmp/oh_emu}"
mkdir -p "$out"
flags="-std=c++17 -O2 -g -DOH_EMU -U_FORTIFY_SOURCE -I. -include kernels/cuda/dev/emu/cuda_emu.h -Wall -Wno-unused-function -Wno-unknown-pragmas -Wno-psabi ${EMU_CXXFLAGS:-}"
g++ $flags -x c++ -c kernels/cuda/gdn.cu -o "$out/gdn.o"
g++ $flags -x c++ -c kernels/cuda/dev/emu/emu_gdn.cpp -o "$out/emu_gdn.o"
g++ ${EMU_CXXFLAGS:-} "$out/gdn.o" "$out/emu_gdn.o" -o "$out/emu_gdn"
exec "$out/emu_gdn" "$@"
