package chaos_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/checkpoint"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/logmon"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/scenario"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/taskstream"
)

// feed writes rate lines per second in all, one line per stream per tick.
func feed(streams []*scenario.Stream, rate int) *scenario.Feeder {
	return scenario.Feed(streams, time.Second*time.Duration(len(streams))/time.Duration(rate), 1)
}

// uncommitted counts the distinct lines that were accepted although they
// lie at or after their stream's checkpointed position: what a restart
// from that checkpoint sends again.
func uncommitted(lines []scenario.Line, entries []checkpoint.Entry, streams []*scenario.Stream) int {
	type pos struct{ index, offset int64 }
	at := map[string]pos{}
	for _, s := range streams {
		at[s.Name] = pos{-1, -1} // no entry: everything is sent again
	}
	byKey := map[taskstream.ID]string{}
	for _, s := range streams {
		byKey[taskstream.ID{AllocID: s.Spec.AllocID, Task: s.Spec.Task, Stream: s.Spec.Stream}] = s.Name
	}
	for _, e := range entries {
		if name, ok := byKey[e.Key()]; ok {
			at[name] = pos{e.FileIndex, e.Offset}
		}
	}
	type id struct {
		stream string
		seq    int
	}
	seen := map[id]bool{}
	for _, l := range lines {
		p, idx := at[l.Stream], l.FileIndex()
		if idx > p.index || idx == p.index && l.Offset >= p.offset {
			seen[id{l.Stream, l.Seq}] = true
		}
	}
	return len(seen)
}

// kill9: SIGKILL at random moments while many streams write with rotation;
// restart each time. Nothing may be missing; a kill may make the receiver
// see again at most the lines confirmed since the last checkpoint save.
func TestKill9(t *testing.T) {
	type size struct{ streams, rate, kills, minLines, maxLines int }
	sz := pick(size{streams: 10, rate: 1000, kills: 5, minLines: 300, maxLines: 2000},
		size{streams: 50, rate: 2000, kills: 20, minLines: 1000, maxLines: 8000})
	fileSize := pick[int64](64<<10, 256<<10)
	const interval = 250 * time.Millisecond
	w := newWorld(t, worldConfig{streams: specs("k", sz.streams), logmon: logmon.Options{MaxFiles: 10, FileSize: fileSize}, pad: 400})
	w.flags = []string{"--checkpoint-interval", interval.String()}
	feeder := feed(w.streams, sz.rate)
	defer feeder.Stop()

	dupBound, maxWindow := 0, 0
	for k := range sz.kills {
		p := w.startDaemon()
		// A random moment: after a random amount of progress, once this
		// run has saved the checkpoint (else every kill would resend
		// everything since the run began).
		target := w.recv.Count() + sz.minLines + rand.IntN(sz.maxLines-sz.minLines)
		saved := modTime(w.ckpt)
		waitFor(t, 60*time.Second, fmt.Sprintf("progress before kill %d", k+1), func() bool {
			return w.recv.Count() >= target && modTime(w.ckpt) != saved
		})
		p.Kill()
		killed := time.Now()
		// The kernel closed the connection: the receiver reads what it
		// still held, then sees the end.
		waitFor(t, 10*time.Second, "the receiver to read the killed daemon's last bytes", func() bool { return w.recv.Open() == 0 })
		entries, err := checkpoint.Read(w.ckpt)
		require.NoError(t, err, "the checkpoint a kill leaves is valid")
		w.update()
		window := uncommitted(w.tally.Lines(), entries, w.streams)
		// One checkpoint interval: the lines that arrived since the
		// save before last (a save may have been under way at the
		// kill), or later (the receiver reads behind the sender).
		recent := 0
		for _, at := range w.recv.Arrivals() {
			if at.After(killed.Add(-2 * interval)) {
				recent++
			}
		}
		assert.LessOrEqual(t, window, recent, "kill %d: the checkpoint was behind by more than a checkpoint interval", k+1)
		dupBound += window
		maxWindow = max(maxWindow, window)
	}
	p := w.startDaemon()
	require.NoError(t, feeder.Stop())
	waitFor(t, 60*time.Second, "every line after the last restart", w.complete)
	w.stopDaemon(p)

	rep := w.report("kill9")
	rep.Events = sz.kills
	rep.Add("streams", sz.streams)
	rep.Add("lines_per_s", sz.rate)
	rep.Add("max_resend_window", maxWindow)
	rep.Add("resend_bound", dupBound)
	rep.Add("purged_unread", countLogs(w.stderr(), "log file was purged before"))
	fmt.Println(rep.Summary())
	require.True(t, rep.OK(), "%s\n%+v", rep.Summary(), rep.PerStream)
	assert.LessOrEqual(t, rep.Duplicates, dupBound, "a restart resends only what its checkpoint had not saved")
	assert.Zero(t, countLogs(w.stderr(), "log file was purged before"), "logmon kept every file across the restarts")
	rotated := 0
	for _, s := range w.streams {
		rotated += s.Index()
	}
	assert.Positive(t, rotated, "the streams rotated")
}

// checkpoint-crash: SIGKILL lands while the daemon saves its checkpoint,
// after the temp file was written and before it was renamed over the
// checkpoint: the next start must load a valid checkpoint and lose nothing.
func TestCheckpointCrash(t *testing.T) {
	hits := pick(3, 10)
	w := newWorld(t, worldConfig{streams: specs("c", 4)})
	// A tight save loop: the checkpoint is saved every millisecond while
	// lines flow.
	w.flags = []string{"--checkpoint-interval", "1ms"}
	feeder := feed(w.streams, 1000)
	defer feeder.Stop()
	dir, base := filepath.Split(w.ckpt)
	temps := func() []string {
		m, _ := filepath.Glob(filepath.Join(dir, base+".tmp-*"))
		return m
	}

	got, kills := 0, 0
	var left []string // temp files the last kill left
	for got < hits && kills < 20*hits {
		p := w.startDaemon()
		target := w.recv.Count() + 100 + rand.IntN(500)
		saved := modTime(w.ckpt)
		waitFor(t, 30*time.Second, "progress before a kill", func() bool { return w.recv.Count() >= target && modTime(w.ckpt) != saved })
		for _, f := range left {
			assert.NoFileExists(t, f, "a start removes the temp files a crash left")
		}
		// Kill the moment a temp file is written: the save is between
		// its write and its rename.
		watch := watchPaths(t, unix.IN_MODIFY, dir)
		deadline := time.After(30 * time.Second)
	wait:
		for {
			select {
			case ev := <-watch.events:
				if strings.HasPrefix(filepath.Base(ev.Path), base+".tmp-") {
					p.Kill()
					break wait
				}
			case <-deadline:
				t.Fatal("the daemon wrote no temp checkpoint file for 30s")
			}
		}
		watch.close()
		kills++
		if left = temps(); len(left) > 0 {
			got++
		}
		_, err := checkpoint.Read(w.ckpt)
		require.NoError(t, err, "kill %d left an invalid checkpoint", kills)
	}
	require.Equal(t, hits, got, "kills that landed between a temp file's write and its rename, out of %d", kills)

	p := w.startDaemon()
	require.NoError(t, feeder.Stop())
	waitFor(t, 30*time.Second, "every line", w.complete)
	w.stopDaemon(p)
	_, err := os.Stat(w.ckpt)
	require.NoError(t, err)

	rep := w.report("checkpoint-crash")
	rep.Events = kills
	rep.Add("kills_mid_save", got)
	fmt.Println(rep.Summary())
	require.True(t, rep.OK(), "%s\n%+v", rep.Summary(), rep.PerStream)
	assert.NotContains(t, w.stderr(), "is unreadable", "no start refused the checkpoint")
}
