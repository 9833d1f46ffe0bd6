package bench

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// hotPath lists the Go benchmarks of the per-line path whose allocations
// are targets (0 allocs/op), by name, with what each one covers.
func hotPath() [][2]string {
	return [][2]string{
		{"BenchmarkFramer", "framing, per line (tailer)"},
		{"BenchmarkAppendLine", "JSON rendering, per line (enrich)"},
		{"BenchmarkWriter", "batch writing, per batch (forward)"},
		{"BenchmarkPipeline", "read+frame+render+batch+write, per line (tailer → forward)"},
	}
}

// goBenchRows turns the allocation figures of the hot-path benchmarks in
// path (the output of `go test -bench -benchmem`) into rows.
func goBenchRows(path string) []Row {
	const name = "throughput"
	if path == "" {
		return []Row{{Scenario: name, Metric: "allocs/op of the hot-path Go benchmarks", Target: "0",
			Measured: "—", Result: NotRun + " (make bench runs them)"}}
	}
	allocs, err := parseGoBench(path)
	if err != nil {
		return []Row{{Scenario: name, Metric: "allocs/op of the hot-path Go benchmarks", Target: "0", Measured: err.Error(), Result: Error}}
	}
	var rows []Row
	for _, b := range hotPath() {
		n, ok := allocs[b[0]]
		if !ok {
			rows = append(rows, Row{Scenario: name, Metric: "allocs/op, " + b[1], Target: "0",
				Measured: b[0] + " not in " + path, Result: Error})
			continue
		}
		rows = append(rows, targetRow(name, "allocs/op, "+b[1], "0", fmt.Sprintf("%d (%s)", n, b[0]), n == 0))
	}
	return rows
}

// parseGoBench returns the allocs/op of every benchmark in path, the
// output of `go test -bench -benchmem`: lines like
// "BenchmarkFramer-2   5000000   31.2 ns/op   0 B/op   0 allocs/op". A
// benchmark with sub-benchmarks gets the highest figure of theirs.
func parseGoBench(path string) (map[string]int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read Go benchmark results: %w", err)
	}
	defer f.Close()
	out := make(map[string]int64)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") || fields[len(fields)-1] != "allocs/op" {
			continue
		}
		n, err := strconv.ParseInt(fields[len(fields)-2], 10, 64)
		if err != nil {
			continue
		}
		name, _, _ := strings.Cut(trimProcs(fields[0]), "/")
		out[name] = max(out[name], n)
	}
	return out, sc.Err()
}

// trimProcs removes the "-GOMAXPROCS" suffix of a benchmark's name.
func trimProcs(name string) string {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return name
	}
	if _, err := strconv.Atoi(name[i+1:]); err != nil {
		return name
	}
	return name[:i]
}
