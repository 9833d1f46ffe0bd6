package e2e_test

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/checkpoint"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/e2e"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/fakenomad"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/recv"
)

// eventID is what identifies an event record: alloc_id + task_name +
// event.type + timestamp.
type eventID struct{ alloc, task, typ, at string }

func eventsOf(t *testing.T, raw [][]byte) []eventID {
	var out []eventID
	for _, r := range raw {
		var l struct {
			Timestamp string `json:"timestamp"`
			Stream    string `json:"stream"`
			Event     struct {
				Type string `json:"type"`
			} `json:"event"`
			Nomad struct {
				AllocID  string `json:"alloc_id"`
				TaskName string `json:"task_name"`
			} `json:"nomad"`
		}
		require.NoError(t, json.Unmarshal(r, &l), "%s", r)
		if l.Stream == "event" {
			out = append(out, eventID{l.Nomad.AllocID, l.Nomad.TaskName, l.Event.Type, l.Timestamp})
		}
	}
	return out
}

// Issue 12: killed with SIGKILL at random moments while it ships the task
// events of the derived fixture (a failed task, a restarting one, a
// dispatched and a periodic child), the daemon loses none, and a restart
// resends only events after the mark its checkpoint held when it died.
func TestTaskEventsSurviveSIGKILL(t *testing.T) {
	const node = "8e47e58c-8df8-60d1-ad83-e4a85be0ec5c"
	allocs, err := fakenomad.LoadAllocations("../testdata/nomad-2.0.5-derived/node-allocations-events.json")
	require.NoError(t, err)
	nodeJSON, err := os.ReadFile("../testdata/nomad-2.0.5-extra/node.json")
	require.NoError(t, err)
	selfJSON, err := os.ReadFile("../testdata/nomad-2.0.5-extra/agent-self.json")
	require.NoError(t, err)
	api, err := fakenomad.New(fakenomad.Options{NodeID: node, Node: nodeJSON, AgentSelf: selfJSON}, allocs...)
	require.NoError(t, err)
	defer api.Close()
	allocDir := t.TempDir()
	want := map[eventID]bool{}
	for _, a := range allocs {
		require.NoError(t, os.MkdirAll(filepath.Join(allocDir, a.ID, "alloc", "logs"), 0o755))
	}
	r, err := recv.Listen("")
	require.NoError(t, err)
	defer r.Stop()
	ckpt := filepath.Join(t.TempDir(), "checkpoint.msgpack")
	args := []string{"run", "--nomad-addr", api.URL(), "--node-id", node, "--alloc-dir", allocDir, "--checkpoint", ckpt,
		"--output", r.URL(), "--checkpoint-interval", "20ms", "--metrics-addr", ""}

	// The first run ships them all: that is the set.
	p := e2e.Start(t, args...)
	require.Eventually(t, func() bool { return len(eventsOf(t, r.Lines())) >= 20 }, 20*time.Second, time.Millisecond)
	p.Kill()
	require.Eventually(t, func() bool { return r.Open() == 0 }, 10*time.Second, time.Millisecond)
	for _, e := range eventsOf(t, r.Lines()) {
		want[e] = true
	}
	total := len(want)

	// Then, from a fresh checkpoint, kills at random moments chosen by
	// progress.
	require.NoError(t, os.Remove(ckpt))
	seen := map[eventID]int{}
	from := r.Count()
	for round := 0; ; round++ {
		marks := eventMarks(t, ckpt)
		p = e2e.Start(t, args...)
		killAt := rand.IntN(total + 1)
		done := e2e.Eventually(t.Context(), 20*time.Second, func() bool {
			// A restart sends only what was not confirmed: fewer than
			// killAt may come, then every mark covers the set.
			return len(eventsOf(t, r.LinesFrom(from))) >= killAt && killAt < total || marksCover(eventMarks(t, ckpt), want)
		})
		require.True(t, done, "round %d", round)
		require.NoError(t, p.Signal(syscall.SIGKILL))
		p.Wait(10 * time.Second)
		require.Eventually(t, func() bool { return r.Open() == 0 }, 10*time.Second, time.Millisecond)
		for _, e := range eventsOf(t, r.LinesFrom(from)) {
			seen[e]++
			mark, ok := marks[[2]string{e.alloc, e.task}]
			at, err := time.Parse(time.RFC3339Nano, e.at)
			require.NoError(t, err)
			assert.True(t, !ok || at.UnixNano() >= mark, "round %d resent %v, confirmed before it died", round, e)
		}
		from = r.Count()
		if round >= 5 && marksCover(eventMarks(t, ckpt), want) {
			break
		}
	}
	for e := range want {
		assert.GreaterOrEqual(t, seen[e], 1, "%v lost", e)
	}
	for e := range seen {
		assert.True(t, want[e], "%v is no event of the fixture", e)
	}
}

// eventMarks reads the checkpoint's event marks, by alloc ID and task.
func eventMarks(t *testing.T, path string) map[[2]string]int64 {
	entries, err := checkpoint.Read(path)
	require.NoError(t, err)
	out := map[[2]string]int64{}
	for _, e := range entries {
		if e.Key().IsEvents() {
			out[[2]string{e.AllocID, e.Task}] = e.EventTime
		}
	}
	return out
}

// marksCover says the marks reach every event of want.
func marksCover(marks map[[2]string]int64, want map[eventID]bool) bool {
	for e := range want {
		at, _ := time.Parse(time.RFC3339Nano, e.at)
		if marks[[2]string{e.alloc, e.task}] < at.UnixNano() {
			return false
		}
	}
	return true
}
