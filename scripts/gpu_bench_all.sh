#!/usr/bin/env bash
# All GPU checks and benchmarks in one run, then the results page: the CUDA ops
# (scripts/gpu_ops_check.sh: tests, GEMMs, attention, fused cross-entropy and
# their PyTorch peers) and the GDN kernels (scripts/gpu_check.sh: tests,
# benchmark, FLA peer), then bench/write_results.py renders $OUT/RESULTS.md,
# which is printed last.  One part failing (or its build folder missing) does
# not stop the other; the page is written anyway and says what is missing.
#
#   here (the dev machine), build:
#     bash scripts/gpu_ops_check.sh --build && bash scripts/gpu_check.sh --build && bash scripts/gpu_mixer_check.sh --build
#   (FLA peer: a copy of fla-org/flash-linear-attention's fla/ folder at the
#   repository root, git-ignored)
#   on the GPU machine, with carry ["build-gpuops","build-gdn","build-mixer","fla"]:
#     OH_COMMIT=<commit of the tree> bash scripts/gpu_bench_all.sh [--quick] [--no-peer] [--no-bench] [--sanitize]
#   then here: copy $OUT/RESULTS.md to bench/RESULTS.md and the raw logs to
#   bench/runs/<date>-*/ ($OUT/gpu_ops -> bench/runs/<date>-ops,
#   $OUT/gdn -> bench/runs/<date>-gdn).
#
# OUT defaults to out/bench; the logs go to $OUT/gpu_ops and $OUT/gdn.
# --quick, --no-bench, --no-peer and --sanitize go to both scripts.
# OH_COMMIT names the commit on the page (the GPU machine's copy of the
# tree has no git history).  Exit status: 0 when both parts ran and passed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
OUT=${OUT:-out/bench}
OPS_BIN=${OH_GPU_OPS_BIN:-build-gpuops}
GDN_BIN=${OH_GDN_BIN:-build-gdn}
MIX_BIN=${OH_MIXER_BIN:-build-mixer}
ops_flags=() gdn_flags=() mix_flags=()
for a in "$@"; do
  case "$a" in
    --quick) ops_flags+=("$a"); gdn_flags+=("$a"); mix_flags+=("$a") ;;
    --no-bench|--no-peer) ops_flags+=("$a"); gdn_flags+=("$a") ;;
    --sanitize) ops_flags+=("$a"); gdn_flags+=("$a"); mix_flags+=("$a") ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--quick] [--no-bench] [--no-peer] [--sanitize]  (build first: see the header)" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT"

status=0
notes=()
run_part() {  # name, build folder, programs that must be there, log folder, script, flags...
  local name=$1 bin=$2 progs=$3 dir=$4 script=$5 p
  shift 5
  for p in $progs; do
    if [ ! -x "$bin/$p" ]; then
      notes+=("$name: SKIPPED, $bin/$p missing (build on the dev machine with 'bash $script --build' and carry $bin)")
      echo "==== $name: $bin/$p missing: skipped (build on the dev machine with 'bash $script --build' and carry $bin)"
      status=1
      return
    fi
  done
  echo "==== $name: OUT=$dir bash $script $*"
  local t0=$SECONDS rc
  OUT=$dir OH_GPU_OPS_BIN=$OPS_BIN OH_GDN_BIN=$GDN_BIN OH_MIXER_BIN=$MIX_BIN bash "$script" "$@" 2>&1 | tee "$dir.log"
  rc=${PIPESTATUS[0]}
  notes+=("$name: exit $rc after $((SECONDS - t0)) s (console log $dir.log)")
  [ "$rc" = 0 ] || status=1
}

mkdir -p "$OUT/gpu_ops" "$OUT/gdn" "$OUT/gdn_mixer"
run_part "CUDA ops" "$OPS_BIN" "oh_gpu_ops_tests oh_gpu_ops_bench" "$OUT/gpu_ops" scripts/gpu_ops_check.sh ${ops_flags[@]+"${ops_flags[@]}"}
run_part "GDN" "$GDN_BIN" "oh_gpu_test_gdn oh_bench_gdn" "$OUT/gdn" scripts/gpu_check.sh ${gdn_flags[@]+"${gdn_flags[@]}"}
run_part "GDN mixer" "$MIX_BIN" "oh_gpu_test_gdn_mixer" "$OUT/gdn_mixer" scripts/gpu_mixer_check.sh ${mix_flags[@]+"${mix_flags[@]}"}

echo "==== summary"
for n in "${notes[@]}"; do echo "  $n"; done
note_args=()
for n in "${notes[@]}"; do note_args+=(--note "$n"); done
if python3 bench/write_results.py --ops "$OUT/gpu_ops" --gdn "$OUT/gdn" --mixer "$OUT/gdn_mixer" --out "$OUT/RESULTS.md" "${note_args[@]}" >/dev/null; then
  echo "==== $OUT/RESULTS.md"
  cat "$OUT/RESULTS.md"
else
  echo "==== bench/write_results.py failed: no $OUT/RESULTS.md" >&2
  status=1
fi
exit $status
