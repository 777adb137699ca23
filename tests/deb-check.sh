#!/usr/bin/env bash
# deb-check.sh DEB BUILD_DIR: installs komd's Debian package into a fresh Debian root, as on
# a newcomer's machine, and checks it: apt-get installs it with its dependencies, the
# installed komd checks the installed /etc/komd/komd.conf (`komd -t`, as the unit's user
# komd) and the demo example, `komctl -h` runs, the installed komd runs and answers
# `komctl status`, and removing and purging leave no file behind (the system user komd
# may stay, as Debian policy allows). Prints a line per check and a summary.
#
# The root is made by debootstrap (--variant=minbase) from the Debian mirror this machine's
# APT uses (or DEB_MIRROR), for DEB_SUITE (bookworm); the bootstrapped root is kept as a
# tarball in BUILD_DIR, so later runs start from a copy of it. Needs root (debootstrap,
# chroot, mounting /proc in the root). Every step is bounded by a timeout.
set -uo pipefail

deb=${1:?usage: deb-check.sh DEB BUILD_DIR}
build=${2:?usage: deb-check.sh DEB BUILD_DIR}
suite=${DEB_SUITE:-bookworm}
if [ "$(id -u)" != 0 ]; then
	echo "deb-check: needs root (debootstrap, chroot and mounting /proc in the new root):" \
		"run it as root, e.g. sudo make deb-check" >&2
	exit 1
fi
arch=$(dpkg --print-architecture)
[ -f "$deb" ] || { echo "deb-check: no package $deb (make deb builds it)" >&2; exit 1; }
build=$(cd "$build" && pwd)
deb=$(cd "$(dirname "$deb")" && pwd)/$(basename "$deb")

# The mirror: the first APT source of type deb for $suite itself (not -updates or
# -security), in one-line (sources.list, *.list) or deb822 (*.sources) form.
find_mirror() {
	local f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		awk -v s="$suite" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) while ($i !~ /\]$/) i++;
			if ($2 ~ /^\[/) i++; if ($(i + 1) == s) { print $i; exit } }' "$f"
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk -v s="$suite" 'BEGIN { RS = ""; FS = "\n" }
			{ t = u = ""; ok = 0
			  for (i = 1; i <= NF; i++) {
				if ($i ~ /^#/) continue
				if ($i ~ /^Types:/) t = $i
				if ($i ~ /^URIs:/) { split($i, w, /[ \t]+/); u = w[2] }
				if ($i ~ /^Suites:/) { n = split($i, w, /[ \t]+/); for (j = 2; j <= n; j++) if (w[j] == s) ok = 1 }
			  }
			  if (ok && t ~ /[ \t]deb([ \t]|$)/ && u != "") { print u; exit } }' "$f"
	done
}
mirror=${DEB_MIRROR:-$(find_mirror | head -n 1)}
[ -n "$mirror" ] || { echo "deb-check: no APT source for $suite found; set DEB_MIRROR" >&2; exit 1; }

base=$build/deb-root-$suite-$arch.tar
root=$(mktemp -d "$build/deb-root.XXXXXX")
t0=$(date +%s)
pass=0; fail=0

# Unmounts /proc always; removes the root only when nothing is mounted in it any more.
kpid=""
cleanup() {
	local m
	if [ -n "$kpid" ]; then kill -TERM "$kpid" 2>/dev/null; wait "$kpid"; fi
	for m in "$root/proc" "$build/deb-bootstrap/proc" "$build/deb-bootstrap/sys"; do
		if mountpoint -q "$m" 2>/dev/null; then umount "$m" 2>/dev/null || umount -l "$m" || true; fi
	done
	if grep -q " $root/" /proc/mounts || grep -q " $build/deb-bootstrap/" /proc/mounts; then
		echo "deb-check: something is still mounted under $root or $build/deb-bootstrap; left in place" >&2
		return
	fi
	rm -rf --one-file-system "$root" "$build/deb-bootstrap"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

die() { echo "deb-check: $*" >&2; exit 1; }
step() { printf 'deb-check: [%4ds] %s\n' "$(($(date +%s) - t0))" "$*"; }
check() { # description command...: one check, counted; returns the command's status
	local what=$1; shift
	if "$@"; then pass=$((pass + 1)); echo "PASS $what"
	else fail=$((fail + 1)); echo "FAIL $what"; return 1; fi
}
log=$build/deb-check-apt.log
logged() { "$@" >>"$log" 2>&1 || { tail -n 30 "$log"; return 1; }; }
# Runs a command in the root with a clean environment: in_root SECONDS command...
root_env=(/usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
	LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive HOME=/root)
in_root() {
	local limit=$1; shift
	timeout -k 10 "$limit" chroot "$root" "${root_env[@]}" "$@"
}

# 1. The base root: debootstrap once, then a copy of the tarball.
if [ ! -f "$base" ]; then
	step "debootstrap --variant=minbase $suite from $mirror (once; kept as $base)"
	rm -rf --one-file-system "$build/deb-bootstrap"
	timeout -k 10 1200 debootstrap --variant=minbase --arch="$arch" "$suite" \
		"$build/deb-bootstrap" "$mirror" >"$build/deb-bootstrap.log" 2>&1 ||
		{ tail -n 30 "$build/deb-bootstrap.log"; die "debootstrap failed (log $build/deb-bootstrap.log)"; }
	timeout 600 tar -C "$build/deb-bootstrap" --numeric-owner -cf "$base.tmp" . || die "tar of the base root failed"
	mv "$base.tmp" "$base" || die "mv $base.tmp"
	rm -rf --one-file-system "$build/deb-bootstrap"
fi
step "unpacking the base root into $root"
timeout 600 tar -C "$root" --numeric-owner -xpf "$base" || die "unpacking $base failed"
mount -t proc proc "$root/proc" || die "mounting /proc in $root failed"
# No service starts in the root; names resolve as on this machine; APT uses the mirror.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$root/etc/resolv.conf"
echo "deb $mirror $suite main" >"$root/etc/apt/sources.list"
cp "$deb" "$root/tmp/" || die "cp $deb"
: >"$log"
pkg=/tmp/$(basename "$deb")

step "apt-get update"
logged in_root 300 apt-get update -q || die "apt-get update in the root failed (log $log)"

# The file list of the root, without APT's and dpkg's own records and logs.
snapshot() {
	in_root 120 find / -xdev \( -path /proc -o -path /tmp -o -path /var/lib/dpkg -o \
		-path /var/lib/apt -o -path /var/cache/apt -o -path /var/cache/debconf -o \
		-path /var/cache/ldconfig -o -path /var/log \) -prune -o -printf '%y %p\n' | LC_ALL=C sort
}

# The package's paths that the root has before the install (/usr/sbin, and /lib, a symlink).
pkgpaths=$(dpkg-deb --fsys-tarfile "$deb" | tar -t | sed -e 's|^\.||' -e 's|/$||' | grep -v '^$')
existed=$(while IFS= read -r f; do
	if [ -e "$root$f" ] || [ -L "$root$f" ]; then echo "$f"; fi; done <<<"$pkgpaths")

# 2. Install with its dependencies, as a newcomer would.
step "apt-get install $pkg (with its dependencies)"
check "apt-get install ./$(basename "$deb") with its dependencies" \
	logged in_root 900 apt-get install -y -q --no-install-recommends "$pkg" || die "install failed (log $log)"
echo "deb-check: installed: $(in_root 30 dpkg-query -W -f='${Package} ${Version} ${Status}' komd)"
conffiles=$(in_root 30 dpkg-query -W -f='${Conffiles}' komd)
check "/etc/komd/komd.conf is a conffile" grep -q '^ /etc/komd/komd.conf ' <<<"$conffiles"
check "system user komd exists" logged in_root 30 getent passwd komd
check "/etc/komd/komd.conf is root:komd 0640" \
	test "$(in_root 30 stat -c '%U:%G %a' /etc/komd/komd.conf)" = "root:komd 640"
# As the unit runs it: user komd, the default configuration /etc/komd/komd.conf.
out=$(in_root 30 setpriv --reuid=komd --regid=komd --init-groups /usr/sbin/komd -t 2>&1)
rc=$?; echo "$out" | sed 's/^/     | /'
check "komd -t as user komd exits 0 and says configuration OK" \
	test "$rc" = 0 -a -n "$(grep 'configuration OK' <<<"$out")"
check "komd -t -c /etc/komd/komd.conf as root" logged in_root 30 /usr/sbin/komd -t -c /etc/komd/komd.conf
out=$(in_root 30 /usr/bin/komctl -h 2>&1)
rc=$?; echo "$out" | head -n 3 | sed 's/^/     | /'
check "komctl -h exits 0 and prints its usage" test "$rc" = 0 -a -n "$(grep '^usage: komctl' <<<"$out")"
check "komd -t on the demo example" \
	logged in_root 30 /usr/sbin/komd -t -c /usr/share/doc/komd/examples/komd-demo.conf
check "the Grafana dashboard among the examples" \
	python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); assert d["panels"]' \
	"$root/usr/share/doc/komd/examples/grafana-komd.json"

# The installed komd runs as the unit would run it (user komd, /run/komd, the installed
# configuration: no lines, so no port), komctl talks to it, and SIGTERM ends it with 0.
mkdir -p "$root/run/komd" && in_root 10 chown komd:komd /run/komd
# (timeout itself in the background, so that $! is its pid and SIGTERM reaches komd)
timeout -k 10 60 chroot "$root" "${root_env[@]}" setpriv --reuid=komd --regid=komd --init-groups \
	/usr/sbin/komd -f >"$build/deb-check-komd.log" 2>&1 &
kpid=$!
for _ in $(seq 100); do # until its control socket answers (10 s at most)
	in_root 5 /usr/bin/komctl -T 1 status >/dev/null 2>&1 && break
	kill -0 "$kpid" 2>/dev/null || break
	sleep 0.1
done
out=$(in_root 10 /usr/bin/komctl -T 5 status 2>&1)
rc=$?; echo "$out" | head -n 3 | sed 's/^/     | /'
check "komctl status answers from the installed komd" test "$rc" = 0
kill -TERM "$kpid" 2>/dev/null
wait "$kpid"
rc=$?; kpid=""; sed 's/^/     | /' "$build/deb-check-komd.log"
check "komd exits 0 on SIGTERM" test "$rc" = 0
rm -rf "$root/run/komd"

check "komd.service is enabled" \
	test "$(in_root 30 systemctl is-enabled komd.service 2>/dev/null)" = enabled
check "komd.service names the installed komd and configuration" \
	grep -q '^ExecStart=/usr/sbin/komd -c /etc/komd/komd.conf$' "$root/lib/systemd/system/komd.service"
check "systemd-analyze verify komd.service" logged in_root 60 systemd-analyze verify --man=no /lib/systemd/system/komd.service
check "man pages komd(8), komd.conf(5), komctl(1)" test -f "$root/usr/share/man/man8/komd.8.gz" -a \
	-f "$root/usr/share/man/man5/komd.conf.5.gz" -a -f "$root/usr/share/man/man1/komctl.1.gz"
check "the demo example is installed" test -f "$root/usr/share/doc/komd/examples/komd-demo.conf"

# 3. Purge: none of the package's files, nor anything named after it, is left.
step "apt-get purge komd"
check "apt-get purge komd" logged in_root 300 apt-get purge -y -q komd
left=""
while IFS= read -r f; do
	[ -e "$root$f" ] || [ -L "$root$f" ] || continue
	grep -qxF "$f" <<<"$existed" && continue
	# A directory that a dependency brought and owns (/usr/lib/sysusers.d) stays, rightly.
	[ -d "$root$f" ] && in_root 30 dpkg-query -S "$f" >/dev/null 2>&1 && continue
	left="$left $f"
done <<<"$pkgpaths"
check "no file of the package is left after purge${left:+:$left}" test -z "$left"
named=$(in_root 120 find / -xdev \( -path /proc -o -path /tmp -o -path /var/lib/dpkg -o \
	-path /var/lib/apt -o -path /var/cache/apt -o -path /var/log \) -prune -o -name '*komd*' -print)
check "nothing named komd is left after purge${named:+: $(echo $named)}" test -z "$named"

# 4. Once more, now that the dependencies are there: the whole file list of the root is
# the same before the install and after the purge (the maintainer scripts' files included).
step "install and purge again, comparing the root's file list"
snapshot >"$build/deb-check-before.txt"
check "apt-get install again" logged in_root 300 apt-get install -y -q --no-install-recommends "$pkg"
check "apt-get purge again" logged in_root 300 apt-get purge -y -q komd
snapshot >"$build/deb-check-after.txt"
check "the root's file list after purge is the one before install" \
	diff "$build/deb-check-before.txt" "$build/deb-check-after.txt"

step "done in $(($(date +%s) - t0)) s"
echo "deb-check: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
