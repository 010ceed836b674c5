#!/usr/bin/env bash
# Tokenizer speed side by side with Hugging Face tokenizers, one thread each.
#   bash bench/tokenizer_bench.sh run OUTDIR     (on the machine with `tokenizers`; needs benchbin/bench_tokenizer:
#       cc -O2 -std=c11 -D_GNU_SOURCE -I. bench/bench_tokenizer.c datasets/tokenizer.c util/util.c util/json.c \
#          -lpcre2-8 -lz -lpthread -lm -o benchbin/bench_tokenizer)
#   bash bench/tokenizer_bench.sh report OUTDIR  (writes bench/RESULTS_tokenizer.md from OUTDIR/{ours,hf}.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
TOK=tests/fixtures/tokenizer/dolma2_tokenizer.json.gz
case "$1" in
run)
  python3 bench/tokenizer_peer.py make-text /tmp/text100.txt --mb 100
  ./benchbin/bench_tokenizer $TOK /tmp/text100.txt 1 | tee "$2/ours.txt"
  python3 bench/tokenizer_peer.py hf $TOK /tmp/text100.txt | tee "$2/hf.txt"
  ;;
report)
  ours=$(grep "warm cache" "$2/ours.txt" | sed 's/.*cache: \([0-9.]*\) MB.*/\1/')
  hf=$(grep "second pass" "$2/hf.txt" | sed 's/.*pass: \([0-9.]*\) MB.*/\1/')
  {
    echo "# Tokenizer speed (one thread, dolma2/cl100k tokenizer, 100 MB of mixed text)"
    echo
    echo "Written by \`bench/tokenizer_bench.sh report\` from a run of \`bench/tokenizer_bench.sh run\`."
    echo "Same machine, same text, same ids (the parity tests check the ids)."
    echo
    echo "| date | machine | commit | ours MB/s | HF tokenizers MB/s | ratio |"
    echo "|---|---|---|---|---|---|"
    echo "| $(date -u +%Y-%m-%d) | ${MACHINE:-GPU machine CPU (Intel Xeon, 1 thread)} | $(git rev-parse --short HEAD) | $ours | $hf | $(python3 -c "print(f'{$ours/$hf:.1f}x')") |"
    echo
    echo "Raw output:"
    echo '```'
    cat "$2/ours.txt" "$2/hf.txt"
    echo '```'
  } > bench/RESULTS_tokenizer.md
  cat bench/RESULTS_tokenizer.md
  ;;
esac
