#!/usr/bin/env bash
# Runs both quickstarts on the CPU and gathers what tests/fixtures/check_exports.py
# needs into export_check/ (git-ignored), to be carried to the GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
F=${F:-./build/finetune}
rm -rf export_check && mkdir -p export_check
[ -f out/quickstart/final/config.json ] || $F recipes/quickstart.toml
[ -f out/quickstart_lora/final-merged/config.json ] || $F recipes/quickstart_lora.toml
cp -r out/quickstart/final export_check/full_final
cp -r out/quickstart/final export_check/lora_base
cp -r out/quickstart_lora/final export_check/lora_final
cp -r out/quickstart_lora/final-merged export_check/lora_merged
printf '{"input_ids": [2, 100, 111, 120, 5, 42, 17]}\n{"input_ids": [2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 3]}\n' > export_check/ids.jsonl
$F logits --model export_check/full_final --input export_check/ids.jsonl --out export_check/ours_full.safetensors
$F logits --model export_check/lora_merged --input export_check/ids.jsonl --out export_check/ours_merged.safetensors
$F logits --model export_check/lora_base --adapter export_check/lora_final --input export_check/ids.jsonl --out export_check/ours_adapter.safetensors
