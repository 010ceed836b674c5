#!/usr/bin/env bash
# GPU check of the GDN kernels (kernels/cuda/gdn.*): the test program against
# the CPU reference and the naive CUDA kernel, then the benchmark (with a
# per-kernel profile) and, when a copy of FLA's fla/ folder is at the
# repository root, FLA's timing at the same shapes.  Logs go under $OUT
# (default out/gdn); the summary is printed last.
#
#   bash scripts/gpu_check.sh --build   # here (the dev machine): build into build-gdn/
#   bash scripts/gpu_check.sh           # on the GPU machine, with build-gdn carried
#   options: --quick (benchmark 1x8192 only), --no-test, --no-bench, --no-peer (skip FLA), --emu (the
#            test under the CPU emulator: no GPU needed), --sanitize (compute-sanitizer
#            memcheck on the --small test, racecheck and synccheck on a few of its cases:
#            racecheck runs ~100x slower, so it covers one case per code path)
#
# The programs are built with nvcc directly (no top-level CMake: the GPU
# machine lacks the Debian headers the project configures with); at run time
# they need only libopenblas (libcudart is linked statically).  The CMake route
# is kernels/cuda/CMakeLists.gpu.cmake (targets oh_gpu_test_gdn, oh_bench_gdn).
set -uo pipefail
cd "$(dirname "$0")/.."
. kernels/cuda/dev/emu/emu_env.sh # cblas_dir; OH_EMU_ASAN=1 flags for --emu
BIN=${OH_GDN_BIN:-build-gdn}
OUT=${OUT:-out/gdn}
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
build=0 quick="" test=1 bench=1 peer=1 emu=0 san=0
for a in "$@"; do
  case "$a" in
    --build) build=1 ;;
    --quick) quick=--quick ;;
    --no-test) test=0 ;;
    --no-bench) bench=0 ;;
    --no-peer) peer=0 ;;
    --emu) emu=1 ;;
    --sanitize) san=1 ;;
    *) echo "usage: $0 [--build] [--quick] [--no-test] [--no-bench] [--no-peer] [--emu] [--sanitize]" >&2; exit 2 ;;
  esac
done

do_build() {
  set -e
  mkdir -p "$BIN/obj"
  local arch="-gencode=arch=compute_90a,code=sm_90a"
  local nv="$NVCC -std=c++17 $arch -O3 -lineinfo --expt-relaxed-constexpr -Xcompiler -Wall,-Wextra -I."
  local cblas
  cblas=$(cblas_dir)
  $nv -Xptxas -v -c kernels/cuda/gdn.cu -o "$BIN/obj/gdn.o" 2>"$BIN/ptxas_gdn.txt" &
  $nv -c tests/gpu/test_gdn.cu -o "$BIN/obj/test_gdn.o" &
  $nv -c bench/bench_gdn.cu -o "$BIN/obj/bench_gdn.o" &
  $nv -c kernels/cuda/dev/gdn_dev.cu -o "$BIN/obj/gdn_dev.o" &
  for f in kernels/cpu/cpu_ops_f32.c util/util.c; do
    gcc -std=c11 -O2 -D_GNU_SOURCE -I. ${cblas:+-I$cblas} -c "$f" -o "$BIN/obj/$(basename "$f" .c).o" &
  done
  wait
  for o in gdn test_gdn bench_gdn gdn_dev cpu_ops_f32 util; do
    [ -f "$BIN/obj/$o.o" ] || { echo "build failed: $BIN/obj/$o.o missing" >&2; cat "$BIN/ptxas_gdn.txt" >&2; exit 1; }
  done
  local ref=("$BIN/obj/cpu_ops_f32.o" "$BIN/obj/util.o" -lopenblas -lm)
  $NVCC $arch -o "$BIN/oh_gpu_test_gdn" "$BIN/obj/test_gdn.o" "$BIN/obj/gdn.o" "${ref[@]}"
  $NVCC $arch -o "$BIN/oh_bench_gdn" "$BIN/obj/bench_gdn.o" "$BIN/obj/gdn.o"
  $NVCC $arch -o "$BIN/oh_gpu_gdn_dev" "$BIN/obj/gdn_dev.o" "$BIN/obj/gdn.o" "${ref[@]}"
  rm -rf "$BIN/obj"
  # registers, stack and spills per kernel (the compiler's resource report)
  grep -E "Compiling entry|Used|spill" "$BIN/ptxas_gdn.txt" | sed 's/ptxas info    : //' >"$BIN/ptxas_gdn.summary" || true
  ls -la "$BIN"
  set +e
}

do_emu() {
  set -e
  local tmp=${EMU_BUILD:-/tmp/oh_gdn_emu$EMU_SUFFIX}
  mkdir -p "$tmp"
  local cblas
  cblas=$(cblas_dir)
  local gx="g++ -std=c++17 -O2 ${OH_EMU_DEFS:-} -DOH_EMU -U_FORTIFY_SOURCE -I. -include kernels/cuda/dev/emu/cuda_emu.h -Wall -Wno-unused-function -Wno-unknown-pragmas -Wno-psabi $EMU_ASAN_CFLAGS"
  $gx -x c++ -c kernels/cuda/gdn.cu -o "$tmp/gdn.o"
  $gx -x c++ -c tests/gpu/test_gdn.cu -o "$tmp/test_gdn.o"
  gcc -std=c11 -O2 -D_GNU_SOURCE -I. ${cblas:+-I$cblas} -c kernels/cpu/cpu_ops_f32.c -o "$tmp/cpu_ops_f32.o"
  g++ $EMU_ASAN_LDFLAGS -o "$tmp/test_gdn_emu" "$tmp/test_gdn.o" "$tmp/gdn.o" "$tmp/cpu_ops_f32.o" -lopenblas -lm
  set +e
  "$tmp/test_gdn_emu" --small
}

if [ $build = 1 ]; then do_build; exit 0; fi
if [ $emu = 1 ]; then do_emu; exit $?; fi

if [ ! -x "$BIN/oh_gpu_test_gdn" ] || [ ! -x "$BIN/oh_bench_gdn" ]; then
  echo "no $BIN/oh_gpu_test_gdn: building here" >&2
  do_build
fi
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv >"$OUT/gpu.txt" 2>&1
# OH_COMMIT names the tree where its .git is not the tree's (the GPU machine's copy)
if [ -n "${OH_COMMIT:-}" ]; then echo "$OH_COMMIT" >"$OUT/commit.txt"; else git rev-parse HEAD >"$OUT/commit.txt" 2>/dev/null || true; fi
[ -f "$BIN/ptxas_gdn.summary" ] && cp "$BIN/ptxas_gdn.summary" "$OUT/"

status=0
# verdict of a test log: its PASS/FAIL line, or the exit status and first error when it stopped early
verdict() {  # log, exit status
  local v
  v=$(grep -E "^(PASS|FAIL)" "$1" | tail -1)
  [ -n "$v" ] && [ "$2" = 0 ] && { echo "$v"; return; }
  echo "FAIL: exit $2${v:+ ($v)}; $(grep -m1 -E "returned|error" "$1" | cut -c1-240)"
}
# the test in each launch setting: log name | environment | what the setting is
settings=(
  "test_gdn||(default)"
  "test_gdn_serial|OH_GDN_OVERLAP=0|with OH_GDN_OVERLAP=0 (kernels one after another)"
  "test_gdn_overlap_all|OH_GDN_OVERLAP=1|with OH_GDN_OVERLAP=1 (forward overlapped too)"
  "test_gdn_overlap_bwd|OH_GDN_OVERLAP=bwd|with OH_GDN_OVERLAP=bwd (backward overlapped only)"
  "test_gdn_dprep_kernel|OH_GDN_DPREP=kernel|with OH_GDN_DPREP=kernel (k_dout_prep, not the state kernel, prepares dO)"
)
verdicts=()
if [ $test = 1 ]; then
  for t in "${settings[@]}"; do
    IFS='|' read -r log envs what <<<"$t"
    env $envs "$BIN/oh_gpu_test_gdn" >"$OUT/$log.txt" 2>&1
    rc=$?
    [ $rc = 0 ] || status=1
    verdicts+=("==== test_gdn $what: $(verdict "$OUT/$log.txt" $rc)")
  done
fi
if [ $bench = 1 ]; then
  rm -f "$OUT/bench_gdn.tsv"
  "$BIN/oh_bench_gdn" $quick --tsv "$OUT/bench_gdn.tsv" >"$OUT/bench_gdn.txt" 2>&1 || status=1
  if [ $peer = 1 ]; then
    if [ -d fla ]; then
      # fla/ at the root is either FLA's package folder or a checkout holding it (fla/fla)
      PYTHONPATH="$PWD/fla:$PWD${PYTHONPATH:+:$PYTHONPATH}" python3 bench/bench_fla_gdn.py $quick --ours "$OUT/bench_gdn.tsv" \
        >"$OUT/bench_fla_gdn.txt" 2>&1 || echo "(bench_fla_gdn.py failed)" >>"$OUT/bench_fla_gdn.txt"
    else
      echo "no fla/ folder at the repository root: FLA not timed" >"$OUT/bench_fla_gdn.txt"
    fi
  fi
fi

if [ $san = 1 ]; then
  SAN=${SAN:-$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)}
  # gqa-mixed: packed documents, Hv > Hk; ksplit-gqa: K > 128 (two K blocks, k_qk_finish);
  # masked-prompt: chunks with no output gradient; nan: NaN propagation
  few="gqa-mixed,ksplit-gqa,masked-prompt,nan"
  "$SAN" --tool memcheck --leak-check full --error-exitcode 3 "$BIN/oh_gpu_test_gdn" --small >"$OUT/sanitize_memcheck.txt" 2>&1 || status=1
  "$SAN" --tool racecheck --racecheck-report all --error-exitcode 3 "$BIN/oh_gpu_test_gdn" --small --only "$few" >"$OUT/sanitize_racecheck.txt" 2>&1 || status=1
  "$SAN" --tool synccheck --error-exitcode 3 "$BIN/oh_gpu_test_gdn" --small --only "$few" >"$OUT/sanitize_synccheck.txt" 2>&1 || status=1
fi

cat "$OUT/gpu.txt"
if [ $san = 1 ]; then
  echo "==== compute-sanitizer (tool: cases; last lines) ===="
  for t in memcheck racecheck synccheck; do
    echo "-- $t: $(grep -E "^(PASS|FAIL)" "$OUT/sanitize_$t.txt" | tail -1)"
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY|LEAK SUMMARY" "$OUT/sanitize_$t.txt"
  done
fi
if [ $test = 1 ]; then
  echo "==== test_gdn: cases, failures and summary (full table in $OUT/test_gdn.txt) ===="
  grep -E "^\[|FAIL|returned|non-finite|PASS|^  (bwd|packed|out carries|the other|an injected)" "$OUT/test_gdn.txt" || tail -20 "$OUT/test_gdn.txt"
  printf '%s\n' "${verdicts[@]}"
fi
if [ $bench = 1 ]; then
  echo "==== bench_gdn ===="
  cat "$OUT/bench_gdn.txt"
  [ $peer = 1 ] && { echo "==== FLA (bench_fla_gdn.py) ===="; cat "$OUT/bench_fla_gdn.txt"; }
fi
exit $status
