package bench

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/e2e"
)

// The harness at toy sizes: every scenario runs against the built binary
// and gives its rows. The figures are not checked (speed is for `make
// bench` on a quiet machine); that the lines arrived, once, is.
func TestHarnessPrintsOneTableWithEveryScenario(t *testing.T) {
	gobench := filepath.Join(t.TempDir(), "gobench.txt")
	require.NoError(t, os.WriteFile(gobench, []byte(sampleGoBench), 0o644))
	rows, err := Run(t.Context(), Config{
		Forwarder: e2e.Binary(t), Ideal: e2e.Build(t, "./bench/ideal"),
		Lines: 20_000, Repeat: 1, Allocs: 5, Rate: 100, ScaleAllocs: 10,
		ManyStreams: 300 * time.Millisecond, Idle: 300 * time.Millisecond, Settle: 100 * time.Millisecond, APILoad: 1500 * time.Millisecond,
		GoBench: gobench, Fixtures: "../../testdata/nomad-2.0.5/api",
	})
	require.NoError(t, err)
	var table bytes.Buffer
	require.NoError(t, WriteTable(&table, rows))
	t.Logf("\n%s", table.String())

	for _, r := range rows {
		assert.NotEqual(t, Error, r.Result, "%s: %s", r.Scenario, r.Measured)
	}
	for _, name := range Names() {
		assert.Contains(t, table.String(), "| "+name+" ", "a row for %s", name)
	}
	lines := strings.Split(strings.TrimSpace(table.String()), "\n")
	require.Len(t, lines, len(rows)+2, "header, rule, one line per row")
	for _, l := range lines {
		assert.Equal(t, len([]rune(lines[0])), len([]rune(l)), "aligned columns: %q", l)
	}

	byMetric := map[string]Row{}
	for _, r := range rows {
		byMetric[r.Scenario+": "+r.Metric] = r
	}
	assert.Equal(t, Pass, byMetric["many-streams: lines delivered"].Result, "every line written live arrives once")
	assert.Equal(t, Pass, byMetric["restart: lines delivered"].Result)
	assert.Equal(t, Pass, byMetric["restart: lines sent again after the restart"].Result)
	assert.Equal(t, "0 (BenchmarkPipeline)", byMetric["throughput: allocs/op, read+frame+render+batch+write, per line (tailer → forward)"].Measured)
	assert.Equal(t, Fail, byMetric["throughput: allocs/op, batch writing, per batch (forward)"].Result, "the sample says 1 alloc/op")
	for _, r := range rows {
		if r.Scenario == "http" && r.Metric != "lines per request" {
			assert.Equal(t, "informational", r.Target, "the HTTP output's cost is reported beside the socket output's: %s", r.Metric)
			assert.True(t, strings.HasPrefix(r.Yardstick, "TCP: "), "%s: %s", r.Metric, r.Yardstick)
		}
	}
	assert.Equal(t, Pass, byMetric["discovery: on disk first: lines delivered"].Result, "the first lines of every new allocation arrive once")
	assert.Equal(t, Pass, byMetric["discovery: listed first: lines delivered"].Result)
	assert.Equal(t, Pass, byMetric["scale: lines delivered"].Result)
	assert.Equal(t, Pass, byMetric["scale (capped): lines delivered"].Result)
	assert.Equal(t, Pass, byMetric["scale: restart: lines sent again"].Result)
}

const sampleGoBench = `goos: linux
pkg: github.com/nomad-log-forwarder/nomad-log-forwarder/enrich
BenchmarkAppendLine-2   	10049416	       115.3 ns/op	 824.04 MB/s	       0 B/op	       0 allocs/op
pkg: github.com/nomad-log-forwarder/nomad-log-forwarder/forward
BenchmarkWriter-2   	  178551	      6603 ns/op	39693.02 MB/s	         8.465 ns/line	       48 B/op	       1 allocs/op
pkg: github.com/nomad-log-forwarder/nomad-log-forwarder/tailer
BenchmarkFramer-2      	74503545	        17.47 ns/op	5265.29 MB/s	       0 B/op	       0 allocs/op
BenchmarkPipeline-2    	 4193588	       282.3 ns/op	 325.87 MB/s	       286.6 cpu-ns/op	       0 B/op	       0 allocs/op
BenchmarkReadLines/nxadm-tail-2         	  557498	      1899 ns/op	      1914 cpu-ns/op	     182 B/op	       2 allocs/op
BenchmarkReadLines/tailer-2             	65270277	        18.11 ns/op	        18.42 cpu-ns/op	       0 B/op	       0 allocs/op
PASS
`

func TestParseGoBench(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gobench.txt")
	require.NoError(t, os.WriteFile(path, []byte(sampleGoBench), 0o644))
	got, err := parseGoBench(path)
	require.NoError(t, err)
	assert.Equal(t, map[string]int64{
		"BenchmarkAppendLine": 0, "BenchmarkWriter": 1, "BenchmarkFramer": 0, "BenchmarkPipeline": 0,
		"BenchmarkReadLines": 2, // the highest of its sub-benchmarks
	}, got)
}

func TestMarksSurviveTheRoundTrip(t *testing.T) {
	b := appendMark(nil, 42, 1234567, 1764079200123456789)
	assert.Len(t, b, markLen)
	stream, seq, written, ok := parseMark(b)
	require.True(t, ok)
	assert.Equal(t, []int64{42, 1234567, 1764079200123456789}, []int64{int64(stream), seq, written})
	_, _, _, ok = parseMark([]byte("#00042 x"))
	assert.False(t, ok)
}
