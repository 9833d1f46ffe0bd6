// Package scenario holds the fault scenarios of the HTTP output as plain
// functions over the built binary, so that the end-to-end tests and the
// fault suite run the same code: task streams written through the logmon
// imitation, a fake Vector http_server source, a fault injected at random
// moments chosen by progress (never by sleeping), and a Report that checks
// what the receiver accepted against what was written.
package scenario

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/logmon"
)

// Stream appends numbered lines "<name> <seq> <padding>" to one task
// stream through the logmon imitation.
type Stream struct {
	Name string
	rot  *logmon.Rotator

	mu       sync.Mutex
	written  int
	poisoned int
	poison   func(seq int) bool
	marker   string
}

// StreamSpec names a task stream.
type StreamSpec struct{ AllocID, Task, Stream string }

// DefaultStreams are three streams in two allocations, one task name with
// a dot in it.
var DefaultStreams = []StreamSpec{
	{"aaaaaaaa-0000-0000-0000-000000000001", "web", "stdout"},
	{"aaaaaaaa-0000-0000-0000-000000000001", "web", "stderr"},
	{"bbbbbbbb-0000-0000-0000-000000000002", "api.v2", "stdout"},
}

// NewStreams creates the log folders below allocDir and a Stream for each
// spec. Close them when done.
func NewStreams(allocDir string, specs []StreamSpec, o logmon.Options) ([]*Stream, error) {
	var out []*Stream
	for _, s := range specs {
		dir, err := logmon.AllocLogDir(allocDir, s.AllocID)
		if err != nil {
			return nil, err
		}
		rot, err := logmon.New(dir, s.Task, s.Stream, o)
		if err != nil {
			return nil, err
		}
		out = append(out, &Stream{Name: s.Task + "." + s.Stream, rot: rot})
	}
	return out, nil
}

// SetPoison makes the lines whose sequence number poison picks carry
// marker (for a receiver that refuses lines containing it).
func (s *Stream) SetPoison(marker string, poison func(seq int) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.marker, s.poison = marker, poison
}

// IsPoison says whether line seq carries the poison marker.
func (s *Stream) IsPoison(seq int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.poison != nil && s.poison(seq)
}

// Write appends n lines in one write, as a task's stdout would.
func (s *Stream) Write(n int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for range n {
		fmt.Fprintf(&b, "%s %07d %s", s.Name, s.written, strings.Repeat("x", rand.IntN(60)))
		if s.poison != nil && s.poison(s.written) {
			b.WriteString(" " + s.marker)
			s.poisoned++
		}
		b.WriteByte('\n')
		s.written++
	}
	_, err := s.rot.Write([]byte(b.String()))
	return err
}

// Written is how many lines were written so far.
func (s *Stream) Written() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.written
}

// Poisoned is how many poison lines were written so far.
func (s *Stream) Poisoned() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.poisoned
}

// Close closes the stream's current file.
func (s *Stream) Close() error { return s.rot.Close() }

// Feeder writes perTick lines to every stream every tick until Stop.
type Feeder struct {
	stop chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	err  error
}

// Feed starts writing.
func Feed(streams []*Stream, tick time.Duration, perTick int) *Feeder {
	f := &Feeder{stop: make(chan struct{})}
	f.wg.Go(func() {
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case <-f.stop:
				return
			case <-t.C:
				for _, s := range streams {
					if err := s.Write(perTick); err != nil {
						f.mu.Lock()
						f.err = err
						f.mu.Unlock()
						return
					}
				}
			}
		}
	})
	return f
}

// Stop stops writing and returns the first write error.
func (f *Feeder) Stop() error {
	close(f.stop)
	f.wg.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// Report is what a scenario found. Its Summary is one line.
type Report struct {
	Scenario string
	// Events is how many faults were injected (kills, crashes).
	Events int
	// Written is how many lines the streams wrote; Expected excludes the
	// poison lines, which must be skipped.
	Written, Expected int
	// Accepted is how many lines the receiver accepted, duplicates
	// included.
	Accepted int
	// Missing lines were written (and are not poison) but never accepted.
	Missing int
	// Duplicates are acceptances beyond the first of a line.
	Duplicates int
	// OrderViolations count lines accepted ahead of an earlier line of the
	// same stream that had not arrived yet (going back to resend is fine,
	// skipping ahead is not).
	OrderViolations int
	// PoisonAccepted counts poison lines the receiver accepted (must be 0
	// with a receiver that refuses them).
	PoisonAccepted int
	// KeyCollisions counts distinct lines sharing one idempotency key
	// (nomad.node_id, file, offset); KeyMismatches counts copies of one
	// line that carry different keys. Both must be 0 for a store to drop
	// exactly the duplicates.
	KeyCollisions, KeyMismatches int
	// PoisonLogged counts the daemon's log entries for skipped lines that
	// name the line's file and offset (poison scenario only).
	PoisonLogged int
	// Unparsed counts accepted lines that are not this scenario's.
	Unparsed int
	Duration time.Duration
	// PerStream details Missing and Duplicates by stream.
	PerStream map[string]StreamReport
}

// StreamReport is one stream's part of a Report.
type StreamReport struct {
	Written, Accepted, Missing, Duplicates, OrderViolations int
	// FirstMissing is the first line never accepted, or -1.
	FirstMissing int
}

// OK says whether nothing was lost, nothing skipped ahead, and the
// idempotency key identifies lines.
func (r Report) OK() bool {
	return r.Missing == 0 && r.OrderViolations == 0 && r.PoisonAccepted == 0 && r.KeyCollisions == 0 && r.KeyMismatches == 0 && r.Unparsed == 0
}

// Summary is the report on one line: "scenario=NAME result=PASS|FAIL
// key=value ...".
func (r Report) Summary() string {
	result := "PASS"
	if !r.OK() {
		result = "FAIL"
	}
	return fmt.Sprintf("scenario=%s result=%s events=%d written=%d expected=%d accepted=%d missing=%d duplicates=%d order_violations=%d poison_accepted=%d key_collisions=%d duration=%s",
		r.Scenario, result, r.Events, r.Written, r.Expected, r.Accepted, r.Missing, r.Duplicates, r.OrderViolations, r.PoisonAccepted, r.KeyCollisions+r.KeyMismatches, r.Duration.Round(time.Millisecond))
}

// acceptedLine is the part of a rendered line a check needs.
type acceptedLine struct {
	Message string `json:"message"`
	File    string `json:"file"`
	Offset  *int64 `json:"offset"`
	Nomad   struct {
		NodeID string `json:"node_id"`
	} `json:"nomad"`
}

// Check compares the receiver's accepted lines, in acceptance order, with
// what the streams wrote.
func Check(name string, accepted [][]byte, streams []*Stream) Report {
	r := Report{Scenario: name, Accepted: len(accepted), PerStream: map[string]StreamReport{}}
	byName := map[string]*Stream{}
	got := map[string][]int{}
	type key struct {
		node, file string
		offset     int64
	}
	keyOf := map[key]string{}   // key -> line identity
	lineKey := map[string]key{} // line identity -> key
	for _, raw := range accepted {
		var l acceptedLine
		if json.Unmarshal(raw, &l) != nil || l.Offset == nil {
			r.Unparsed++
			continue
		}
		f := strings.Fields(l.Message)
		if len(f) < 2 {
			r.Unparsed++
			continue
		}
		n, err := strconv.Atoi(f[1])
		if err != nil {
			r.Unparsed++
			continue
		}
		got[f[0]] = append(got[f[0]], n)
		id := f[0] + " " + f[1]
		k := key{l.Nomad.NodeID, l.File, *l.Offset}
		if prev, ok := lineKey[id]; ok && prev != k {
			r.KeyMismatches++
		}
		lineKey[id] = k
		if other, ok := keyOf[k]; ok && other != id {
			r.KeyCollisions++
		}
		keyOf[k] = id
	}
	for _, s := range streams {
		byName[s.Name] = s
		sr := checkStream(s, got[s.Name])
		r.PerStream[s.Name] = sr
		r.Written += sr.Written
		r.Missing += sr.Missing
		r.Duplicates += sr.Duplicates
		r.OrderViolations += sr.OrderViolations
		for i := range sr.Written {
			if !s.IsPoison(i) {
				r.Expected++
			}
		}
		for _, n := range got[s.Name] {
			if s.IsPoison(n) {
				r.PoisonAccepted++
			}
		}
	}
	for name, seqs := range got {
		if byName[name] == nil {
			r.Unparsed += len(seqs)
		}
	}
	return r
}

func checkStream(s *Stream, got []int) StreamReport {
	written := s.Written()
	sr := StreamReport{Written: written, Accepted: len(got), FirstMissing: -1}
	seen := make([]bool, written)
	next := 0 // the lowest expected line not accepted yet
	skip := func() {
		for next < written && (seen[next] || s.IsPoison(next)) {
			next++
		}
	}
	skip()
	for _, n := range got {
		if n < 0 || n >= written {
			continue // never written: counted by the caller as unexpected
		}
		if n > next {
			sr.OrderViolations++
		}
		if seen[n] {
			sr.Duplicates++
		}
		seen[n] = true
		skip()
	}
	for i := range written {
		if !seen[i] && !s.IsPoison(i) {
			if sr.FirstMissing < 0 {
				sr.FirstMissing = i
			}
			sr.Missing++
		}
	}
	return sr
}

// Names lists the streams' names, sorted.
func Names(streams []*Stream) []string {
	var out []string
	for _, s := range streams {
		out = append(out, s.Name)
	}
	sort.Strings(out)
	return out
}
