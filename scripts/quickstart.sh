#!/usr/bin/env bash
# Build, then the quickstart end to end on the CPU backend: full SFT of a tiny
# Olmo Hybrid model on arithmetic chats, then LoRA on top of it (teaching
# multiplication, merged at the end), and the models answering.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target finetune
F=./build/finetune
$F recipes/quickstart.toml
$F recipes/quickstart_lora.toml
echo "== the full-SFT model =="
$F generate --model out/quickstart/final --chat --prompt "What is 3 + 4?"
$F generate --model out/quickstart/final --chat --prompt "What is 9 - 5?"
echo "== the LoRA-merged model =="
$F generate --model out/quickstart_lora/final-merged --chat --prompt "What is 6 * 7?"
echo "== the base with the PEFT adapter =="
$F generate --model out/quickstart/final --adapter out/quickstart_lora/final --chat --prompt "What is 8 * 3?"
