#!/usr/bin/env bash
# komd's MQTT packets read by implementations we did not write: the codec test writes the
# packets komd encodes (both versions, every type), paho-mqtt 1.6's packet handlers and a
# mosquitto 2.0 broker read each and compare the fields. (The other direction, paho's and
# mosquitto's packets decoded by komd, is test_mqtt_codec_vectors.)
set -euo pipefail
build=${1:-build}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
timeout 60 "$build/tests/test_mqtt_codec" --dump "$tmp/komd.txt" >/dev/null 2>&1
timeout 120 /usr/bin/python3 tests/unit/gen_mqtt_codec_vectors.py --check "$tmp/komd.txt"
