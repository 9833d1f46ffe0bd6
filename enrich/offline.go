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
	"go.uber.org/zap"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/safefs"
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
	Root    *safefs.Root
	Allocs  []*api.Allocation
	Node    Node
	Options Options
	Log     *zap.Logger

	refusedLogged map[string]bool
}

// Scan walks the alloc dir once.
func (s *Scanner) Scan() ([]Desired, error) {
	if s.refusedLogged == nil {
		s.refusedLogged = make(map[string]bool)
	}
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
	for _, e := range entries {
		id := e.Name()
		if e.Type()&fs.ModeSymlink != 0 {
			s.refuseOnce(id, &safefs.RefusedError{Path: s.Root.Join(id), Reason: "symlink", Target: readlink(s.Root.Join(id))})
			continue
		}
		if !e.IsDir() || ValidPathComponent(id) != nil {
			continue
		}
		if a, ok := byID[id]; ok {
			targets, err := FromAllocation(a, s.Node, s.Options)
			if err != nil {
				s.refuseOnce(id, err)
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
				s.refuseOnce(id, err)
			}
			continue
		}
		for _, task := range tasks {
			for _, stream := range Streams {
				out = append(out, Desired{
					Target: Target{AllocID: id, Task: task, Stream: stream},
					Meta:   Meta{NodeID: s.Node.ID, NodeName: s.Node.Name, Datacenter: s.Node.Datacenter, TaskName: task, AllocID: id},
				})
			}
		}
	}
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

func (s *Scanner) refuseOnce(id string, err error) {
	if s.refusedLogged[id] {
		return
	}
	s.refusedLogged[id] = true
	if s.Log != nil {
		s.Log.Warn("refusing allocation folder", zap.String("alloc_id", id), zap.Error(err))
	}
}

func readlink(path string) string {
	t, _ := os.Readlink(path)
	return t
}

// Run scans every interval, and soon after a folder appears in the alloc
// dir, sending each result to out, until ctx ends.
func (s *Scanner) Run(ctx context.Context, interval time.Duration, out chan<- []Desired) {
	var events <-chan fsnotify.Event
	if w, err := fsnotify.NewWatcher(); err == nil {
		defer w.Close()
		if w.Add(s.Root.Path()) == nil {
			events = w.Events
		}
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	debounce := time.NewTimer(0)
	defer debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-events:
			debounce.Reset(100 * time.Millisecond)
			continue
		case <-tick.C:
		case <-debounce.C:
		}
		targets, err := s.Scan()
		if err != nil {
			s.Log.Warn("scanning the alloc dir failed; retrying", zap.Error(err))
			continue
		}
		select {
		case out <- targets:
		case <-ctx.Done():
			return
		}
	}
}
