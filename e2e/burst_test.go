package e2e_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/e2e"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/logmon"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/recv"
)

// A task writes 200,000 lines of 80 bytes (16 MB) in one go; logmon
// writes them into 1 MiB files and keeps 3, as fast as it can, so each
// file lives a few milliseconds. The daemon, following in offline mode
// with the stream's first file there from the start, opens each file the
// moment it appears: every line arrives, and nothing is reported lost.
// (Nomad 2.0.5 purged 83% of such a burst within half a second,
// nomad-logs.md section 8.)
func TestAFastBurstIsShippedWhole(t *testing.T) {
	const lines = 200_000
	allocDir := t.TempDir()
	const alloc = "b0b0b0b0-0000-4000-8000-000000000001"
	dir, err := logmon.AllocLogDir(allocDir, alloc)
	require.NoError(t, err)
	rot, err := logmon.New(dir, "burst", "stdout", logmon.Options{MaxFiles: 3, FileSize: 1 << 20})
	require.NoError(t, err)
	defer rot.Close()
	r, err := recv.Listen("")
	require.NoError(t, err)
	defer r.Stop()

	p := e2e.Start(t, "run", "--offline", "--alloc-dir", allocDir, "--checkpoint", filepath.Join(t.TempDir(), "cp"),
		"--output", r.URL(), "--metrics-addr", "")
	defer p.Kill()
	_, err = rot.Write([]byte("ready\n"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return r.Count() >= 1 }, 10*time.Second, time.Millisecond, "the daemon follows the stream")

	// The whole burst from memory, handed over in one write: the logmon
	// imitation takes it 32 KiB at a time, as logmon takes it from the
	// task's pipe, rotating and purging as it goes.
	var burst strings.Builder
	for i := range lines {
		fmt.Fprintf(&burst, "burst line %07d %s\n", i, strings.Repeat("x", 80-len("burst line 0000000 \n")))
	}
	start := time.Now()
	_, err = rot.Write([]byte(burst.String()))
	require.NoError(t, err)
	took := time.Since(start)
	require.Greater(t, len(rot.Purged()), 10, "the burst rotated and purged as logmon does")

	require.Eventually(t, func() bool { return r.Count() >= lines+1 }, 60*time.Second, 5*time.Millisecond,
		"every line arrives (%d of %d so far; the burst took %s over %d files)", r.Count(), lines+1, took, rot.Index()+1)
	got := r.Lines()
	seen := make(map[string]bool, len(got))
	for _, l := range got {
		i := strings.Index(string(l), `burst line `)
		if i >= 0 {
			seen[string(l[i:i+len("burst line 0000000")])] = true
		}
	}
	assert.Len(t, seen, lines, "each line once")
	p.Kill()
	assert.NotContains(t, p.Stderr(), "purged before it could be opened")
	t.Logf("burst of %d lines over %d files in %s", lines, rot.Index()+1, took)
}
