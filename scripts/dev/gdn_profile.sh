#!/usr/bin/env bash
# Sandbox: where the GDN time goes on the GPU machine (build-gdn carried; fla/ optional).
#   SASS of the kernels, the OH_GDN_TRACE timeline, the per-kernel profile, ncu
#   sections for the heavy kernels, and FLA's per-kernel times at 1 x 8192.
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN=${OH_GDN_BIN:-build-gdn}
OUT=${OUT:-out/gdn_profile}
mkdir -p "$OUT"
CU=/usr/local/cuda/bin
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
[ -x $CU/cuobjdump ] && $CU/cuobjdump -sass "$BIN/oh_bench_gdn" > "$OUT/gdn.sass" 2>&1
"$BIN/oh_gpu_test_gdn" > "$OUT/test_gdn.txt" 2>&1; echo "test: $(grep -E '^(PASS|FAIL)' "$OUT/test_gdn.txt" | tail -1)"
OH_GDN_TRACE=1 "$BIN/oh_bench_gdn" --quick > "$OUT/trace.txt" 2>&1; cat "$OUT/trace.txt" | tail -40
OH_GDN_OVERLAP=0 "$BIN/oh_bench_gdn" --quick > "$OUT/serial.txt" 2>&1; tail -14 "$OUT/serial.txt"
if [ "${NCU:-1}" = 1 ] && [ -x $CU/ncu ]; then
  OH_GDN_OVERLAP=0 timeout 300 $CU/ncu --kernel-name regex:"${NCU_KERNELS:-k_prep|k_state_fwd|k_state_bwd|k_chunk_bwd|k_out}" --launch-count ${NCU_COUNT:-5} \
    --section SpeedOfLight --section WarpStateStats --section InstructionStats --section Occupancy \
    --section LaunchStats --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis --section SchedulerStats \
    "$BIN/oh_bench_gdn" --quick > "$OUT/ncu.txt" 2>&1
  echo "ncu: $(wc -l < "$OUT/ncu.txt") lines"
fi
if [ -d fla ] && [ "${FLA:-1}" = 1 ]; then
  PYTHONPATH="$PWD/fla:$PWD" timeout 240 python3 bench/bench_fla_gdn.py --quick --profile --ours /dev/null > "$OUT/fla_profile.txt" 2>&1
  tail -45 "$OUT/fla_profile.txt"
fi
