// Package taskstream names one task stream, the files
// <alloc-dir>/<AllocID>/alloc/logs/<Task>.<Stream>.<N>. enrich finds
// streams by this name, tailer follows them, and checkpoint keys their
// positions by it: one type, so the three can never drift apart.
//
// A task's events (from Nomad's task states, not from files) are one more
// stream of the task, named Events.
package taskstream

// Events is the Stream of a task's events: the "stream" value of their
// records and the checkpoint key of how far they were confirmed. No log
// file is ever named <task>.event.<N>: logmon writes stdout and stderr only.
const Events = "event"

// ID identifies one task stream.
type ID struct {
	AllocID string
	Task    string
	Stream  string
}

// EventsOf is the ID of a task's events.
func EventsOf(allocID, task string) ID { return ID{AllocID: allocID, Task: task, Stream: Events} }

// IsEvents reports whether id names a task's events rather than log files.
func (id ID) IsEvents() bool { return id.Stream == Events }

func (id ID) String() string { return id.AllocID + "/" + id.Task + "." + id.Stream }
