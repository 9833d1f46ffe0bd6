package enrich

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/hashicorp/nomad/api"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/safefs"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/taskstream"
)

// LoadAllocations reads a saved `GET /v1/node/<id>/allocations` response:
// a JSON array of allocations.
func LoadAllocations(path string) ([]*api.Allocation, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read allocations file: %w", err)
	}
	var allocs []*api.Allocation
	if err := json.Unmarshal(data, &allocs); err != nil {
		return nil, fmt.Errorf("allocations file %s is not a JSON array of allocations: %w", path, err)
	}
	return allocs, nil
}

// Scanner finds targets without Nomad: every alloc folder below the alloc
// dir, every task stream with log files in it. Allocations found in Allocs
// get full metadata; the others only what their paths say.
type Scanner struct {
	Root   *safefs.Root
	Allocs []*api.Allocation
	// Node is rendered into every line; what it leaves empty is taken
	// from Allocs (see ResolvedNode).
	Node    Node
	Options Options
	Log     *zap.Logger
	// Refused counts the paths refused (a symlink where an alloc folder,
	// its alloc or logs folder should be), once each; nil counts nowhere.
	// The tailer counts the files it refuses in the same metric.
	Refused prometheus.Counter
	// AllocationsRefused counts the allocations of Allocs whose ID or
	// task names would lead out of the alloc dir, once each; nil counts
	// nowhere.
	AllocationsRefused prometheus.Counter

	// refused holds what was refused (logged and counted) and is still
	// there, by alloc ID.
	refused map[string]bool
	// watch starts watching the alloc dir; nil is fsnotify. Tests set it.
	watch func(path string) (events <-chan fsnotify.Event, errs <-chan error, stop func(), err error)
}

// ResolvedNode is the node rendered into lines: Node, with its empty ID
// and name taken from the first of Allocs that has them (a saved
// allocations response is one node's).
func (s *Scanner) ResolvedNode() Node {
	n := s.Node
	for _, a := range s.Allocs {
		if a == nil {
			continue
		}
		if n.ID == "" {
			n.ID = a.NodeID
		}
		if n.Name == "" {
			n.Name = a.NodeName
		}
		break
	}
	return n
}

// Scan walks the alloc dir once.
func (s *Scanner) Scan() ([]Desired, error) {
	node := s.ResolvedNode()
	byID := make(map[string]*api.Allocation, len(s.Allocs))
	for _, a := range s.Allocs {
		if a != nil {
			byID[a.ID] = a
		}
	}
	root, err := s.Root.OpenDir(".")
	if err != nil {
		return nil, fmt.Errorf("list alloc dir %s: %w", s.Root.Path(), err)
	}
	entries, err := root.ReadDir(-1)
	root.Close()
	if err != nil {
		return nil, fmt.Errorf("list alloc dir %s: %w", s.Root.Path(), err)
	}
	var out []Desired
	refused := make(map[string]bool)
	for _, e := range entries {
		id := e.Name()
		if e.Type()&fs.ModeSymlink != 0 {
			s.refuseOnce(refused, id, s.Refused, &safefs.RefusedError{Path: s.Root.Join(id), Reason: "symlink", Target: readlink(s.Root.Join(id))})
			continue
		}
		if !e.IsDir() || ValidPathComponent(id) != nil {
			continue
		}
		if a, ok := byID[id]; ok {
			targets, err := FromAllocation(a, node, s.Options)
			if err != nil {
				s.refuseOnce(refused, id, s.AllocationsRefused, err)
			}
			out = append(out, targets...)
			continue
		}
		if id == s.Options.SelfAllocID {
			continue
		}
		tasks, err := s.tasksOnDisk(id)
		if err != nil {
			if safefs.IsRefused(err) {
				s.refuseOnce(refused, id, s.Refused, err)
			}
			continue
		}
		for _, task := range tasks {
			for _, stream := range Streams {
				out = append(out, Desired{
					Target: taskstream.ID{AllocID: id, Task: task, Stream: stream},
					Meta:   Meta{NodeID: node.ID, NodeName: node.Name, Datacenter: node.Datacenter, TaskName: task, AllocID: id},
				})
			}
		}
	}
	// A refusal that went away and comes back is logged and counted again.
	s.refused = refused
	return out, nil
}

// tasksOnDisk names the tasks that have log files in an alloc folder.
func (s *Scanner) tasksOnDisk(allocID string) ([]string, error) {
	d, err := s.Root.OpenDir(LogDir(allocID))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	seen := make(map[string]bool)
	// A listing that fails halfway still names the tasks it saw: dropping
	// the allocation instead would retire its streams.
	_ = EachLogFile(d, func(task, _ string, _ int64) {
		if ValidPathComponent(task) == nil {
			seen[task] = true
		}
	})
	tasks := make([]string, 0, len(seen))
	for t := range seen {
		tasks = append(tasks, t)
	}
	sort.Strings(tasks)
	return tasks, nil
}

// refuseOnce logs and counts in c a refusal of alloc folder id, unless the
// previous scan refused it already; seen collects this scan's refusals.
func (s *Scanner) refuseOnce(seen map[string]bool, id string, c prometheus.Counter, err error) {
	seen[id] = true
	if s.refused[id] {
		return
	}
	s.log().Warn("refusing allocation folder", zap.String("alloc_id", id), zap.Error(err))
	if c != nil {
		c.Inc()
	}
}

func (s *Scanner) log() *zap.Logger {
	if s.Log == nil {
		return zap.NewNop()
	}
	return s.Log
}

func readlink(path string) string {
	t, _ := os.Readlink(path)
	return t
}

// Run scans every interval, and soon after a folder appears in the alloc
// dir, sending each result to out, until ctx ends. Without inotify (none
// available, or the watch failed) it scans every interval only.
func (s *Scanner) Run(ctx context.Context, interval time.Duration, out chan<- []Desired) {
	watch := s.watch
	if watch == nil {
		watch = watchDir
	}
	events, errs, stop, err := watch(s.Root.Path())
	if err != nil {
		s.log().Warn("cannot watch the alloc dir; new allocations are found at each rescan",
			zap.Duration("interval", interval), zap.Error(err))
	} else {
		defer stop()
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	debounce := time.NewTimer(0)
	defer debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-events:
			if !ok {
				events, errs = nil, nil
				s.log().Warn("watching the alloc dir stopped; new allocations are found at each rescan", zap.Duration("interval", interval))
			}
			debounce.Reset(100 * time.Millisecond)
			continue
		case err, ok := <-errs:
			// Errors must be read, or the watcher blocks on sending one
			// and sends no more events. An overflow means events were
			// lost: only a scan knows what they said.
			if !ok {
				errs = nil
				continue
			}
			s.log().Warn("watching the alloc dir failed; rescanning", zap.Error(err))
			debounce.Reset(100 * time.Millisecond)
			continue
		case <-tick.C:
		case <-debounce.C:
		}
		targets, err := s.Scan()
		if err != nil {
			s.log().Warn("scanning the alloc dir failed; retrying", zap.Error(err))
			continue
		}
		select {
		case out <- targets:
		case <-ctx.Done():
			return
		}
	}
}

// watchDir watches path with fsnotify.
func watchDir(path string) (events <-chan fsnotify.Event, errs <-chan error, stop func(), err error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("start inotify: %w", err)
	}
	if err := w.Add(path); err != nil {
		w.Close()
		return nil, nil, nil, fmt.Errorf("watch %s: %w", path, err)
	}
	return w.Events, w.Errors, func() { w.Close() }, nil
}
