#!/usr/bin/env bash
# One GPU call (sandbox) in priority order under a time budget ($BUDGET s, default
# 560): unpacks benchbin/bins.tar.xz (build dirs packed here: tar cJf keeps
# the carry small) and benchbin/fla.tar.xz if present, then runs the steps of
# $STEPS in order, each only while time is left:
#   check    scripts/gpu_check.sh --no-peer on build-gdn into $O/gdn (tests in five
#            settings, bench, profile; commit.txt from $COMMIT: the machine's .git is stale)
#   phases   OH_GDN_TRACE report of build-phases (-DOH_GDN_PHASES)
#   ab       scripts/dev/gdn_ab.sh $AB (variants), TESTS as gdn_ab.sh reads them
#   fla      build-gdn's bench (--tsv) then FLA at 1x8192 (--quick) beside it
#   san      scripts/gpu_check.sh --sanitize --no-test --no-bench on build-gdn into $O/gdn
#   flaall   FLA at all shapes beside $O/gdn/bench_gdn.tsv (check's) into
#            $O/gdn/bench_fla_gdn.txt (without check: build-gdn's bench first)
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
    check) OH_COMMIT=${COMMIT:-unknown} OUT=$O/gdn OH_GDN_BIN=build-gdn timeout "$(left)" bash scripts/gpu_check.sh --no-peer > "$O/check_console.txt" 2>&1
           grep -E "PASS|FAIL|^(1x|4x|16d)" "$O/check_console.txt" | head -20 ;;
    phases) OH_GDN_TRACE=1 timeout "$(left)" build-phases/oh_bench_gdn > "$O/phases.txt" 2>&1
            grep -E "^(1x|4x|16d)|phases|  k_" "$O/phases.txt" ;;
    ab) OUT=$O timeout "$(left)" bash scripts/dev/gdn_ab.sh ${AB:-build-gdn} ;;
    fla) build-gdn/oh_bench_gdn --tsv "$O/ours.tsv" > "$O/ours.txt" 2>&1
         fla --quick --ours "$O/ours.tsv" > "$O/fla_quick.txt" 2>&1; tail -4 "$O/fla_quick.txt" ;;
    san) OH_COMMIT=${COMMIT:-unknown} OUT=$O/gdn OH_GDN_BIN=build-gdn timeout "$(left)" \
           bash scripts/gpu_check.sh --sanitize --no-test --no-bench 2>&1 | grep -E -- "^-- |SUMMARY" ;;
    flaall) mkdir -p "$O/gdn"; [ -f "$O/gdn/bench_gdn.tsv" ] || build-gdn/oh_bench_gdn --tsv "$O/gdn/bench_gdn.tsv" > "$O/gdn/bench_gdn.txt" 2>&1
            fla --ours "$O/gdn/bench_gdn.tsv" > "$O/gdn/bench_fla_gdn.txt" 2>&1; tail -7 "$O/gdn/bench_fla_gdn.txt" ;;
    *) echo "unknown step $s" ;;
  esac
done
echo "== done at $SECONDS s"
tar czf "$O.tgz" -C "$O" . && mv "$O.tgz" "$O/all.tgz" # the device returns a few files only
