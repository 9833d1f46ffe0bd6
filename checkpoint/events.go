package checkpoint

import "github.com/nomad-log-forwarder/nomad-log-forwarder/internal/taskstream"

// EventMark is how far the records of one task's events were confirmed
// written by the output: every event before Time (unix nanoseconds), and
// the events at exactly Time up to sequence number Seq. Seq tells apart
// events that Nomad stamped with the same nanosecond (enrich numbers them
// 1, 2, ... in Nomad's order), since a batch may end between two of them.
// The zero EventMark is before every event.
type EventMark struct {
	Time int64
	Seq  int
}

// Before reports whether m is earlier than o.
func (m EventMark) Before(o EventMark) bool {
	return m.Time < o.Time || m.Time == o.Time && m.Seq < o.Seq
}

// EventMark returns the entry's mark (the zero mark for a log stream).
func (e Entry) EventMark() EventMark { return EventMark{Time: e.EventTime, Seq: e.EventSeq} }

// EventMark returns how far the events of task in allocation allocID were
// confirmed written; false when none was.
func (s *Store) EventMark(allocID, task string) (EventMark, bool) {
	e, ok := s.Get(taskstream.EventsOf(allocID, task))
	return e.EventMark(), ok
}

// CommitEventMark records that the output confirmed the records of the
// task's events up to m. A mark never moves back: confirmations that arrive
// out of order, or a mark older than the one stored, change nothing (false).
// Committing keeps the entry's Finished as it was.
func (s *Store) CommitEventMark(allocID, task string, m EventMark) bool {
	k := taskstream.EventsOf(allocID, task)
	now := s.now().UTC()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[k]
	if ok && !e.EventMark().Before(m) {
		return false
	}
	if !ok {
		e = Entry{AllocID: allocID, Task: task, Stream: taskstream.Events}
	}
	e.EventTime, e.EventSeq, e.UpdatedAt = m.Time, m.Seq, now
	s.entries[k] = e
	s.version++
	return true
}
