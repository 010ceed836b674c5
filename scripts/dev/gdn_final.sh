#!/usr/bin/env bash
# The session's closing GPU call (sandbox): scripts/gpu_check.sh --sanitize
# --no-peer (tests in the three overlap settings, benchmark with the per-kernel
# profile, compute-sanitizer) into $OUT/w/gdn, bench_gdn of the other builds
# named as arguments (DIR or DIR:ENV=VALUE), the OH_GDN_TRACE timeline, all
# packed into $OUT/gdn_final.tgz; then FLA's timing (slow on a fresh machine:
# Triton compiles and autotunes) last, unbuffered, into $OUT/bench_fla_gdn.txt,
# so that whatever the time limit leaves of it comes back.
set -uo pipefail
cd "$(dirname "$0")/../.."
O=${OUT:-out/final}
W=$O/w
mkdir -p "$W"
pack() { tar czf "$O/gdn_final.tgz" -C "$W" . 2>/dev/null; }
OUT=$W/gdn OH_GDN_BIN=build-gdn bash scripts/gpu_check.sh --no-peer --sanitize > "$W/gdn_console.txt" 2>&1
grep -vE "^  (tensor|out|s_final|dq|dk|dv|dg|dbeta|ds0) " "$W/gdn_console.txt" | grep -vE "^(k_|kernel|per kernel)" | head -60
pack
for v in "$@"; do
  b=${v%%:*}; e=""; [ "$v" != "$b" ] && e=${v#*:}
  tag=$(echo "$v" | tr '/:=' '___')
  echo "== $v"
  env $e $b/oh_bench_gdn > "$W/ab_$tag.txt" 2>&1
  grep -E "^(1x|4x|16d)" "$W/ab_$tag.txt"
done
for b in ${EXTRA_TESTS:-}; do  # other builds' test programs
  $b/oh_gpu_test_gdn > "$W/test_$(basename $b).txt" 2>&1; echo "test $b: $(grep -E '^(PASS|FAIL)' "$W/test_$(basename $b).txt" | tail -1)"
done
OH_GDN_VERBOSE=1 OH_GDN_TRACE=1 build-gdn/oh_bench_gdn --quick > "$W/trace.txt" 2>&1; grep -E "  k_" "$W/trace.txt"
pack
echo "== FLA"
[ -d fla ] && PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/fla:$PWD" python3 bench/bench_fla_gdn.py --ours "$W/gdn/bench_gdn.tsv" > "$O/bench_fla_gdn.txt" 2>&1
cat "$O/bench_fla_gdn.txt" | tail -9
