#!/usr/bin/env bash
# Measures the cold build of the local control plane: an empty Go build cache and an empty
# tools directory (modules already downloaded, so the network is not measured).
# Usage: tools/bench-cold.sh [tool...]   (default: etcd kubernetes kwok)
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tools=("$@"); [ ${#tools[@]} -gt 0 ] || tools=(etcd kubernetes kwok)
go build -o "$work/build" ./tools/build
for t in "${tools[@]}"; do
  start=$(date +%s)
  GOCACHE="$work/gocache" "$work/build" -out "$work/tools" "$t" >/dev/null
  printf '%s\t%ss\n' "$t" "$(( $(date +%s) - start ))"
done
start=$(date +%s)
GOCACHE="$work/gocache" "$work/build" -out "$work/tools2" "${tools[@]}" >/dev/null
printf 'all again, warm build cache, empty tools dir\t%ss\n' "$(( $(date +%s) - start ))"
