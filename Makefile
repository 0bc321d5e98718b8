# podbox — build, test and demo. Everything here runs as root on Debian 12;
# `make deps` installs what the rest needs, and every target that needs it
# calls it first, so a fresh machine needs only `make test` or `make demo`.

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
PREFIX   ?= /usr/local
BIN      := $(CURDIR)/bin
GOBIN    ?= $(shell $(GO) env GOPATH)/bin
STATICCHECK := v0.8.2
# crictl drives containerd's CRI plugin in the integration tests; it is not a
# Debian package, so `make deps` builds it with go install.
CRICTL   := v1.34.0

# Static, stripped, reproducible binaries: the pause runs in an empty root
# filesystem, and the shim and CLI must not depend on the host's libc.
GOBUILD  := CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)"
BINARIES := podbox podbox-image podbox-cni podbox-kube containerd-shim-podbox-v1 podbox-pause

# Debian packages the tests, the demo and the benchmarks use.
DEB_PACKAGES := runc containerd containernetworking-plugins busybox-static \
                iproute2 iptables nftables util-linux procps time

export PODBOX_BIN_DIR := $(BIN)
# Go tools that `make deps` installs (crictl) land in GOBIN; tests look them up
# on PATH.
export PATH := $(GOBIN):$(PATH)

.PHONY: all deps build test unit-test fuzz fuzz-short soak lint generate demo bench install clean pause-image containerd2

all: build

deps:
	@missing=""; \
	for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "deps: Debian packages present"; fi
	@if command -v crictl >/dev/null 2>&1; then echo "deps: crictl present"; \
	else echo "deps: installing crictl $(CRICTL) into $(GOBIN)"; \
	  GOBIN=$(GOBIN) $(GO) install sigs.k8s.io/cri-tools/cmd/crictl@$(CRICTL); fi

build: $(addprefix $(BIN)/,$(BINARIES))

$(BIN)/%: FORCE
	@mkdir -p $(BIN)
	$(GOBUILD) -o $@ ./cmd/$*

FORCE:

# The sandbox (pause) image for containerd's CRI, written in Go by podbox
# itself: `ctr -n k8s.io images import bin/podbox-pause.tar`.
pause-image: build
	$(BIN)/podbox pause-image -o $(BIN)/podbox-pause.tar

# containerd 2.x for the containerd integration tests (Debian has only 1.6).
# It is a separate module under integration/containerd2 so that podbox's own
# go.mod never carries containerd 2's dependencies; the tests build it
# themselves when bin/containerd2 is missing.
containerd2:
	@mkdir -p $(BIN)
	cd integration/containerd2 && $(GO) build -trimpath -o $(BIN)/containerd2 .

# Unit and privileged tests together: privileged tests create their own node
# network namespace, and under CI=true they fail instead of skipping. A short
# fuzzing pass follows.
test: deps build
	$(GO) test -count=1 -timeout 15m ./...
	$(MAKE) fuzz-short

# Fuzzing: every FuzzXxx target of the module (the parsers of what users,
# manifests, registries and the disk hand podbox) runs for FUZZTIME, one
# after the other (hack/fuzz.sh). A failing input lands in the package's
# testdata/fuzz/FuzzXxx/: commit it with its fix, as a regression that
# plain `go test` runs. fuzz-short is make test's pass: about 2 s a target,
# under 2 minutes on these 2 cores; `make fuzz` searches longer, and FUZZ
# picks targets: make fuzz FUZZ=FuzzPlayArgs FUZZTIME=10m.
FUZZTIME ?= 1m
FUZZ     ?= .
fuzz:
	GO=$(GO) bash hack/fuzz.sh $(FUZZTIME) '$(FUZZ)'

fuzz-short:
	GO=$(GO) bash hack/fuzz.sh 2s '$(FUZZ)'

# The soak (integration/soak_test.go): create → run → exec → rm cycles with
# the leak check after every so many, figures of time and memory into
# bench/results/soak.json. make test runs its short form (50 cycles, a
# check every 25); this is the long one, a few minutes to an hour by the
# machine's load: make soak SOAK_CYCLES=200 SOAK_CHECK_EVERY=50 for less.
SOAK_CYCLES      ?= 1000
SOAK_CHECK_EVERY ?= 100
soak: deps build
	PODBOX_SOAK_CYCLES=$(SOAK_CYCLES) PODBOX_SOAK_CHECK_EVERY=$(SOAK_CHECK_EVERY) \
	PODBOX_SOAK_OUT=$(CURDIR)/bench/results/soak.json \
	  $(GO) test -count=1 -timeout 4h -run '^TestSoak$$' -v ./integration/

# Tests that need neither root nor binaries.
unit-test:
	$(GO) test -count=1 -short ./...

lint:
	@bad=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$bad" ]; then echo "gofmt would change:"; echo "$$bad"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK) ./...

# Regenerates the checked-in Go code of the containerd APIs podbox speaks
# (runtime/apitypes, tasktypes, taskapi, sandboxapi, eventsapi, taskevents:
# see hack/gen-api.sh); not part of build or test. Needs protoc and
# the well-known types' .proto files (Debian's protobuf-compiler and
# libprotobuf-dev); the result must equal what is committed:
# `make generate && git diff --exit-code`.
generate:
	@dpkg-query -W -f='$${Status}' protobuf-compiler libprotobuf-dev 2>/dev/null | grep -c "install ok installed" | grep -qx 2 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends protobuf-compiler libprotobuf-dev; }
	bash hack/gen-api.sh

demo: deps build
	BIN=$(BIN) bash integration/demo/demo.sh

# podbox against containerd 1.6 + runc (CRI, bridge CNI, crictl) and a raw
# runc floor, in one run inside a node namespace of its own (bench/main.go):
# writes bench/results/latest.{json,md} and scale.png, puts the table into
# README.md's Benchmarks section and prints it.
# BENCHFLAGS shrinks or grows it, e.g. BENCHFLAGS="-runs 5 -scale 20".
# The pause's footprint benchmark (binary size, PSS, anonymous) runs first.
BENCHFLAGS ?=
bench: deps build containerd2
	$(GO) test -run '^$$' -bench . -benchtime 1x ./pause/... ./cmd/podbox-pause/...
	$(GO) build -o $(BIN)/bench ./bench
	$(BIN)/bench -bin $(BIN) -out bench/results -repo $(CURDIR) -readme $(CURDIR)/README.md $(BENCHFLAGS)

install: build
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(addprefix $(BIN)/,$(BINARIES)) $(DESTDIR)$(PREFIX)/bin/

clean:
	rm -rf $(BIN) build
