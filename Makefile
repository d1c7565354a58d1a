# bagpipe-go. `make test` is what CI runs (.ci/run), on a fresh Debian 12
# machine as root: it installs what the tests need, then checks and tests.

GO          ?= go
TOOLS_BIN   := $(CURDIR)/.tools/bin
STATICCHECK := $(TOOLS_BIN)/staticcheck
CONFIG      ?= etc/bagpipe-bgp/bgp.conf.example
# Per fuzz target: a bounded pass in `make test`, a longer one in `make fuzz`.
FUZZTIME_CI ?= 10s
FUZZTIME    ?= 2m
# Whole `go test` run; `make test` must stay under 30 minutes on 2 cores.
TEST_TIMEOUT ?= 20m

.PHONY: test deps fmt-check vet staticcheck unit fuzz-ci fuzz build run demo bench-bgp bench-evpn bench-ovs bench-controlplane clean

test: deps fmt-check vet staticcheck fuzz-ci unit

deps:
	bash scripts/install-deps.sh
	bash scripts/install-original.sh

fmt-check:
	@files="$$(find . -name '*.go' -not -path './.git/*' -not -path './.tools/*' -print0 | xargs -0 gofmt -l)"; \
	if [ -n "$$files" ]; then echo "gofmt needed on:"; echo "$$files"; exit 1; fi

vet:
	$(GO) vet ./...

staticcheck: deps
	$(STATICCHECK) ./...

unit:
	bash scripts/gotest.sh $(TEST_TIMEOUT)

fuzz-ci:
	bash scripts/fuzz.sh $(FUZZTIME_CI)

fuzz:
	bash scripts/fuzz.sh $(FUZZTIME)

build:
	$(GO) build -o bin/ ./cmd/...

run: build
	./bin/bagpipe-bgp --config-file $(CONFIG)

# bagpipe-server, three compute nodes (bagpipe-agent + bagpipe-bgp) and a
# route reflector in network namespaces; a network, ports and a BGPVPN made
# through the server's API, VMs pinging, then a clean teardown. Needs root
# (sudo otherwise).
demo:
	$(if $(filter 0,$(shell id -u)),,sudo) bash scripts/install-demo-deps.sh
	$(GO) build -o $(TOOLS_BIN)/ ./cmd/bagpipe-bgp ./cmd/bagpipe-server ./cmd/bagpipe-agent ./cmd/bagpipe-demo
	$(if $(filter 0,$(shell id -u)),,sudo) $(TOOLS_BIN)/bagpipe-demo -bagpipe-bgp $(TOOLS_BIN)/bagpipe-bgp \
		-bagpipe-server $(TOOLS_BIN)/bagpipe-server -bagpipe-agent $(TOOLS_BIN)/bagpipe-agent $(DEMO_FLAGS)

bench-bgp: deps
	$(GO) run ./cmd/bench-bgp $(BENCH_FLAGS)

# Linux E-VPN dataplane: FDB entries/s driver vs raw netlink, attach → remote
# FDB latency, 1,000-port convergence. Needs root (network namespaces).
bench-evpn:
	$(GO) run ./cmd/bench-evpn $(BENCH_FLAGS)

# OVS IP-VPN dataplane: 10,000 remote prefixes through the driver vs one raw
# ovs-ofctl bundle, attach → remote flow latency. Needs root and Open vSwitch.
bench-ovs: deps
	$(GO) run ./cmd/bench-ovs $(BENCH_FLAGS)

# Control plane end to end: 1,000 ports created through bagpipe-server's API
# across 3 nodes (bagpipe-bgp + bagpipe-agent processes in namespaces) → API
# creates/s, time until all are attached and every remote MAC is in every FDB.
# Needs root (network namespaces); runs the binaries it builds.
bench-controlplane:
	$(GO) build -o $(TOOLS_BIN)/ ./cmd/bagpipe-bgp ./cmd/bagpipe-agent ./cmd/bagpipe-server ./cmd/bench-controlplane
	$(if $(filter 0,$(shell id -u)),,sudo) $(TOOLS_BIN)/bench-controlplane $(BENCH_FLAGS)

clean:
	rm -rf bin
