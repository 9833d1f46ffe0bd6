// Package e2e_test runs the built binary as a user would: against alloc
// dirs on disk, a receiver on TCP or a unix socket, and signals.
package e2e_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/e2e"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/logmon"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/recv"
)

const fixtures = "../testdata/nomad-2.0.5"

// line is one output line, every key the schema has.
type line struct {
	Timestamp string `json:"timestamp"`
	Message   string `json:"message"`
	Stream    string `json:"stream"`
	File      string `json:"file"`
	Offset    int64  `json:"offset"`
	Truncated bool   `json:"truncated"`
	Nomad     struct {
		Namespace  string            `json:"namespace"`
		NodeID     string            `json:"node_id"`
		NodeName   string            `json:"node_name"`
		Datacenter string            `json:"datacenter"`
		JobID      string            `json:"job_id"`
		JobName    string            `json:"job_name"`
		JobType    string            `json:"job_type"`
		GroupName  string            `json:"group_name"`
		TaskName   string            `json:"task_name"`
		AllocID    string            `json:"alloc_id"`
		AllocName  string            `json:"alloc_name"`
		AllocIndex *int              `json:"alloc_index"`
		Meta       map[string]string `json:"meta"`
	} `json:"nomad"`
}

// decode decodes the lines of task log files; task event records (stream
// "event", tested on their own) are left out.
func decode(t *testing.T, raw [][]byte) []line {
	t.Helper()
	out := make([]line, 0, len(raw))
	for _, r := range raw {
		var l line
		require.NoError(t, json.Unmarshal(r, &l), "invalid JSON line %q", r)
		if l.Stream != "event" {
			out = append(out, l)
		}
	}
	return out
}

// fixtureLines counts the complete lines of every fixture log, plus one
// for each file that ends without a newline (emitted by --once).
func fixtureLines(t *testing.T, allocDir string) map[string]int {
	t.Helper()
	want := map[string]int{}
	files, err := filepath.Glob(filepath.Join(allocDir, "*", "alloc", "logs", "*"))
	require.NoError(t, err)
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		n := strings.Count(string(data), "\n")
		if len(data) > 0 && data[len(data)-1] != '\n' {
			n++
		}
		want[f] = n
	}
	return want
}

func TestOnceShipsTheFixtureWithMetadata(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			allocDir := t.TempDir()
			e2e.CopyDir(t, filepath.Join(fixtures, "alloc-logs"), allocDir)
			addr := ""
			if network == "unix" {
				addr = "unix:" + filepath.Join(t.TempDir(), "vector.sock")
			}
			r, err := recv.Listen(addr)
			require.NoError(t, err)
			defer r.Stop()
			ckpt := filepath.Join(t.TempDir(), "checkpoint.msgpack")
			code, _, stderr := e2e.Run(t, 30*time.Second, "run", "--offline", "--once", "--alloc-dir", allocDir,
				"--allocs-file", filepath.Join(fixtures, "api", "node-allocations.json"),
				"--checkpoint", ckpt, "--output", r.URL())
			require.Equal(t, 0, code, stderr)
			// The forwarder has exited, but the receiver may still be
			// reading what the kernel holds for it.
			require.Eventually(t, func() bool { return r.Open() == 0 }, 10*time.Second, time.Millisecond)

			want := fixtureLines(t, allocDir)
			total := 0
			for _, n := range want {
				total += n
			}
			// The daemon exits once the kernel took the bytes; the receiver
			// may still be reading them.
			require.Eventually(t, func() bool { return r.Count() >= total }, 10*time.Second, 5*time.Millisecond)
			got := decode(t, r.Lines())
			perFile := map[string]int{}
			for _, l := range got {
				perFile[l.File]++
			}
			assert.Equal(t, want, perFile)

			byMessage := map[string]line{}
			for _, l := range got {
				byMessage[l.Message] = l
			}
			crash := byMessage["partial line without newline"]
			assert.Equal(t, "failing", crash.Nomad.JobName)
			assert.Equal(t, "batch", crash.Nomad.JobType)
			assert.Equal(t, "once", crash.Nomad.GroupName)
			assert.Equal(t, "crash", crash.Nomad.TaskName)
			assert.Equal(t, "failing.once[0]", crash.Nomad.AllocName)
			assert.Equal(t, "vm", crash.Nomad.NodeName)
			assert.Equal(t, "default", crash.Nomad.Namespace)
			require.NotNil(t, crash.Nomad.AllocIndex)
			assert.Equal(t, 0, *crash.Nomad.AllocIndex)
			assert.Equal(t, int64(9), crash.Offset)
			_, err = time.Parse(time.RFC3339Nano, crash.Timestamp)
			assert.NoError(t, err)

			// offsets list reads what the run committed.
			code, out, stderr := e2e.Run(t, 10*time.Second, "offsets", "list", "--checkpoint", ckpt, "--alloc-dir", allocDir, "--json")
			require.Equal(t, 0, code, stderr)
			var rows []map[string]any
			require.NoError(t, json.Unmarshal([]byte(out), &rows))
			require.Len(t, rows, 6+3, "six streams, and the events of three tasks")
			for _, row := range rows {
				if row["stream"] == "event" {
					assert.Contains(t, row, "last_event_time")
					continue
				}
				for _, k := range []string{"alloc_id", "task", "stream", "file_index", "offset", "lag_bytes", "finished", "updated_at"} {
					assert.Contains(t, row, k)
				}
				assert.Equal(t, 0.0, row["lag_bytes"], "everything was read: %v", row)
			}
		})
	}
}

// writer appends numbered lines to one task stream through the logmon
// imitation until stopped.
type writer struct {
	name    string
	rot     *logmon.Rotator
	mu      sync.Mutex
	written int
}

func (w *writer) write(n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var b strings.Builder
	for range n {
		fmt.Fprintf(&b, "%s %07d %s\n", w.name, w.written, strings.Repeat("x", rand.IntN(60)))
		w.written++
	}
	if _, err := w.rot.Write([]byte(b.String())); err != nil {
		panic(err)
	}
}

func (w *writer) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.written
}

// seqs splits received messages by stream name into sequence numbers.
func seqs(t *testing.T, raw [][]byte) map[string][]int {
	out := map[string][]int{}
	for _, l := range decode(t, raw) {
		f := strings.Fields(l.Message)
		require.GreaterOrEqual(t, len(f), 2, "unexpected line %q", l.Message)
		n, err := strconv.Atoi(f[1])
		require.NoError(t, err)
		out[f[0]] = append(out[f[0]], n)
	}
	return out
}

// checkDelivery asserts that every line 0..written-1 arrived, that a stream
// only ever goes back (resending after a crash), never skips ahead, and
// returns how many lines arrived more than once.
func checkDelivery(t *testing.T, name string, got []int, written int) (duplicates int) {
	t.Helper()
	seen := make([]bool, written)
	next := 0 // the lowest line not yet delivered
	prev := -1
	for _, n := range got {
		require.Less(t, n, written, "%s: line %d was never written", name, n)
		if n > prev+1 && n > next {
			require.Failf(t, "line skipped", "%s: after %d came %d, but %d had not arrived", name, prev, n, next)
		}
		if seen[n] {
			duplicates++
		}
		seen[n] = true
		for next < written && seen[next] {
			next++
		}
		prev = n
	}
	require.Equal(t, written, next, "%s: line %d never arrived", name, next)
	return duplicates
}

func TestSIGKILLAtRandomMomentsLosesNothing(t *testing.T) {
	allocDir := t.TempDir()
	r, err := recv.Listen("")
	require.NoError(t, err)
	defer r.Stop()
	var writers []*writer
	for _, s := range []struct{ alloc, task, stream string }{
		{"aaaaaaaa-0000-0000-0000-000000000001", "web", "stdout"},
		{"aaaaaaaa-0000-0000-0000-000000000001", "web", "stderr"},
		{"bbbbbbbb-0000-0000-0000-000000000002", "api.v2", "stdout"},
	} {
		dir, err := logmon.AllocLogDir(allocDir, s.alloc)
		require.NoError(t, err)
		rot, err := logmon.New(dir, s.task, s.stream, logmon.Options{MaxFiles: 4, FileSize: 64 << 10, ScanLimit: 8 << 10})
		require.NoError(t, err)
		defer rot.Close()
		writers = append(writers, &writer{name: s.task + "." + s.stream, rot: rot})
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				for _, w := range writers {
					w.write(3) // about 600 lines/s per stream
				}
			}
		}
	})

	ckpt := filepath.Join(t.TempDir(), "checkpoint.msgpack")
	args := []string{"run", "--offline", "--alloc-dir", allocDir, "--checkpoint", ckpt, "--output", r.URL(),
		"--checkpoint-interval", "50ms", "--reconcile-interval", "1s", "--log-format", "console"}
	const kills = 6
	for range kills {
		p := e2e.Start(t, args...)
		// Kill at a random moment: after a random amount of progress, and
		// after this run saved the checkpoint at least once (else every
		// kill would resend everything since the start).
		target := r.Count() + 100 + rand.IntN(1500)
		saved := modTime(ckpt)
		require.Eventually(t, func() bool { return r.Count() >= target && modTime(ckpt) != saved }, 20*time.Second, time.Millisecond)
		p.Kill()
	}
	close(stop)
	wg.Wait()
	p := e2e.Start(t, args...)
	require.Eventually(t, func() bool {
		got := seqs(t, r.Lines())
		for _, w := range writers {
			s := got[w.name]
			if len(s) == 0 || !containsInt(s, w.count()-1) {
				return false
			}
		}
		return true
	}, 30*time.Second, 20*time.Millisecond)
	require.NoError(t, p.Signal(syscall.SIGTERM))
	code, err := p.Wait(5 * time.Second)
	require.NoError(t, err)
	assert.Equal(t, 0, code)

	got := seqs(t, r.Lines())
	total := 0
	for _, w := range writers {
		d := checkDelivery(t, w.name, got[w.name], w.count())
		t.Logf("%s: written=%d delivered=%d duplicates=%d", w.name, w.count(), len(got[w.name]), d)
		// A kill repeats at most what was sent after the last checkpoint
		// save (50ms) plus what was in flight: far less than a second.
		assert.LessOrEqual(t, d, kills*300, "%s: duplicates beyond the uncommitted windows", w.name)
		total += d
	}
	assert.NotContains(t, p.Stderr(), "purged before", "the writers must not outrun a restart here")
}

func modTime(path string) time.Time {
	st, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return st.ModTime()
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestSIGTERMStopsPromptlyAndSaves(t *testing.T) {
	allocDir := t.TempDir()
	e2e.CopyDir(t, filepath.Join(fixtures, "alloc-logs"), allocDir)
	r, err := recv.Listen("")
	require.NoError(t, err)
	defer r.Stop()
	ckpt := filepath.Join(t.TempDir(), "checkpoint.msgpack")
	p := e2e.Start(t, "run", "--offline", "--alloc-dir", allocDir, "--checkpoint", ckpt, "--output", r.URL(), "--checkpoint-interval", "1h")
	want := 0
	for _, n := range fixtureLines(t, allocDir) {
		want += n
	}
	// Without --once a partial last line is held, so one line fewer arrives.
	require.Eventually(t, func() bool { return r.Count() >= want-2 }, 20*time.Second, 10*time.Millisecond)
	start := time.Now()
	require.NoError(t, p.Signal(syscall.SIGTERM))
	code, err := p.Wait(5 * time.Second)
	require.NoError(t, err)
	assert.Equal(t, 0, code)
	assert.Less(t, time.Since(start), 5*time.Second)
	// The checkpoint interval was an hour: only the shutdown save wrote it.
	_, err = os.Stat(ckpt)
	require.NoError(t, err)
}

func TestCorruptCheckpointStopsTheDaemon(t *testing.T) {
	allocDir := t.TempDir()
	ckpt := filepath.Join(t.TempDir(), "checkpoint.msgpack")
	require.NoError(t, os.WriteFile(ckpt, []byte("not a checkpoint"), 0o644))
	code, _, stderr := e2e.Run(t, 10*time.Second, "run", "--offline", "--once", "--alloc-dir", allocDir, "--checkpoint", ckpt)
	assert.NotEqual(t, 0, code)
	assert.Contains(t, stderr, ckpt)
	assert.Contains(t, stderr, "Move it aside")
	data, _ := os.ReadFile(ckpt)
	assert.Equal(t, "not a checkpoint", string(data))
}

func TestOffsetsForgetRefusesWhileADaemonRuns(t *testing.T) {
	allocDir := t.TempDir()
	e2e.CopyDir(t, filepath.Join(fixtures, "alloc-logs"), allocDir)
	ckpt := filepath.Join(t.TempDir(), "checkpoint.msgpack")
	r, err := recv.Listen("")
	require.NoError(t, err)
	defer r.Stop()
	p := e2e.Start(t, "run", "--offline", "--alloc-dir", allocDir, "--checkpoint", ckpt, "--output", r.URL())
	require.Eventually(t, func() bool { return r.Count() > 0 }, 10*time.Second, 5*time.Millisecond)
	code, _, stderr := e2e.Run(t, 10*time.Second, "offsets", "forget", "--checkpoint", ckpt, "977ac344-4ea7-a153-a4b6-95ed026410d6")
	assert.NotEqual(t, 0, code)
	assert.Contains(t, stderr, "stop the daemon")
	require.NoError(t, p.Signal(syscall.SIGTERM))
	_, err = p.Wait(5 * time.Second)
	require.NoError(t, err)

	code, out, stderr := e2e.Run(t, 10*time.Second, "offsets", "forget", "--checkpoint", ckpt, "977ac344-4ea7-a153-a4b6-95ed026410d6")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, "removed 2 entries")
	code, out, _ = e2e.Run(t, 10*time.Second, "offsets", "list", "--checkpoint", ckpt, "--alloc-dir", allocDir)
	require.Equal(t, 0, code)
	assert.NotContains(t, out, "977ac344")
	assert.Contains(t, out, "e333a86a")
}

func TestVersion(t *testing.T) {
	code, out, _ := e2e.Run(t, 10*time.Second, "version")
	require.Equal(t, 0, code)
	assert.Contains(t, out, "nomad-log-forwarder")
	assert.Contains(t, out, "go1.")
}

// A fresh host has no checkpoint folder yet (the default is under
// /var/lib/nomad-log-forwarder): the daemon creates it.
func TestCheckpointFolderIsCreated(t *testing.T) {
	allocDir := t.TempDir()
	e2e.CopyDir(t, filepath.Join(fixtures, "alloc-logs"), allocDir)
	ckpt := filepath.Join(t.TempDir(), "new", "dir", "cp.msgpack")
	code, _, stderr := e2e.Run(t, 30*time.Second, "run", "--offline", "--once", "--alloc-dir", allocDir,
		"--checkpoint", ckpt, "--output", "stdout")
	require.Equal(t, 0, code, stderr)
	_, err := os.Stat(ckpt)
	require.NoError(t, err)
	code, out, stderr := e2e.Run(t, 10*time.Second, "offsets", "list", "--checkpoint", ckpt, "--alloc-dir", allocDir)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, "e333a86a")
}
