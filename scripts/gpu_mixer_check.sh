#!/usr/bin/env bash
# GPU check of the GDN mixer's gates and conv1d + SiLU kernels
# (kernels/cuda/gdn_mixer.*): the test program against the CPU reference.
# Logs go under $OUT (default out/gdn_mixer); the summary is printed last.
#
#   bash scripts/gpu_mixer_check.sh --build      # here (the dev machine): build into build-mixer/
#   bash scripts/gpu_mixer_check.sh              # on the GPU machine, with build-mixer carried
#   bash scripts/gpu_mixer_check.sh --sanitize   # also compute-sanitizer memcheck + racecheck on --quick
#   bash scripts/gpu_mixer_check.sh --emu        # the test under the CPU emulator (no GPU needed)
#   option --quick: only the small cases (and no timing; without it the test
#   program also times the ops at the 7B shapes, T 8192: --bench 8192)
#
# The program is built with nvcc directly (no top-level CMake: the GPU machine
# lacks the Debian headers the project configures with); at run time it needs
# only libopenblas (libcudart is linked statically).  The CMake route is
# kernels/cuda/CMakeLists.gpu.cmake (target oh_gpu_test_gdn_mixer).
set -uo pipefail
cd "$(dirname "$0")/.."
. kernels/cuda/dev/emu/emu_env.sh # cblas_dir; OH_EMU_ASAN=1 flags for --emu
BIN=${OH_MIXER_BIN:-build-mixer}
OUT=${OUT:-out/gdn_mixer}
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
build=0 quick="" sanitize=0 emu=0
for a in "$@"; do
  case "$a" in
    --build) build=1 ;;
    --quick) quick=--quick ;;
    --sanitize) sanitize=1 ;;
    --emu) emu=1 ;;
    *) echo "usage: $0 [--build] [--quick] [--sanitize] [--emu]" >&2; exit 2 ;;
  esac
done


do_build() {
  set -e
  mkdir -p "$BIN/obj"
  local arch="-gencode=arch=compute_90a,code=sm_90a"
  local nv="$NVCC -std=c++17 $arch -O3 -lineinfo --expt-relaxed-constexpr -Xcompiler -Wall,-Wextra -I."
  local cblas
  cblas=$(cblas_dir)
  $nv -Xptxas -v -c kernels/cuda/gdn_mixer.cu -o "$BIN/obj/gdn_mixer.o" 2>"$BIN/ptxas_mixer.txt" &
  $nv -c tests/gpu/test_gdn_mixer.cu -o "$BIN/obj/test_gdn_mixer.o" &
  for f in kernels/cpu/cpu_ops_f32.c util/util.c; do
    gcc -std=c11 -O2 -D_GNU_SOURCE -I. ${cblas:+-I$cblas} -c "$f" -o "$BIN/obj/$(basename "$f" .c).o" &
  done
  wait
  for o in gdn_mixer test_gdn_mixer cpu_ops_f32 util; do
    [ -f "$BIN/obj/$o.o" ] || { echo "build failed: $BIN/obj/$o.o missing" >&2; cat "$BIN/ptxas_mixer.txt" >&2; exit 1; }
  done
  $NVCC $arch -cudart static -o "$BIN/oh_gpu_test_gdn_mixer" "$BIN/obj/test_gdn_mixer.o" "$BIN/obj/gdn_mixer.o" \
    "$BIN/obj/cpu_ops_f32.o" "$BIN/obj/util.o" -lopenblas -lm
  rm -rf "$BIN/obj"
  # registers, stack and spills per kernel (the compiler's resource report)
  grep -E "Compiling entry|Used|spill" "$BIN/ptxas_mixer.txt" | sed 's/ptxas info    : //' >"$BIN/ptxas_mixer.summary" || true
  ls -la "$BIN"
  set +e
}

do_emu() {
  set -e
  local tmp=${EMU_BUILD:-/tmp/oh_mixer_emu$EMU_SUFFIX}
  mkdir -p "$tmp"
  local cblas
  cblas=$(cblas_dir)
  local gx="g++ -std=c++17 -O2 -DOH_EMU -U_FORTIFY_SOURCE -I. -include kernels/cuda/dev/emu/cuda_emu.h -Wall -Wno-unused-function -Wno-unknown-pragmas $EMU_ASAN_CFLAGS"
  $gx -x c++ -c kernels/cuda/gdn_mixer.cu -o "$tmp/gdn_mixer.o"
  $gx -x c++ -c tests/gpu/test_gdn_mixer.cu -o "$tmp/test_gdn_mixer.o"
  gcc -std=c11 -O2 -D_GNU_SOURCE -I. ${cblas:+-I$cblas} -c kernels/cpu/cpu_ops_f32.c -o "$tmp/cpu_ops_f32.o"
  g++ $EMU_ASAN_LDFLAGS -o "$tmp/test_gdn_mixer_emu" "$tmp/test_gdn_mixer.o" "$tmp/gdn_mixer.o" "$tmp/cpu_ops_f32.o" -lopenblas -lm
  set +e
  "$tmp/test_gdn_mixer_emu" $quick
}

if [ $build = 1 ]; then do_build; exit 0; fi
if [ $emu = 1 ]; then do_emu; exit $?; fi

if [ ! -x "$BIN/oh_gpu_test_gdn_mixer" ]; then
  echo "no $BIN/oh_gpu_test_gdn_mixer: building here" >&2
  do_build
fi
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv >"$OUT/gpu.txt" 2>&1
git rev-parse HEAD >"$OUT/commit.txt" 2>/dev/null || true
[ -f "$BIN/ptxas_mixer.summary" ] && cp "$BIN/ptxas_mixer.summary" "$OUT/"

status=0
bench="--bench 8192"
[ -n "$quick" ] && bench=""
"$BIN/oh_gpu_test_gdn_mixer" $quick $bench >"$OUT/test_gdn_mixer.txt" 2>&1 || status=1
if [ $sanitize = 1 ]; then
  CS=${COMPUTE_SANITIZER:-$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)}
  for tool in memcheck racecheck; do
    "$CS" --tool $tool --error-exitcode 3 "$BIN/oh_gpu_test_gdn_mixer" --quick >"$OUT/sanitize_$tool.txt" 2>&1 || status=1
  done
fi

cat "$OUT/gpu.txt"
echo "==== test_gdn_mixer: failures and summary (full table in $OUT/test_gdn_mixer.txt) ===="
grep -E "FAIL|returned|checks, |^\[bench|GB/s" "$OUT/test_gdn_mixer.txt" || tail -20 "$OUT/test_gdn_mixer.txt"
if [ $sanitize = 1 ]; then
  for tool in memcheck racecheck; do
    echo "==== compute-sanitizer $tool (--quick) ===="
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY|checks, |Error|error" "$OUT/sanitize_$tool.txt" | tail -8
  done
fi
exit $status
