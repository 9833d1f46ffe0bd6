package tailer_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/enrich"
)

// eventRecord is one task event as the receiver sees it.
type eventRecord struct {
	Timestamp string `json:"timestamp"`
	Message   string `json:"message"`
	Stream    string `json:"stream"`
	File      *string
	Event     struct {
		Type     string `json:"type"`
		ExitCode int    `json:"exit_code"`
		Restarts int    `json:"restarts"`
	} `json:"event"`
	Nomad struct {
		TaskName string `json:"task_name"`
		Restarts int    `json:"restarts"`
	} `json:"nomad"`
}

func (o *memOutput) events(t *testing.T) []eventRecord {
	var out []eventRecord
	for _, r := range o.raw(t) {
		var e eventRecord
		require.NoError(t, json.Unmarshal(r, &e))
		if e.Stream == "event" {
			out = append(out, e)
		}
	}
	return out
}

func taskWithEvents(task string, events ...enrich.TaskEvent) *enrich.TaskInfo {
	return &enrich.TaskInfo{AllocID: testAlloc, Task: task, State: "running", Events: events}
}

func ev(typ string, at int64) enrich.TaskEvent {
	return enrich.TaskEvent{Type: typ, Time: at, Seq: 1, Message: "task " + typ}
}

// withTask gives both streams of a task the same TaskInfo, as enrich does.
func withTask(info *enrich.TaskInfo, ds ...enrich.Desired) []enrich.Desired {
	for i := range ds {
		ds[i].Task = info
	}
	return ds
}

// Task events go out once, as records of stream "event" with no file;
// a restart emits only the newer ones, and a listing repeating them
// sends nothing again.
func TestTaskEventsAreSentOnceAcrossRestarts(t *testing.T) {
	h := newHarness(t)
	h.writeFile("web.stdout.0", "a line\n")
	base := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC).UnixNano()
	info := taskWithEvents("web", ev("Received", base), ev("Started", base+1000))
	p := h.daemon(withTask(info, target("web", "stdout"), target("web", "stderr"))...)
	require.Eventually(t, func() bool { return len(h.out.events(t)) == 2 }, 10*time.Second, time.Millisecond)
	p.updates <- withTask(info, target("web", "stdout"), target("web", "stderr")) // the same listing again
	got := h.out.events(t)
	assert.Equal(t, "Received", got[0].Event.Type)
	assert.Equal(t, "Started", got[1].Event.Type)
	assert.Equal(t, "task Started", got[1].Message)
	assert.Equal(t, "web", got[0].Nomad.TaskName)
	assert.Nil(t, got[0].File, "an event has no file")
	assert.Equal(t, "2026-12-05T10:00:00.000001000Z", got[1].Timestamp)
	require.Eventually(t, func() bool { return testutil.ToFloat64(h.metrics.EventsForwarded) == 2 }, 10*time.Second, time.Millisecond)
	p.stop()
	assert.Len(t, h.out.events(t), 2, "a listing repeating the events sends nothing again")

	// Restarted, with one newer event: only it goes out.
	h.out = newMemOutput()
	info = taskWithEvents("web", ev("Received", base), ev("Started", base+1000), ev("Terminated", base+2000))
	p = h.daemon(withTask(info, target("web", "stdout"), target("web", "stderr"))...)
	defer p.stop()
	require.Eventually(t, func() bool { return len(h.out.events(t)) == 1 }, 10*time.Second, time.Millisecond)
	assert.Equal(t, "Terminated", h.out.events(t)[0].Event.Type)
}

// A batch of events the output fails is sent again; the mark moves only
// on confirmation.
func TestFailedTaskEventsAreResent(t *testing.T) {
	h := newHarness(t)
	h.out.failNext = 1
	base := time.Now().UnixNano()
	info := taskWithEvents("web", ev("Received", base), ev("Started", base+1))
	p := h.daemon(withTask(info, target("web", "stdout"))...)
	defer p.stop()
	require.Eventually(t, func() bool { return testutil.ToFloat64(h.metrics.EventsForwarded) == 2 }, 10*time.Second, time.Millisecond)
	types := map[string]int{}
	for _, e := range h.out.events(t) {
		types[e.Event.Type]++
	}
	assert.GreaterOrEqual(t, types["Received"], 1)
	assert.GreaterOrEqual(t, types["Started"], 1)
	m, ok := h.store.EventMark(testAlloc, "web")
	require.True(t, ok)
	assert.Equal(t, base+1, m.Time)
}

// A listing that says the task restarted changes the restarts key of the
// lines read from then on, without restarting the stream.
func TestRestartsReachTheLinesOfARunningStream(t *testing.T) {
	h := newHarness(t)
	h.writeFile("web.stdout.0", "before\n")
	d := target("web", "stdout")
	p := h.daemon(d)
	defer p.stop()
	h.waitLines(1)
	d.Meta.Restarts = 2
	p.updates <- []enrich.Desired{d}
	// The new metadata is taken at the stream's next wake-up; a write is one.
	require.Eventually(t, func() bool {
		h.appendFile("web.stdout.0", "after\n")
		for _, r := range h.out.raw(t) {
			var l eventRecord
			require.NoError(t, json.Unmarshal(r, &l))
			if l.Nomad.Restarts == 2 {
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond)
	first := h.out.raw(t)[0]
	assert.NotContains(t, string(first), `"restarts"`, fmt.Sprintf("lines read before carry none: %s", first))
}
