#!/usr/bin/env bash
# Build, then the quickstart end to end on whatever backend is there (CPU
# when there is no GPU): make a tiny model, inspect it, compute logits and
# gradients for two sequences.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target finetune
out=out/quickstart
mkdir -p "$out"
./build/finetune init --preset tiny --out "$out/tiny-model" --seed 1
./build/finetune inspect "$out/tiny-model"
printf '{"input_ids": [5, 17, 42, 99, 3, 7]}\n{"input_ids": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]}\n' > "$out/ids.jsonl"
./build/finetune logits --model "$out/tiny-model" --input "$out/ids.jsonl" --out "$out/logits.safetensors"
./build/finetune grads --model "$out/tiny-model" --input "$out/ids.jsonl" --out "$out/grads.safetensors"
