package tailer_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/checkpoint"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/enrich"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/safefs"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/tailer"
)

func lagEntry(task, stream string, index, offset int64) checkpoint.Entry {
	return checkpoint.Entry{AllocID: testAlloc, Task: task, Stream: stream, FileIndex: index, Offset: offset}
}

func TestLagBytesCountsTheRestOfTheStream(t *testing.T) {
	h := newHarness(t)
	h.writeFile("web.stdout.0", "old file, already shipped\n")
	h.writeFile("web.stdout.1", "0123456789")
	h.writeFile("web.stdout.2", "abcde")
	h.writeFile("web.stdout.3", "xyz")
	h.writeFile("web.stdout.10", "a far index dropped into the folder is not logmon's")
	h.writeFile("web.stderr.1", "another stream")
	h.writeFile("api.stdout.1", "another task")
	h.writeFile(".web.stdout.fifo", "not a log file")
	lag := func(e checkpoint.Entry) int64 {
		t.Helper()
		n, err := tailer.LagBytes(h.root, e)
		require.NoError(t, err)
		return n
	}
	assert.Equal(t, int64(10-4+5+3), lag(lagEntry("web", "stdout", 1, 4)))
	assert.Equal(t, int64(5+3), lag(lagEntry("web", "stdout", 1, 100)), "a file shorter than the offset counts as nothing")
	assert.Equal(t, int64(5+3), lag(lagEntry("web", "stdout", 2, 0)))

	// Where log files should be: nothing that is not a regular file counts,
	// and a FIFO with no writer does not block.
	outside := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(outside, []byte("SECRET"), 0o600))
	require.NoError(t, os.Symlink(outside, filepath.Join(h.logDir(), "web.stdout.4")))
	require.NoError(t, syscall.Mkfifo(filepath.Join(h.logDir(), "web.stdout.5"), 0o666))
	require.NoError(t, os.Mkdir(filepath.Join(h.logDir(), "web.stdout.6"), 0o755))
	assert.Equal(t, int64(5+3), lag(lagEntry("web", "stdout", 2, 0)))

	_, err := tailer.LagBytes(h.root, lagEntry("gone", "stdout", 0, 0))
	assert.NoError(t, err, "a stream with no file yet lags by nothing")
	bad := lagEntry("web", "stdout", 0, 0)
	bad.AllocID = "../" + testAlloc
	_, err = tailer.LagBytes(h.root, bad)
	assert.Error(t, err)
	missing := lagEntry("web", "stdout", 0, 0)
	missing.AllocID = "99999999-2222-3333-4444-555555555555"
	_, err = tailer.LagBytes(h.root, missing)
	assert.Error(t, err, "a folder that cannot be read: the lag is unknown, not 0")
}

// The daemon's lag metrics: per namespace and job, and per stream with
// its retention (max_files x max_file_size).
func TestLagMetricsPerJobAndStream(t *testing.T) {
	h := newHarness(t)
	h.writeFile("web.stdout.0", "one\n")
	gate := make(chan struct{})
	h.out.gate = gate // nothing is confirmed: everything lags
	web := target("web", "stdout")
	web.Meta.Namespace, web.Meta.JobName = "default", "chatty"
	web.MaxFiles, web.MaxFileSizeMB = 3, 1
	p := h.daemon(web)
	defer p.stop()
	defer close(gate)
	c := p.mgr.NewLagCollector()
	require.Eventually(t, func() bool {
		return testutil.CollectAndCount(c, "nlf_stream_lag_bytes") == 1
	}, 10*time.Second, time.Millisecond)
	assert.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(`
# HELP nlf_lag_bytes Bytes in task log files not yet confirmed forwarded, per namespace and job (the streams of the node).
# TYPE nlf_lag_bytes gauge
nlf_lag_bytes{job="chatty",namespace="default"} 4
# HELP nlf_stream_lag_bytes Bytes in a task stream's log files not yet confirmed forwarded.
# TYPE nlf_stream_lag_bytes gauge
nlf_stream_lag_bytes{job="chatty",namespace="default",stream="stdout",task="web"} 4
# HELP nlf_stream_retention_bytes What logmon keeps of a task stream: max_files x max_file_size of the task's logs block. Headroom = retention - lag; time to loss = headroom / write rate.
# TYPE nlf_stream_retention_bytes gauge
nlf_stream_retention_bytes{job="chatty",namespace="default",stream="stdout",task="web"} 3.145728e+06
`)))
}

// The retention warning: once a stream lags by more than half of what
// logmon keeps, the next purges lose lines; it is said once.
func TestLagAboveHalfTheRetentionIsWarnedOnce(t *testing.T) {
	h := newHarness(t)
	h.writeFile("web.stdout.0", strings.Repeat("x", 600<<10)+"\n")
	gate := make(chan struct{})
	h.out.gate = gate
	web := target("web", "stdout")
	web.MaxFiles, web.MaxFileSizeMB = 1, 1
	p := h.daemon(web)
	defer p.stop()
	defer close(gate)
	c := p.mgr.NewLagCollector()
	require.Eventually(t, func() bool {
		testutil.CollectAndCount(c)
		return h.logs.FilterMessageSnippet("lags by more than half").Len() == 1
	}, 10*time.Second, time.Millisecond)
	testutil.CollectAndCount(c)
	assert.Equal(t, 1, h.logs.FilterMessageSnippet("lags by more than half").Len(), "said once")
}

// BenchmarkLagBytesHostileFolder is one stream's share of a scrape when a
// task planted 20,000 files named like its log files in its folder.
func BenchmarkLagBytesHostileFolder(b *testing.B) {
	allocDir := b.TempDir()
	logs := filepath.Join(allocDir, testAlloc, "alloc", "logs")
	require.NoError(b, os.MkdirAll(logs, 0o755))
	for i := range 20_000 {
		require.NoError(b, os.WriteFile(filepath.Join(logs, fmt.Sprintf("web.stdout.%d", 2*i)), []byte("x"), 0o644))
	}
	root, err := safefs.OpenRoot(allocDir)
	require.NoError(b, err)
	defer root.Close()
	e := lagEntry("web", "stdout", 0, 0)
	b.ReportAllocs()
	for b.Loop() {
		if n, err := tailer.LagBytes(root, e); err != nil || n == 0 {
			b.Fatal("no lag measured", err)
		}
	}
}

func TestLagBytesSaysWhenItCannotMeasure(t *testing.T) {
	h := newHarness(t)
	h.writeFile("web.stdout.0", "x")
	gone := lagEntry("web", "stdout", 0, 0)
	gone.AllocID = "0b7f3c5e-1111-2222-3333-444455556666"
	_, err := tailer.LagBytes(h.root, gone)
	require.Error(t, err)
	assert.Contains(t, err.Error(), filepath.Join(h.root.Path(), gone.AllocID, "alloc", "logs"))

	bad := lagEntry("web", "stdout", 0, 0)
	bad.AllocID = "../" + testAlloc
	_, err = tailer.LagBytes(h.root, bad)
	require.Error(t, err)
}

// Two allocations of one job run the same task on a node: their streams
// are two series, and the scrape stays valid (the same labels twice would
// fail every scrape of /metrics).
func TestTwoAllocationsOfOneJobShareOneSeriesSummed(t *testing.T) {
	h := newHarness(t)
	h.writeFile("web.stdout.0", "one\n")
	const second = "22222222-2222-3333-4444-555555555555"
	dir := filepath.Join(h.allocDir, second, "alloc", "logs")
	require.NoError(t, os.MkdirAll(dir, 0o777))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "web.stdout.0"), []byte("two!\n"), 0o644))
	gate := make(chan struct{})
	h.out.gate = gate
	a, b := target("web", "stdout"), target("web", "stdout")
	b.Target.AllocID, b.Meta.AllocID = second, second
	for _, d := range []*enrich.Desired{&a, &b} {
		d.Meta.Namespace, d.Meta.JobName = "default", "chatty"
		d.MaxFiles, d.MaxFileSizeMB = 3, 1
	}
	p := h.daemon(a, b)
	defer p.stop()
	defer close(gate)
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(p.mgr.NewLagCollector()))
	// The output holds every batch (gate): both files are lag, 4 + 5 bytes.
	want := `
# HELP nlf_stream_lag_bytes Bytes in a task stream's log files not yet confirmed forwarded.
# TYPE nlf_stream_lag_bytes gauge
nlf_stream_lag_bytes{job="chatty",namespace="default",stream="stdout",task="web"} 9
`
	require.Eventually(t, func() bool {
		return testutil.GatherAndCompare(reg, strings.NewReader(want), "nlf_stream_lag_bytes") == nil
	}, 10*time.Second, time.Millisecond, "one series, the two allocations' lag summed")
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP nlf_stream_retention_bytes What logmon keeps of a task stream: max_files x max_file_size of the task's logs block. Headroom = retention - lag; time to loss = headroom / write rate.
# TYPE nlf_stream_retention_bytes gauge
nlf_stream_retention_bytes{job="chatty",namespace="default",stream="stdout",task="web"} 6.291456e+06
`), "nlf_stream_retention_bytes"), "a valid scrape, retention summed (2 x 3 x 1 MiB)")
}
