package enrich

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/hashicorp/nomad/api"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/taskstream"
)

// OptOutKey is the meta key that, set to "false" or "off" at the task,
// group or job level (the nearest level wins), keeps a task's logs out.
const OptOutKey = "log_forwarder"

// Options select which allocations and tasks are tailed and what metadata
// is copied into each line.
// DefaultMaxStreamsPerAlloc is --max-streams-per-alloc's default.
const DefaultMaxStreamsPerAlloc = 64

type Options struct {
	// Handling is how lines are handled when a task's meta says nothing
	// (the --multiline, --format, --rate-limit and --level flags).
	Handling Handling
	// MaxStreamsPerAlloc caps the streams of one allocation (default
	// 64): offline, task names come from file names, which a task can
	// create without end; the rest are logged and counted, never
	// followed.
	MaxStreamsPerAlloc int
	// Namespaces to tail; empty means all.
	Namespaces []string
	// MetaKeys are copied from task, group or job meta (nearest wins)
	// into nomad.meta.KEY.
	MetaKeys []string
	// NodeMetaKeys are copied from the node's meta into
	// nomad.node_meta.KEY (--node-meta).
	NodeMetaKeys []string
	// SelfAllocID is the forwarder's own allocation, never tailed: its
	// output would be read back in, a feedback loop.
	SelfAllocID string
	// TaskEvents fills TaskInfo.Events (--task-events); without it they
	// are left out.
	TaskEvents bool
}

// maxTasks is how many tasks of one allocation are followed: two streams
// each.
func (o Options) maxTasks() int {
	if o.MaxStreamsPerAlloc <= 0 {
		return DefaultMaxStreamsPerAlloc / 2
	}
	return max(o.MaxStreamsPerAlloc/2, 1)
}

func (o Options) wantsNamespace(ns string) bool {
	if len(o.Namespaces) == 0 {
		return true
	}
	for _, n := range o.Namespaces {
		if n == ns || n == "*" {
			return true
		}
	}
	return false
}

// Node is what the output says about the node.
type Node struct {
	ID         string
	Name       string
	Datacenter string
	// Region is the agent's region; empty when unknown (each allocation
	// then gives its Job.Region, the same on every node of a region).
	Region string
	Pool   string
	Class  string
	// Meta is the node's meta, from which Options.NodeMetaKeys are taken.
	Meta map[string]string
}

// nodeMeta picks the keys of the node's meta that are set.
func (n Node) nodeMeta(keys []string) map[string]string {
	var out map[string]string
	for _, k := range keys {
		if v, ok := n.Meta[k]; ok {
			if out == nil {
				out = make(map[string]string, len(keys))
			}
			out[k] = v
		}
	}
	return out
}

// IsTerminal reports whether an allocation's client status is final:
// its tasks will write nothing more.
func IsTerminal(clientStatus string) bool {
	switch clientStatus {
	case api.AllocClientStatusComplete, api.AllocClientStatusFailed, api.AllocClientStatusLost:
		return true
	}
	return false
}

// FromAllocation returns both streams of every task of a, unless a is not
// selected by opts or a task opted out; the two streams of a task share
// one TaskInfo. An allocation whose ID is not a
// UUID (ValidAllocID), or whose task names could lead out of the alloc dir,
// is refused with an error.
func FromAllocation(a *api.Allocation, node Node, opts Options) ([]Desired, error) {
	if a == nil {
		return nil, nil
	}
	if err := ValidAllocID(a.ID); err != nil {
		return nil, fmt.Errorf("refusing allocation: %w", err)
	}
	if a.ID == opts.SelfAllocID || !opts.wantsNamespace(a.Namespace) {
		return nil, nil
	}
	var group *api.TaskGroup
	var jobMeta map[string]string
	jobName, jobType, region := a.JobID, "", node.Region
	parent, dispatched, periodicChild := jobLineage(a.Job)
	if a.Job != nil {
		jobMeta = a.Job.Meta
		if a.Job.Name != nil && *a.Job.Name != "" {
			jobName = *a.Job.Name
		}
		if a.Job.Type != nil {
			jobType = *a.Job.Type
		}
		if region == "" && a.Job.Region != nil {
			region = *a.Job.Region
		}
		for _, g := range a.Job.TaskGroups {
			if g != nil && g.Name != nil && *g.Name == a.TaskGroup {
				group = g
				break
			}
		}
	}
	var groupMeta map[string]string
	var tasks []*api.Task
	if group != nil {
		groupMeta, tasks = group.Meta, group.Tasks
	}
	names := make([]string, 0, len(tasks))
	defs := make(map[string]*api.Task, len(tasks))
	for _, t := range tasks {
		if t != nil {
			names = append(names, t.Name)
			defs[t.Name] = t
		}
	}
	for name := range a.TaskStates {
		if _, ok := defs[name]; !ok {
			names = append(names, name)
			defs[name] = nil
		}
	}
	nodeID, nodeName := a.NodeID, a.NodeName
	if nodeID == "" {
		nodeID = node.ID
	}
	if nodeName == "" {
		nodeName = node.Name
	}
	terminal := IsTerminal(a.ClientStatus)
	// One map for all the tasks of a, shared: never changed once made.
	nodeMeta := node.nodeMeta(opts.NodeMetaKeys)
	var out []Desired
	var refused []string
	if limit := opts.maxTasks(); len(names) > limit {
		// A job has few tasks; this many are a listing to distrust.
		refused = append(refused, fmt.Sprintf("%d tasks beyond --max-streams-per-alloc (%d streams)", len(names)-limit, 2*limit))
		names = names[:limit]
	}
	for _, task := range names {
		if err := ValidPathComponent(task); err != nil {
			refused = append(refused, err.Error())
			continue
		}
		def := defs[task]
		var taskMeta map[string]string
		if def != nil {
			taskMeta = def.Meta
		}
		levels := []map[string]string{taskMeta, groupMeta, jobMeta}
		if v, ok := nearest(levels, OptOutKey); ok && isOff(v) {
			continue
		}
		info := newTaskInfo(a.ID, task, def, a.TaskStates[task], opts.TaskEvents)
		meta := Meta{
			Namespace: a.Namespace, Region: region, NodeID: nodeID, NodeName: nodeName,
			NodePool: node.Pool, NodeClass: node.Class, Datacenter: node.Datacenter,
			JobID: a.JobID, JobName: jobName, JobType: jobType,
			ParentJobID: parent, Dispatched: dispatched, PeriodicChild: periodicChild,
			GroupName: a.TaskGroup, TaskName: task, TaskLifecycle: info.Lifecycle, TaskSidecar: info.Sidecar,
			AllocID: a.ID, AllocName: a.Name, AllocIndex: allocIndex(a.Name), Restarts: info.Restarts,
			NodeMeta: nodeMeta,
		}
		for _, k := range opts.MetaKeys {
			if v, ok := nearest(levels, k); ok {
				if meta.Extra == nil {
					meta.Extra = make(map[string]string, len(opts.MetaKeys))
				}
				meta.Extra[k] = v
			}
		}
		handling, problems := handlingOf(levels, opts.Handling)
		for _, stream := range Streams {
			out = append(out, Desired{Target: taskstream.ID{AllocID: a.ID, Task: task, Stream: stream}, Meta: meta, Terminal: terminal, Task: info,
				MaxFiles: info.LogConfig.MaxFiles, MaxFileSizeMB: info.LogConfig.MaxFileSizeMB,
				Handling: handling, HandlingProblems: problems})
		}
	}
	if len(refused) > 0 {
		return out, fmt.Errorf("allocation %s: refusing task names: %s", a.ID, strings.Join(refused, "; "))
	}
	return out, nil
}

func nearest(levels []map[string]string, key string) (string, bool) {
	for _, m := range levels {
		if v, ok := m[key]; ok {
			return v, true
		}
	}
	return "", false
}

func isOff(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "false", "off":
		return true
	}
	return false
}

// allocIndex is the number in brackets at the end of an allocation name
// such as "web.app[3]".
func allocIndex(name string) *int {
	open := strings.LastIndexByte(name, '[')
	if open < 0 || !strings.HasSuffix(name, "]") {
		return nil
	}
	n, err := strconv.Atoi(name[open+1 : len(name)-1])
	if err != nil || n < 0 {
		return nil
	}
	return &n
}
