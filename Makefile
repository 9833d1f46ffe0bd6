GO      ?= go
BIN     := bin/nomad-log-forwarder
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
DEMO    := build/demo
# make image and make release stamp VERSION when it is given (make release
# VERSION=1.2.3), else the release version in the VERSION file, which the
# docker jobspec's default image names.
RELEASE_VERSION := $(if $(filter command line environment,$(origin VERSION)),$(VERSION),$(shell cat VERSION))
DIST    := dist
RELEASE_ARCHES := amd64 arm64
IMAGE   := nomad-log-forwarder

.PHONY: build test demo bench chaos fuzz clean release image

# For this machine, dynamically linked (cgo resolver); make release builds
# the static binaries.
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/nomad-log-forwarder

# dist/: one tarball per architecture (the static binary, the systemd
# unit, the README), and SHA256SUMS. The tarballs are flat, so that a Nomad
# artifact block unpacks the binary to local/nomad-log-forwarder, and
# reproducible (sorted, no owners, no timestamps).
release:
	@case "$(RELEASE_VERSION)" in ""|*/*|*" "*) echo "make release: bad VERSION '$(RELEASE_VERSION)'" >&2; exit 2;; esac
	rm -rf $(DIST) && mkdir -p $(DIST)
	set -e; for arch in $(RELEASE_ARCHES); do \
		name=nomad-log-forwarder_$(RELEASE_VERSION)_linux_$$arch; \
		stage=$(DIST)/.stage-$$arch; mkdir -p $$stage; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath \
			-ldflags "-s -w -X main.version=$(RELEASE_VERSION)" -o $$stage/nomad-log-forwarder ./cmd/nomad-log-forwarder; \
		cp deploy/nomad-log-forwarder.service README.md $$stage/; \
		tar -C $$stage --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf - . | gzip -9n > $(DIST)/$$name.tar.gz; \
		rm -rf $$stage; \
	done
	cd $(DIST) && sha256sum *.tar.gz > SHA256SUMS
	@cat $(DIST)/SHA256SUMS

# The image deploy/nomad-log-forwarder.nomad.hcl runs by default. Docker
# always pulls :latest tags, so the image is tagged with the version only.
image:
	docker build -f deploy/Dockerfile --build-arg VERSION=$(RELEASE_VERSION) -t $(IMAGE):$(RELEASE_VERSION) .

# The whole suite, race detector on; the end-to-end tests build the binary
# themselves. vet runs for every release architecture: syscall types differ
# between them (Stat_t.Nlink is 32 bits on arm64).
test:
	set -e; for arch in $(RELEASE_ARCHES); do GOARCH=$$arch $(GO) vet ./...; done
	$(GO) test -race ./...

# Ships the captured Nomad 2.0.5 sample logs (testdata/) to stdout, with
# the metadata from the saved allocations response, then shows the
# checkpoint it left.
demo: build
	@rm -rf $(DEMO) && mkdir -p $(DEMO)
	$(BIN) run --offline --once \
		--alloc-dir testdata/nomad-2.0.5/alloc-logs \
		--allocs-file testdata/nomad-2.0.5/api/node-allocations.json \
		--checkpoint $(DEMO)/checkpoint.msgpack \
		--log-format console
	@echo
	$(BIN) offsets list --checkpoint $(DEMO)/checkpoint.msgpack --alloc-dir testdata/nomad-2.0.5/alloc-logs

# The fault suite at the sizes issue 4 names: every scenario prints its
# summary line (scenario=... written=... delivered_unique=... missing=...
# duplicates=...). `make test` runs the same scenarios in a short form.
chaos:
	$(GO) test ./chaos -count=1 -v -timeout 60m -args -chaos.full

# The Go benchmarks of the hot path (allocations per line), then the
# end-to-end scenarios on the built binary against the yardstick; one table.
# BENCH_FLAGS passes options to nlf-bench, e.g. BENCH_FLAGS="-quick" or
# BENCH_FLAGS="-scenario many-streams -profile-dir build/profiles".
BENCH_FLAGS ?=
bench: build
	$(GO) build -o bin/ideal ./bench/ideal
	$(GO) build -o bin/nlf-bench ./cmd/nlf-bench
	@mkdir -p build
	$(GO) test -run '^$$' -bench . -benchmem ./... > build/gobench.txt || { cat build/gobench.txt; exit 1; }
	@grep -E '^(Benchmark|ok|FAIL|pkg)' build/gobench.txt
	bin/nlf-bench -forwarder $(BIN) -ideal bin/ideal -gobench build/gobench.txt $(BENCH_FLAGS)

fuzz:
	$(GO) test ./tailer -run '^$$' -fuzz FuzzFramer -fuzztime 30s
	$(GO) test ./enrich -run '^$$' -fuzz FuzzRenderIsValidJSON -fuzztime 30s
	$(GO) test ./enrich -run '^$$' -fuzz FuzzEscapingMatchesTheByteWiseReference -fuzztime 30s
	$(GO) test ./checkpoint -run '^$$' -fuzz FuzzDecode -fuzztime 30s
	$(GO) test ./internal/multiline -run '^$$' -fuzz FuzzCombiner -fuzztime 30s
	$(GO) test ./internal/multiline -run '^$$' -fuzz FuzzRestart -fuzztime 30s
	$(GO) test ./enrich -run '^$$' -fuzz FuzzValidJSON -fuzztime 30s
	$(GO) test ./enrich -run '^$$' -fuzz FuzzRecordIsValidJSON -fuzztime 30s
	$(GO) test ./enrich -run '^$$' -fuzz FuzzEventIsValidJSON -fuzztime 30s

clean:
	rm -rf bin build $(DIST)
