package enrich

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/hashicorp/nomad/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/safefs"
)

// fsnotify blocks on sending an error (an overflow) until it is read, and
// then sends no events; a watcher that stops closes its channels. Neither
// may stop the scanner from finding new allocations.
func TestScannerRunReadsWatchErrorsAndOutlivesItsWatch(t *testing.T) {
	dir := t.TempDir()
	root, err := safefs.OpenRoot(dir)
	require.NoError(t, err)
	defer root.Close()
	events, errs, stopped := make(chan fsnotify.Event), make(chan error), make(chan struct{})
	s := &Scanner{Root: root, newWatch: func() (dirWatch, error) {
		return &fakeWatch{events: events, errs: errs, stopped: stopped}, nil
	}}
	ctx, cancel := context.WithCancel(t.Context())
	out := make(chan []Desired)
	done := make(chan struct{})
	go func() {
		s.Run(ctx, time.Hour, out) // no rescan by the clock during the test
		close(done)
	}()
	next := func(why string) map[string]bool {
		t.Helper()
		select {
		case ds := <-out:
			ids := map[string]bool{}
			for _, d := range ds {
				ids[d.Target.AllocID] = true
			}
			return ids
		case <-time.After(10 * time.Second):
			t.Fatalf("no scan: %s", why)
			return nil
		}
	}
	newAlloc := func(id string) {
		logs := filepath.Join(dir, id, "alloc", "logs")
		require.NoError(t, os.MkdirAll(logs, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(logs, "web.stdout.0"), nil, 0o644))
	}
	require.Empty(t, next("the first scan at start"))

	first, second := "aaaaaaaa-0000-0000-0000-000000000001", "aaaaaaaa-0000-0000-0000-000000000002"
	newAlloc(first)
	select {
	case errs <- fsnotify.ErrEventOverflow:
	case <-time.After(10 * time.Second):
		t.Fatal("the scanner does not read the watch's errors")
	}
	require.True(t, next("after an overflow")[first])

	newAlloc(second)
	events <- fsnotify.Event{Name: filepath.Join(dir, second), Op: fsnotify.Create}
	close(events)
	close(errs)
	require.True(t, next("after the watch stopped")[second])

	cancel()
	<-done
	<-stopped
}

// fakeWatch is a dirWatch whose events the test sends; it records the
// folders added (read only by a test that calls syncWatches itself).
type fakeWatch struct {
	events  chan fsnotify.Event
	errs    chan error
	stopped chan struct{}
	added   []string
}

func (w *fakeWatch) Add(path string) error         { w.added = append(w.added, path); return nil }
func (w *fakeWatch) Remove(string) error           { return nil }
func (w *fakeWatch) Events() <-chan fsnotify.Event { return w.events }
func (w *fakeWatch) Errors() <-chan error          { return w.errs }
func (w *fakeWatch) Close() error                  { close(w.stopped); return nil }

// Only what a scan may not have seen asks for one: never a write to a log
// file, never a file of a task already followed.
func TestScannerWantsAScanOnlyForWhatItDoesNotKnow(t *testing.T) {
	dir := t.TempDir()
	root, err := safefs.OpenRoot(dir)
	require.NoError(t, err)
	defer root.Close()
	const known, empty = "aaaaaaaa-0000-0000-0000-000000000001", "aaaaaaaa-0000-0000-0000-000000000002"
	s := &Scanner{Root: root, tasks: map[string]map[string]bool{known: {"web": true}, empty: nil}}
	at := func(rel string, op fsnotify.Op) fsnotify.Event {
		return fsnotify.Event{Name: filepath.Join(dir, rel), Op: op}
	}
	for _, c := range []struct {
		ev   fsnotify.Event
		want bool
	}{
		{at("aaaaaaaa-0000-0000-0000-000000000009", fsnotify.Create), true},
		{at(known+"/alloc", fsnotify.Create), true},
		{at(empty+"/alloc/logs", fsnotify.Create), true},
		{at(known+"/alloc/logs/web.stdout.1", fsnotify.Create), false},
		{at(known+"/alloc/logs/web.stdout.1", fsnotify.Write), false},
		{at(known+"/alloc/logs/api.stdout.0", fsnotify.Create), true},
		{at(known+"/alloc/logs/api.stdout.0", fsnotify.Write), false},
		{at(known+"/alloc/logs/.api.stdout.fifo", fsnotify.Create), false},
		{at(empty+"/alloc/logs/web.stderr.0", fsnotify.Create), true},
		{at("bbbbbbbb-0000-0000-0000-000000000003/alloc/logs/web.stdout.0", fsnotify.Create), true},
	} {
		assert.Equal(t, c.want, s.wantsScan(c.ev), "%s %s", c.ev.Op, c.ev.Name)
	}
	s.overCap = map[string]int{known: 3}
	assert.False(t, s.wantsScan(at(known+"/alloc/logs/fake9.stdout.0", fsnotify.Create)),
		"an allocation over its cap does not rescan for each planted name")
}

// An allocation of the allocations file names its tasks: its folders are
// not watched (every logmon write would come to the scanner), while an
// allocation known only from disk is watched down to alloc/logs, where
// its next task's first file appears.
func TestScannerWatchesOnlyTheFoldersOfAllocationsItMustDiscover(t *testing.T) {
	dir := t.TempDir()
	root, err := safefs.OpenRoot(dir)
	require.NoError(t, err)
	defer root.Close()
	const listed, onDisk = "aaaaaaaa-0000-0000-0000-000000000001", "aaaaaaaa-0000-0000-0000-000000000002"
	s := &Scanner{Root: root, Allocs: []*api.Allocation{{ID: listed}},
		tasks: map[string]map[string]bool{listed: {"web": true}, onDisk: {"api": true}}}
	w := &fakeWatch{}
	s.syncWatches(w, make(map[string]bool))
	assert.ElementsMatch(t, []string{dir, filepath.Join(dir, onDisk), filepath.Join(dir, onDisk, "alloc"), filepath.Join(dir, onDisk, "alloc", "logs")}, w.added)
}
