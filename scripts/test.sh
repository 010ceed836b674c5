#!/usr/bin/env bash
# Build everything and run the CPU test suite (the README's test command).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
./build/oh_tests --jobs 2 "$@"
