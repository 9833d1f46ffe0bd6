package checkpoint

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/taskstream"
)

func entry(alloc string, idx, off int64) Entry {
	return Entry{AllocID: alloc, Task: "web", Stream: "stdout", FileIndex: idx, Offset: off, Dev: 1, Inode: 42}
}

func TestSaveAndReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "checkpoint.msgpack")
	s, err := Open(path, nil)
	require.NoError(t, err)
	s.Commit(entry("b", 2, 100))
	s.Commit(entry("a", 0, 5))
	s.Commit(entry("a", 1, 7)) // replaces the previous entry of a/web.stdout
	require.NoError(t, s.Save())

	got, err := Read(path)
	require.NoError(t, err)
	require.Len(t, got, 2)
	assert.Equal(t, "a", got[0].AllocID)
	assert.Equal(t, int64(1), got[0].FileIndex)
	assert.Equal(t, int64(7), got[0].Offset)
	assert.Equal(t, uint64(42), got[0].Inode)
	assert.False(t, got[0].UpdatedAt.IsZero())

	s2, err := Open(path, nil)
	require.NoError(t, err)
	e, ok := s2.Get(taskstream.ID{AllocID: "b", Task: "web", Stream: "stdout"})
	require.True(t, ok)
	assert.Equal(t, int64(100), e.Offset)
}

func TestMissingFileIsEmpty(t *testing.T) {
	entries, err := Read(filepath.Join(t.TempDir(), "none"))
	require.NoError(t, err)
	assert.Empty(t, entries)
}

func TestSaveWritesAFileEvenWithNothingToSay(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp")
	s, err := Open(path, nil)
	require.NoError(t, err)
	require.NoError(t, s.Save())
	_, err = os.Stat(path)
	require.NoError(t, err)
}

func TestCorruptCheckpointIsRefusedAndKept(t *testing.T) {
	good := filepath.Join(t.TempDir(), "good")
	s, err := Open(good, nil)
	require.NoError(t, err)
	s.Commit(entry("a", 3, 300))
	require.NoError(t, s.Save())
	data, err := os.ReadFile(good)
	require.NoError(t, err)

	flipped := append([]byte(nil), data...)
	flipped[len(flipped)-3] ^= 0x01 // inside the entries: the checksum catches it

	for name, content := range map[string][]byte{
		"empty":     {},
		"truncated": data[:len(data)/2],
		"garbage":   []byte("this is not msgpack at all"),
		"nul bytes": make([]byte, 64),
		"bit flip":  flipped,
		"trailing":  append(append([]byte(nil), data...), 0xc0),
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "checkpoint.msgpack")
			require.NoError(t, os.WriteFile(path, content, 0o644))
			_, err := Open(path, nil)
			var corrupt *CorruptError
			require.ErrorAs(t, err, &corrupt)
			assert.Contains(t, err.Error(), path, "the message names the file")
			assert.Contains(t, err.Error(), "Move it aside", "the message says how to proceed")
			after, _ := os.ReadFile(path)
			assert.Equal(t, content, after, "a corrupt checkpoint is never overwritten")
		})
	}
}

// withVersion re-encodes a saved file's envelope with another version.
func withVersion(t *testing.T, entries []Entry, version int) []byte {
	t.Helper()
	raw, err := encode(entries)
	require.NoError(t, err)
	var f file
	require.NoError(t, decodeEnvelope(raw, &f))
	f.Version = version
	data, err := encodeEnvelope(&f)
	require.NoError(t, err)
	return data
}

func TestNewerFormatVersionIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp")
	data := withVersion(t, []Entry{entry("a", 0, 0)}, FormatVersion+1)
	require.NoError(t, os.WriteFile(path, data, 0o644))
	_, err := Open(path, nil)
	var corrupt *CorruptError
	require.ErrorAs(t, err, &corrupt)
	require.ErrorIs(t, err, ErrNewerVersion)
	assert.Contains(t, err.Error(), "written by a newer version")
	assert.Contains(t, err.Error(), fmt.Sprintf("format version %d", FormatVersion+1))
	assert.Contains(t, err.Error(), path)
	after, _ := os.ReadFile(path)
	assert.Equal(t, data, after, "never overwritten")
}

func TestUnknownOlderFormatVersionIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp")
	require.NoError(t, os.WriteFile(path, withVersion(t, []Entry{entry("a", 0, 0)}, 0), 0o644))
	_, err := Read(path)
	var corrupt *CorruptError
	require.ErrorAs(t, err, &corrupt)
	assert.NotErrorIs(t, err, ErrNewerVersion)
	assert.Contains(t, err.Error(), "format version 0 is unknown")
}

// testdata/format-1.msgpack was saved by the build before format 2 (commit
// 4a847d4): two log streams, one of them finished.
func TestFormat1FileLoadsAndIsRewrittenAsTheCurrentFormat(t *testing.T) {
	data, err := os.ReadFile("testdata/format-1.msgpack")
	require.NoError(t, err)
	var f file
	require.NoError(t, decodeEnvelope(data, &f))
	require.Equal(t, 1, f.Version, "the fixture is a format 1 file")

	path := filepath.Join(t.TempDir(), "checkpoint.msgpack")
	require.NoError(t, os.WriteFile(path, data, 0o644))
	s, err := Open(path, nil)
	require.NoError(t, err)
	got := s.Entries()
	require.Len(t, got, 2)
	assert.Equal(t, Entry{AllocID: "b224a5bb-2a7a-41c1-0927-0a6e3f1d9428", Task: "crash", Stream: "stderr",
		Offset: 120, Dev: 2049, Inode: 1311, Finished: true, UpdatedAt: got[0].UpdatedAt}, got[0])
	assert.Equal(t, int64(3), got[1].FileIndex)
	assert.Equal(t, int64(4096), got[1].Offset)
	_, ok := s.EventMark("e333a86a-cefe-d673-f65e-b5a2e1172d99", "server")
	assert.False(t, ok, "a format 1 file knows no events")

	s.CommitEventMark("e333a86a-cefe-d673-f65e-b5a2e1172d99", "server", EventMark{Time: 1795566355075054829, Seq: 1})
	require.NoError(t, s.Save())
	written, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, decodeEnvelope(written, &f))
	assert.Equal(t, FormatVersion, f.Version)
	reread, err := Read(path)
	require.NoError(t, err)
	assert.Len(t, reread, 3)
}

func TestEventMarkRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "checkpoint.msgpack")
	s, err := Open(path, nil)
	require.NoError(t, err)
	_, ok := s.EventMark("a", "web")
	assert.False(t, ok)

	assert.True(t, s.CommitEventMark("a", "web", EventMark{Time: 1795566377937628212, Seq: 1}))
	assert.True(t, s.CommitEventMark("a", "web", EventMark{Time: 1795566377937628212, Seq: 2}), "a second event in the same nanosecond")
	assert.False(t, s.CommitEventMark("a", "web", EventMark{Time: 1795566377937628212, Seq: 1}), "never back")
	assert.False(t, s.CommitEventMark("a", "web", EventMark{Time: 1795566377860060035, Seq: 1}), "never back")
	assert.True(t, s.CommitEventMark("a", "db", EventMark{Time: 1795566377940387007, Seq: 1}))
	s.Commit(entry("a", 2, 10)) // a log stream of the same task, untouched by the events
	require.NoError(t, s.Save())

	s2, err := Open(path, nil)
	require.NoError(t, err)
	m, ok := s2.EventMark("a", "web")
	require.True(t, ok)
	assert.Equal(t, EventMark{Time: 1795566377937628212, Seq: 2}, m)
	m, ok = s2.EventMark("a", "db")
	require.True(t, ok)
	assert.Equal(t, EventMark{Time: 1795566377940387007, Seq: 1}, m)
	e, ok := s2.Get(taskstream.ID{AllocID: "a", Task: "web", Stream: "stdout"})
	require.True(t, ok)
	assert.Equal(t, int64(10), e.Offset)
	assert.Equal(t, EventMark{}, e.EventMark())

	// The entries of events are entries like the others: listed, and
	// deleted with the allocation's streams.
	var events []string
	for _, e := range s2.Entries() {
		if e.Key().IsEvents() {
			events = append(events, e.Task)
			assert.False(t, e.UpdatedAt.IsZero())
		}
	}
	assert.Equal(t, []string{"db", "web"}, events)
	s2.Delete(taskstream.EventsOf("a", "web"))
	_, ok = s2.EventMark("a", "web")
	assert.False(t, ok)
}

func TestEventMarkKeepsFinished(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "cp"), nil)
	require.NoError(t, err)
	s.Commit(Entry{AllocID: "a", Task: "web", Stream: taskstream.Events, EventTime: 5, EventSeq: 1, Finished: true})
	require.True(t, s.CommitEventMark("a", "web", EventMark{Time: 6, Seq: 1}))
	e, _ := s.Get(taskstream.EventsOf("a", "web"))
	assert.True(t, e.Finished)
	assert.Equal(t, int64(6), e.EventTime)
}

func TestInvalidEventEntriesAreRefused(t *testing.T) {
	for name, c := range map[string]struct {
		e       Entry
		version int
	}{
		"event time on a log stream": {Entry{AllocID: "a", Task: "t", Stream: "stdout", EventTime: 5}, FormatVersion},
		"offset on the events":       {Entry{AllocID: "a", Task: "t", Stream: taskstream.Events, Offset: 5, EventTime: 5}, FormatVersion},
		"negative event time":        {Entry{AllocID: "a", Task: "t", Stream: taskstream.Events, EventTime: -1}, FormatVersion},
		"events in a format 1 file":  {Entry{AllocID: "a", Task: "t", Stream: taskstream.Events, EventTime: 5}, 1},
		"negative offset, as ever":   {Entry{AllocID: "a", Task: "t", Stream: "stdout", Offset: -1}, FormatVersion},
		"no task, as ever":           {Entry{AllocID: "a", Stream: taskstream.Events, EventTime: 5}, FormatVersion},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cp")
			require.NoError(t, os.WriteFile(path, withVersion(t, []Entry{c.e}, c.version), 0o644))
			_, err := Read(path)
			var corrupt *CorruptError
			require.ErrorAs(t, err, &corrupt)
			assert.Contains(t, err.Error(), "is invalid")
		})
	}
	// The same entry of events in the current format is good.
	path := filepath.Join(t.TempDir(), "cp")
	require.NoError(t, os.WriteFile(path, withVersion(t, []Entry{{AllocID: "a", Task: "t", Stream: taskstream.Events, EventTime: 5, EventSeq: 1}}, FormatVersion), 0o644))
	got, err := Read(path)
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, EventMark{Time: 5, Seq: 1}, got[0].EventMark())
}

func TestLeftoverTempFileIsIgnoredAndRemoved(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "checkpoint.msgpack")
	s, err := Open(path, nil)
	require.NoError(t, err)
	s.Commit(entry("a", 1, 10))
	require.NoError(t, s.Save())
	// A crash between write and rename leaves a temp file behind, maybe torn.
	leftover := filepath.Join(dir, "checkpoint.msgpack"+tempInfix+"123")
	require.NoError(t, os.WriteFile(leftover, []byte{0x82, 0xa7}, 0o644))

	s2, err := Open(path, nil)
	require.NoError(t, err)
	e, ok := s2.Get(taskstream.ID{AllocID: "a", Task: "web", Stream: "stdout"})
	require.True(t, ok)
	assert.Equal(t, int64(10), e.Offset)
	_, err = os.Stat(leftover)
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestDeleteAndEntries(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "cp"), nil)
	require.NoError(t, err)
	s.Commit(entry("a", 0, 1))
	s.Commit(entry("b", 0, 2))
	s.Delete(taskstream.ID{AllocID: "a", Task: "web", Stream: "stdout"}, taskstream.ID{AllocID: "zzz"})
	es := s.Entries()
	require.Len(t, es, 1)
	assert.Equal(t, "b", es[0].AllocID)
}

func TestLockIsExclusive(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp")
	unlock, err := Lock(path)
	require.NoError(t, err)
	_, err = Lock(path)
	require.ErrorIs(t, err, ErrLocked)
	require.NoError(t, unlock())
	unlock2, err := Lock(path)
	require.NoError(t, err)
	require.NoError(t, unlock2())
}

func TestRunSavesChangesAndStopsWithContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp")
	s, err := Open(path, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		s.Run(ctx, time.Millisecond, func(err error) { t.Error(err) })
		close(done)
	}()
	s.Commit(entry("a", 4, 40))
	require.Eventually(t, func() bool {
		es, err := Read(path)
		return err == nil && len(es) == 1 && es[0].Offset == 40
	}, 5*time.Second, time.Millisecond)
	cancel()
	<-done
}

func FuzzDecode(f *testing.F) {
	raw, _ := encode([]Entry{entry("a", 1, 2)})
	f.Add(raw)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := decode(data)
		if err != nil {
			return
		}
		for _, e := range entries {
			if e.AllocID == "" || e.FileIndex < 0 || e.Offset < 0 {
				t.Fatalf("decode accepted an invalid entry %+v", e)
			}
		}
	})
}

func TestLockCreatesTheFolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new", "dir", "cp.msgpack")
	unlock, err := Lock(path)
	require.NoError(t, err)
	defer unlock()
	info, err := os.Stat(filepath.Dir(path))
	require.NoError(t, err)
	assert.True(t, info.IsDir())
	_, err = Open(path, nil)
	require.NoError(t, err)
}

func TestRunSavesOnceMoreWhenItStops(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp")
	s, err := Open(path, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		s.Run(ctx, time.Hour, func(err error) { t.Error(err) })
		close(done)
	}()
	s.Commit(entry("a", 2, 20))
	cancel()
	<-done
	es, err := Read(path)
	require.NoError(t, err)
	require.Len(t, es, 1, "the commit made before Run stopped is on disk")
	assert.Equal(t, int64(20), es[0].Offset)
}

// blockedInSave reports whether a goroutine waits for a mutex inside
// Store.Save.
func blockedInSave() bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "[sync.Mutex.Lock") && strings.Contains(g, "(*Store).Save") {
			return true
		}
	}
	return false
}

// A save still writing an older snapshot (the periodic one) must not
// rename it over a newer save (the final one at shutdown) that started
// later.
func TestConcurrentSavesLeaveTheNewestSnapshot(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp")
	s, err := Open(path, nil)
	require.NoError(t, err)
	entered, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	s.writeFile = func(path string, data []byte) error {
		if calls.Add(1) == 1 { // the older save stalls mid-write
			close(entered)
			<-release
		}
		return WriteFileAtomic(path, data)
	}

	s.Commit(entry("a", 1, 10))
	older := make(chan error, 1)
	go func() { older <- s.Save() }()
	<-entered
	s.Commit(entry("a", 1, 99))
	newer := make(chan error, 1)
	go func() { newer <- s.Save() }()
	// The newer save either finishes (it overtook the older one) or waits
	// for the older one to finish.
	var newerErr error
	newerDone := false
	require.Eventually(t, func() bool {
		select {
		case newerErr = <-newer:
			newerDone = true
			return true
		default:
			return blockedInSave()
		}
	}, 10*time.Second, time.Millisecond)
	close(release)
	require.NoError(t, <-older)
	if !newerDone {
		newerErr = <-newer
	}
	require.NoError(t, newerErr)

	es, err := Read(path)
	require.NoError(t, err)
	require.Len(t, es, 1)
	assert.Equal(t, int64(99), es[0].Offset, "an older snapshot was renamed over a newer one")
	assert.Equal(t, int32(2), calls.Load())
}
