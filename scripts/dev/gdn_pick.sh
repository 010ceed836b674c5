#!/usr/bin/env bash
# Sandbox: the fastest of the A/B variants DIR... (gdn_ab.sh's files in $1/ab) by
# mean forward+backward ms over the three 32K-token shapes and all rounds.
# usage: scripts/dev/gdn_pick.sh OUTDIR DIR...   prints "DIR mean" lines, best last
set -euo pipefail
o=$1; shift
for v in "$@"; do
  t=$(echo "$v" | tr '/:=,' '____')
  cat "$o/ab/$t".*.txt 2>/dev/null | awk -v v="$v" '/^(4x8192|1x32768|16docs)/ && NF > 8 {s += $8; n++}
    END {if (n) printf "%s %.4f\n", v, s / n}'
done | sort -k2,2 -r -n
