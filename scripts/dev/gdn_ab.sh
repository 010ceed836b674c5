#!/usr/bin/env bash
# A/B of GDN builds and switches on the GPU machine (sandbox): each argument is
# DIR or DIR:ENV=VALUE[,ENV=VALUE]; every variant's oh_bench_gdn runs $ROUNDS
# times, interleaved, into $OUT/ab/<variant>.<round>.txt, then the test program
# of each DIR in $TESTS (DIR or DIR:ENV=VALUE) into $OUT/ab/test_<variant>.txt.
# Prints a table of f+b ms per shape and round.
set -uo pipefail
cd "$(dirname "$0")/../.."
A=${OUT:-out/ab}/ab
mkdir -p "$A"
R=${ROUNDS:-2}
tagof() { echo "$1" | tr '/:=,' '____'; }
runv() { local b=${1%%:*} e=""; [ "$1" != "$b" ] && e=${1#*:}; env ${e//,/ } "$b/$2" "${@:3}"; }
for r in $(seq 1 "$R"); do
  for v in "$@"; do
    t=$(tagof "$v")
    runv "$v" oh_bench_gdn > "$A/$t.$r.txt" 2>&1
    printf '%-44s r%s %s\n' "$v" "$r" "$(grep -E '^(1x|4x|16d)' "$A/$t.$r.txt" | awk '{printf "%s %s  ", $1, $8}')"
  done
done
for v in ${TESTS:-}; do
  t=$(tagof "$v")
  runv "$v" oh_gpu_test_gdn > "$A/test_$t.txt" 2>&1
  echo "test $v: $(grep -E '^(PASS|FAIL)' "$A/test_$t.txt" | tail -1)"
done
