GO      ?= go
BIN     := bin/nomad-log-forwarder
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
DEMO    := build/demo

.PHONY: build test demo bench chaos fuzz clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/nomad-log-forwarder

# The whole suite, race detector on; the end-to-end tests build the binary
# themselves.
test:
	$(GO) vet ./...
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
	$(GO) test ./checkpoint -run '^$$' -fuzz FuzzDecode -fuzztime 30s

clean:
	rm -rf bin build
