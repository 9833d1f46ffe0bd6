package tailer_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/checkpoint"
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
	h.writeFile("web.stdout.10", "xyz")
	h.writeFile("web.stderr.1", "another stream")
	h.writeFile("api.stdout.1", "another task")
	h.writeFile(".web.stdout.fifo", "not a log file")
	// Where log files should be: nothing that is not a regular file counts,
	// and a FIFO with no writer does not block.
	outside := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(outside, []byte("SECRET"), 0o600))
	require.NoError(t, os.Symlink(outside, filepath.Join(h.logDir(), "web.stdout.3")))
	require.NoError(t, syscall.Mkfifo(filepath.Join(h.logDir(), "web.stdout.4"), 0o666))
	require.NoError(t, os.Mkdir(filepath.Join(h.logDir(), "web.stdout.5"), 0o755))

	lag := func(e checkpoint.Entry) int64 {
		t.Helper()
		n, err := tailer.LagBytes(h.root, e)
		require.NoError(t, err)
		return n
	}
	assert.Equal(t, int64(10-4+5+3), lag(lagEntry("web", "stdout", 1, 4)))
	assert.Equal(t, int64(5+3), lag(lagEntry("web", "stdout", 1, 100)), "a file shorter than the offset counts as nothing")
	assert.Equal(t, int64(0), lag(lagEntry("gone", "stdout", 0, 0)), "a readable folder without the stream's files: 0")
}

// A folder that cannot be read is an unknown lag, not 0: the error names
// the folder, for `offsets list` to say which.
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

// A task can fill its log folder with names that look like its own log
// files: a scrape looks at a bounded number of them, the lowest indexes.
func TestLagBytesCountsAtMostLagFilesPerStream(t *testing.T) {
	h := newHarness(t)
	for i := range tailer.LagFiles + 100 {
		h.writeFile(fmt.Sprintf("web.stdout.%d", i+7), "x")
	}
	h.writeFile("web.stdout.7", strings.Repeat("x", 100))
	h.writeFile("web.stdout.1000000", strings.Repeat("y", 1000))
	got, err := tailer.LagBytes(h.root, lagEntry("web", "stdout", 7, 40))
	require.NoError(t, err)
	assert.Equal(t, int64(100-40+tailer.LagFiles-1), got, "the file at the offset and the next LagFiles-1 by index")

	store, err := checkpoint.Open(h.ckptPath, nil)
	require.NoError(t, err)
	store.Commit(lagEntry("web", "stdout", 7, 40))
	done := lagEntry("api", "stdout", 0, 0)
	done.Finished = true
	h.writeFile("api.stdout.0", "finished streams do not count")
	store.Commit(done)
	c := tailer.NewLagCollector(h.root, store)
	assert.Equal(t, float64(got), testutil.ToFloat64(c))
}

// BenchmarkLagBytesHostileFolder is one stream's share of a scrape when a
// task planted 20,000 files named like its log files in its folder.
func BenchmarkLagBytesHostileFolder(b *testing.B) {
	allocDir := b.TempDir()
	logs := filepath.Join(allocDir, testAlloc, "alloc", "logs")
	require.NoError(b, os.MkdirAll(logs, 0o755))
	for i := range 20_000 {
		require.NoError(b, os.WriteFile(filepath.Join(logs, fmt.Sprintf("web.stdout.%d", i)), []byte("x"), 0o644))
	}
	root, err := safefs.OpenRoot(allocDir)
	require.NoError(b, err)
	defer root.Close()
	e := lagEntry("web", "stdout", 0, 0)
	b.ReportAllocs()
	for b.Loop() {
		if n, err := tailer.LagBytes(root, e); err != nil || n == 0 {
			b.Fatal("no lag measured")
		}
	}
}
