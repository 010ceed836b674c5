#!/usr/bin/env bash
# Install the Debian packages the project builds and tests with (idempotent).
set -euo pipefail
PKGS="build-essential cmake pkg-config libjsmn-dev libpcre2-dev libarchive-dev libcriterion-dev libopenblas-dev zlib1g-dev libzstd-dev"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq $missing >/dev/null
fi
