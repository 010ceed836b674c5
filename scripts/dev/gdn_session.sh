#!/usr/bin/env bash
# One GPU call that does a session's GDN work (sandbox): scripts/gpu_check.sh
# (test, serial test, benchmark, FLA peer) into $OUT/w/gdn, bench_gdn of the
# other builds named as arguments (A/B, same machine), the OH_GDN_TRACE
# timeline, then the compute-sanitizer runs; everything is packed into
# $OUT/gdn_session.tgz (the device tool returns at most 8 files).
set -uo pipefail
cd "$(dirname "$0")/../.."
O=${OUT:-out/session}
W=$O/w
mkdir -p "$W"
pack() { tar czf "$O/gdn_session.tgz" -C "$W" . 2>/dev/null; }
trap pack EXIT
CU=/usr/local/cuda/bin
[ -x $CU/cuobjdump ] && for f in _Z6k_prepILb0EEv3Ctx _Z11k_state_fwdILi6EEv3Ctx _Z11k_state_bwdILi6EEv3Ctx _Z11k_chunk_bwdILi6EEv3Ctx; do
  $CU/cuobjdump -sass -fun $f build-gdn/oh_bench_gdn > "$W/$f.sass" 2>&1; done
OUT=$W/gdn OH_GDN_BIN=build-gdn bash scripts/gpu_check.sh ${QUICK:-} 2>&1 | tee "$W/gdn_console.txt" | grep -vE "^  (tensor|out|s_final|dq|dk|dv|dg|dbeta|ds0) " | head -80
pack
# each argument: DIR or DIR:ENV=VALUE (one variable), e.g. build-gdn:OH_GDN_OVERLAP=1
for v in "$@"; do
  b=${v%%:*}; e=""; [ "$v" != "$b" ] && e=${v#*:}
  tag=$(echo "$v" | tr '/:=' '___')
  echo "== $v"
  env $e $b/oh_bench_gdn ${QUICK:-} > "$W/ab_$tag.txt" 2>&1
  grep -E "^(1x|4x|16d)|^k_state" "$W/ab_$tag.txt"
done
echo "== build-gdn again"
build-gdn/oh_bench_gdn ${QUICK:-} > "$W/ab_build-gdn_again.txt" 2>&1; grep -E "^(1x|4x|16d)" "$W/ab_build-gdn_again.txt"
echo "== trace"
OH_GDN_VERBOSE=1 OH_GDN_TRACE=1 build-gdn/oh_bench_gdn --quick > "$W/trace.txt" 2>&1; grep -E "overlap|  k_|^1x" "$W/trace.txt" | head -12
pack
if [ "${SAN:-1}" = 1 ]; then
  mkdir -p "$W/san"
  OUT=$W/san OH_GDN_BIN=build-gdn timeout ${SAN_LIMIT:-240} bash scripts/gpu_check.sh --sanitize --no-bench 2>&1 | grep -E "compute-sanitizer|^-- |SUMMARY|PASS|FAIL" | head -20
fi
