# goipsec: the two commands a new user needs are `make demo` and `make test`.
GO       ?= go
BIN      := bin
PKGS     := ./...
TESTFLAGS ?= -count=1 -timeout 60m

.PHONY: all build demo test test-short fuzz fuzz-long bench bench-net soak clean deps

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

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

# iperf3 through the tunnel next to raw veth, strongSwan (kernel-libipsec) and
# wireguard-go, in one run (root). DURATION=10 STREAMS="1 4" by default.
bench-net: build
	scripts/deps.sh bench
	scripts/bench.sh

# Two daemons, 50 IKE SAs and 200 CHILD SAs rekeying with jitter while pings
# flow through every CHILD SA, for DURATION (default 30m); prints lost
# packets, drops, rekeys, memory and goroutines at the start and the end.
# Not part of make test. Needs root.
DURATION ?= 30m
soak: build
	SOAK_DURATION=$(DURATION) scripts/soak.sh

clean:
	rm -rf $(BIN)
