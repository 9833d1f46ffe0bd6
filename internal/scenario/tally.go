package scenario

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Report is what a scenario found. Its Summary is one line.
type Report struct {
	Scenario string
	// Events is how many faults were injected (kills, crashes, resets).
	Events int
	// Written is how many lines the streams wrote; Expected excludes the
	// poison lines, which must be skipped.
	Written, Expected int
	// DeliveredUnique is how many distinct written lines were accepted.
	DeliveredUnique int
	// Accepted is how many lines the receiver accepted, duplicates
	// included.
	Accepted int
	// Missing lines were written (and are not poison) but never accepted.
	Missing int
	// Duplicates are acceptances beyond the first of a line.
	Duplicates int
	// OrderViolations count lines first accepted after a later line of
	// their stream: going back to resend is fine, sending a line after
	// its successors is not (a line never sent is Missing).
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
	// Extra are a scenario's own findings, printed after the common ones.
	Extra []Field
}

// Field is one key=value of a summary line.
type Field struct {
	Key   string
	Value any
}

// Add appends a finding to the summary line.
func (r *Report) Add(key string, value any) { r.Extra = append(r.Extra, Field{key, value}) }

// StreamReport is one stream's part of a Report.
type StreamReport struct {
	Written, Accepted, Unique, Missing, Duplicates, OrderViolations int
	// FirstMissing is the first line never accepted, or -1.
	FirstMissing int
}

// OK says whether nothing was lost, nothing skipped ahead, and the
// idempotency key identifies lines.
func (r Report) OK() bool {
	return r.Missing == 0 && r.OrderViolations == 0 && r.PoisonAccepted == 0 && r.KeyCollisions == 0 && r.KeyMismatches == 0 && r.Unparsed == 0
}

// Summary is the report on one line, which always begins
// "scenario=NAME written=N delivered_unique=N missing=N duplicates=N",
// followed by the other counts and the scenario's own key=value pairs.
func (r Report) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "scenario=%s written=%d delivered_unique=%d missing=%d duplicates=%d events=%d accepted=%d order_violations=%d key_collisions=%d unparsed=%d",
		r.Scenario, r.Written, r.DeliveredUnique, r.Missing, r.Duplicates, r.Events, r.Accepted, r.OrderViolations, r.KeyCollisions+r.KeyMismatches, r.Unparsed)
	if r.Written != r.Expected {
		fmt.Fprintf(&b, " poison_written=%d poison_accepted=%d poison_logged=%d", r.Written-r.Expected, r.PoisonAccepted, r.PoisonLogged)
	}
	for _, f := range r.Extra {
		fmt.Fprintf(&b, " %s=%v", f.Key, f.Value)
	}
	fmt.Fprintf(&b, " duration=%s", r.Duration.Round(time.Millisecond))
	return b.String()
}

// Line is an accepted line of one of the streams, parsed.
type Line struct {
	Stream    string
	Seq       int
	File      string
	Offset    int64
	Truncated bool
}

// FileIndex is the index of the line's file (the number after its last
// dot), or -1.
func (l Line) FileIndex() int64 {
	i := strings.LastIndexByte(l.File, '.')
	if i < 0 {
		return -1
	}
	n, err := strconv.ParseInt(l.File[i+1:], 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// acceptedLine is the part of a rendered line a check needs.
type acceptedLine struct {
	Message   string `json:"message"`
	Stream    string `json:"stream"`
	File      string `json:"file"`
	Offset    *int64 `json:"offset"`
	Truncated bool   `json:"truncated"`
	Nomad     struct {
		NodeID string `json:"node_id"`
	} `json:"nomad"`
}

type lineKey struct {
	node, file string
	offset     int64
}

type lineID struct {
	stream string
	seq    int
}

// Tally checks accepted lines against what the streams wrote as they
// arrive: Add each batch of newly accepted lines, in acceptance order, and
// ask for a Report (or whether everything arrived) at any time. Each line
// is parsed once, so a long run can be checked often. A Tally is not safe
// for concurrent use.
type Tally struct {
	streams  []*Stream
	byName   map[string]*streamTally
	accepted int
	unparsed int
	// taskEvents counts the task event records (stream "event"): Nomad's,
	// not lines written, so they are not tallied as lines.
	taskEvents int
	lines      []Line
	// keyOf and idKey find idempotency keys shared by two lines and lines
	// whose copies carry different keys.
	keyOf                        map[lineKey]lineID
	idKey                        map[lineID]lineKey
	keyCollisions, keyMismatches int
	// interned file names: a long run has few distinct ones.
	files map[string]string
}

type streamTally struct {
	s                  *Stream
	seen               []bool
	next               int // the lowest line not accepted yet (poison skipped)
	highest            int // the highest line accepted, -1 for none
	accepted, unique   int
	duplicates, order  int
	poisonAccepted     int
	unexpected         int
	writtenAtLastCheck int
}

// NewTally starts checking what streams write.
func NewTally(streams []*Stream) *Tally {
	t := &Tally{byName: make(map[string]*streamTally, len(streams)),
		keyOf: make(map[lineKey]lineID), idKey: make(map[lineID]lineKey), files: make(map[string]string)}
	t.AddStreams(streams...)
	return t
}

// AddStreams checks the lines of more streams (a new allocation).
func (t *Tally) AddStreams(streams ...*Stream) {
	for _, s := range streams {
		if _, ok := t.byName[s.Name]; ok {
			panic("scenario: two streams named " + s.Name)
		}
		t.byName[s.Name] = &streamTally{s: s, highest: -1}
		t.streams = append(t.streams, s)
	}
}

// Add checks newly accepted lines, in the order they were accepted.
func (t *Tally) Add(accepted [][]byte) {
	for _, st := range t.byName {
		st.writtenAtLastCheck = st.s.Written()
	}
	for _, raw := range accepted {
		t.accepted++
		var l acceptedLine
		err := json.Unmarshal(raw, &l)
		if err == nil && l.Stream == "event" {
			t.accepted--
			t.taskEvents++
			continue
		}
		if err != nil || l.Offset == nil {
			t.unparsed++
			continue
		}
		name, rest, _ := strings.Cut(l.Message, " ")
		seqField, _, _ := strings.Cut(rest, " ")
		seq, err := strconv.Atoi(seqField)
		st := t.byName[name]
		if err != nil || st == nil {
			t.unparsed++
			continue
		}
		file, ok := t.files[l.File]
		if !ok {
			t.files[l.File] = l.File
			file = l.File
		}
		t.lines = append(t.lines, Line{Stream: name, Seq: seq, File: file, Offset: *l.Offset, Truncated: l.Truncated})
		id, key := lineID{name, seq}, lineKey{l.Nomad.NodeID, file, *l.Offset}
		if prev, ok := t.idKey[id]; ok && prev != key {
			t.keyMismatches++
		}
		t.idKey[id] = key
		if other, ok := t.keyOf[key]; ok && other != id {
			t.keyCollisions++
		}
		t.keyOf[key] = id
		st.add(seq)
	}
}

func (st *streamTally) add(seq int) {
	st.accepted++
	if seq < 0 || seq >= st.writtenAtLastCheck {
		st.unexpected++ // never written
		return
	}
	for len(st.seen) <= seq {
		st.seen = append(st.seen, false)
	}
	if st.s.IsPoison(seq) {
		st.poisonAccepted++
	}
	if !st.seen[seq] && seq < st.highest {
		st.order++
	}
	st.highest = max(st.highest, seq)
	if st.seen[seq] {
		st.duplicates++
	} else {
		st.unique++
	}
	st.seen[seq] = true
	st.skip(st.writtenAtLastCheck)
}

// skip moves next past lines accepted already and poison lines.
func (st *streamTally) skip(written int) {
	for st.next < written && (st.next < len(st.seen) && st.seen[st.next] || st.s.IsPoison(st.next)) {
		st.next++
	}
}

// Complete says whether every line written so far (poison aside) was
// accepted.
func (t *Tally) Complete() bool {
	for _, st := range t.byName {
		w := st.s.Written()
		st.skip(w)
		if st.next < w {
			return false
		}
	}
	return true
}

// CaughtUp says whether the last line each stream wrote so far was
// accepted: a stream delivers in order, so with no fault pending nothing
// written before it is still on its way.
func (t *Tally) CaughtUp() bool {
	for _, st := range t.byName {
		w := st.s.Written()
		if w > 0 && (w > len(st.seen) || !st.seen[w-1]) {
			return false
		}
	}
	return true
}

// Gaps counts, per stream, the runs of consecutive lines never accepted.
func (t *Tally) Gaps() map[string]int {
	out := map[string]int{}
	for name, st := range t.byName {
		in := false
		for i := range st.s.Written() {
			missing := !st.s.IsPoison(i) && (i >= len(st.seen) || !st.seen[i])
			if missing && !in {
				out[name]++
			}
			in = missing
		}
	}
	return out
}

// Lines are the accepted lines of the streams, parsed, in acceptance
// order.
func (t *Tally) Lines() []Line { return t.lines }

// Report compares everything accepted so far with what the streams wrote.
func (t *Tally) Report(name string) Report {
	r := Report{Scenario: name, Accepted: t.accepted, Unparsed: t.unparsed, PerStream: map[string]StreamReport{},
		KeyCollisions: t.keyCollisions, KeyMismatches: t.keyMismatches}
	if t.taskEvents > 0 {
		r.Add("task_events", t.taskEvents)
	}
	for _, s := range t.streams {
		st := t.byName[s.Name]
		written := s.Written()
		sr := StreamReport{Written: written, Accepted: st.accepted, Unique: st.unique, Duplicates: st.duplicates,
			OrderViolations: st.order, FirstMissing: -1}
		for i := range written {
			poison := s.IsPoison(i)
			if !poison {
				r.Expected++
			}
			if !poison && (i >= len(st.seen) || !st.seen[i]) {
				if sr.FirstMissing < 0 {
					sr.FirstMissing = i
				}
				sr.Missing++
			}
		}
		r.PerStream[s.Name] = sr
		r.Written += written
		r.DeliveredUnique += st.unique
		r.Missing += sr.Missing
		r.Duplicates += st.duplicates
		r.OrderViolations += st.order
		r.PoisonAccepted += st.poisonAccepted
		r.Unparsed += st.unexpected
	}
	return r
}

// Check compares the receiver's accepted lines, in acceptance order, with
// what the streams wrote.
func Check(name string, accepted [][]byte, streams []*Stream) Report {
	t := NewTally(streams)
	t.Add(accepted)
	return t.Report(name)
}
