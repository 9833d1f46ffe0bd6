package tailer

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

// chanWaker records what the watcher tells a stream.
type chanWaker chan told

type told struct {
	index int64
	ev    fileEvent
	at    time.Time
}

func (c chanWaker) notify(index int64, ev fileEvent) {
	if ev == lookAgain {
		index = -1
	}
	c <- told{index, ev, time.Now()}
}

func (c chanWaker) next(t *testing.T) int64 { return c.nextEvent(t).index }

func (c chanWaker) nextEvent(t *testing.T) told {
	t.Helper()
	select {
	case e := <-c:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no wake-up")
		return told{}
	}
}

func runWatcher(t *testing.T) *Watcher {
	t.Helper()
	w, err := NewWatcher(zap.NewNop(), 0)
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
	require.NotNil(t, w.subscribe(dir, "web", "stdout", stdout))
	require.NotNil(t, w.subscribe(dir, "web", "stderr", stderr))

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
	require.NotNil(t, w.subscribe(dir, "web", "stdout", s))
	require.NoError(t, os.RemoveAll(dir))
	assert.Equal(t, int64(-1), s.next(t))
	// Unsubscribing after the kernel dropped the watch is harmless.
	w.unsubscribe(dir, "web", "stdout")
}

func TestWatcherCannotWatchAMissingFolder(t *testing.T) {
	w := runWatcher(t)
	assert.Nil(t, w.subscribe(filepath.Join(t.TempDir(), "not-yet"), "web", "stdout", make(chanWaker, 1)))
	var none *Watcher
	assert.Nil(t, none.subscribe(t.TempDir(), "web", "stdout", make(chanWaker, 1)), "no watcher: the stream polls")
}

func drain(c chanWaker) []int64 {
	var out []int64
	for {
		select {
		case e := <-c:
			out = append(out, e.index)
		default:
			return out
		}
	}
}

// A new file must reach its stream at once, even while the watcher lets
// write events gather: logmon may purge it within milliseconds.
func TestWatcherTellsCreationsAtOnceDuringARound(t *testing.T) {
	w := runWatcher(t)
	dir := t.TempDir()
	s := make(chanWaker, 64)
	require.NotNil(t, w.subscribe(dir, "web", "stdout", s))
	f, err := os.Create(filepath.Join(dir, "web.stdout.0"))
	require.NoError(t, err)
	defer f.Close()
	require.Equal(t, fileCreated, s.nextEvent(t).ev)
	// A write starts a round: writes are read again only eventRound later.
	_, err = f.WriteString("x\n")
	require.NoError(t, err)
	for e := s.nextEvent(t); e.ev != fileWritten; e = s.nextEvent(t) {
	}
	for i := range 20 {
		created := time.Now()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "web.stdout."+strconv.Itoa(i+1)), nil, 0o644))
		e := s.nextEvent(t)
		for e.ev != fileCreated {
			e = s.nextEvent(t)
		}
		assert.Equal(t, int64(i+1), e.index)
		assert.Less(t, e.at.Sub(created), eventRound, "creation %d waited for the round", i+1)
		_, err = f.WriteString("x\n") // keep the rounds going
		require.NoError(t, err)
	}
}

func TestWatcherTellsDeletions(t *testing.T) {
	w := runWatcher(t)
	dir := t.TempDir()
	s := make(chanWaker, 16)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "web.stdout.0"), nil, 0o644))
	require.NotNil(t, w.subscribe(dir, "web", "stdout", s))
	require.NoError(t, os.Remove(filepath.Join(dir, "web.stdout.0")))
	e := s.nextEvent(t)
	assert.Equal(t, fileDeleted, e.ev)
	assert.Equal(t, int64(0), e.index)
}

func TestWatcherCountsItsWatchesAndHonoursItsCap(t *testing.T) {
	w, err := NewWatcher(zap.NewNop(), 4)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	a, b, c := t.TempDir(), t.TempDir(), t.TempDir()
	require.NotNil(t, w.subscribe(a, "web", "stdout", make(chanWaker, 1)))
	require.NotNil(t, w.subscribe(a, "web", "stderr", make(chanWaker, 1)), "a folder's streams share its watches")
	require.NotNil(t, w.subscribe(b, "web", "stdout", make(chanWaker, 1)))
	assert.Equal(t, int64(4), w.Watches(), "two per folder")
	assert.Nil(t, w.subscribe(c, "web", "stdout", make(chanWaker, 1)), "beyond the cap the stream polls")
	w.unsubscribe(a, "web", "stdout")
	assert.Equal(t, int64(4), w.Watches())
	w.unsubscribe(a, "web", "stderr")
	assert.Equal(t, int64(2), w.Watches())
	assert.NotNil(t, w.subscribe(c, "web", "stdout", make(chanWaker, 1)))
}

func TestBusyRoundsGrowUpToTheirCap(t *testing.T) {
	assert.Equal(t, eventRound, nextRoundLength(0), "a quiet node keeps short rounds")
	assert.Equal(t, eventRound, nextRoundLength(roundStepEvents-1))
	assert.Equal(t, 2*eventRound, nextRoundLength(roundStepEvents))
	assert.Equal(t, maxEventRound, nextRoundLength(100*roundStepEvents), "latency stays bounded however busy")
	for n := 0; n < 10*roundStepEvents; n += 97 {
		require.LessOrEqual(t, nextRoundLength(n), nextRoundLength(n+97), "more writes never shorten the round")
	}
}
