#!/usr/bin/env bash
# Sandbox A/B on the GPU machine: the test (overlapped and serial), then
# bench_gdn of build-gdn against other builds given as arguments (each a folder
# holding oh_bench_gdn), alternating, and the OH_GDN_TRACE timeline for a few
# k_prep grid sizes.  Output under $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-out/gdn_ab}
mkdir -p "$OUT"
B=build-gdn
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
if [ "${TEST:-1}" = 1 ]; then
  $B/oh_gpu_test_gdn > "$OUT/test.txt" 2>&1; echo "test: $(grep -E '^(PASS|FAIL)' "$OUT/test.txt" | tail -1)"
  OH_GDN_OVERLAP=0 $B/oh_gpu_test_gdn > "$OUT/test_serial.txt" 2>&1; echo "test serial: $(grep -E '^(PASS|FAIL)' "$OUT/test_serial.txt" | tail -1)"
  grep -E "FAIL|ratio|^\[" "$OUT/test.txt" | grep -v " ok" | head -20
fi
# each argument: DIR or DIR:ENV=VALUE (one variable), e.g. build-gdn:OH_GDN_OVERLAP=0
for rep in 1 2; do
  for v in $B "$@"; do
    b=${v%%:*}; e=""; [ "$v" != "$b" ] && e=${v#*:}
    tag=$(echo "$v" | tr '/:=' '___')
    echo "== $v (rep $rep)"
    env $e $b/oh_bench_gdn ${QUICK:-} > "$OUT/bench_${tag}_$rep.txt" 2>&1
    grep -E "^(1x|4x|16d)" "$OUT/bench_${tag}_$rep.txt"
    [ $rep = 1 ] && grep -E "^k_" "$OUT/bench_${tag}_$rep.txt" | head -8
  done
done
for g in ${GRIDS:-}; do
  echo "== trace, k_prep grids $g"
  OH_GDN_VERBOSE=1 OH_GDN_PREP_GRIDS=$g OH_GDN_TRACE=1 $B/oh_bench_gdn --quick 2>&1 | grep -E "overlap|k_prep|k_state|k_out|^1x" | head -8
done
echo "== trace, default grids"
OH_GDN_VERBOSE=1 OH_GDN_TRACE=1 $B/oh_bench_gdn --quick 2>&1 | grep -E "overlap|  k_|^1x" | head -12
