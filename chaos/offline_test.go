package chaos_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/logmon"
)

// offline-new-task: `run --offline` follows an alloc dir in which Nomad
// made an allocation's folder with an empty alloc/logs, as it does before
// logmon starts; then logmon writes 100,000 lines a second into 1 MiB
// files of which it keeps 5. The scanner watches each allocation's logs
// folder, so the new task is found at once: nothing is lost.
func TestOfflineNewTask(t *testing.T) {
	seconds := pick(2, 3)
	w := newWorld(t, worldConfig{pad: 60, logmon: logmon.Options{MaxFiles: 5, FileSize: 1 << 20}})
	spec := specs("o", 1)
	require.NoError(t, os.MkdirAll(filepath.Join(w.allocDir, spec[0].AllocID, "alloc", "logs"), 0o777))
	p := w.startDaemon("--offline")
	waitFor(t, 10*time.Second, "the daemon to run", func() bool { return strings.Contains(p.Stderr(), "forwarding task logs") })

	start := time.Now()
	s := w.addStreams(spec...)[0]
	require.NoError(t, s.Write(1))
	waitFor(t, 10*time.Second, "the new task's first line", func() bool { return w.recv.Count() >= 1 })
	found := time.Since(start)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for range 100 * seconds {
		require.NoError(t, s.Write(1000)) // 100,000 lines a second
		<-tick.C
	}
	waitFor(t, 60*time.Second, "every line", func() bool { w.update(); return w.tally.CaughtUp() })
	skipped := w.metric("nlf_files_skipped_total")
	w.stopDaemon(p)

	rep := w.report("offline-new-task")
	rep.Add("files", s.Index()+1)
	rep.Add("purged", len(s.Purged()))
	rep.Add("found_after", found.Round(time.Millisecond))
	rep.Add("files_skipped_metric", skipped)
	fmt.Println(rep.Summary())

	require.Greater(t, len(s.Purged()), 0, "logmon purged files while the task ran")
	assert.Less(t, found, time.Second, "the new task is found within a second")
	assert.Zero(t, rep.Missing)
	assert.Zero(t, rep.Duplicates)
	assert.Zero(t, rep.Unparsed)
	assert.Zero(t, skipped)
}
