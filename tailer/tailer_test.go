package tailer_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/enrich"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/logmon"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/taskstream"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/tailer"
)

func TestFollowsLogmonRotationAndPurgeExactlyOnce(t *testing.T) {
	h := newHarness(t)
	rot, err := logmon.New(h.logDir(), "web", "stdout", logmon.Options{MaxFiles: 2, FileSize: 4 << 10})
	require.NoError(t, err)
	defer rot.Close()
	p := h.daemon(target("web", "stdout"))
	defer p.stop()

	want := numbered("line", 0, 3000)
	for i, l := range want {
		_, err := rot.Write([]byte(l + "\n"))
		require.NoError(t, err)
		if i%200 == 199 {
			// Keep the writer within reach: logmon purges a file one
			// rotation after it closes, and the point here is that a
			// tailer that keeps up loses nothing and repeats nothing.
			h.waitLines(i + 1 - 50)
		}
	}
	got := h.waitLines(len(want))
	assert.Equal(t, want, messages(got))
	require.NotEmpty(t, rot.Purged(), "the test must exercise purging")
	assert.Equal(t, 0.0, testutil.ToFloat64(h.metrics.FilesSkipped))
	for _, r := range got {
		assert.Equal(t, "web", r.Nomad.TaskName)
		assert.Equal(t, "stdout", r.Stream)
	}
}

func TestOffsetsPointAtEachLine(t *testing.T) {
	h := newHarness(t)
	p0 := h.writeFile("web.stdout.0", "first\nsecond\r\n")
	p1 := h.writeFile("web.stdout.1", "third\n")
	h.runOnce(target("web", "stdout"))
	got := h.out.lines(t)
	require.Len(t, got, 3)
	assert.Equal(t, []string{"first", "second", "third"}, messages(got))
	assert.Equal(t, []int64{0, 6, 0}, []int64{got[0].Offset, got[1].Offset, got[2].Offset})
	assert.Equal(t, []string{p0, p0, p1}, []string{got[0].File, got[1].File, got[2].File})
}

func TestLineSplitAcrossFilesIsOneLine(t *testing.T) {
	h := newHarness(t)
	p0 := h.writeFile("web.stdout.0", "a\nbegin-")
	h.writeFile("web.stdout.1", "end\nc\n")
	h.runOnce(target("web", "stdout"))
	got := h.out.lines(t)
	assert.Equal(t, []string{"a", "begin-end", "c"}, messages(got))
	assert.Equal(t, p0, got[1].File, "the split line is reported where it starts")
	assert.Equal(t, int64(2), got[1].Offset)
}

func TestIndexesAreOrderedNumerically(t *testing.T) {
	h := newHarness(t)
	var want []string
	for i := range 12 {
		h.writeFile(fmt.Sprintf("web.stdout.%d", i), fmt.Sprintf("file %d\n", i))
		want = append(want, fmt.Sprintf("file %d", i))
	}
	h.runOnce(target("web", "stdout"))
	assert.Equal(t, want, messages(h.out.lines(t)))
}

func TestTaskNamesMatchExactly(t *testing.T) {
	h := newHarness(t)
	h.writeFile("web.stdout.0", "web\n")
	h.writeFile("web-proxy.stdout.0", "proxy\n")
	h.writeFile("api.v2.stdout.0", "dotted\n")
	h.writeFile(".web.stdout.fifo", "never read\n")
	h.runOnce(target("web", "stdout"), target("api.v2", "stdout"))
	got := h.out.lines(t)
	byTask := map[string][]string{}
	for _, r := range got {
		byTask[r.Nomad.TaskName] = append(byTask[r.Nomad.TaskName], r.Message)
	}
	assert.Equal(t, map[string][]string{"web": {"web"}, "api.v2": {"dotted"}}, byTask)
}

func TestPartialLineIsHeldUntilItsNewline(t *testing.T) {
	h := newHarness(t)
	h.writeFile("web.stdout.0", "one\npart")
	p := h.daemon(target("web", "stdout"))
	defer p.stop()
	h.waitLines(1)
	h.appendFile("web.stdout.0", "ial\ntwo\n")
	got := h.waitLines(3)
	assert.Equal(t, []string{"one", "partial", "two"}, messages(got))
}

func TestPartialLastLineIsEmittedByOnce(t *testing.T) {
	h := newHarness(t)
	h.writeFile("crash.stdout.0", "starting\npartial line without newline")
	h.runOnce(target("crash", "stdout"))
	assert.Equal(t, []string{"starting", "partial line without newline"}, messages(h.out.lines(t)))

	// The checkpoint is past the partial line: a second run sends nothing.
	h.out = newMemOutput()
	h.runOnce(target("crash", "stdout"))
	assert.Empty(t, h.out.lines(t))
}

func TestLongLineIsTruncatedAndFlagged(t *testing.T) {
	h := newHarness(t)
	h.maxLine = 1000
	long := strings.Repeat("x", 10<<20)
	h.writeFile("web.stdout.0", "before\n"+long+"\nafter\n")
	h.runOnce(target("web", "stdout"))
	got := h.out.lines(t)
	require.Len(t, got, 3)
	assert.Equal(t, "before", got[0].Message)
	assert.Equal(t, strings.Repeat("x", 1000), got[1].Message)
	assert.True(t, got[1].Truncated)
	assert.Equal(t, int64(7), got[1].Offset)
	assert.Equal(t, "after", got[2].Message)
	assert.False(t, got[2].Truncated)
	assert.Equal(t, 1.0, testutil.ToFloat64(h.metrics.LinesTruncated))
	assert.Equal(t, 1, h.logs.FilterMessageSnippet("longer than --max-line-bytes").Len())
}

func TestResumesExactlyFromCheckpoint(t *testing.T) {
	h := newHarness(t)
	h.writeFile("web.stdout.0", strings.Join(numbered("a", 0, 100), "\n")+"\n")
	h.runOnce(target("web", "stdout"))
	require.Len(t, h.out.lines(t), 100)

	h.appendFile("web.stdout.0", strings.Join(numbered("a", 100, 150), "\n")+"\n")
	h.writeFile("web.stdout.1", strings.Join(numbered("a", 150, 160), "\n")+"\n")
	h.out = newMemOutput()
	h.runOnce(target("web", "stdout"))
	assert.Equal(t, numbered("a", 100, 160), messages(h.out.lines(t)))
}

func TestReplacedFileIsNotTrusted(t *testing.T) {
	h := newHarness(t)
	h.writeFile("web.stdout.0", "old 1\nold 2\n")
	h.runOnce(target("web", "stdout"))
	// Same name, another file (another inode, since both exist at once
	// before the rename): the saved offset means nothing.
	h.writeFile("replacement", "new 1\nnew 2\nnew 3\n")
	require.NoError(t, os.Rename(filepath.Join(h.logDir(), "replacement"), filepath.Join(h.logDir(), "web.stdout.0")))
	h.out = newMemOutput()
	h.runOnce(target("web", "stdout"))
	assert.Equal(t, []string{"new 1", "new 2", "new 3"}, messages(h.out.lines(t)))
	assert.Equal(t, 1, h.logs.FilterMessageSnippet("inode changed").Len())
}

func TestTruncatedFileRestartsAtZero(t *testing.T) {
	h := newHarness(t)
	h.writeFile("web.stdout.0", "a long first line\nanother line\n")
	h.runOnce(target("web", "stdout"))
	require.NoError(t, os.Truncate(filepath.Join(h.logDir(), "web.stdout.0"), 0))
	h.appendFile("web.stdout.0", "after\n")
	h.out = newMemOutput()
	h.runOnce(target("web", "stdout"))
	assert.Equal(t, []string{"after"}, messages(h.out.lines(t)))
	assert.Equal(t, 1, h.logs.FilterMessageSnippet("truncated").Len())
	assert.Equal(t, 1.0, testutil.ToFloat64(h.metrics.FilesTruncated))
}

func TestTruncationWhileFollowing(t *testing.T) {
	h := newHarness(t)
	h.writeFile("web.stdout.0", "one\ntwo\n")
	p := h.daemon(target("web", "stdout"))
	defer p.stop()
	h.waitLines(2)
	require.NoError(t, os.Truncate(filepath.Join(h.logDir(), "web.stdout.0"), 0))
	h.appendFile("web.stdout.0", "3\n") // shorter than what was read
	got := h.waitLines(3)
	assert.Equal(t, []string{"one", "two", "3"}, messages(got))
}

func TestFileDeletedAfterOpenIsReadToItsEnd(t *testing.T) {
	h := newHarness(t)
	h.writeFile("web.stdout.0", "first\n")
	p := h.daemon(target("web", "stdout"))
	defer p.stop()
	h.waitLines(1) // the file is open now
	more := numbered("more", 0, 2000)
	h.appendFile("web.stdout.0", strings.Join(more, "\n")+"\n")
	require.NoError(t, os.Remove(filepath.Join(h.logDir(), "web.stdout.0")))
	got := h.waitLines(2001)
	assert.Equal(t, append([]string{"first"}, more...), messages(got))
}

func TestFilePurgedBeforeOpenIsCountedAndSkipped(t *testing.T) {
	h := newHarness(t)
	h.writeFile("web.stdout.0", "zero\n")
	p := h.daemon(target("web", "stdout"))
	defer p.stop()
	h.waitLines(1)
	// logmon rotated twice while we were not looking and purged the
	// oldest files (.0, which we hold, and .1, which we never saw).
	require.NoError(t, os.Remove(filepath.Join(h.logDir(), "web.stdout.0")))
	h.writeFile("web.stdout.2", "two\n")
	got := h.waitLines(2)
	assert.Equal(t, []string{"zero", "two"}, messages(got))
	assert.Equal(t, 1.0, testutil.ToFloat64(h.metrics.FilesSkipped))
	assert.Equal(t, 1, h.logs.FilterMessageSnippet("purged before it could be opened").Len())
}

func TestCheckpointedFilePurgedWhileDown(t *testing.T) {
	h := newHarness(t)
	h.checkpointAt(3, 10)
	h.writeFile("web.stdout.5", "five\n")
	h.runOnce(target("web", "stdout"))
	assert.Equal(t, []string{"five"}, messages(h.out.lines(t)))
	assert.Equal(t, 2.0, testutil.ToFloat64(h.metrics.FilesSkipped), "indexes 3 and 4")
}

func TestOutputFailuresResendFromLastCommit(t *testing.T) {
	h := newHarness(t)
	want := numbered("line", 0, 3000)
	h.writeFile("web.stdout.0", strings.Join(want, "\n")+"\n")
	h.out.failNext = 3
	h.runOnce(target("web", "stdout"))
	got := messages(h.out.lines(t))
	assertAtLeastOnceInOrder(t, want, got)
	assert.Greater(t, len(got), len(want), "a failed write is resent")
}

func TestReadFromEndStartsAfterTheLastFullLine(t *testing.T) {
	h := newHarness(t)
	h.readFrom = tailer.ReadFromEnd
	h.writeFile("web.stdout.0", "old\n")
	h.writeFile("web.stdout.1", "older news\npartial")
	p := h.daemon(target("web", "stdout"))
	defer p.stop()
	require.Eventually(t, func() bool {
		_, ok := h.store.Get(taskstream.ID{AllocID: testAlloc, Task: "web", Stream: "stdout"})
		return ok
	}, 10*time.Second, time.Millisecond)
	h.appendFile("web.stdout.1", "ly done\nnew\n")
	got := h.waitLines(2)
	assert.Equal(t, []string{"partially done", "new"}, messages(got))
}

// assertAtLeastOnceInOrder checks that every wanted line arrived, and that
// lines arrive in order except for resent runs that go back in the stream.
func assertAtLeastOnceInOrder(t *testing.T, want, got []string) {
	t.Helper()
	pos := make(map[string]int, len(want))
	for i, w := range want {
		pos[w] = i
	}
	seen := make([]bool, len(want))
	prev := -1
	for _, g := range got {
		i, ok := pos[g]
		require.True(t, ok, "unexpected line %q", g)
		if i > prev+1 {
			require.Failf(t, "line skipped ahead", "after %q came %q", want[max(prev, 0)], g)
		}
		seen[i] = true
		prev = i
	}
	for i, s := range seen {
		require.True(t, s, "line %q never arrived", want[i])
	}
}

func TestDrainRetiresAStoppedAllocation(t *testing.T) {
	h := newHarness(t)
	h.drainDelay = 50 * time.Millisecond
	h.writeFile("web.stdout.0", "one\nlast without newline")
	p := h.daemon(target("web", "stdout"))
	defer p.stop()
	h.waitLines(1)
	stopped := target("web", "stdout")
	stopped.Terminal = true
	p.updates <- []enrich.Desired{stopped}
	got := h.waitLines(2)
	assert.Equal(t, []string{"one", "last without newline"}, messages(got))
	require.Eventually(t, func() bool {
		e, ok := h.store.Get(taskstream.ID{AllocID: testAlloc, Task: "web", Stream: "stdout"})
		return ok && e.Finished
	}, 10*time.Second, 5*time.Millisecond)
}

func TestManyFilesAreNotAllOpenedAtOnce(t *testing.T) {
	h := newHarness(t)
	const files = 5000
	var want []string
	for i := range files {
		h.writeFile(fmt.Sprintf("app.stdout.%d", i), fmt.Sprintf("file %d\n", i))
		want = append(want, fmt.Sprintf("file %d", i))
	}
	base := openFDs(t)
	maxSeen := 0
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			default:
				maxSeen = max(maxSeen, openFDs(t))
			}
		}
	}()
	h.runOnce(target("app", "stdout"))
	close(stop)
	<-sampled
	assert.Equal(t, want, messages(h.out.lines(t)))
	// The pipeline's own descriptors (inotify, the checkpoint) plus at most
	// --max-held-files log files.
	assert.LessOrEqual(t, maxSeen-base, heldFiles+8)
}

func openFDs(t *testing.T) int {
	entries, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(entries)
}

// Idle streams must not sit on the output's batch buffers: with more
// streams than buffers (the harness has 8), a stream that wakes up and
// finds nothing new gives its buffer back.
func TestIdleStreamsHoldNoBatchBuffers(t *testing.T) {
	h := newHarness(t)
	h.poll = time.Millisecond // idle streams wake up all the time
	var targets []enrich.Desired
	for i := range 30 {
		task := fmt.Sprintf("t%02d", i)
		h.writeFile(task+".stdout.0", task+" first\n")
		targets = append(targets, target(task, "stdout"))
	}
	p := h.daemon(targets...)
	defer p.stop()
	h.waitLines(30)
	for i := range 30 {
		h.appendFile(fmt.Sprintf("t%02d.stdout.0", i), fmt.Sprintf("t%02d second\n", i))
	}
	got := h.waitLines(60)
	assert.Len(t, got, 60)
}

func TestFilesUnopenedWhenTheAllocDirGoesAreCounted(t *testing.T) {
	h := newHarness(t)
	h.drainDelay = 50 * time.Millisecond
	const files = heldFiles + 4
	for i := range files {
		h.writeFile(fmt.Sprintf("web.stdout.%d", i), fmt.Sprintf("file %d\n", i))
	}
	gate := make(chan struct{})
	h.out.gate = gate
	web := target("web", "stdout")
	web.MaxFiles = 1000 // logmon keeps them all
	p := h.daemon(web)
	defer p.stop()
	// The first batch is being written and the output holds it: the
	// stream holds as many files as it may and waits.
	require.Eventually(t, func() bool {
		h.out.mu.Lock()
		defer h.out.mu.Unlock()
		return h.out.writes > 0
	}, 10*time.Second, time.Millisecond)
	require.NoError(t, os.RemoveAll(filepath.Join(h.allocDir, testAlloc)))
	h.out.mu.Lock()
	h.out.gate = nil
	h.out.mu.Unlock()
	close(gate)
	stopped := web
	stopped.Terminal = true
	p.updates <- []enrich.Desired{stopped}
	require.Eventually(t, func() bool {
		e, ok := h.store.Get(taskstream.ID{AllocID: testAlloc, Task: "web", Stream: "stdout"})
		return ok && e.Finished
	}, 10*time.Second, 5*time.Millisecond)
	got := h.out.lines(t)
	assert.Len(t, got, heldFiles, "what was open is read to its end")
	assert.Equal(t, 4.0, testutil.ToFloat64(h.metrics.FilesSkipped))
	assert.Equal(t, 1, h.logs.FilterMessageSnippet("alloc dir was deleted before").Len())
}

func TestTruncationWhileAPartialLineIsHeld(t *testing.T) {
	h := newHarness(t)
	h.writeFile("web.stdout.0", "one\npartial")
	p := h.daemon(target("web", "stdout"))
	defer p.stop()
	h.waitLines(1)
	require.NoError(t, os.Truncate(filepath.Join(h.logDir(), "web.stdout.0"), 0))
	h.appendFile("web.stdout.0", "2\n")
	got := h.waitLines(3)
	assert.Equal(t, []string{"one", "partial", "2"}, messages(got), "the held partial line is emitted, then the file is read again")
}

// A listing that wrongly leaves a running allocation out must not retire
// its streams for good: listed as running again, a retired stream goes on
// from where it stopped.
func TestARetiredStreamListedAsRunningAgainGoesOn(t *testing.T) {
	h := newHarness(t)
	h.drainDelay = 20 * time.Millisecond
	h.writeFile("web.stdout.0", "one\n")
	p := h.daemon(target("web", "stdout"))
	defer p.stop()
	h.waitLines(1)
	p.updates <- nil // left out of a listing: drained and retired
	key := taskstream.ID{AllocID: testAlloc, Task: "web", Stream: "stdout"}
	require.Eventually(t, func() bool { e, ok := h.store.Get(key); return ok && e.Finished }, 10*time.Second, time.Millisecond)

	h.appendFile("web.stdout.0", "two\n")
	p.updates <- []enrich.Desired{target("web", "stdout")} // running after all
	got := h.waitLines(2)
	assert.Equal(t, []string{"one", "two"}, messages(got))
	e, _ := h.store.Get(key)
	assert.False(t, e.Finished)
	assert.Equal(t, 1, h.logs.FilterMessageSnippet("reopening a stream marked finished").Len())
}

// A line longer than --max-line-bytes may span more files than a stream
// holds open: once its head is sent, the files it spans are let go, and a
// restart inside it skips its rest instead of taking it for a line.
func TestALongLineSpanningManyFiles(t *testing.T) {
	h := newHarness(t)
	h.maxLine = 100
	h.writeFile("web.stdout.0", "first\n"+strings.Repeat("x", 50))
	for i := 1; i <= heldFiles+4; i++ {
		h.writeFile(fmt.Sprintf("web.stdout.%d", i), strings.Repeat("x", 50))
	}
	p := h.daemon(target("web", "stdout"))
	got := h.waitLines(2)
	assert.Equal(t, "first", got[0].Message)
	assert.True(t, got[1].Truncated)
	assert.Equal(t, int64(6), got[1].Offset)
	key := taskstream.ID{AllocID: testAlloc, Task: "web", Stream: "stdout"}
	require.Eventually(t, func() bool {
		e, ok := h.store.Get(key)
		return ok && e.FileIndex == heldFiles+4 && e.InLongLine
	}, 10*time.Second, time.Millisecond, "the commit moves along inside the long line")
	p.stop()

	// After a restart the line goes on, then a new one: only the new one
	// is a line.
	h.writeFile(fmt.Sprintf("web.stdout.%d", heldFiles+5), "xx\nafter\n")
	h.out = newMemOutput()
	p = h.daemon(target("web", "stdout"))
	defer p.stop()
	assert.Equal(t, []string{"after"}, messages(h.waitLines(1)))
}
