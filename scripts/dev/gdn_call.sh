#!/usr/bin/env bash
# One GPU call (sandbox) in priority order under a time budget ($BUDGET s, default
# 560): unpacks benchbin/bins.tar.xz (build dirs packed here: tar cJf keeps
# the carry small) and benchbin/fla.tar.xz if present, then runs the steps of
# $STEPS in order, each only while time is left:
#   phases   OH_GDN_TRACE report of build-phases (-DOH_GDN_PHASES)
#   ab       scripts/dev/gdn_ab.sh $AB (variants), TESTS as gdn_ab.sh reads them
#   fla      build-gdn's bench (--tsv) then FLA at 1x8192 (--quick) beside it
#   san      compute-sanitizer memcheck / racecheck / synccheck of build-gdn's test
#   flaall   FLA at all shapes, build-gdn's bench again just before
# Output under $OUT (one file per step).
set -uo pipefail
cd "$(dirname "$0")/../.."
O=${OUT:-out/call}
mkdir -p "$O"
B=${BUDGET:-560}
left() { echo $((B - SECONDS)); }
[ -f benchbin/bins.tar.xz ] && tar xJf benchbin/bins.tar.xz
[ -f benchbin/fla.tar.xz ] && tar xJf benchbin/fla.tar.xz
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader | tee "$O/gpu.txt"
fla() { PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/fla:$PWD" timeout "$(left)" python3 bench/bench_fla_gdn.py "$@"; }
for s in ${STEPS:-phases ab fla san}; do
  [ "$(left)" -gt 20 ] || { echo "== $s: no time left"; continue; }
  echo "== $s ($(left) s left)"
  case $s in
    phases) OH_GDN_TRACE=1 timeout "$(left)" build-phases/oh_bench_gdn > "$O/phases.txt" 2>&1
            grep -E "^(1x|4x|16d)|phases|  k_" "$O/phases.txt" ;;
    ab) OUT=$O timeout "$(left)" bash scripts/dev/gdn_ab.sh ${AB:-build-gdn} ;;
    fla) build-gdn/oh_bench_gdn --tsv "$O/ours.tsv" > "$O/ours.txt" 2>&1
         fla --quick --ours "$O/ours.tsv" > "$O/fla_quick.txt" 2>&1; tail -4 "$O/fla_quick.txt" ;;
    san) SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
         few="gqa-mixed,ksplit-gqa,masked-prompt,nan"
         timeout "$(left)" "$SAN" --tool memcheck --leak-check full --error-exitcode 3 build-gdn/oh_gpu_test_gdn --small > "$O/sanitize_memcheck.txt" 2>&1
         timeout "$(left)" "$SAN" --tool racecheck --racecheck-report all --error-exitcode 3 build-gdn/oh_gpu_test_gdn --small --only "$few" > "$O/sanitize_racecheck.txt" 2>&1
         timeout "$(left)" "$SAN" --tool synccheck --error-exitcode 3 build-gdn/oh_gpu_test_gdn --small --only "$few" > "$O/sanitize_synccheck.txt" 2>&1
         for t in memcheck racecheck synccheck; do
           echo "-- $t: $(grep -E '^(PASS|FAIL)' "$O/sanitize_$t.txt" | tail -1) $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$O/sanitize_$t.txt" | tr '\n' ' ')"
         done ;;
    flaall) build-gdn/oh_bench_gdn --tsv "$O/ours_all.tsv" > "$O/ours_all.txt" 2>&1
            fla --ours "$O/ours_all.tsv" > "$O/fla_all.txt" 2>&1; tail -7 "$O/fla_all.txt" ;;
    *) echo "unknown step $s" ;;
  esac
done
echo "== done at $SECONDS s"
tar czf "$O.tgz" -C "$O" . && mv "$O.tgz" "$O/all.tgz" # the device returns a few files only
