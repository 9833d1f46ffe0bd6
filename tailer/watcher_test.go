package tailer

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

// chanWaker records what the watcher tells a stream.
type chanWaker chan int64

func (c chanWaker) notify(index int64) { c <- index }

func (c chanWaker) next(t *testing.T) int64 {
	t.Helper()
	select {
	case i := <-c:
		return i
	case <-time.After(10 * time.Second):
		t.Fatal("no wake-up")
		return 0
	}
}

func runWatcher(t *testing.T) *Watcher {
	t.Helper()
	w, err := NewWatcher(zap.NewNop())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		w.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
	return w
}

func TestWatcherWakesTheStreamAnEventNames(t *testing.T) {
	w := runWatcher(t)
	dir := t.TempDir()
	stdout, stderr := make(chanWaker, 16), make(chanWaker, 16)
	require.True(t, w.subscribe(dir, "web", "stdout", stdout))
	require.True(t, w.subscribe(dir, "web", "stderr", stderr))

	require.NoError(t, os.WriteFile(filepath.Join(dir, "web.stdout.3"), []byte("x\n"), 0o644))
	assert.Equal(t, int64(3), stdout.next(t))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "web.stderr.0"), []byte("y\n"), 0o644))
	assert.Equal(t, int64(0), stderr.next(t))
	// Files of other tasks and other names wake nobody; the events above
	// came in order, so after the stderr one nothing else is pending.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "api.stdout.0"), nil, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".web.stdout.fifo"), nil, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "web.stderr.1"), nil, 0o644))
	for i := stderr.next(t); i != 1; i = stderr.next(t) {
		assert.Equal(t, int64(0), i, "the create and the write of web.stderr.0 come before")
	}
	for _, i := range drain(stdout) {
		assert.Equal(t, int64(3), i, "only writes of web.stdout.3 may wake the stdout stream")
	}
}

func TestWatcherTellsStreamsTheirFolderWentAway(t *testing.T) {
	w := runWatcher(t)
	dir := filepath.Join(t.TempDir(), "logs")
	require.NoError(t, os.Mkdir(dir, 0o755))
	s := make(chanWaker, 16)
	require.True(t, w.subscribe(dir, "web", "stdout", s))
	require.NoError(t, os.RemoveAll(dir))
	assert.Equal(t, int64(-1), s.next(t))
	// Unsubscribing after the kernel dropped the watch is harmless.
	w.unsubscribe(dir, "web", "stdout")
}

func TestWatcherCannotWatchAMissingFolder(t *testing.T) {
	w := runWatcher(t)
	assert.False(t, w.subscribe(filepath.Join(t.TempDir(), "not-yet"), "web", "stdout", make(chanWaker, 1)))
	var none *Watcher
	assert.False(t, none.subscribe(t.TempDir(), "web", "stdout", make(chanWaker, 1)), "no watcher: the stream polls")
}

func drain(c chanWaker) []int64 {
	var out []int64
	for {
		select {
		case i := <-c:
			out = append(out, i)
		default:
			return out
		}
	}
}
