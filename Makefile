# goipsec: the two commands a new user needs are `make demo` and `make test`.
GO       ?= go
BIN      := bin
PKGS     := ./...
TESTFLAGS ?= -count=1 -timeout 60m

.PHONY: all build demo test test-short fuzz fuzz-long bench bench-net bench-compare bench-xsk bench-ike soak rekey-load scale-peers clean deps install uninstall dist

all: build

# The VCS revision goes into the binaries (ipsecd --version, ipsecctl
# version) also where the go command cannot stamp it itself (a git worktree,
# GOFLAGS=-buildvcs=false); a stamped revision takes precedence.
BUILDINFO := github.com/goipsec/goipsec/internal/buildinfo
REVISION  := $(shell git rev-parse HEAD 2>/dev/null)
MODIFIED  := $(shell test -n "$$(git status --porcelain --untracked-files=no 2>/dev/null)" && echo true || echo false)
VCSFLAGS  := -X $(BUILDINFO).revision=$(REVISION) -X $(BUILDINFO).modified=$(MODIFIED)

build:
	$(GO) build -buildvcs=auto -ldflags '$(VCSFLAGS)' -o $(BIN)/ ./cmd/...

# make install: the binaries to $(SBINDIR) (default /usr/local/sbin), the
# example configuration to /etc/goipsec/goipsec.yaml (mode 0600, only if
# there is none), the systemd units goipsec.service and goipsec-early.service
# to $(UNITDIR) (/etc/systemd/system, the administrator's units) pointing at
# $(SBINDIR). DESTDIR stages it all.
PREFIX     ?= /usr/local
SBINDIR    ?= $(PREFIX)/sbin
SYSCONFDIR ?= /etc
UNITDIR    ?= /etc/systemd/system
DESTDIR    ?=
install: build
	install -d -m 0755 $(DESTDIR)$(SBINDIR) $(DESTDIR)$(UNITDIR)
	install -m 0755 $(BIN)/ipsecd $(BIN)/ipsecctl $(DESTDIR)$(SBINDIR)/
	install -d -m 0700 $(DESTDIR)$(SYSCONFDIR)/goipsec
	test -e $(DESTDIR)$(SYSCONFDIR)/goipsec/goipsec.yaml || \
		install -m 0600 packaging/goipsec.yaml $(DESTDIR)$(SYSCONFDIR)/goipsec/goipsec.yaml
	for u in goipsec.service goipsec-early.service; do \
		sed -e 's|/usr/sbin/|$(SBINDIR)/|g' -e 's|/etc/goipsec/|$(SYSCONFDIR)/goipsec/|g' \
			packaging/$$u >$(DESTDIR)$(UNITDIR)/$$u && chmod 0644 $(DESTDIR)$(UNITDIR)/$$u || exit 1; \
	done
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "installed; edit $(SYSCONFDIR)/goipsec/goipsec.yaml, then: systemctl enable --now goipsec"

# Removes what make install put in place but the configuration.
uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/ipsecd $(DESTDIR)$(SBINDIR)/ipsecctl $(DESTDIR)$(UNITDIR)/goipsec.service \
		$(DESTDIR)$(UNITDIR)/goipsec-early.service

# make dist: static binaries for each of DISTARCHES in $(DIST)/linux-ARCH/
# and a .deb per architecture in $(DIST)/ (packaging/nfpm.yaml, built by
# packaging/mkdeb with nfpm as a library; a module of its own, built first).
DIST       ?= dist
DISTARCHES ?= amd64 arm64
DEBVERSION ?= $(or $(shell git log -1 --format=0.0.0~git%cd.%h --date=format:%Y%m%d%H%M%S --abbrev=12 2>/dev/null),0.0.0~dev)
dist:
	$(GO) build -C packaging/mkdeb -o $(abspath $(DIST))/mkdeb .
	@for arch in $(DISTARCHES); do \
		echo "dist: linux/$$arch"; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -buildvcs=auto -trimpath \
			-ldflags '-s -w $(VCSFLAGS)' -o $(DIST)/linux-$$arch/ ./cmd/ipsecd ./cmd/ipsecctl || exit 1; \
		$(DIST)/mkdeb -arch $$arch -version '$(DEBVERSION)' -bin $(DIST)/linux-$$arch -o $(DIST) || exit 1; \
	done

deps:
	scripts/deps.sh test

# The whole suite, as .ci/run runs it. Installs the Debian packages it needs.
test: deps
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet $(PKGS)
	$(GO) test $(TESTFLAGS) $(PKGS)
	scripts/fuzz.sh $(FUZZSHORT) stateful

test-short:
	$(GO) test -short $(PKGS)

# Two peers in two network namespaces, ping through the tunnel, print the SAs,
# tear everything down. Needs root.
demo: build
	scripts/deps.sh demo
	scripts/demo.sh

# Each fuzz target for FUZZTIME (default 1m).
FUZZTIME ?= 1m
fuzz:
	scripts/fuzz.sh $(FUZZTIME)

# The stateful fuzz targets (IKE SA states, live inbound SAs) for their full
# time, FUZZLONG each (default 10m); make test runs them for FUZZSHORT.
FUZZLONG ?= 10m
FUZZSHORT ?= 15s
fuzz-long:
	scripts/fuzz.sh $(FUZZLONG) stateful

bench:
	$(GO) test -run XXX -bench . -benchtime 1s ./esp ./ah ./replay

# The performance report (scripts/bench.sh, root): iperf3 and ping through
# the tunnel next to raw veth, strongSwan (kernel-libipsec) and wireguard-go,
# internal/dataplane's SA-scale benchmarks, and IKE handshakes against charon
# (scripts/ikeload.sh), in one run: one table per part with the ratios, and
# all of it with every run's values as JSON in $(BENCH_JSON). BENCH_PARTS
# picks parts (default "net latency scale ike"), BENCH_QUICK=1 shrinks sizes
# and counts; see docs/performance.md, "Running the benchmarks".
BENCH_JSON ?= $(BIN)/bench-net.json
bench-net: build
	scripts/deps.sh bench
	BENCH_JSON=$(BENCH_JSON) scripts/bench.sh

# Raw ESP over a veth received and sent by raw sockets and by AF_XDP
# (internal/xsk), next to ESP in UDP with GSO and GRO, in one run (root):
# XSK_ROUNDS (7) interleaved rounds of XSK_PACKETS (300000) packets per
# case; medians and ranges of packets per second and CPU per packet. About
# 4 minutes. docs/performance.md, "AF_XDP on veth, measured".
XSK_ROUNDS ?= 7
XSK_PACKETS ?= 300000
bench-xsk:
	GOIPSEC_XSK_BENCH=1 GOIPSEC_XSK_BENCH_ROUNDS=$(XSK_ROUNDS) GOIPSEC_XSK_BENCH_PACKETS=$(XSK_PACKETS) \
		$(GO) test -count=1 -v -timeout 30m -run TestXSKBench ./internal/xsk

# Each figure of two bench-net JSON files, old -> new, with the ratio:
# make bench-compare OLD=before.json NEW=after.json
bench-compare:
	scripts/bench.sh compare $(OLD) $(NEW)

# IKEv2 handshakes per second, latency and memory per IKE SA of ipsecd as a
# responder next to strongSwan's charon (kernel-libipsec), driven by
# cmd/ikeload in two namespaces: RUNS=3 runs, SIZES="1000 10000" IKE SAs
# held established, CONC=50 concurrent, interleaved. Needs root.
bench-ike:
	scripts/deps.sh bench
	scripts/ikeload.sh

# Two daemons, 50 IKE SAs and 200 CHILD SAs rekeying with jitter while pings
# flow through every CHILD SA, for SOAK_DURATION (default 30m); prints lost
# packets, drops, rekeys, memory and goroutines at the start and the end.
# Not part of make test. Needs root.
SOAK_DURATION ?= 30m
soak: build
	SOAK_DURATION=$(SOAK_DURATION) scripts/soak.sh

# Issue 8's rekey-under-load proof at full length: iperf3 TCP through the
# tunnel for REKEY_LOAD (60s) per run, CHILD SA rekeyed every 5 s and IKE
# SA every 20 s from both sides, interleaved with runs without rekeying,
# REKEY_LOAD_PAIRS (3) pairs, goipsec and strongSwan as the peer; prints
# medians and spread of goodput and retransmissions. Not part of make
# test (which runs one 20 s pair). Needs root.
REKEY_LOAD ?= 60s
REKEY_LOAD_PAIRS ?= 3
rekey-load:
	scripts/deps.sh test
	REKEY_LOAD=$(REKEY_LOAD) REKEY_LOAD_PAIRS=$(REKEY_LOAD_PAIRS) scripts/rekeyload.sh

# One hub with SCALE_PEERS (default 200) on-demand peers, each in its own
# namespace running ipsecd: setup time and the hub's memory. Not part of
# make test. Needs root.
SCALE_PEERS ?= 200
scale-peers:
	SCALE_PEERS=$(SCALE_PEERS) scripts/scale-peers.sh

clean:
	rm -rf $(BIN) $(DIST)
