package tailer

import "sync/atomic"

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
	// limit is the highest index the stream accepts: the last index it
	// reached plus the allocation's max_files. logmon cannot be further
	// ahead without the stream seeing its creations; a higher index is a
	// file dropped into the folder, and following it would silence the
	// stream's real files. The stream sets it.
	limit atomic.Int64
	// farSeen is the highest index an event named beyond limit; the stream
	// logs it once and ignores it.
	farSeen atomic.Int64
	// recheck: events may have been lost; list the folder.
	recheck atomic.Bool
	// deleted: an event said a file of the stream lost its name.
	deleted atomic.Bool
	// shed is how many held files the budget asks the stream to give up.
	shed atomic.Int32
}

func newNotices() *notices {
	n := &notices{wake: make(chan struct{}, 1)}
	n.highestSeen.Store(-1)
	n.farSeen.Store(-1)
	n.limit.Store(defaultMaxFiles)
	return n
}

func (n *notices) notify(index int64, ev fileEvent) {
	switch ev {
	case lookAgain:
		n.recheck.Store(true)
	case fileDeleted:
		n.deleted.Store(true)
	default:
		n.see(index)
	}
	n.poke()
}

// see records that index exists (an event or a listing named it).
func (n *notices) see(index int64) {
	if index > n.limit.Load() {
		raise(&n.farSeen, index)
		return
	}
	raise(&n.highestSeen, index)
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
