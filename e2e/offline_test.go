package e2e_test

import (
	"bytes"
	"fmt"
	"os"
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

// Issue 10, part 2: `run --offline` follows an alloc dir in which Nomad
// made an allocation's folder with an empty alloc/logs before logmon
// started. When logmon then writes 100,000 lines a second into 1 MiB files
// and keeps 5, the daemon finds the new task's stream at once and ships
// every line (a rescan every --reconcile-interval found it 30 s later,
// after most of the files were purged, and said nothing).
func TestOfflineFindsANewTaskAndShipsEveryLine(t *testing.T) {
	allocDir := t.TempDir()
	const alloc = "0ff11e00-0000-4000-8000-000000000001"
	logs, err := logmon.AllocLogDir(allocDir, alloc)
	require.NoError(t, err)
	r, err := recv.Listen("")
	require.NoError(t, err)
	defer r.Stop()
	p := e2e.Start(t, "run", "--offline", "--alloc-dir", allocDir, "--checkpoint", filepath.Join(t.TempDir(), "cp"),
		"--output", r.URL(), "--metrics-addr", "")
	defer p.Kill()
	// The daemon runs (it logs once it forwards) before logmon starts.
	require.Eventually(t, func() bool { return strings.Contains(p.Stderr(), "forwarding task logs") }, 10*time.Second, time.Millisecond)

	rot, err := logmon.New(logs, "app", "stdout", logmon.Options{MaxFiles: 5, FileSize: 1 << 20})
	require.NoError(t, err)
	defer rot.Close()
	const perTick, ticks = 1000, 300 // 100,000 lines a second for 3 s
	pad := []byte(" " + strings.Repeat("x", 60) + "\n")
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var b []byte
	for i := range ticks {
		b = b[:0]
		for j := range perTick {
			b = append(b, "line "...)
			b = append(b, fmt.Sprintf("%07d", i*perTick+j)...)
			b = append(b, pad...)
		}
		_, err := rot.Write(b)
		require.NoError(t, err)
		<-tick.C
	}
	require.Greater(t, len(rot.Purged()), 5, "logmon purged files during the run")
	const total = perTick * ticks
	require.Eventually(t, func() bool { return r.Count() >= total }, 30*time.Second, 10*time.Millisecond,
		"%d of %d lines", r.Count(), total)
	seen := map[string]bool{}
	for _, l := range r.Lines() {
		if i := bytes.Index(l, []byte(`"message":"line `)); i >= 0 {
			seen[string(l[i+len(`"message":"line `):][:7])] = true
		}
	}
	assert.Len(t, seen, total, "every line, once")
	p.Kill()
	assert.NotContains(t, p.Stderr(), "purged before it could be opened")
	_ = os.Remove(logs)
}
