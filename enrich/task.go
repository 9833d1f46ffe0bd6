package enrich

import (
	"strings"

	"github.com/hashicorp/nomad/api"
)

// Lifecycle hooks of a task (the lifecycle block's hook).
const (
	LifecyclePrestart  = "prestart"
	LifecyclePoststart = "poststart"
	LifecyclePoststop  = "poststop"
)

// periodicLaunchSuffix joins a periodic job's ID and the launch time in the
// IDs of the children it launches (Nomad's structs.PeriodicLaunchSuffix).
const periodicLaunchSuffix = "/periodic-"

// TaskInfo is what one listing says about a task beyond its files. Both
// streams of the task share it; it is never changed once made, so any
// goroutine may read it.
type TaskInfo struct {
	AllocID string
	Task    string
	// State is Nomad's task state: pending, running or dead ("" before
	// the client reported any).
	State  string
	Failed bool
	// Restarts is TaskStates[task].Restarts.
	Restarts uint64
	// Lifecycle is the hook of the task's lifecycle block (prestart,
	// poststart, poststop), "" for a main task; Sidecar its sidecar flag.
	Lifecycle string
	Sidecar   bool
	LogConfig LogConfig
	// Events are the task's events, ordered by time (see TaskEvent); nil
	// with --task-events=false. Nomad keeps only the last few (10 by
	// default) per task: older ones are gone from the listing.
	Events []TaskEvent
}

// EventsAfter returns the events after the mark (time, seq): those with a
// later Time, and those at exactly time with a higher Seq. (0, 0) is before
// every event. The result shares the TaskInfo's array; do not change it.
func (t *TaskInfo) EventsAfter(time int64, seq int) []TaskEvent {
	for i, ev := range t.Events {
		if ev.Time > time || ev.Time == time && ev.Seq > seq {
			return t.Events[i:]
		}
	}
	return nil
}

// LogConfig is the task's logs block.
type LogConfig struct {
	MaxFiles      int
	MaxFileSizeMB int
	// Disabled: Nomad keeps no log files for the task, so nothing of it
	// can be forwarded but its events.
	Disabled bool
}

// RetentionBytes is how much of one stream Nomad keeps on disk: MaxFiles
// files of MaxFileSizeMB MiB. Bytes not forwarded when the oldest file is
// purged are lost. 0 when the job does not say (or logs are disabled).
func (c LogConfig) RetentionBytes() int64 {
	if c.Disabled || c.MaxFiles <= 0 || c.MaxFileSizeMB <= 0 {
		return 0
	}
	return int64(c.MaxFiles) * int64(c.MaxFileSizeMB) << 20
}

func logConfigOf(t *api.Task) LogConfig {
	if t == nil || t.LogConfig == nil {
		return LogConfig{}
	}
	lc := t.LogConfig
	var c LogConfig
	if lc.MaxFiles != nil {
		c.MaxFiles = *lc.MaxFiles
	}
	if lc.MaxFileSizeMB != nil {
		c.MaxFileSizeMB = *lc.MaxFileSizeMB
	}
	switch {
	case lc.Disabled != nil:
		c.Disabled = *lc.Disabled
	case lc.Enabled != nil:
		// Jobs registered before Nomad 1.5.4 say enabled = false instead.
		c.Disabled = !*lc.Enabled
	}
	return c
}

// lifecycleOf returns the task's lifecycle hook and sidecar flag; "" for a
// task without a lifecycle block.
func lifecycleOf(t *api.Task) (hook string, sidecar bool) {
	if t == nil || t.Lifecycle == nil || t.Lifecycle.Hook == "" {
		return "", false
	}
	return t.Lifecycle.Hook, t.Lifecycle.Sidecar
}

// newTaskInfo gathers what the allocation says about one task; t or state
// may be nil (a task the job no longer defines, one not started yet).
func newTaskInfo(allocID, name string, t *api.Task, state *api.TaskState, withEvents bool) *TaskInfo {
	info := &TaskInfo{AllocID: allocID, Task: name, LogConfig: logConfigOf(t)}
	info.Lifecycle, info.Sidecar = lifecycleOf(t)
	if state != nil {
		info.State, info.Failed, info.Restarts = state.State, state.Failed, state.Restarts
		if withEvents {
			info.Events = eventsOf(state)
		}
	}
	return info
}

// jobLineage says whether a job is a child of a parameterized job
// (dispatched) or of a periodic one, and which: Nomad sets ParentID on
// both, Dispatched on the first, and names the second
// <parent>/periodic-<launch unix time>.
func jobLineage(j *api.Job) (parent string, dispatched, periodicChild bool) {
	if j == nil || j.ParentID == nil || *j.ParentID == "" {
		return "", false, false
	}
	parent = *j.ParentID
	id := ""
	if j.ID != nil {
		id = *j.ID
	}
	periodicChild = !j.Dispatched && strings.HasPrefix(id, parent+periodicLaunchSuffix)
	return parent, j.Dispatched, periodicChild
}
