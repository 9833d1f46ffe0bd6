package tailer

import (
	"os"
	"sync"
	"sync/atomic"
)

// maxPreopened bounds the files the watcher opens for a stream that has
// not taken them yet.
const maxPreopened = 16

// fileEvent is what the watcher says happened to a stream's file.
type fileEvent uint8

const (
	// fileWritten: bytes were appended. These come in rounds (eventRound).
	fileWritten fileEvent = iota
	// fileCreated: a new file appeared. These come at once: logmon may
	// purge it within milliseconds, so the stream opens it before anything
	// else it is doing.
	fileCreated
	// fileDeleted: a file lost its name (logmon's purge): a held one now
	// lives on only through the stream's descriptor.
	fileDeleted
	// lookAgain: events may have been lost (queue overflow, the folder went
	// away, the watcher stopped): list the folder rather than trust them.
	lookAgain
)

// waker is how the watcher tells a stream about its files; index is the
// file the event named (meaningless for lookAgain).
type waker interface {
	notify(index int64, ev fileEvent)
}

// notices is what other goroutines tell a stream: the watcher its events,
// the budget its requests, the manager its pokes. The stream reads them in
// its own goroutine. Every field is safe for concurrent use.
type notices struct {
	wake chan struct{} // buffered (1): a pending wake-up is enough
	// highestSeen is the highest index of the stream's files that an event
	// or a listing named within limit. A watched stream trusts it: it does
	// not try to open a file no event named, which on a busy node would be
	// a failed open per write.
	highestSeen atomic.Int64
	// reached is the last index the stream reached (set by the stream),
	// maxFiles the task's max_files (set before the stream runs): see
	// limit.
	reached  atomic.Int64
	maxFiles atomic.Int64
	// farSeen is the highest index an event named beyond limit; the stream
	// logs it once and ignores it.
	farSeen atomic.Int64
	// recheck: events may have been lost; list the folder.
	recheck atomic.Bool
	// deleted: an event said a file of the stream lost its name.
	deleted atomic.Bool
	// shed is how many held files the budget asks the stream to give up.
	shed atomic.Int32

	// preopen, set before the stream runs, opens the stream's new file
	// index on the watcher's goroutine the moment its creation is seen:
	// the stream's own goroutine may be busy or waiting for a CPU, and
	// logmon can create and purge a file within milliseconds. It returns
	// nil when it cannot (the budget is full, the file is gone or
	// refused): the stream then tries itself.
	preopen func(index int64) *os.File
	// drop closes a file preopen opened that the stream will not take.
	drop func(*os.File)
	// preopened holds what preopen opened until the stream takes it.
	mu        sync.Mutex
	preopened map[int64]*os.File
}

func newNotices() *notices {
	n := &notices{wake: make(chan struct{}, 1)}
	n.highestSeen.Store(-1)
	n.farSeen.Store(-1)
	n.reached.Store(-1)
	n.maxFiles.Store(defaultMaxFiles)
	return n
}

// limit is the highest index the stream accepts: max_files beyond the
// last index it reached or saw. logmon creates one index after the other,
// so each of its creations is within it however far the stream lags; a
// higher index is a file dropped into the folder, and following it would
// silence the stream's real files.
func (n *notices) limit() int64 {
	return max(n.reached.Load(), n.highestSeen.Load()) + n.maxFiles.Load()
}

func (n *notices) notify(index int64, ev fileEvent) {
	switch ev {
	case lookAgain:
		n.recheck.Store(true)
	case fileDeleted:
		n.deleted.Store(true)
	case fileCreated:
		if n.see(index) {
			n.open(index)
		}
	default:
		n.see(index)
	}
	n.poke()
}

// open opens a new file on the caller's (the watcher's) goroutine.
func (n *notices) open(index int64) {
	if n.preopen == nil {
		return
	}
	n.mu.Lock()
	full := len(n.preopened) >= maxPreopened || n.preopened[index] != nil
	n.mu.Unlock()
	if full {
		return
	}
	f := n.preopen(index)
	if f == nil {
		return
	}
	n.mu.Lock()
	if n.preopened == nil {
		n.preopened = make(map[int64]*os.File)
	}
	if old := n.preopened[index]; old != nil {
		n.drop(old)
	}
	n.preopened[index] = f
	n.mu.Unlock()
}

// take hands the stream the file the watcher opened for index, if any,
// and closes those it opened for lower indexes (the stream is past them).
func (n *notices) take(index int64) *os.File {
	n.mu.Lock()
	defer n.mu.Unlock()
	f := n.preopened[index]
	delete(n.preopened, index)
	for i, old := range n.preopened {
		if i < index {
			n.drop(old)
			delete(n.preopened, i)
		}
	}
	return f
}

// closePreopened closes what the stream never took; it runs when the
// stream stops, after it left the watcher.
func (n *notices) closePreopened() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i, f := range n.preopened {
		n.drop(f)
		delete(n.preopened, i)
	}
}

// see records that index exists (an event or a listing named it); false:
// it is beyond the limit, ignored.
func (n *notices) see(index int64) bool {
	if index > n.limit() {
		raise(&n.farSeen, index)
		return false
	}
	raise(&n.highestSeen, index)
	return true
}

func (n *notices) poke() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// raise sets v to x unless it holds more already.
func raise(v *atomic.Int64, x int64) {
	for {
		cur := v.Load()
		if x <= cur || v.CompareAndSwap(cur, x) {
			return
		}
	}
}
