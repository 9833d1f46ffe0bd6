package e2e_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/e2e"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/fakenomad"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/logmon"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/recv"
)

// javaEvent is event n of a stream: a Java exception with n%7 frames and,
// every third one, a cause; the same n always makes the same text.
func javaEvent(name string, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %07d java.lang.IllegalStateException: request %d failed", name, n, n)
	for f := range n % 7 {
		fmt.Fprintf(&b, "\n\tat com.example.Handler.step%d(Handler.java:%d)", f, 10+f)
	}
	if n%3 == 0 {
		b.WriteString("\nCaused by: java.io.IOException: disk\n\t... 4 more")
	}
	return b.String()
}

// eventWriter appends numbered Java events to one task stream through the
// logmon imitation, which rotates files under them (an event may span
// two files).
type eventWriter struct {
	name    string
	rot     *logmon.Rotator
	mu      sync.Mutex
	written int
}

func (w *eventWriter) write(n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var b strings.Builder
	for range n {
		b.WriteString(javaEvent(w.name, w.written) + "\n")
		w.written++
	}
	if _, err := w.rot.Write([]byte(b.String())); err != nil {
		panic(err)
	}
}

func (w *eventWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.written
}

// With multiline on, SIGKILL at random moments loses no event and splits
// none: every event arrives whole (identical to what was written, lines
// counted), in order, and one sent again is sent whole.
func TestMultilineEventsSurviveSIGKILL(t *testing.T) {
	allocDir := t.TempDir()
	r, err := recv.Listen("")
	require.NoError(t, err)
	defer r.Stop()
	var writers []*eventWriter
	for _, s := range []struct{ alloc, task, stream string }{
		{"aaaaaaaa-0000-0000-0000-000000000001", "web", "stdout"},
		{"bbbbbbbb-0000-0000-0000-000000000002", "api", "stderr"},
	} {
		dir, err := logmon.AllocLogDir(allocDir, s.alloc)
		require.NoError(t, err)
		rot, err := logmon.New(dir, s.task, s.stream, logmon.Options{MaxFiles: 4, FileSize: 64 << 10, ScanLimit: 8 << 10})
		require.NoError(t, err)
		defer rot.Close()
		writers = append(writers, &eventWriter{name: s.task + "." + s.stream, rot: rot})
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
					w.write(1 + rand.IntN(2)) // about 300 events, 1,500 lines a second per stream
				}
			}
		}
	})

	ckpt := filepath.Join(t.TempDir(), "checkpoint.msgpack")
	args := []string{"run", "--offline", "--alloc-dir", allocDir, "--checkpoint", ckpt, "--output", r.URL(),
		"--checkpoint-interval", "50ms", "--reconcile-interval", "1s", "--log-format", "console",
		"--multiline", "java", "--multiline-timeout", "200ms"}
	const kills = 5
	for range kills {
		p := e2e.Start(t, args...)
		target := r.Count() + 50 + rand.IntN(500)
		saved := modTime(ckpt)
		require.Eventually(t, func() bool { return r.Count() >= target && modTime(ckpt) != saved }, 20*time.Second, time.Millisecond)
		p.Kill()
	}
	close(stop)
	wg.Wait()
	p := e2e.Start(t, args...)
	var got map[string][]int
	require.Eventually(t, func() bool {
		got = eventSeqs(t, r.Lines())
		for _, w := range writers {
			if s := got[w.name]; len(s) == 0 || !containsInt(s, w.count()-1) {
				return false
			}
		}
		return true
	}, 30*time.Second, 20*time.Millisecond)
	require.NoError(t, p.Signal(syscall.SIGTERM))
	code, err := p.Wait(5 * time.Second)
	require.NoError(t, err)
	assert.Equal(t, 0, code)

	got = eventSeqs(t, r.Lines())
	for _, w := range writers {
		d := checkDelivery(t, w.name, got[w.name], w.count())
		t.Logf("%s: events written=%d delivered=%d duplicates=%d", w.name, w.count(), len(got[w.name]), d)
	}
	assert.NotContains(t, p.Stderr(), "purged before", "the writers must not outrun a restart here")
}

// eventSeqs checks that every record is a whole event, as written, and
// returns the event numbers of each stream in the order they arrived.
func eventSeqs(t *testing.T, raw [][]byte) map[string][]int {
	out := map[string][]int{}
	for _, b := range raw {
		var r struct {
			Message string `json:"message"`
			Stream  string `json:"stream"`
			Lines   int    `json:"lines"`
		}
		require.NoError(t, json.Unmarshal(b, &r), "%s", b)
		if r.Stream == "event" {
			continue
		}
		f := strings.Fields(r.Message)
		require.GreaterOrEqual(t, len(f), 2, "unexpected record %q", r.Message)
		n, err := strconv.Atoi(f[1])
		require.NoError(t, err, "a record that does not begin an event: %q", r.Message)
		want := javaEvent(f[0], n)
		require.Equal(t, want, r.Message, "event %s %d arrived split or joined", f[0], n)
		if lines := strings.Count(want, "\n") + 1; lines > 1 {
			require.Equal(t, lines, r.Lines, "event %s %d", f[0], n)
		}
		out[f[0]] = append(out[f[0]], n)
	}
	return out
}

// A meta value that cannot be parsed is logged once per task, naming the
// task and the key, that key falls back to the default, and the lines go
// on; the good keys next to it apply.
func TestABadMetaValueIsLoggedOnceAndTheDefaultUsed(t *testing.T) {
	w := newWorld(t)
	require.True(t, w.api.Update(runningWithLogs, func(a *api.Allocation) {
		a.Job.Meta = map[string]string{"log_forwarder_format": "json"}
		for _, g := range a.Job.TaskGroups {
			g.Meta = map[string]string{"log_forwarder_rate_limit": "lots", "log_forwarder_level": "detect"}
			for _, task := range g.Tasks {
				task.Meta = map[string]string{"log_forwarder_multiline": "cobol"}
			}
		}
	}))
	listings := w.api.Requests(fakenomad.Allocations)
	p := w.start("--metrics-addr", "")
	defer p.Kill()
	// Several listings (one a second): each names the bad values again.
	require.Eventually(t, func() bool {
		return w.api.Requests(fakenomad.Allocations) >= listings+4 && w.has("warn line 3")
	}, 20*time.Second, 10*time.Millisecond)

	var withJSON, stderrLines, stderrLevels int
	for _, raw := range w.recv.Lines() {
		var l struct {
			Message string          `json:"message"`
			Stream  string          `json:"stream"`
			Level   string          `json:"level"`
			JSON    json.RawMessage `json:"json"`
			Nomad   struct {
				AllocID string `json:"alloc_id"`
			} `json:"nomad"`
		}
		require.NoError(t, json.Unmarshal(raw, &l))
		if l.Nomad.AllocID != runningWithLogs || l.Stream == "event" {
			continue
		}
		if l.Stream == "stdout" && l.JSON != nil {
			withJSON++
			assert.Equal(t, "info", l.Level)
		}
		if l.Stream == "stderr" {
			stderrLines++
			if l.Level == "warn" {
				stderrLevels++
			}
		}
		assert.NotContains(t, l.Message, "\n", "the bad multiline value is not used")
	}
	assert.Positive(t, withJSON, "log_forwarder_format = json of the job applies")
	assert.Positive(t, stderrLines)
	assert.Equal(t, stderrLines, stderrLevels, "log_forwarder_level = detect of the group applies to text lines (\"warn line N\")")
	stderr := p.Stderr()
	for _, key := range []string{"log_forwarder_multiline", "log_forwarder_rate_limit"} {
		assert.Equal(t, 1, strings.Count(stderr, "meta "+key), "%s: logged once per task:\n%s", key, stderr)
	}
	assert.Contains(t, stderr, `cobol`)
	assert.Contains(t, stderr, "server", "the task is named")
}
