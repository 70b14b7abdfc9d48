# lvsd: a userspace Linux Virtual Server.  `make help` lists the targets.

GO      ?= go
BIN     ?= bin
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
PKGS    := ./...
# A static binary by default (no libc needed: lvsd uses no cgo); CGO_ENABLED=1
# on the command line overrides it. The race detector needs cgo: test and
# unit turn it back on.
export CGO_ENABLED ?= 0

.DEFAULT_GOAL := help

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/lvsd (static: CGO_ENABLED=0)
	$(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o $(BIN)/lvsd ./cmd/lvsd

man: build ## bin/lvsd.8, the man page, from lvsd's own help
	$(GO) run ./internal/docgen man $(BIN)/lvsd > $(BIN)/lvsd.8

completion: build ## bin/lvsd.bash, bash (and zsh with bashcompinit) completion from lvsd's own help
	$(GO) run ./internal/docgen bash $(BIN)/lvsd > $(BIN)/lvsd.bash

dist: build man completion ## bin/: lvsd, its man page and completion; dist/lvsd.service is the systemd unit

lab-deps: ## install what the lab tests use and the machine lacks (ip, ping, iperf, chromium-headless-shell), when root with apt-get; make test runs it
	@need=""; \
	command -v ip >/dev/null 2>&1 || need="$$need iproute2"; \
	command -v ping >/dev/null 2>&1 || need="$$need iputils-ping"; \
	command -v iperf >/dev/null 2>&1 || need="$$need iperf"; \
	command -v chromium-headless-shell >/dev/null 2>&1 || need="$$need chromium-headless-shell"; \
	if [ -n "$$need" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing$$need for the lab tests"; \
			DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$need; \
		else echo "missing$$need: the lab tests that need them skip"; fi; \
	fi

# The e2e package runs under -race too, on purpose: its lab helpers are
# concurrent code (capture readers, keep-alive clients, teardown on every exit
# path), and the race detector costs the labs little, because the test process
# mostly waits: lvsd and the lab servers are built without -race (lab.BuildBinaries),
# and a whole e2e run, compiling included, used about 2 minutes of CPU (user and
# system) in 9 m 42 s of wall time on a shared machine, 5 m 39 s once most labs ran
# in parallel (e2e/doc.go): waiting, not the race detector, is what takes the time.
# -parallel 4: the parallel labs mostly wait, so four at a time on 2 CPUs; the
# labs whose assertions are about load or time run alone (e2e/doc.go).
test: fmt-check vet tidy-check lint lab-deps ## run every check and test: gofmt, vet, go mod tidy, staticcheck, unit, packet-level and namespace labs (labs need root; LVSD_E2E=1 makes a skip a failure)
	CGO_ENABLED=1 $(GO) test -race -count=1 -parallel 4 -timeout 20m $(PKGS)

unit: ## run the tests that need no privileges (labs skip)
	CGO_ENABLED=1 $(GO) test -race -count=1 -short $(PKGS)

integration: ## run only the namespace lab tests (root)
	$(GO) test -count=1 -v -timeout 20m ./e2e/

bench: ## benchmark suite (root): lvsd NAT/DR/TUN vs nftables DNAT, HAProxy and a direct path, 5 rounds of 5 s (about 40 min; BENCHFLAGS=-queue-sweep adds 2 and 4 queues); writes docs/benchmarks.md
	$(GO) run ./bench $(BENCHFLAGS)

bench-go: ## Go benchmarks of the packet path, connection table, persistence templates, schedulers and AF_PACKET device
	$(GO) test -run '^$$' -bench . -benchmem ./forward/ ./conntrack/ ./persist/ ./sched/ ./device/

fuzz: ## fuzz every parser for 30 s each
	$(GO) test -run '^$$' -fuzz '^FuzzProcess$$' -fuzztime 30s ./forward/
	$(GO) test -run '^$$' -fuzz '^FuzzReassembly$$' -fuzztime 30s ./forward/
	$(GO) test -run '^$$' -fuzz '^FuzzSynproxyOptions$$' -fuzztime 30s ./forward/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeSnapshot$$' -fuzztime 30s ./conntrack/
	$(GO) test -run '^$$' -fuzz '^FuzzManifest$$' -fuzztime 30s ./takeover/
	$(GO) test -run '^$$' -fuzz '^FuzzHandoffState$$' -fuzztime 30s ./director/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime 30s ./config/
	$(GO) test -run '^$$' -fuzz '^FuzzDecap$$' -fuzztime 30s ./realserver/
	$(GO) test -run '^$$' -fuzz '^FuzzCoalesce$$' -fuzztime 30s ./realserver/
	$(GO) test -run '^$$' -fuzz '^FuzzProberTake$$' -fuzztime 30s ./stack/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime 30s ./adm/
	$(GO) test -run '^$$' -fuzz '^FuzzHTTPCheck$$' -fuzztime 30s ./health/
	$(GO) test -run '^$$' -fuzz '^FuzzKeptHTTPCheck$$' -fuzztime 30s ./health/
	$(GO) test -run '^$$' -fuzz '^FuzzDNSCheck$$' -fuzztime 30s ./health/
	$(GO) test -run '^$$' -fuzz '^FuzzStatusLine$$' -fuzztime 30s ./health/
	$(GO) test -run '^$$' -fuzz '^FuzzConvert$$' -fuzztime 30s ./keepalived/
	$(GO) test -run '^$$' -fuzz '^FuzzParseFilter$$' -fuzztime 30s ./capture/
	$(GO) test -run '^$$' -fuzz '^FuzzParsePacket$$' -fuzztime 30s ./control/

vet: ## go vet
	$(GO) vet $(PKGS)

lint: ## staticcheck, the version pinned by go.mod's tool directive (built from the module cache; no separate install)
	$(GO) tool staticcheck $(PKGS)

tidy-check: ## fail if go mod tidy would change go.mod or go.sum
	$(GO) mod tidy -diff

fmt-check: ## fail if gofmt would change a file
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

demo: ## build lvsd, start a namespace lab with three real servers, balance HTTP in NAT mode, tear down (root)
	$(GO) run ./internal/lab/demo

clean-lab: ## remove namespaces left by an interrupted lab whose process is gone (names lvt-<pid>-*)
	@for ns in $$(ip netns list 2>/dev/null | awk '{print $$1}' | grep -E '^lvt-[0-9]+-'); do \
		pid=$$(echo $$ns | cut -d- -f2); \
		if ! kill -0 $$pid 2>/dev/null; then ip netns del $$ns && echo "removed $$ns"; fi; \
	done

clean: ## remove build output
	rm -rf $(BIN)

.PHONY: help lab-deps build man completion dist test unit integration bench bench-go fuzz vet lint tidy-check fmt-check demo clean-lab clean
