package tailer

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// Budget bounds what the streams of the whole daemon hold open: log files
// (descriptors) and bytes in files that are no longer in their folder
// (purged by logmon, so only our descriptor keeps them on disk). Within
// it a stream holds as many files as it needs: when the output is slow
// while a task rotates fast, the held files are the buffer, not memory.
//
// When it is full, the streams holding the most give way first: one of
// them closes its oldest purged file (its unread lines are lost, logged
// and counted by that stream). Files still in their folder are never
// given up, they can be opened again later; and a stream that holds no
// file may always open one, so that quiet streams keep a descriptor.
//
// A Budget is shared by every stream and safe for concurrent use.
type Budget struct {
	maxFiles, maxBytes int64
	// slack is how far above maxFiles opens may go while the streams
	// asked to give way have not done so yet (they do at their next
	// wake-up, within milliseconds).
	slack int64
	held  prometheus.Gauge
	bytes prometheus.Gauge

	mu      sync.Mutex
	files   int64 // held by all streams
	purged  int64 // bytes in held files that lost their name
	holders map[*holding]struct{}
}

// holding is one stream's share. Its fields are the Budget's, guarded by
// its mutex; the stream's goroutine reports changes through the Budget.
type holding struct {
	files       int64
	purgedFiles int64
	purgedBytes int64
	asked       int64 // files this stream was asked to give up and still holds
	notices     *notices
}

// DefaultMaxHeldFiles is --max-held-files's default: half of the soft
// RLIMIT_NOFILE (which Go raises to the hard limit at start), at least
// 1024.
func DefaultMaxHeldFiles() int64 {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || lim.Cur == unix.RLIM_INFINITY {
		return 1024
	}
	return max(int64(lim.Cur/2), 1024)
}

// DefaultMaxHeldBytes is --max-held-bytes's default: 2 GiB.
const DefaultMaxHeldBytes = 2 << 30

// NewBudget makes a Budget of maxFiles descriptors and maxBytes bytes in
// purged files; zero or less takes the defaults. held and bytes are the
// nlf_held_files and nlf_held_bytes gauges (nil: none).
func NewBudget(maxFiles, maxBytes int64, held, bytes prometheus.Gauge) *Budget {
	if maxFiles <= 0 {
		maxFiles = DefaultMaxHeldFiles()
	}
	if maxBytes <= 0 {
		maxBytes = DefaultMaxHeldBytes
	}
	if held == nil {
		held = prometheus.NewGauge(prometheus.GaugeOpts{Name: "unregistered"})
	}
	if bytes == nil {
		bytes = prometheus.NewGauge(prometheus.GaugeOpts{Name: "unregistered"})
	}
	return &Budget{
		maxFiles: maxFiles, maxBytes: maxBytes, slack: max(maxFiles/8, 8),
		held: held, bytes: bytes, holders: make(map[*holding]struct{}),
	}
}

func (b *Budget) join(n *notices) *holding {
	h := &holding{notices: n}
	b.mu.Lock()
	b.holders[h] = struct{}{}
	b.mu.Unlock()
	return h
}

// leave gives back everything h still holds.
func (b *Budget) leave(h *holding) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.files -= h.files
	b.purged -= h.purgedBytes
	delete(b.holders, h)
	b.publishLocked()
}

// acquire asks for one more descriptor for h. It may always have one when
// it holds none; otherwise within maxFiles, or beyond it (up to the slack)
// once it asked the biggest holder of purged files to give one up. self
// says h itself is that holder: it must close its oldest purged file
// before it opens the new one. false: the new file must wait; it is still
// in its folder, so nothing is lost yet.
func (b *Budget) acquire(h *holding) (ok, self bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case h.files == 0 || b.files < b.maxFiles:
	case b.files >= b.maxFiles+b.slack:
		return false, false
	default:
		victim := b.biggestLocked(func(o *holding) int64 { return o.files })
		if victim == nil {
			return false, false
		}
		if victim == h {
			return false, true
		}
		b.askLocked(victim)
	}
	h.files++
	b.files++
	b.publishLocked()
	return true, false
}

// adopt accounts a stream's first file, which it may always hold.
func (b *Budget) adopt(h *holding) {
	b.mu.Lock()
	defer b.mu.Unlock()
	h.files++
	b.files++
	b.publishLocked()
}

// purgedBytes is how many bytes of purged files h holds.
func (b *Budget) purgedBytes(h *holding) int64 {
	if h == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return h.purgedBytes
}

// release gives back one descriptor of h; purged says whether the file
// had lost its name, and size its bytes then.
func (b *Budget) release(h *holding, purged bool, size int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	h.files--
	b.files--
	if purged {
		h.purgedFiles--
		h.purgedBytes -= size
		b.purged -= size
		if h.asked > 0 {
			h.asked--
		}
	}
	b.publishLocked()
}

// purged records that one of h's files lost its name with size bytes. If
// the purged bytes of all streams are above the limit, the biggest
// holder of purged bytes is asked to give its oldest up.
func (b *Budget) purgedFile(h *holding, size int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	h.purgedFiles++
	h.purgedBytes += size
	b.purged += size
	for over := b.purged - b.maxBytes; over > 0; {
		victim := b.biggestLocked(func(o *holding) int64 { return o.purgedBytes })
		if victim == nil {
			break
		}
		b.askLocked(victim)
		over -= victim.purgedBytes / max(victim.purgedFiles, 1)
	}
	b.publishLocked()
}

// biggestLocked is the holder with the largest by() among those that
// hold purged files not yet asked for.
func (b *Budget) biggestLocked(by func(*holding) int64) *holding {
	var best *holding
	for h := range b.holders {
		if h.purgedFiles-h.asked <= 0 {
			continue
		}
		if best == nil || by(h) > by(best) {
			best = h
		}
	}
	return best
}

func (b *Budget) askLocked(h *holding) {
	h.asked++
	h.notices.shed.Add(1)
	h.notices.poke()
}

func (b *Budget) publishLocked() {
	b.held.Set(float64(b.files))
	b.bytes.Set(float64(b.purged))
}
