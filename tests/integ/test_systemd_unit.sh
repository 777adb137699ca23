#!/bin/bash
# test_systemd_unit.sh: check systemd/komd.service offline.
#   - the placeholders are substituted (as "make install" does) into a temporary copy;
#   - "systemd-analyze verify" prints nothing about the unit;
#   - "systemd-analyze security --offline=true" rates its exposure 1.2 or lower, with
#     @resources denied and a umask that keeps files from others;
#   - the unit sets LimitCORE=0 and LimitNOFILE=;
#   - the drop-in the unit documents for ports below 1024 verifies clean too.
# Usage (from the repository root): tests/integ/test_systemd_unit.sh [BUILD_DIR]
# BUILD_DIR is not needed: ExecStart points at a temporary stand-in executable.
# Exit 0 on pass, 1 on failure.
set -euo pipefail

MAX_SCORE=1.2
UNIT_SRC=systemd/komd.service
TMO=60

fail() { echo "FAIL: test_systemd_unit: $*" >&2; exit 1; }

[ -f "$UNIT_SRC" ] || fail "$UNIT_SRC not found (run from the repository root)"
command -v systemd-analyze >/dev/null || fail "systemd-analyze not installed"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/komd-unit.XXXXXX")
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# Stand-ins for the installed binaries: verify checks that ExecStart= etc. exist.
mkdir -p "$tmp/sbin" "$tmp/bin" "$tmp/etc/komd" "$tmp/unit"
for b in "$tmp/sbin/komd" "$tmp/bin/komctl"; do
	printf '#!/bin/sh\nexit 0\n' > "$b"
	chmod 0755 "$b"
done
: > "$tmp/etc/komd/komd.conf"

unit="$tmp/unit/komd.service"
sed -e "s|@SBINDIR@|$tmp/sbin|g" -e "s|@BINDIR@|$tmp/bin|g" -e "s|@SYSCONFDIR@|$tmp/etc|g" \
	"$UNIT_SRC" > "$unit"
if grep -n '@[A-Z_]*@' "$unit" >&2; then
	fail "unsubstituted placeholder left in the unit"
fi
grep -q "^ExecStart=$tmp/sbin/komd " "$unit" || fail "ExecStart= does not run @SBINDIR@/komd"

# 1. verify. Documentation= man pages need not be installed here (--man=no). Any output
# about komd.service (or anything at all) is a failure.
rc=0
out=$(cd "$tmp/unit" && timeout "$TMO" systemd-analyze verify --man=no "$unit" 2>&1) || rc=$?
if [ "$rc" -ne 0 ] || [ -n "$out" ]; then
	printf '%s\n' "$out" >&2
	fail "systemd-analyze verify: exit status $rc"
fi
echo "systemd-analyze verify: clean"

# 2. security exposure score.
rc=0
out=$(cd "$tmp/unit" && timeout "$TMO" systemd-analyze security --offline=true --no-pager "$unit" 2>&1) || rc=$?
score=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for komd\.service: \([0-9][0-9]*\.[0-9]\).*/\1/p' | tail -n 1)
if [ -z "$score" ]; then
	printf '%s\n' "$out" >&2
	fail "systemd-analyze security printed no exposure level (exit status $rc)"
fi
echo "systemd-analyze security: exposure $score (limit $MAX_SCORE)"
if awk -v s="$score" -v m="$MAX_SCORE" 'BEGIN { exit !(s > m) }'; then
	printf '%s\n' "$out" | grep '✗' >&2 || true
	fail "exposure $score is above $MAX_SCORE"
fi
# security exits non-zero only with --threshold=; anything else is an error.
[ "$rc" -eq 0 ] || fail "systemd-analyze security: exit status $rc"
for item in 'SystemCallFilter=~@resources' 'UMask='; do
	printf '%s\n' "$out" | grep -q "✓ $item" || fail "systemd-analyze security: $item is not satisfied"
done

# 3. resource limits: no core dumps; descriptors for the default max_clients.
grep -qx 'LimitCORE=0' "$unit" || fail "LimitCORE=0 missing"
grep -q '^LimitNOFILE=[0-9]' "$unit" || fail "LimitNOFILE= missing"

# 4. the documented drop-in for ports below 1024 (its lines taken from the unit's comment),
# added to the [Service] section of a copy: it must verify clean too.
dropin=$(sed -n 's/^#   \(AmbientCapabilities=\|CapabilityBoundingSet=\)/\1/p' "$unit")
[ "$(printf '%s\n' "$dropin" | wc -l)" -eq 2 ] || fail "the unit does not document the CAP_NET_BIND_SERVICE drop-in"
mkdir -p "$tmp/bind"
awk -v d="$dropin" '/^\[Install\]/ { print d; print "" } { print }' "$unit" > "$tmp/bind/komd.service"
rc=0
out=$(cd "$tmp/bind" && timeout "$TMO" systemd-analyze verify --man=no "$tmp/bind/komd.service" 2>&1) || rc=$?
if [ "$rc" -ne 0 ] || [ -n "$out" ]; then
	printf '%s\n' "$out" >&2
	fail "the CAP_NET_BIND_SERVICE drop-in: systemd-analyze verify: exit status $rc"
fi
echo "CAP_NET_BIND_SERVICE drop-in: verify clean"

echo "PASS: test_systemd_unit"
exit 0
