#!/usr/bin/env bash
# The session's closing GPU call (sandbox), ordered so that a time limit costs
# the least: (1) scripts/gpu_check.sh --no-peer (tests in the three overlap
# settings, benchmark with the per-kernel profile) into $OUT/w/gdn; (2) FLA at
# 1 x 8192 (slow on a fresh machine: Triton compiles and autotunes), into
# $OUT/w/gdn/bench_fla_gdn.txt; (3) compute-sanitizer as gpu_check.sh --sanitize
# runs it; (4) bench_gdn of the other builds named as arguments (DIR or
# DIR:ENV=VALUE) and the test programs of $EXTRA_TESTS; (5) the OH_GDN_TRACE
# timeline; (6) FLA at all shapes (compiled by then) into $OUT/w/fla_all.txt.
# Everything is packed into $OUT/gdn_final.tgz after each part.
set -uo pipefail
cd "$(dirname "$0")/../.."
O=${OUT:-out/final}
W=$O/w
G=$W/gdn
mkdir -p "$G"
BIN=build-gdn
pack() { tar czf "$O/gdn_final.tgz" -C "$W" . 2>/dev/null; }
fla() { PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/fla:$PWD" python3 bench/bench_fla_gdn.py "$@"; }
OUT=$G OH_GDN_BIN=$BIN bash scripts/gpu_check.sh --no-peer > "$W/gdn_console.txt" 2>&1
grep -E "PASS|FAIL|^(1x|4x|16d)" "$W/gdn_console.txt" | head -20
pack
echo "== FLA 1x8192"
[ -d fla ] && fla --quick --ours "$G/bench_gdn.tsv" > "$G/bench_fla_gdn.txt" 2>&1
tail -4 "$G/bench_fla_gdn.txt"
pack
echo "== compute-sanitizer"
SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
few="gqa-mixed,ksplit-gqa,masked-prompt,nan"
"$SAN" --tool memcheck --leak-check full --error-exitcode 3 $BIN/oh_gpu_test_gdn --small > "$G/sanitize_memcheck.txt" 2>&1
"$SAN" --tool racecheck --racecheck-report all --error-exitcode 3 $BIN/oh_gpu_test_gdn --small --only "$few" > "$G/sanitize_racecheck.txt" 2>&1
"$SAN" --tool synccheck --error-exitcode 3 $BIN/oh_gpu_test_gdn --small --only "$few" > "$G/sanitize_synccheck.txt" 2>&1
for t in memcheck racecheck synccheck; do
  echo "-- $t: $(grep -E '^(PASS|FAIL)' "$G/sanitize_$t.txt" | tail -1) $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$G/sanitize_$t.txt" | tr '\n' ' ')"
done
pack
for v in "$@"; do
  b=${v%%:*}; e=""; [ "$v" != "$b" ] && e=${v#*:}
  tag=$(echo "$v" | tr '/:=' '___')
  echo "== $v"
  env $e $b/oh_bench_gdn > "$W/ab_$tag.txt" 2>&1
  grep -E "^(1x|4x|16d)" "$W/ab_$tag.txt"
done
for b in ${EXTRA_TESTS:-}; do
  $b/oh_gpu_test_gdn > "$W/test_$(basename $b).txt" 2>&1; echo "test $b: $(grep -E '^(PASS|FAIL)' "$W/test_$(basename $b).txt" | tail -1)"
done
OH_GDN_VERBOSE=1 OH_GDN_TRACE=1 $BIN/oh_bench_gdn --quick > "$W/trace.txt" 2>&1; grep -E "  k_" "$W/trace.txt"
pack
echo "== FLA, all shapes"
[ -d fla ] && fla --ours "$G/bench_gdn.tsv" > "$W/fla_all.txt" 2>&1
tail -7 "$W/fla_all.txt"
pack
