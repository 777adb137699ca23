# komd: communication daemon for SCADA, energy and industrial telemetry.
# Targets: all run check asan fuzz bench install deb deb-check clean deps

PREFIX     ?= /usr/local
SYSCONFDIR ?= $(PREFIX)/etc
SBINDIR    ?= $(PREFIX)/sbin
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
DOCDIR     ?= $(PREFIX)/share/doc/komd
UNITDIR    ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
DESTDIR    ?=
VERSION    := 0.1.0

CC      ?= cc
BUILD   ?= build
PKGS    := libevent libevent_openssl libconfig libsystemd openssl jansson
# snprintf truncation of status and log text is deliberate, so -Wno-format-truncation.
WARN    := -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes -Werror -Wno-format-truncation -Wno-unknown-warning-option
CFLAGS  ?= -O2 -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) $(EXTRA_CFLAGS) \
	-DKOMD_VERSION='"$(VERSION)"' -DSYSCONFDIR='"$(SYSCONFDIR)"' -Idaemon -Iprotocols
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
LDLIBS   = $(PKG_LIBS) -lcrypt -lm

# Debian packages the build and the tests need (the deps step installs what is missing).
# Peers we did not write, for the tests (../shared/PEERS.md): pymodbus, libmodbus, tshark,
# mosquitto and its clients, paho-mqtt, libmosquitto (bench peers), chromium (a real browser
# for the status page, headless), ActiveMQ (a broker that loses nothing it acknowledged, for
# test_mqtt_loss; its MQTT transport needs libmqtt-client-java, which the package does not
# pull in; no instance is enabled, so installing it starts no service); JSON is jansson.
DEB_PKGS := gcc make pkg-config libevent-dev libconfig-dev libssl-dev libsystemd-dev \
	openssl python3 iproute2 procps man-db systemd bc clang libclang-rt-14-dev \
	python3-pymodbus python3-serial-asyncio python3-aiohttp libmodbus-dev tshark socat \
	python3-scapy valgrind libjansson-dev mosquitto mosquitto-clients python3-paho-mqtt \
	libmosquitto-dev debhelper lintian debootstrap chromium activemq libmqtt-client-java

CORE_SRCS := $(filter-out daemon/main.c daemon/komctl.c,$(wildcard daemon/*.c)) $(wildcard protocols/*.c)
# Generated sources: the status page (daemon/status.html) as a C array, by od and sed alone.
GEN_SRCS  := $(BUILD)/gen/status_page.c
CORE_OBJS := $(CORE_SRCS:%.c=$(BUILD)/%.o) $(GEN_SRCS:%.c=%.o)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
# Test peers and load generators linked against libraries we did not write: mb*.c against
# libmodbus, mqtt_*.c against libmosquitto.
PEER_SRCS := $(wildcard tests/peers/*.c)
PEER_BINS := $(PEER_SRCS:tests/peers/%.c=$(BUILD)/peers/%)
peer_lib = $(if $(filter mqtt_%,$(1)),libmosquitto,libmodbus)
# npm peers (tests/peers/node: mqtt-packet for the scripted broker), from the committed lockfile.
NODE_PEERS := tests/peers/node/node_modules/.package-lock.json

.PHONY: all deps run check test unit integ asan fuzz bench install deb deb-check clean

all: deps $(BUILD)/komd $(BUILD)/komctl

# Install missing Debian packages (stamp in the build dir; checked again when the
# Makefile, and so perhaps the list, changes).
deps: $(BUILD)/.deps $(NODE_PEERS)
$(BUILD)/.deps: Makefile
	@mkdir -p $(BUILD)
	@missing=""; for p in $(DEB_PKGS); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "deps: installing missing Debian packages:$$missing"; \
		SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		echo "wireshark-common wireshark-common/install-setuid boolean false" | $$SUDO debconf-set-selections; \
		$$SUDO apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing || exit 1; \
	fi
	@touch $@

# Node.js: one already on PATH with its npm (it may conflict with Debian's npm), else Debian's.
$(NODE_PEERS): tests/peers/node/package-lock.json | $(BUILD)/.deps
	@command -v npm >/dev/null || { echo "deps: installing nodejs npm"; SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends nodejs npm; }
	cd tests/peers/node && npm ci --no-audit --no-fund
	@touch $@

$(BUILD)/%.o: %.c | $(BUILD)/.deps
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(PKG_CFLAGS) -MMD -MP -c -o $@ $<

# daemon/status.html as http_status_page[] (http.h), byte for byte: od and sed are in every
# Debian (coreutils, sed), unlike xxd.
$(BUILD)/gen/status_page.c: daemon/status.html
	@mkdir -p $(dir $@)
	{ echo '/* generated from daemon/status.html by the Makefile: do not edit */'; \
	  echo '#include <stddef.h>'; echo '#include "http.h"'; \
	  echo 'const unsigned char http_status_page[] = {'; \
	  od -An -v -tx1 $< | sed -e 's/ \([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	  echo '};'; echo 'const size_t http_status_page_len = sizeof(http_status_page);'; } > $@.tmp && mv $@.tmp $@

$(BUILD)/gen/%.o: $(BUILD)/gen/%.c | $(BUILD)/.deps
	$(CC) $(ALL_CFLAGS) $(PKG_CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/libkomd.a: $(CORE_OBJS)
	ar rcs $@ $^

$(BUILD)/komd: $(BUILD)/daemon/main.o $(BUILD)/libkomd.a
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/komctl: $(BUILD)/daemon/komctl.o
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(BUILD)/libkomd.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The demo. Its MQTT line needs a broker on 127.0.0.1:11883: when none listens there, a
# private mosquitto (conf/demo-mosquitto.conf) runs beside komd and stops with it.
DEMO_MQTT_PORT := 11883
run: all
	@if /usr/bin/python3 -c 'import socket; socket.create_connection(("127.0.0.1", $(DEMO_MQTT_PORT)), 1)' 2>/dev/null; then \
		echo "run: an MQTT broker listens on 127.0.0.1:$(DEMO_MQTT_PORT) already; the demo's MQTT line uses it"; \
		exec $(BUILD)/komd -f -c conf/komd.conf; \
	fi; \
	echo "run: starting a private mosquitto on 127.0.0.1:$(DEMO_MQTT_PORT) for the demo's MQTT line (stops with komd)"; \
	mosquitto -c conf/demo-mosquitto.conf & mpid=$$!; \
	trap 'kill $$mpid 2>/dev/null' EXIT INT TERM; \
	$(BUILD)/komd -f -c conf/komd.conf; rc=$$?; kill $$mpid 2>/dev/null; wait $$mpid; exit $$rc

# All tests: unit programs, then integration tests against a fresh komd each.
check: test
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(CHECK_FUZZ_SECONDS)

$(BUILD)/peers/%: tests/peers/%.c | $(BUILD)/.deps
	@mkdir -p $(dir $@)
	cc -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -pthread $$(pkg-config --cflags $(call peer_lib,$*)) \
		-o $@ $< $$(pkg-config --libs $(call peer_lib,$*))

# prometheus and promtool for test_http, out of Debian's package without installing it
# (installing would start a server on every interface): apt-get download, dpkg-deb -x.
PROM := $(BUILD)/prometheus/usr/bin/prometheus
$(PROM): | $(BUILD)/.deps
	rm -rf $(BUILD)/prometheus && mkdir -p $(BUILD)/prometheus
	cd $(BUILD)/prometheus && { apt-get download -q prometheus 2>/dev/null || \
		{ SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; $$SUDO apt-get update -q && apt-get download -q prometheus; }; } && \
		dpkg-deb -x prometheus_*.deb . && rm -f prometheus_*.deb
	@touch $@

# The unit and integration tests alone (no fuzzing).
test: all $(UNIT_BINS) $(PEER_BINS) $(PROM)
	@tests/run-tests $(BUILD)

unit: all $(UNIT_BINS)
	@tests/run-tests --unit $(BUILD)

integ: all $(PROM)
	@tests/run-tests --integ $(BUILD)

# Benchmarks: komd and a peer side by side in one run (tests/bench/).
bench: all $(PEER_BINS)
	KOMD_BUILD=$(BUILD) /usr/bin/python3 tests/bench/core_bench.py
	KOMD_BUILD=$(BUILD) /usr/bin/python3 tests/bench/tls_bench.py
	@if [ -e tests/bench/modbus_bench.py ]; then KOMD_BUILD=$(BUILD) /usr/bin/python3 tests/bench/modbus_bench.py; fi
	KOMD_BUILD=$(BUILD) /usr/bin/python3 tests/bench/mqtt_bench.py

# libFuzzer targets (tests/fuzz/fuzz_*.c), each with its seed corpus in tests/fuzz/corpus/NAME.
FUZZ_SECONDS ?= 60
CHECK_FUZZ_SECONDS ?= 60
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=build-fuzz/%)
CODEC_SRCS := $(wildcard protocols/*_codec.c)
FUZZ_FLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Iprotocols -Idaemon

build-fuzz/%: tests/fuzz/%.c $(CODEC_SRCS) | $(BUILD)/.deps
	@mkdir -p build-fuzz
	clang $(FUZZ_FLAGS) -o $@ $< $(CODEC_SRCS) -lm

# The mqtt-client payload module: value.c (value_parse, value_format; log.c for its fatal)
# and jansson beside the codecs (mqtt_codec.c's topic name check).
build-fuzz/fuzz_mqtt_json: tests/fuzz/fuzz_mqtt_json.c protocols/mqtt_json.c daemon/value.c daemon/log.c \
		$(CODEC_SRCS) | $(BUILD)/.deps
	@mkdir -p build-fuzz
	clang $(FUZZ_FLAGS) $$(pkg-config --cflags jansson) -o $@ $(filter %.c,$^) $$(pkg-config --libs jansson) -lm

# Targets that need the whole core (the configuration loader with every protocol's keys and
# checks; the control socket; the protocol engines driven through sessions).
CORE_FUZZ := fuzz_conf fuzz_control fuzz_engine fuzz_hostlist
$(foreach t,$(CORE_FUZZ),build-fuzz/$(t)): build-fuzz/%: tests/fuzz/%.c $(CORE_SRCS) $(GEN_SRCS) | $(BUILD)/.deps
	@mkdir -p build-fuzz
	clang $(FUZZ_FLAGS) $(PKG_CFLAGS) -DKOMD_VERSION='"$(VERSION)"' -DSYSCONFDIR='"$(SYSCONFDIR)"' \
		-o $@ $< $(CORE_SRCS) $(GEN_SRCS) $(LDLIBS)

# Each target for FUZZ_SECONDS, two at a time (the machine has two cores).
FUZZ_JOBS ?= 2
fuzz: $(FUZZ_BINS)
	@printf '%s\n' $(FUZZ_BINS) | xargs -P $(FUZZ_JOBS) -I{} sh -c '\
		f={}; n=$$(basename $$f); n=$${n#fuzz_}; mkdir -p build-fuzz/corpus-$$n; \
		echo "fuzz: $$f for $(FUZZ_SECONDS) s"; \
		if LSAN_OPTIONS=suppressions=$(CURDIR)/tests/fuzz/lsan.supp $$f -max_total_time=$(FUZZ_SECONDS) \
			-print_final_stats=1 -artifact_prefix=build-fuzz/$$n- build-fuzz/corpus-$$n tests/fuzz/corpus/$$n \
			2>build-fuzz/$$n.log; then \
			echo "fuzz: $$n: $$(grep -E "stat::number_of_executed_units" build-fuzz/$$n.log)"; \
		else tail -n 40 build-fuzz/$$n.log; echo "fuzz: $$n FAILED"; exit 255; fi'

# The whole suite under AddressSanitizer and UndefinedBehaviorSanitizer.
asan:
	$(MAKE) BUILD=build-asan CC=clang \
		CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
		LDFLAGS="-fsanitize=address,undefined" test

install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 \
		$(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(SYSCONFDIR)/komd/komd.conf.d
	install -m 0755 $(BUILD)/komd $(DESTDIR)$(SBINDIR)/komd
	install -m 0755 $(BUILD)/komctl $(DESTDIR)$(BINDIR)/komctl
	install -m 0644 man/komctl.1 $(DESTDIR)$(MANDIR)/man1/komctl.1
	install -m 0644 man/komd.conf.5 $(DESTDIR)$(MANDIR)/man5/komd.conf.5
	install -m 0644 man/komd.8 $(DESTDIR)$(MANDIR)/man8/komd.8
	sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
		systemd/komd.service > $(DESTDIR)$(UNITDIR)/komd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/komd.service
	install -d $(DESTDIR)$(SYSUSERSDIR)
	install -m 0644 systemd/komd.sysusers $(DESTDIR)$(SYSUSERSDIR)/komd.conf
	[ -n "$(DESTDIR)" ] || systemd-sysusers $(SYSUSERSDIR)/komd.conf
	[ -e $(DESTDIR)$(SYSCONFDIR)/komd/komd.conf ] || \
		install -m 0640 $(if $(DESTDIR),,-g komd) conf/komd.conf.skel $(DESTDIR)$(SYSCONFDIR)/komd/komd.conf
	install -d $(DESTDIR)$(DOCDIR)/examples
	sed -e 's|^control_socket = .*|control_socket = "/run/komd/komd-demo.sock";|' \
		conf/komd.conf > $(DESTDIR)$(DOCDIR)/examples/komd-demo.conf
	chmod 0644 $(DESTDIR)$(DOCDIR)/examples/komd-demo.conf
	install -m 0644 contrib/grafana/komd.json $(DESTDIR)$(DOCDIR)/examples/grafana-komd.json

# The Debian package, built with debhelper (debian/) from a copy of the tree in
# $(BUILD)/deb, so that the tree stays clean; no tests (make check runs them); lintian must
# report no error.
DEB_DIR  = $(BUILD)/deb
DEB_FILE = $(DEB_DIR)/komd_$(VERSION)_$(shell dpkg --print-architecture).deb
deb: $(BUILD)/.deps
	@v=$$(dpkg-parsechangelog -l debian/changelog -S Version); [ "$$v" = "$(VERSION)" ] || \
		{ echo "deb: debian/changelog is at $$v, the Makefile at $(VERSION): add an entry (dch -v $(VERSION))"; exit 1; }
	rm -rf $(DEB_DIR) && mkdir -p $(DEB_DIR)/komd-$(VERSION)
	tar -c --exclude='./build*' --exclude=./.git --exclude='*.sock' --exclude=__pycache__ \
		--exclude=node_modules . | \
		tar -x -C $(DEB_DIR)/komd-$(VERSION)
	cd $(DEB_DIR)/komd-$(VERSION) && DEB_BUILD_OPTIONS="nocheck parallel=$$(nproc) $$DEB_BUILD_OPTIONS" \
		timeout 900 dpkg-buildpackage -b -us -uc
	timeout 600 lintian --allow-root --fail-on error $(DEB_FILE)
	@echo "deb: $(DEB_FILE)"

# The package in a fresh Debian root (debootstrap; needs root): install, komd -t, komctl -h,
# purge, nothing left behind (tests/deb-check.sh).
deb-check: deb
	tests/deb-check.sh $(DEB_FILE) $(BUILD)

clean:
	rm -rf build build-asan build-fuzz

# (not the copy that make deb builds in $(BUILD)/deb, whose komd.conf.d is a directory)
-include $(shell find $(BUILD) -path $(BUILD)/deb -prune -o -name '*.d' -type f -print 2>/dev/null)
