package chaos_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/logmon"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/scenario"
)

// fileAccount is what became of the lines of one stream, file by file.
// The stream must have been written with WriteEach, so that each line lies
// in one known file.
type fileAccount struct {
	written   map[int]int // file index -> lines written
	delivered map[int]int // file index -> distinct lines delivered
	// misplaced counts lines whose output names another file than the
	// one they were written to.
	misplaced int
}

func accountFiles(s *scenario.Stream, lines []scenario.Line) fileAccount {
	a := fileAccount{written: map[int]int{}, delivered: map[int]int{}}
	for seq := range s.Written() {
		a.written[s.FileOf(seq)]++
	}
	seen := map[int]bool{}
	for _, l := range lines {
		if l.Stream != s.Name {
			continue
		}
		if int64(s.FileOf(l.Seq)) != l.FileIndex() {
			a.misplaced++
		}
		if !seen[l.Seq] {
			seen[l.Seq] = true
			a.delivered[s.FileOf(l.Seq)]++
		}
	}
	return a
}

// unread lists the files none of whose lines were delivered; partial those
// of which some, but not all, were.
func (a fileAccount) unread() (unread, partial []int) {
	for idx, n := range a.written {
		switch d := a.delivered[idx]; {
		case d == 0:
			unread = append(unread, idx)
		case d < n:
			partial = append(partial, idx)
		}
	}
	sort.Ints(unread)
	sort.Ints(partial)
	return unread, partial
}

// missingFromOpened counts the lines not delivered from files of which
// some line was: files the daemon opened.
func (a fileAccount) missingFromOpened() int {
	n := 0
	for idx, w := range a.written {
		if d := a.delivered[idx]; d > 0 {
			n += w - d
		}
	}
	return n
}

// maxStall is the longest time between two lines arriving within [from, to].
func maxStall(arrivals []time.Time, from, to time.Time) time.Duration {
	var worst time.Duration
	prev := from
	for _, at := range arrivals {
		if at.Before(from) {
			continue
		}
		if at.After(to) {
			break
		}
		worst = max(worst, at.Sub(prev))
		prev = at
	}
	return max(worst, to.Sub(prev))
}

// rotate-storm: a task writes as fast as it can into 1 MiB files of which
// logmon keeps three, while the receiver takes at most 20,000 lines a
// second: the daemon holds every file as it appears (its held files are
// the buffer, not its memory), so nothing is lost, and its memory stays
// flat however far behind it falls.
func TestRotateStorm(t *testing.T) {
	files := pick(12, 60)
	w := newWorld(t, worldConfig{streams: specs("s", 1), pad: 120, logmon: logmon.Options{MaxFiles: 3, FileSize: 1 << 20}})
	s := w.streams[0]
	w.recv.SetRate(20_000)
	p := w.startDaemon()
	require.NoError(t, s.Write(1))
	waitFor(t, 20*time.Second, "the first line", func() bool { return w.recv.Count() >= 1 })
	rssBefore, err := procStatus(p.Pid(), "VmRSS")
	require.NoError(t, err)

	stormStart := time.Now()
	for s.Index() < files-1 {
		require.NoError(t, s.Write(2000)) // large writes, as a busy task's
	}
	stormTime := time.Since(stormStart)
	heldAfterStorm := w.metric("nlf_held_files")
	heldBytes := w.metric("nlf_held_bytes")
	rssAfterStorm, err := procStatus(p.Pid(), "VmRSS")
	require.NoError(t, err)
	waitFor(t, 10*time.Minute, "the last line", func() bool { w.update(); return w.tally.CaughtUp() })
	hwm, err := procStatus(p.Pid(), "VmHWM")
	require.NoError(t, err)
	skipped, dropped := w.metric("nlf_files_skipped_total"), w.metric("nlf_files_dropped_total")
	w.stopDaemon(p)

	rep := w.report("rotate-storm")
	rep.Add("files", s.Index()+1)
	rep.Add("purged", len(s.Purged()))
	rep.Add("storm", stormTime.Round(time.Millisecond))
	rep.Add("held_files_after_storm", heldAfterStorm)
	rep.Add("held_mib_after_storm", mib(int64(heldBytes)))
	rep.Add("files_skipped_metric", skipped)
	rep.Add("files_dropped_metric", dropped)
	rep.Add("rss_mib_before", mib(rssBefore))
	rep.Add("rss_mib_after_storm", mib(rssAfterStorm))
	rep.Add("vmhwm_mib", mib(hwm))
	fmt.Println(rep.Summary())

	require.Greater(t, len(s.Purged()), files-5, "logmon purged all but the newest files during the storm")
	assert.Zero(t, rep.Missing, "nothing is lost")
	assert.Zero(t, rep.Duplicates, "nothing is read twice")
	assert.Zero(t, rep.OrderViolations)
	assert.Zero(t, rep.Unparsed)
	assert.Zero(t, skipped)
	assert.Zero(t, dropped)
	assert.Zero(t, countLogs(w.stderr(), "purged before it could be opened"))
	assert.Less(t, hwm, int64(128<<20), "memory stays flat: the files are the buffer")
}

// gc-while-draining: the allocation completes and its alloc dir is deleted
// while the daemon is far behind (its receiver stopped reading). Everything
// in the files it had opened is delivered; the files it never opened are
// logged and counted.
func TestGCWhileDraining(t *testing.T) {
	const files = 40
	w := newWorld(t, worldConfig{streams: specs("g", 2), logmon: logmon.Options{MaxFiles: 1000, FileSize: 64 << 10}})
	out, errs := w.streams[0], w.streams[1]
	allocID := out.Spec.AllocID
	logDir := filepath.Join(w.allocDir, allocID, "alloc", "logs")
	w.recv.Pause()
	// The stream holds all it may (the other stream holds one): the
	// daemon must be behind by more than that for files to go unread.
	const maxHeld = 16
	p := w.startDaemon("--max-held-files", strconv.Itoa(maxHeld+1))
	for out.Index() < files-1 {
		require.NoError(t, out.WriteEach(500))
	}
	require.NoError(t, errs.WriteEach(100))
	// Behind: the socket buffers are full and the stream has opened as
	// many files ahead as it may.
	held := func() []string {
		var out []string
		for _, f := range openFiles(p.Pid()) {
			if strings.HasPrefix(f, logDir+"/app.stdout.") {
				out = append(out, f)
			}
		}
		return out
	}
	var atGC []string
	waitFor(t, 30*time.Second, "the stream to hold as many files as it may", func() bool {
		atGC = held()
		return len(atGC) == maxHeld
	})

	require.True(t, w.api.SetClientStatus(allocID, api.AllocClientStatusComplete))
	require.NoError(t, os.RemoveAll(filepath.Join(w.allocDir, allocID)))
	w.recv.Resume()
	waitFor(t, 60*time.Second, "both streams to be drained and retired", func() bool {
		return countLogs(w.stderr(), "stream drained and retired") >= 2
	})
	skippedMetric := w.metric("nlf_files_skipped_total")
	w.stopDaemon(p)

	rep := w.report("gc-while-draining")
	acct := accountFiles(out, w.tally.Lines())
	unread, partial := acct.unread()
	logged := countLogs(w.stderr(), "log file was purged before it could be opened") +
		sumLogField(w.stderr(), "more log files were purged before they could be opened", "files") +
		sumLogField(w.stderr(), "the alloc dir was deleted before these log files could be opened", "files")
	rep.Add("missing_from_opened_files", acct.missingFromOpened())
	rep.Add("files", len(acct.written))
	rep.Add("files_held_at_gc", len(atGC))
	rep.Add("files_unread", len(unread))
	rep.Add("files_partial", len(partial))
	rep.Add("files_skipped_metric", skippedMetric)
	rep.Add("unread_logged", logged)
	fmt.Println(rep.Summary())

	require.NotEmpty(t, unread, "the daemon must have been behind by more than it holds open")
	assert.Empty(t, partial, "files the daemon had opened were delivered whole")
	for _, f := range atGC {
		var idx int
		_, err := fmt.Sscanf(f[strings.LastIndexByte(f, '.'):], ".%d", &idx)
		require.NoError(t, err, f)
		assert.Equal(t, acct.written[idx], acct.delivered[idx], "%s was open when the alloc dir went", f)
	}
	assert.Equal(t, float64(len(unread)), skippedMetric, "nlf_files_skipped_total counts the files never opened")
	assert.Equal(t, len(unread), logged, "each file never opened is logged")
	assert.Equal(t, errs.Written(), rep.PerStream[errs.Name].Unique, "the small stream was delivered whole")
	assert.Zero(t, rep.Duplicates)
	assert.Zero(t, rep.Unparsed)
	assert.Zero(t, acct.misplaced)
}
