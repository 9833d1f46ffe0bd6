// Package scenario holds what the fault scenarios share, as plain
// functions over the built binary, so that the end-to-end tests and the
// fault suite (chaos/) run the same code: task streams written through the
// logmon imitation as numbered lines, a Tally that checks what a receiver
// accepted against what was written and reports it on one summary line,
// and the HTTP output's scenarios (a fake Vector http_server source, a
// fault injected at random moments chosen by progress, never by sleeping).
package scenario

import (
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/logmon"
)

// padding is what lines are padded with.
var padding = []byte(strings.Repeat("x", 4096))

// Stream appends numbered lines "<name> <seq> <padding>" to one task
// stream through the logmon imitation.
type Stream struct {
	Name string
	Spec StreamSpec
	rot  *logmon.Rotator

	mu       sync.Mutex
	written  int
	poisoned int
	poison   func(seq int) bool
	marker   string
	pad      int
	// fileOf is the file index each line went to, recorded by WriteEach.
	fileOf []int32
}

// StreamSpec names a task stream. Name, when set, is what its lines carry
// instead of "<task>.<stream>", which repeats across allocations.
type StreamSpec struct{ AllocID, Task, Stream, Name string }

// LineName is the name the stream's lines carry.
func (s StreamSpec) LineName() string {
	if s.Name != "" {
		return s.Name
	}
	return s.Task + "." + s.Stream
}

// DefaultStreams are three streams in two allocations, one task name with
// a dot in it.
var DefaultStreams = []StreamSpec{
	{AllocID: "aaaaaaaa-0000-0000-0000-000000000001", Task: "web", Stream: "stdout"},
	{AllocID: "aaaaaaaa-0000-0000-0000-000000000001", Task: "web", Stream: "stderr"},
	{AllocID: "bbbbbbbb-0000-0000-0000-000000000002", Task: "api.v2", Stream: "stdout"},
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
		out = append(out, &Stream{Name: s.LineName(), Spec: s, rot: rot, pad: 60})
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

// SetPad makes each line carry 0 to n-1 bytes of padding (default 60).
func (s *Stream) SetPad(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pad = max(n, 1)
}

// IsPoison says whether line seq carries the poison marker.
func (s *Stream) IsPoison(seq int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.isPoisonLocked(seq)
}

func (s *Stream) isPoisonLocked(seq int) bool { return s.poison != nil && s.poison(seq) }

func (s *Stream) appendLineLocked(b []byte) []byte {
	// By hand rather than with fmt: the suite writes millions of lines,
	// under the race detector in make test.
	b = append(b, s.Name...)
	b = append(b, ' ')
	var num [20]byte
	digits := strconv.AppendInt(num[:0], int64(s.written), 10)
	for range 7 - len(digits) {
		b = append(b, '0')
	}
	b = append(b, digits...)
	b = append(b, ' ')
	b = append(b, padding[:min(rand.IntN(s.pad), len(padding))]...)
	if s.isPoisonLocked(s.written) {
		b = append(b, ' ')
		b = append(b, s.marker...)
		s.poisoned++
	}
	s.written++
	return append(b, '\n')
}

// Write appends n lines in one write, as a task's stdout would.
func (s *Stream) Write(n int) error {
	_, err := s.Burst(n)
	return err
}

// Burst appends n lines in one write, made in memory first, and returns
// how long the write itself took: the logmon imitation takes it at full
// speed, 32 KiB at a time.
func (s *Stream) Burst(n int) (time.Duration, error) { return s.BurstAt(n, 0) }

// BurstAt is Burst at no more than bytesPerSecond (0: no limit), paced
// per 256 KiB. The imitation alone writes several times faster than a
// real logmon, which copies the task's pipe through a buffered writer
// (Nomad 2.0.5 wrote such a burst at about 200 MB/s, nomad-logs.md 8).
func (s *Stream) BurstAt(n int, bytesPerSecond int) (time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b []byte
	for range n {
		b = s.appendLineLocked(b)
	}
	const step = 256 << 10
	start := time.Now()
	for off := 0; off < len(b); off += step {
		if _, err := s.rot.Write(b[off:min(off+step, len(b))]); err != nil {
			return time.Since(start), err
		}
		if bytesPerSecond > 0 {
			due := time.Duration(float64(off+step) / float64(bytesPerSecond) * float64(time.Second))
			if ahead := due - time.Since(start); ahead > 0 {
				time.Sleep(ahead)
			}
		}
	}
	return time.Since(start), nil
}

// WriteEach appends n lines with one write each, so that no line is split
// across files, and records which file index each line went to (FileOf).
func (s *Stream) WriteEach(n int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b []byte
	for range n {
		b = s.appendLineLocked(b[:0])
		if _, err := s.rot.Write(b); err != nil {
			return err
		}
		s.fileOf = append(s.fileOf, int32(s.rot.Index()))
	}
	return nil
}

// FileOf is the file index line seq went to, or -1 when WriteEach did not
// write it.
func (s *Stream) FileOf(seq int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq < 0 || seq >= len(s.fileOf) {
		return -1
	}
	return int(s.fileOf[seq])
}

// Index is the index of the file being written.
func (s *Stream) Index() int { return s.rot.Index() }

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

// Purged lists the file indexes the logmon imitation deleted so far.
func (s *Stream) Purged() []int { return s.rot.Purged() }

// Feeder writes perTick lines to every stream every tick until Stop.
type Feeder struct {
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
	mu       sync.Mutex
	err      error
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

// Stop stops writing and returns the first write error. Calling it again
// changes nothing.
func (f *Feeder) Stop() error {
	f.stopOnce.Do(func() { close(f.stop) })
	f.wg.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
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
