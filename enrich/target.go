package enrich

import (
	"bytes"
	"fmt"
	"maps"
	"strings"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/taskstream"
)

// Stream names as they appear in logmon's file names.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// Streams lists both streams of a task, in the order they are started.
var Streams = [2]string{Stdout, Stderr}

// Meta is what an output line says about where it came from. Empty strings,
// false, a zero Restarts and a nil AllocIndex are left out of the output,
// never sent empty.
type Meta struct {
	Namespace string
	// Region is the node's region: the agent's, else the API client's,
	// else the allocation's Job.Region (offline, that is all there is).
	Region     string
	NodeID     string
	NodeName   string
	NodePool   string
	NodeClass  string
	Datacenter string
	JobID      string
	JobName    string
	JobType    string
	// ParentJobID is the job's ParentID: the parameterized or periodic
	// job that launched this one.
	ParentJobID string
	// Dispatched marks a child of a parameterized job (Job.Dispatched),
	// PeriodicChild one that a periodic job launched (ID
	// <ParentID>/periodic-<unix>).
	Dispatched    bool
	PeriodicChild bool
	GroupName     string
	TaskName      string
	// TaskLifecycle is the hook of the task's lifecycle block (prestart,
	// poststart, poststop), empty for a main task; TaskSidecar is the
	// block's sidecar flag.
	TaskLifecycle string
	TaskSidecar   bool
	AllocID       string
	AllocName     string
	AllocIndex    *int
	// Restarts is the task's restart count in the listing the target came
	// from (TaskStates[task].Restarts).
	Restarts uint64
	// Extra holds the values of the --meta keys, rendered as nomad.meta.KEY.
	Extra map[string]string
	// NodeMeta holds the values of the --node-meta keys (from the node's
	// meta), rendered as nomad.node_meta.KEY.
	NodeMeta map[string]string
}

// Equal reports whether m and o render the same nomad object, so that a
// stream can tell whether a new listing changed its metadata (a restart).
func (m Meta) Equal(o Meta) bool {
	if m.sameFields(o) {
		// The common case, cheaply: a reconcile compares every stream's
		// metadata, and rendering both was most of an idle node's CPU.
		return true
	}
	return bytes.Equal(appendNomad(nil, m), appendNomad(nil, o))
}

// sameFields says every field of m and o holds the same value (maps and
// AllocIndex by content). Fields that differ may still render the same
// (an empty map and a nil one), which Equal then finds out by rendering.
// A test sets each field in turn, so a new field cannot be forgotten here.
func (m Meta) sameFields(o Meta) bool {
	return m.Namespace == o.Namespace && m.Region == o.Region &&
		m.NodeID == o.NodeID && m.NodeName == o.NodeName && m.NodePool == o.NodePool && m.NodeClass == o.NodeClass &&
		m.Datacenter == o.Datacenter && m.JobID == o.JobID && m.JobName == o.JobName && m.JobType == o.JobType &&
		m.ParentJobID == o.ParentJobID && m.Dispatched == o.Dispatched && m.PeriodicChild == o.PeriodicChild &&
		m.GroupName == o.GroupName && m.TaskName == o.TaskName && m.TaskLifecycle == o.TaskLifecycle &&
		m.TaskSidecar == o.TaskSidecar && m.AllocID == o.AllocID && m.AllocName == o.AllocName &&
		(m.AllocIndex == nil) == (o.AllocIndex == nil) && (m.AllocIndex == nil || *m.AllocIndex == *o.AllocIndex) &&
		m.Restarts == o.Restarts && maps.Equal(m.Extra, o.Extra) && maps.Equal(m.NodeMeta, o.NodeMeta)
}

// Desired is one target that discovery wants tailed, with its metadata and
// whether its allocation has stopped for good (the drain rule starts then).
type Desired struct {
	Target   taskstream.ID
	Meta     Meta
	Terminal bool
	// MaxFiles and MaxFileSizeMB are the task's LogConfig (0 when
	// unknown): logmon keeps at most MaxFiles files of MaxFileSizeMB MiB
	// per stream, its retention.
	MaxFiles, MaxFileSizeMB int
	// Handling is how the task's lines are handled (its meta, else the
	// defaults); HandlingProblems the meta values that did not parse and
	// were left at their default, for the discovery to log once per task.
	Handling         Handling
	HandlingProblems []string
	// Task is what the listing says about the target's task: its events,
	// restarts, logs block and lifecycle. Both streams of a task share one
	// TaskInfo (the same pointer); each listing brings new ones. Nil when
	// nothing is known but the files (offline, without the allocation).
	Task *TaskInfo
}

// ValidPathComponent reports why s cannot be used as one component of a
// path below the alloc dir, or nil if it can. Alloc IDs and task names come
// from the API or from directory names; neither may leave the alloc dir.
func ValidPathComponent(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("empty path component")
	case s == "." || s == "..":
		return fmt.Errorf("path component %q is a directory reference", s)
	case strings.ContainsAny(s, "/\x00"):
		return fmt.Errorf("path component %q contains '/' or NUL", s)
	}
	return nil
}

// ValidAllocID reports why id is not a Nomad allocation ID, or nil if it
// is one. Nomad makes every alloc ID a UUID in its canonical form: 36
// lowercase hex digits and dashes, 8-4-4-4-12. Anything else (a
// 5,000-character name, a path) is not an allocation of this node, and
// must not become a folder looked up, a stream or a checkpoint entry.
func ValidAllocID(id string) error {
	if len(id) != 36 {
		return fmt.Errorf("alloc ID %q: want a UUID (36 characters, 8-4-4-4-12 lowercase hex), got %d characters", truncate(id, 64), len(id))
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return fmt.Errorf("alloc ID %q: want a UUID (8-4-4-4-12 lowercase hex)", id)
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return fmt.Errorf("alloc ID %q: want a UUID (8-4-4-4-12 lowercase hex)", id)
			}
		}
	}
	return nil
}
