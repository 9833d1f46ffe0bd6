package enrich

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
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
	s := &Scanner{Root: root, watch: func(string) (<-chan fsnotify.Event, <-chan error, func(), error) {
		return events, errs, func() { close(stopped) }, nil
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
