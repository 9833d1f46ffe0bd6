package tailer

import "time"

// throttle is a stream's rate limit (log_forwarder_rate_limit): a token
// bucket that earns rate lines a second and holds at most one second's
// worth, so a quiet stream may burst that much. An event of n lines costs
// n (at most rate, or a long stack trace could never pass). It is pure:
// the stream passes the time, which is when the lines were read.
//
// The drops not yet reported are counted here; the stream renders a
// record of them once a second (due), and a restart reads again from the
// first of them (pending), so that the gap is always in the log store.
// Owned by the stream's goroutine.
type throttle struct {
	rate   int
	tokens float64
	last   time.Time

	dropped int       // lines dropped and not reported yet
	first   Position  // where the first of them starts
	since   time.Time // when it was dropped
}

func newThrottle(rate int) *throttle { return &throttle{rate: rate} }

// allow says whether an event of lines lines starting at at may go;
// when not, it is counted as dropped.
func (t *throttle) allow(now time.Time, lines int, at Position) bool {
	if t.last.IsZero() {
		t.tokens, t.last = float64(t.rate), now
	} else if elapsed := now.Sub(t.last); elapsed > 0 {
		t.tokens = min(float64(t.rate), t.tokens+elapsed.Seconds()*float64(t.rate))
		t.last = now
	}
	if cost := float64(min(lines, t.rate)); t.tokens >= cost {
		t.tokens -= cost
		return true
	}
	if t.dropped == 0 {
		t.first, t.since = at, now
	}
	t.dropped += lines
	return false
}

// due says the drops should be reported now: the first of them is a
// second old.
func (t *throttle) due(now time.Time) bool {
	return t.dropped > 0 && now.Sub(t.since) >= time.Second
}

// dueIn is how long until due (meaningful only while pending).
func (t *throttle) dueIn(now time.Time) time.Duration {
	return time.Second - now.Sub(t.since)
}

// pending is where the unreported drops begin.
func (t *throttle) pending() (Position, bool) { return t.first, t.dropped > 0 }

// take hands over the unreported drops, for their record.
func (t *throttle) take() (dropped int, first Position) {
	dropped, first = t.dropped, t.first
	t.dropped, t.first = 0, Position{}
	return dropped, first
}

// forget drops the unreported drops: a rewind reads those lines again,
// and they are decided again.
func (t *throttle) forget() { t.dropped, t.first = 0, Position{} }
