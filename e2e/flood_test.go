package e2e_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/e2e"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/recv"
)

// Issue 16, item 2: offline, a task that creates 10,000 files named like
// its own log files (fakeN.stdout.0) gets at most --max-streams-per-alloc
// streams; the rest are logged once and counted, and another allocation's
// new line still arrives within 2 s.
func TestOfflineAFloodOfTaskNamesStarvesNobody(t *testing.T) {
	allocDir := t.TempDir()
	const flood, quiet = "f100d000-0000-4000-8000-000000000001", "f100d000-0000-4000-8000-000000000002"
	floodLogs := filepath.Join(allocDir, flood, "alloc", "logs")
	quietLogs := filepath.Join(allocDir, quiet, "alloc", "logs")
	require.NoError(t, os.MkdirAll(floodLogs, 0o777))
	require.NoError(t, os.MkdirAll(quietLogs, 0o777))
	for i := range 10_000 {
		require.NoError(t, os.WriteFile(filepath.Join(floodLogs, fmt.Sprintf("fake%05d.stdout.0", i)), nil, 0o644))
	}
	require.NoError(t, os.WriteFile(filepath.Join(quietLogs, "web.stdout.0"), []byte("first\n"), 0o644))
	r, err := recv.Listen("")
	require.NoError(t, err)
	defer r.Stop()
	addr := freeAddr(t)
	p := e2e.Start(t, "run", "--offline", "--alloc-dir", allocDir, "--checkpoint", filepath.Join(t.TempDir(), "cp"),
		"--output", r.URL(), "--metrics-addr", addr)
	defer p.Kill()
	require.Eventually(t, func() bool { return r.Count() >= 1 }, 20*time.Second, 5*time.Millisecond)

	f, err := os.OpenFile(filepath.Join(quietLogs, "web.stdout.0"), os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	defer f.Close()
	for i := range 5 {
		written := time.Now()
		_, err := fmt.Fprintf(f, "quiet %d\n", i)
		require.NoError(t, err)
		require.Eventually(t, func() bool { return r.Count() >= 2+i }, 2*time.Second, time.Millisecond,
			"another allocation's line within 2 s")
		t.Logf("quiet line %d after %s", i, time.Since(written).Round(time.Millisecond))
	}
	refused := scrapeMetric(t, addr, "nlf_files_refused_total")
	assert.Equal(t, float64(2*(10_000-32)), refused, "every stream left out counted once")
	assert.Equal(t, 1, strings.Count(p.Stderr(), "more task streams than --max-streams-per-alloc"))
	assert.Equal(t, float64(2*32+2), scrapeMetric(t, addr, "nlf_targets_active"))
	rss := scrapeMetric(t, addr, "process_resident_memory_bytes")
	cpu := scrapeMetric(t, addr, "process_cpu_seconds_total")
	t.Logf("RSS %.1f MiB, CPU %.2f s since start", rss/(1<<20), cpu)
	assert.Less(t, rss, float64(100<<20))
}
