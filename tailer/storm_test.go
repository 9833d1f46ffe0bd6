package tailer_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/logmon"
)

// Rotation storms, stalled outputs and the held-file budget: what a burst
// does when the stream cannot keep up, and that nothing is lost silently.

// Streams rely on inotify for new files; once the watcher is gone they
// look for themselves, at the fallback poll's pace, not the safety net's.
func TestStreamsPollWhenTheWatcherDies(t *testing.T) {
	h := newHarness(t)
	h.poll = time.Hour // the safety-net poll never comes in this test
	h.writeFile("web.stdout.0", "zero\n")
	p := h.daemon(target("web", "stdout"))
	defer p.stop()
	h.waitLines(1)
	p.stopWatcher()
	h.appendFile("web.stdout.0", "more\n")
	h.writeFile("web.stdout.1", "one\n")
	got := h.waitLines(3)
	assert.Equal(t, []string{"zero", "more", "one"}, messages(got))
}

// stormFile is one file's worth of storm lines (64 KiB files hold 600).
func stormFile(file int) string {
	var b strings.Builder
	for i := range 600 {
		fmt.Fprintf(&b, "storm %03d %03d %s\n", file, i, strings.Repeat("y", 90))
	}
	return b.String()
}

// stalledStorm starts a stream of a task whose logmon keeps 3 files of
// 64 KiB, with an output that takes its first write and then holds.
func stalledStorm(t *testing.T, h *harness) (*logmon.Rotator, chan struct{}, *pipeline) {
	rot, err := logmon.New(h.logDir(), "web", "stdout", logmon.Options{MaxFiles: 3, FileSize: 64 << 10})
	require.NoError(t, err)
	t.Cleanup(func() { rot.Close() })
	_, err = rot.Write([]byte("first\n"))
	require.NoError(t, err)
	gate := make(chan struct{})
	h.out.gate = gate
	web := target("web", "stdout")
	web.MaxFiles = 3
	p := h.daemon(web)
	require.Eventually(t, func() bool {
		h.out.mu.Lock()
		defer h.out.mu.Unlock()
		return h.out.writes > 0
	}, 10*time.Second, time.Millisecond, "the output holds the first write")
	return rot, gate, p
}

// Issue 10, part 3: while the output is stalled, a task rotates through
// far more files than a stream used to hold (16), with max_files = 3: the
// stream holds every file as it appears, logmon's purge only unlinks them,
// and once the output takes lines again every line arrives. The held
// files are the buffer; the budget counts them as purged bytes.
func TestAStormWhileTheOutputIsStalledLosesNothing(t *testing.T) {
	h := newHarness(t)
	h.maxHeld = 1024
	h.batchBytes = 64 << 10
	rot, gate, p := stalledStorm(t, h)
	defer p.stop()
	defer h.out.open(gate)
	const files = 60
	for f := range files {
		_, err := rot.Write([]byte(stormFile(f)))
		require.NoError(t, err)
		// The stream opened this file as it appeared (the writer waits
		// for it: a logmon imitation in the test's process would write a
		// file in microseconds, while real files live milliseconds).
		require.Eventually(t, func() bool { return testutil.ToFloat64(h.metrics.HeldFiles) >= float64(rot.Index()+1) },
			10*time.Second, 100*time.Microsecond, "file %d held", rot.Index())
	}
	require.Greater(t, len(rot.Purged()), files-5, "logmon purged all but the newest 3")
	assert.Greater(t, testutil.ToFloat64(h.metrics.HeldBytes), float64((files-5)*60<<10), "the purged files' bytes are held")

	h.out.open(gate)
	h.waitCount(files*600 + 1)
	msgs := messages(h.out.lines(t))
	require.Len(t, msgs, files*600+1)
	assert.Equal(t, "first", msgs[0])
	for f := range files {
		assert.Equal(t, strings.Split(strings.TrimSuffix(stormFile(f), "\n"), "\n"), msgs[1+f*600:1+(f+1)*600], "file %d", f)
	}
	assert.Zero(t, testutil.ToFloat64(h.metrics.FilesSkipped))
	assert.Zero(t, testutil.ToFloat64(h.metrics.FilesDropped))
	// Once read and confirmed, the purged files are let go.
	require.Eventually(t, func() bool { return testutil.ToFloat64(h.metrics.HeldBytes) == 0 }, 10*time.Second, time.Millisecond)
}

// When the node-wide budget is full, the stream holding the most purged
// files gives its oldest up: the loss is logged with the file and counted,
// and the stream goes on with the newest files.
func TestAFullBudgetGivesUpTheOldestPurgedFileLoudly(t *testing.T) {
	h := newHarness(t)
	h.maxHeld = 8
	rot, gate, p := stalledStorm(t, h)
	defer p.stop()
	defer h.out.open(gate)
	const files = 16
	for f := range files {
		_, err := rot.Write([]byte(stormFile(f)))
		require.NoError(t, err)
		// A file is given room when logmon's next rotation would purge
		// it (with max_files = 3: once two newer files exist); until then
		// it waits in its folder without a loss.
		require.Eventually(t, func() bool {
			return testutil.ToFloat64(h.metrics.HeldFiles)+testutil.ToFloat64(h.metrics.FilesDropped) >= float64(rot.Index()+1-2)
		}, 10*time.Second, 100*time.Microsecond, "file %d held, or room made for it", rot.Index()-2)
		assert.LessOrEqual(t, testutil.ToFloat64(h.metrics.HeldFiles), 8.0, "the stream made room before it opened more")
	}
	dropped := int(testutil.ToFloat64(h.metrics.FilesDropped))
	assert.Equal(t, rot.Index()+1-2-8, dropped)
	assert.Equal(t, dropped, h.logs.FilterMessageSnippet("giving up the oldest").Len(), "each file given up is logged")
	assert.Zero(t, testutil.ToFloat64(h.metrics.FilesSkipped))

	h.out.open(gate)
	// The newest files arrive whole.
	want := strings.Split(strings.TrimSuffix(stormFile(files-1), "\n"), "\n")
	require.Eventually(t, func() bool {
		m := messages(h.out.lines(t))
		return len(m) >= len(want) && assert.ObjectsAreEqual(want, m[len(m)-len(want):])
	}, 20*time.Second, 5*time.Millisecond)
}

// Issue 10, part 2: logmon starts every stream at index 0, so a stream
// with no checkpoint whose lowest file is above 0 lost the files below
// before anyone read them (the daemon was down while a new allocation
// rotated, or the API listed it late): each is logged and counted.
func TestAStreamFirstSeenAboveIndexZeroReportsTheFilesBelow(t *testing.T) {
	h := newHarness(t)
	h.writeFile("web.stdout.3", "three\n")
	h.writeFile("web.stdout.4", "four\n")
	h.runOnce(target("web", "stdout"))
	assert.Equal(t, []string{"three", "four"}, messages(h.out.lines(t)))
	assert.Equal(t, 3.0, testutil.ToFloat64(h.metrics.FilesSkipped))
	assert.Equal(t, 3, h.logs.FilterMessageSnippet("before the stream was first seen").Len())

	// With a checkpoint the start is where it says: nothing more is counted.
	h.out = newMemOutput()
	h.appendFile("web.stdout.4", "more\n")
	h.runOnce(target("web", "stdout"))
	assert.Equal(t, []string{"more"}, messages(h.out.lines(t)))
	assert.Equal(t, 0.0, testutil.ToFloat64(h.metrics.FilesSkipped), "a new run's metrics start at 0")
}
