package enrich

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
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

	// Owned by the goroutine that scans (Run's, or Scan's caller).
	// refused holds what was refused (logged and counted) and is still
	// there, by alloc ID.
	refused map[string]bool
	// tasks holds, by alloc ID, the tasks the last scan found: a new file
	// of another task makes the watch ask for a scan.
	tasks map[string]map[string]bool
	// overCap is, by alloc ID, how many task names the cap left out at
	// the last scan (logged and counted as they grow).
	overCap map[string]int
	// problems logs each task's unusable meta values once.
	problems problemLog
	// newWatch starts an inotify watch; nil is fsnotify. Tests set it.
	newWatch func() (dirWatch, error)
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
	tasks := make(map[string]map[string]bool)
	for _, e := range entries {
		id := e.Name()
		if e.Type()&fs.ModeSymlink != 0 {
			s.refuseOnce(refused, id, s.Refused, &safefs.RefusedError{Path: s.Root.Join(id), Reason: "symlink", Target: readlink(s.Root.Join(id))})
			continue
		}
		if !e.IsDir() || ValidPathComponent(id) != nil {
			continue
		}
		if err := ValidAllocID(id); err != nil {
			// Nomad names alloc folders by UUID: anything else was put
			// there by someone else.
			s.refuseOnce(refused, id, s.Refused, err)
			continue
		}
		if a, ok := byID[id]; ok {
			targets, err := FromAllocation(a, node, s.Options)
			s.problems.note(s.log(), targets)
			if err != nil {
				s.refuseOnce(refused, id, s.AllocationsRefused, err)
			}
			tasks[id] = taskSet(targets)
			out = append(out, targets...)
			continue
		}
		if id == s.Options.SelfAllocID {
			continue
		}
		names, err := s.tasksOnDisk(id)
		if err != nil {
			if safefs.IsRefused(err) {
				s.refuseOnce(refused, id, s.Refused, err)
			}
			tasks[id] = nil // no logs folder yet: watched for one
			continue
		}
		names = s.capTasks(id, names)
		tasks[id] = make(map[string]bool, len(names))
		for _, task := range names {
			tasks[id][task] = true
			for _, stream := range Streams {
				out = append(out, Desired{
					Target:   taskstream.ID{AllocID: id, Task: task, Stream: stream},
					Meta:     Meta{NodeID: node.ID, NodeName: node.Name, Datacenter: node.Datacenter, TaskName: task, AllocID: id},
					Handling: s.Options.Handling,
				})
			}
		}
	}
	// A refusal that went away and comes back is logged and counted again.
	s.refused = refused
	s.tasks = tasks
	for id := range s.overCap {
		if _, ok := tasks[id]; !ok {
			delete(s.overCap, id)
		}
	}
	return out, nil
}

func taskSet(targets []Desired) map[string]bool {
	set := make(map[string]bool)
	for _, d := range targets {
		set[d.Target.Task] = true
	}
	return set
}

// capTasks keeps at most MaxStreamsPerAlloc/2 of an allocation's task
// names from its files: first those the last scan kept (a task cannot push
// a stream already followed out by creating names), then the others in
// order. What is left out is logged and counted, once for each name more
// than the last scan left out.
func (s *Scanner) capTasks(id string, names []string) []string {
	limit := s.Options.maxTasks()
	if len(names) <= limit {
		return names
	}
	kept := make([]string, 0, limit)
	for _, n := range names {
		if s.tasks[id][n] && len(kept) < limit {
			kept = append(kept, n)
		}
	}
	for _, n := range names {
		if len(kept) == limit {
			break
		}
		if !s.tasks[id][n] {
			kept = append(kept, n)
		}
	}
	sort.Strings(kept)
	left := len(names) - len(kept)
	if s.overCap == nil {
		s.overCap = make(map[string]int)
	}
	if prev := s.overCap[id]; left > prev {
		if prev == 0 {
			s.log().Warn("allocation folder has more task streams than --max-streams-per-alloc; the rest are not followed",
				zap.String("alloc_id", id), zap.Int("max_streams_per_alloc", 2*limit), zap.Int("streams_left_out", 2*left))
		}
		if s.Refused != nil {
			s.Refused.Add(float64(2 * (left - prev)))
		}
	}
	s.overCap[id] = left
	return kept
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

// Run scans every interval, and soon after an allocation folder, its
// alloc/logs folder or a file of a task not followed yet appears,
// sending each result to out, until ctx ends. Writes to log files never
// cause a scan: the tailer follows those. Without inotify (none
// available, or the watch failed) it scans every interval only.
func (s *Scanner) Run(ctx context.Context, interval time.Duration, out chan<- []Desired) {
	newWatch := s.newWatch
	if newWatch == nil {
		newWatch = newFsnotifyWatch
	}
	w, err := newWatch()
	var events <-chan fsnotify.Event
	var errs <-chan error
	if err != nil {
		s.log().Warn("cannot watch the alloc dir; new allocations and tasks are found at each rescan",
			zap.Duration("interval", interval), zap.Error(err))
	} else {
		defer w.Close()
		events, errs = w.Events(), w.Errors()
	}
	watched := make(map[string]bool)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	debounce := time.NewTimer(0)
	defer debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				events, errs = nil, nil
				s.log().Warn("watching the alloc dir stopped; new allocations and tasks are found at each rescan", zap.Duration("interval", interval))
				debounce.Reset(100 * time.Millisecond)
			} else if s.wantsScan(ev) {
				debounce.Reset(100 * time.Millisecond)
			}
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
		if events != nil {
			s.syncWatches(w, watched)
		}
		select {
		case out <- targets:
		case <-ctx.Done():
			return
		}
	}
}

// wantsScan says whether an event may show what the last scan did not
// see: an allocation folder, its alloc or logs folder, or a log file of a
// task the scan did not find (created or moved in; never a write).
func (s *Scanner) wantsScan(ev fsnotify.Event) bool {
	if ev.Op&(fsnotify.Create|fsnotify.Rename|fsnotify.Remove) == 0 {
		// Writes, which are most events (fsnotify cannot leave them out
		// of a watch), never ask for a scan: dropped before any work on
		// the path.
		return false
	}
	rel, err := filepath.Rel(s.Root.Path(), ev.Name)
	if err != nil || rel == "." {
		return false
	}
	parts := strings.Split(rel, string(filepath.Separator))
	switch len(parts) {
	case 1, 2, 3:
		return true // an allocation folder, its alloc/ or alloc/logs/ came or went
	case 4:
		if ev.Op&fsnotify.Create == 0 {
			return false
		}
		task, _, _, ok := ParseLogFileName(parts[3])
		if !ok {
			return false
		}
		known, listed := s.tasks[parts[0]]
		return !listed || !known[task] && s.overCap[parts[0]] == 0
	}
	return false
}

// syncWatches watches the alloc dir and, of every allocation the last
// scan found, its folder, alloc/ and alloc/logs/ (those that exist), and
// stops watching what is gone.
func (s *Scanner) syncWatches(w dirWatch, watched map[string]bool) {
	listed := make(map[string]bool, len(s.Allocs))
	for _, a := range s.Allocs {
		if a != nil {
			listed[a.ID] = true
		}
	}
	want := map[string]bool{s.Root.Path(): true}
	for id := range s.tasks {
		if listed[id] {
			// Its tasks come from the allocations file, not from file
			// names: nothing in its folders can ask for a scan, and a
			// watch on alloc/logs would bring every logmon write here
			// too (fsnotify cannot leave writes out; at 5,000 streams
			// reading and dropping them was 12% of the daemon's CPU).
			continue
		}
		for _, rel := range []string{id, id + "/alloc", LogDir(id)} {
			want[s.Root.Join(rel)] = true
		}
	}
	for path := range watched {
		if !want[path] {
			_ = w.Remove(path) // gone with its folder, usually
			delete(watched, path)
		}
	}
	for path := range want {
		if watched[path] {
			continue
		}
		// Not yet there (alloc/logs before logmon) is not an error: the
		// folder above is watched, and its creation makes a scan.
		if err := w.Add(path); err == nil {
			watched[path] = true
		}
	}
}

// dirWatch is what the scanner needs of inotify (fsnotify's Watcher).
type dirWatch interface {
	Add(path string) error
	Remove(path string) error
	Events() <-chan fsnotify.Event
	Errors() <-chan error
	Close() error
}

type fsnotifyWatch struct{ *fsnotify.Watcher }

func (w fsnotifyWatch) Events() <-chan fsnotify.Event { return w.Watcher.Events }
func (w fsnotifyWatch) Errors() <-chan error          { return w.Watcher.Errors }

func newFsnotifyWatch() (dirWatch, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("start inotify: %w", err)
	}
	return fsnotifyWatch{w}, nil
}
