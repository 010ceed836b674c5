# emu_env.sh: sourced by the emulator runs (scripts/gpu_check.sh --emu,
# scripts/gpu_mixer_check.sh --emu, tests/gpu_ops/emu/run_emu.sh).
#
# cblas_dir: the CBLAS header folder (OpenBLAS), or nothing.
# OH_EMU_ASAN=1: EMU_ASAN_CFLAGS / EMU_ASAN_LDFLAGS build with AddressSanitizer
# and device buffers of exact size (OH_EMU_EXACT_ALLOC: overruns are reported),
# EMU_SUFFIX (-asan) keeps those objects apart, and LeakSanitizer is off (the
# emulator keeps its fiber stacks).  Otherwise all three are empty.
cblas_dir() { ls -d /usr/include/x86_64-linux-gnu/openblas-pthread /usr/include/openblas 2>/dev/null | head -1 || true; }

EMU_ASAN_CFLAGS="" EMU_ASAN_LDFLAGS="" EMU_SUFFIX=""
if [ "${OH_EMU_ASAN:-0}" = 1 ]; then
  EMU_ASAN_CFLAGS="-O1 -g -fsanitize=address -fno-omit-frame-pointer -DOH_EMU_EXACT_ALLOC"
  EMU_ASAN_LDFLAGS=-fsanitize=address
  EMU_SUFFIX=-asan
  export ASAN_OPTIONS=detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}
fi
