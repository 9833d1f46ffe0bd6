// Package backoff spaces out retries: capped exponential backoff with
// jitter, so that many forwarders (one per node) do not retry in step.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is the wait before the next retry. The zero Backoff with Min and
// Max set is ready; it is not safe for concurrent use.
type Backoff struct {
	Min, Max time.Duration
	cur      time.Duration
}

// Next is the wait after one more failure in a row: Min, then doubling up
// to Max, each drawn between half of it and all of it.
func (b *Backoff) Next() time.Duration {
	if b.cur == 0 {
		b.cur = b.Min
	} else {
		b.cur = min(b.cur*2, b.Max)
	}
	return b.cur/2 + rand.N(b.cur/2+1)
}

// Reset starts over at Min, after a success.
func (b *Backoff) Reset() { b.cur = 0 }

// Sleep waits d, or less when ctx ends first; it reports whether it waited
// the whole time (false: ctx ended).
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
