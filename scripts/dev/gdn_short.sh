#!/usr/bin/env bash
# The GDN check when little GPU time is left (sandbox): test_gdn by default and with the
# kernels one after another, the benchmark with its .tsv, compute-sanitizer (memcheck,
# racecheck, synccheck), bench_gdn of the builds named as arguments (A/B), then FLA at all
# shapes cut off after $FLA_S seconds (default 170; Triton compiles and autotunes on a fresh
# machine).  Everything lands in $OUT/w (gdn/ in the layout of scripts/gpu_check.sh) and is
# packed into $OUT/r.tgz after each part.
set -uo pipefail
cd "$(dirname "$0")/../.."
O=${OUT:-out/short}
W=$O/w
G=$W/gdn
mkdir -p "$G"
BIN=${OH_GDN_BIN:-build-gdn}
pack() { tar czf "$O/r.tgz" -C "$W" . 2>/dev/null; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv > "$G/gpu.txt" 2>&1
git rev-parse HEAD > "$G/commit.txt" 2>/dev/null || true
"$BIN/oh_gpu_test_gdn" > "$G/test_gdn.txt" 2>&1; echo "test default: rc $? $(grep -E '^(PASS|FAIL)' "$G/test_gdn.txt" | tail -1)"
OH_GDN_OVERLAP=0 "$BIN/oh_gpu_test_gdn" > "$G/test_gdn_serial.txt" 2>&1; echo "test serial: rc $? $(grep -E '^(PASS|FAIL)' "$G/test_gdn_serial.txt" | tail -1)"
"$BIN/oh_bench_gdn" --tsv "$G/bench_gdn.tsv" > "$G/bench_gdn.txt" 2>&1; grep -E "^(1x|4x|16d)" "$G/bench_gdn.txt" | head -4
pack
SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
few="gqa-mixed,ksplit-gqa,masked-prompt,nan"
"$SAN" --tool memcheck --leak-check full --error-exitcode 3 "$BIN/oh_gpu_test_gdn" --small > "$G/sanitize_memcheck.txt" 2>&1
"$SAN" --tool racecheck --racecheck-report all --error-exitcode 3 "$BIN/oh_gpu_test_gdn" --small --only "$few" > "$G/sanitize_racecheck.txt" 2>&1
"$SAN" --tool synccheck --error-exitcode 3 "$BIN/oh_gpu_test_gdn" --small --only "$few" > "$G/sanitize_synccheck.txt" 2>&1
for t in memcheck racecheck synccheck; do
  echo "-- $t: $(grep -E '^(PASS|FAIL)' "$G/sanitize_$t.txt" | tail -1) $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$G/sanitize_$t.txt" | tr '\n' ' ')"
done
pack
for b in "$@"; do
  "$b/oh_bench_gdn" > "$W/ab_$(basename "$b").txt" 2>&1; echo "== $b"; grep -E "^(1x|4x|16d)" "$W/ab_$(basename "$b").txt" | head -4
done
pack
if [ -d fla ]; then
  PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/fla:$PWD" timeout "${FLA_S:-170}" python3 bench/bench_fla_gdn.py --ours "$G/bench_gdn.tsv" > "$G/bench_fla_gdn.txt" 2>&1
  echo "FLA: rc $?"; tail -7 "$G/bench_fla_gdn.txt"
fi
pack
