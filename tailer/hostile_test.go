package tailer_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/taskstream"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/tailer"
)

// What a task or a local user may put in a log folder: symlinks, special
// files, planted indexes. None of it may silence a stream or be read.

// A file with a higher index dropped into the folder (0777: anyone can)
// is not a logmon rotation: the stream does not skip the real files.
func TestAStrayHigherIndexDoesNotMakeTheStreamSkip(t *testing.T) {
	h := newHarness(t)
	h.writeFile("web.stdout.0", "a\n")
	p := h.daemon(target("web", "stdout"))
	defer p.stop()
	h.waitLines(1)
	h.writeFile("web.stdout.5", "stray\n")
	require.Eventually(t, func() bool { return h.logs.FilterMessageSnippet("not logmon's rotation").Len() == 1 }, 10*time.Second, time.Millisecond)
	h.writeFile("web.stdout.1", "b\n")
	h.writeFile("web.stdout.2", "c\n")
	got := h.waitLines(3)
	assert.Equal(t, []string{"a", "b", "c"}, messages(got[:3]))
	assert.Equal(t, 0.0, testutil.ToFloat64(h.metrics.FilesSkipped))
	assert.Equal(t, 0, h.logs.FilterMessageSnippet("purged before").Len())
	assert.Equal(t, 1, h.logs.FilterMessageSnippet("not logmon's rotation").Len(), "said once")
}

// Issue 16, item 1: anyone may write a far index into alloc/logs (0777)
// and delete the current file. The stream must not jump to it: the real
// rotations are shipped, the far file is logged once and ignored, no gap
// is counted, and the checkpoint never holds an index that rotation did
// not reach, so a restart goes on with the real files too.
func TestAPlantedFarIndexCannotSilenceTheStream(t *testing.T) {
	h := newHarness(t)
	h.writeFile("web.stdout.0", "a\n")
	p := h.daemon(target("web", "stdout"))
	h.waitLines(1)
	require.NoError(t, os.Remove(filepath.Join(h.logDir(), "web.stdout.0")))
	h.writeFile("web.stdout.999999999999999999", "planted\n")
	require.Eventually(t, func() bool {
		return h.logs.FilterMessageSnippet("ignoring a log file whose index is beyond").Len() == 1
	},
		10*time.Second, time.Millisecond)
	for i := 1; i <= 4; i++ {
		h.writeFile(fmt.Sprintf("web.stdout.%d", i), fmt.Sprintf("real %d\n", i))
	}
	got := h.waitLines(5)
	assert.Equal(t, []string{"a", "real 1", "real 2", "real 3", "real 4"}, messages(got))
	assert.Equal(t, 0.0, testutil.ToFloat64(h.metrics.FilesSkipped), "no gap: nothing real was skipped")
	key := taskstream.ID{AllocID: testAlloc, Task: "web", Stream: "stdout"}
	require.Eventually(t, func() bool { e, _ := h.store.Get(key); return e.FileIndex == 4 }, 10*time.Second, time.Millisecond)
	p.stop()
	e, _ := h.store.Get(key)
	assert.Equal(t, int64(4), e.FileIndex, "the planted index is never persisted")
	lag, err := tailer.LagBytes(h.root, e)
	require.NoError(t, err)
	assert.Zero(t, lag, "lag counts the real files not read, not the planted one")

	// After a restart the stream goes on with the real files.
	h.writeFile("web.stdout.5", "real 5\n")
	h.out = newMemOutput()
	p = h.daemon(target("web", "stdout"))
	defer p.stop()
	assert.Equal(t, []string{"real 5"}, messages(h.waitLines(1)))
	assert.Equal(t, 1, h.logs.FilterMessageSnippet("ignoring a log file whose index is beyond").Len(), "logged once per run")
	assert.Zero(t, h.logs.FilterMessageSnippet("purged before").Len())
}

// A gap that is real (the daemon was down while the task rotated) can be
// absurdly large; it costs a bounded number of warnings, not one per file.
func TestAHugeGapIsLoggedBounded(t *testing.T) {
	h := newHarness(t)
	h.checkpointAt(0, 2)
	h.writeFile("web.stdout.100000", "far\n")
	h.runOnce(target("web", "stdout"))
	assert.Equal(t, []string{"far"}, messages(h.out.lines(t)))
	assert.Equal(t, 100000.0, testutil.ToFloat64(h.metrics.FilesSkipped))
	assert.Equal(t, 100, h.logs.FilterMessageSnippet("log file was purged before").Len())
	assert.Equal(t, 1, h.logs.FilterMessageSnippet("more log files were purged").Len())
}

func TestSymlinkedAndSpecialFilesAreRefused(t *testing.T) {
	outside := t.TempDir()
	canary := filepath.Join(outside, "shadow")
	require.NoError(t, os.WriteFile(canary, []byte("CANARY root:$6$secret\n"), 0o600))

	cases := map[string]func(h *harness){
		"symlink at index 0": func(h *harness) {
			require.NoError(t, os.Symlink(canary, filepath.Join(h.logDir(), "web.stdout.0")))
			h.writeFile("web.stdout.1", "real\n")
		},
		"symlink at a later index": func(h *harness) {
			h.writeFile("web.stdout.0", "real\n")
			require.NoError(t, os.Symlink(canary, filepath.Join(h.logDir(), "web.stdout.1")))
		},
		"fifo named as a log file": func(h *harness) {
			h.writeFile("web.stdout.0", "real\n")
			require.NoError(t, syscall.Mkfifo(filepath.Join(h.logDir(), "web.stdout.1"), 0o666))
		},
		"directory named as a log file": func(h *harness) {
			h.writeFile("web.stdout.0", "real\n")
			require.NoError(t, os.Mkdir(filepath.Join(h.logDir(), "web.stdout.1"), 0o755))
		},
	}
	for name, setup := range cases {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			setup(h)
			h.runOnce(target("web", "stdout"))
			got := h.out.lines(t)
			assert.Equal(t, []string{"real"}, messages(got))
			assert.Equal(t, 1.0, testutil.ToFloat64(h.metrics.FilesRefused))
			assert.Equal(t, 1, h.logs.FilterMessageSnippet("refusing").Len())
		})
	}
}

func TestSymlinkedFoldersAreRefused(t *testing.T) {
	outside := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(outside, "alloc", "logs"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(outside, "alloc", "logs", "web.stdout.0"), []byte("CANARY\n"), 0o600))

	t.Run("logs folder", func(t *testing.T) {
		h := newHarness(t)
		allocAlloc := filepath.Join(h.allocDir, testAlloc, "alloc")
		require.NoError(t, os.MkdirAll(allocAlloc, 0o777))
		require.NoError(t, os.Symlink(filepath.Join(outside, "alloc", "logs"), filepath.Join(allocAlloc, "logs")))
		h.runOnce(target("web", "stdout"))
		assert.Empty(t, h.out.lines(t))
		assert.GreaterOrEqual(t, testutil.ToFloat64(h.metrics.FilesRefused), 1.0)
	})
	t.Run("alloc id folder", func(t *testing.T) {
		h := newHarness(t)
		require.NoError(t, os.Symlink(outside, filepath.Join(h.allocDir, testAlloc)))
		h.runOnce(target("web", "stdout"))
		assert.Empty(t, h.out.lines(t))
		assert.GreaterOrEqual(t, testutil.ToFloat64(h.metrics.FilesRefused), 1.0)
	})
}

func TestUnixSocketNamedAsLogFileIsRefused(t *testing.T) {
	h := newHarness(t)
	h.writeFile("web.stdout.0", "real\n")
	// Socket paths are limited to ~108 bytes: bind from inside the folder.
	wd, err := os.Getwd()
	require.NoError(t, err)
	require.NoError(t, os.Chdir(h.logDir()))
	ln, err := net.Listen("unix", "web.stdout.1")
	require.NoError(t, os.Chdir(wd))
	require.NoError(t, err)
	defer ln.Close()
	h.runOnce(target("web", "stdout"))
	assert.Equal(t, []string{"real"}, messages(h.out.lines(t)))
	assert.Equal(t, 1.0, testutil.ToFloat64(h.metrics.FilesRefused))
}

func TestFileSwappedForSymlinkIsCaughtAtOpen(t *testing.T) {
	canary := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(canary, []byte("CANARY\n"), 0o600))

	t.Run("next file swapped while following", func(t *testing.T) {
		h := newHarness(t)
		h.writeFile("web.stdout.0", "zero\n")
		p := h.daemon(target("web", "stdout"))
		defer p.stop()
		h.waitLines(1) // the tailer holds .0 open now
		// .1 appears as a regular file and is swapped for a symlink
		// before anything reads it; then logmon goes on with .2.
		h.writeFile("web.stdout.1.tmp", "one\n")
		require.NoError(t, os.Symlink(canary, filepath.Join(h.logDir(), "link")))
		require.NoError(t, os.Rename(filepath.Join(h.logDir(), "link"), filepath.Join(h.logDir(), "web.stdout.1")))
		h.writeFile("web.stdout.2", "two\n")
		got := h.waitLines(2)
		assert.Equal(t, []string{"zero", "two"}, messages(got))
		require.Eventually(t, func() bool { return testutil.ToFloat64(h.metrics.FilesRefused) == 1 }, 5*time.Second, time.Millisecond)
	})
	t.Run("checkpointed file swapped while the daemon was down", func(t *testing.T) {
		h := newHarness(t)
		h.writeFile("web.stdout.0", "zero\n")
		h.runOnce(target("web", "stdout"))
		require.NoError(t, os.Remove(filepath.Join(h.logDir(), "web.stdout.0")))
		require.NoError(t, os.Symlink(canary, filepath.Join(h.logDir(), "web.stdout.0")))
		h.writeFile("web.stdout.1", "one\n")
		h.out = newMemOutput()
		h.runOnce(target("web", "stdout"))
		assert.Equal(t, []string{"one"}, messages(h.out.lines(t)))
	})
}
