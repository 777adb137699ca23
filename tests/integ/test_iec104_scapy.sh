#!/usr/bin/env bash
# komd's IEC 104 frames dissected by an independent decoder: the codec test writes the
# APDUs komd encodes (every type), scapy's IEC 104 layer dissects each and compares the
# fields. (The other direction, scapy's frames decoded by komd, is in test_iec104_codec.)
set -euo pipefail
build=${1:-build}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
timeout 60 "$build/tests/test_iec104_codec" --dump "$tmp/komd.txt" >/dev/null 2>&1
timeout 120 /usr/bin/python3 tests/unit/gen_iec104_vectors.py --check "$tmp/komd.txt"
