package multiline

// Line is one framed line: its bytes (without the newline), where it
// starts in the caller's terms, and whether the framer cut it.
type Line[P any] struct {
	Data      []byte
	Start     P
	Truncated bool
}

// Event is lines joined with "\n", starting where its first line starts.
// Data is valid only until the emit call returns.
type Event[P any] struct {
	Data      []byte
	Start     P
	Lines     int
	Truncated bool
}

// Combiner joins lines into events by Rules, within bounds. It belongs to
// one stream (it is not safe for concurrent use) and allocates nothing
// per line once its buffers have grown. The zero value is not ready: use
// NewCombiner.
type Combiner[P any] struct {
	rules              *Rules
	maxLines, maxBytes int
	state              state

	// The event being built.
	open      bool
	buf       []byte
	start     P
	lines     int
	truncated bool
	// dropping: the event reached a bound and went out truncated; lines
	// that would continue it are dropped until one starts an event.
	// dropStart is that event's start and dropped how many lines were
	// dropped: while they are few, a restart reads the event again from
	// its start (and drops the rest again), rather than take its rest
	// for an event of its own.
	dropping  bool
	dropStart P
	dropped   int

	// held lines: kept until the preset knows whether they continue the
	// event (each is heldBuf[ends[i-1]:ends[i]]).
	heldBuf   []byte
	heldEnds  []int
	heldStart []P
	heldTrunc []bool
}

// NewCombiner makes a Combiner. maxLines and maxBytes bound an event (0:
// DefaultMaxLines, and no byte bound).
func NewCombiner[P any](r *Rules, maxLines, maxBytes int) *Combiner[P] {
	if maxLines <= 0 {
		maxLines = DefaultMaxLines
	}
	return &Combiner[P]{rules: r, maxLines: maxLines, maxBytes: maxBytes, state: normal}
}

// Add feeds one line; emit is called with every event it completes, in
// order.
func (c *Combiner[P]) Add(l Line[P], emit func(Event[P])) {
	do, next := decide(c.rules.table, c.state, l.Data)
	c.state = next
	switch do {
	case start:
		c.endEvent(emit)
		c.releaseHeld(emit)
		c.dropping = false
		c.begin(l)
	case appendLine:
		if !c.open && !c.dropping && len(c.heldEnds) == 0 {
			c.begin(l)
			return
		}
		c.joinHeld(emit)
		c.add(l, emit)
	case hold:
		if c.dropping {
			c.dropped++
			return
		}
		c.heldBuf = append(c.heldBuf, l.Data...)
		c.heldEnds = append(c.heldEnds, len(c.heldBuf))
		c.heldStart = append(c.heldStart, l.Start)
		c.heldTrunc = append(c.heldTrunc, l.Truncated)
	}
}

// Flush emits what is held: the event, then held lines as events of their
// own. The stream calls it when no line came for the timeout, and when it
// finishes.
func (c *Combiner[P]) Flush(emit func(Event[P])) {
	c.endEvent(emit)
	c.releaseHeld(emit)
	c.dropping = false
	c.state = normal
}

// Pending is where what is held begins: the first line of the event, or
// of the first held line. A restart must read again from there, so that
// the event is sent whole, never split. While the rest of a truncated
// event is dropped, it is that event's start (sent again whole after a
// restart, and its rest dropped again), until more lines were dropped
// than an event may have: past that, a stream of endless continuation
// lines (a regex that never matches again) would hold its files forever.
func (c *Combiner[P]) Pending() (P, bool) {
	switch {
	case c.open:
		return c.start, true
	case len(c.heldStart) > 0:
		return c.heldStart[0], true
	case c.dropping && c.dropped <= c.maxLines:
		return c.dropStart, true
	}
	var zero P
	return zero, false
}

// Reset forgets everything (after a rewind, the lines are read again).
func (c *Combiner[P]) Reset() {
	c.open, c.buf, c.lines, c.truncated, c.dropping = false, c.buf[:0], 0, false, false
	c.dropHeld()
	c.state = normal
}

func (c *Combiner[P]) begin(l Line[P]) {
	c.open, c.start, c.lines, c.truncated = true, l.Start, 0, false
	c.buf = c.buf[:0]
	c.add(l, nil)
}

// add appends a line to the open event, or ends the event truncated when
// the line would take it past a bound.
func (c *Combiner[P]) add(l Line[P], emit func(Event[P])) {
	if c.dropping {
		c.dropped++
		return
	}
	sep := 0
	if c.lines > 0 {
		sep = 1
	}
	if c.lines > 0 && (c.lines+1 > c.maxLines || c.maxBytes > 0 && len(c.buf)+sep+len(l.Data) > c.maxBytes) {
		c.truncated = true
		c.dropStart, c.dropped = c.start, 1
		c.endEvent(emit)
		c.dropping = true
		return
	}
	if sep == 1 {
		c.buf = append(c.buf, '\n')
	}
	data := l.Data
	if c.maxBytes > 0 && len(c.buf)+len(data) > c.maxBytes {
		data = data[:c.maxBytes-len(c.buf)] // a first line alone longer than the bound
		c.truncated = true
	}
	c.buf = append(c.buf, data...)
	c.lines++
	c.truncated = c.truncated || l.Truncated
}

func (c *Combiner[P]) endEvent(emit func(Event[P])) {
	if !c.open {
		return
	}
	c.open = false
	if emit != nil {
		emit(Event[P]{Data: c.buf, Start: c.start, Lines: c.lines, Truncated: c.truncated})
	}
	c.buf, c.lines, c.truncated = c.buf[:0], 0, false
}

// joinHeld appends the held lines to the event: the preset decided they
// continue it.
func (c *Combiner[P]) joinHeld(emit func(Event[P])) {
	from := 0
	for i, end := range c.heldEnds {
		l := Line[P]{Data: c.heldBuf[from:end], Start: c.heldStart[i], Truncated: c.heldTrunc[i]}
		if !c.open && !c.dropping {
			c.begin(l)
		} else {
			c.add(l, emit)
		}
		from = end
	}
	c.dropHeld()
}

// releaseHeld emits each held line as an event of its own: the preset
// decided they do not continue the event.
func (c *Combiner[P]) releaseHeld(emit func(Event[P])) {
	from := 0
	for i, end := range c.heldEnds {
		emit(Event[P]{Data: c.heldBuf[from:end], Start: c.heldStart[i], Lines: 1, Truncated: c.heldTrunc[i]})
		from = end
	}
	c.dropHeld()
}

func (c *Combiner[P]) dropHeld() {
	c.heldBuf, c.heldEnds, c.heldTrunc = c.heldBuf[:0], c.heldEnds[:0], c.heldTrunc[:0]
	clear(c.heldStart)
	c.heldStart = c.heldStart[:0]
}
