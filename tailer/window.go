package tailer

import (
	"context"
	"sync/atomic"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/checkpoint"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/forward"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/taskstream"
)

// BatchesPerStream is how many batches of one stream the output may hold
// at once. Two let a stream render its next batch while the last one is
// written.
const BatchesPerStream = 2

// ack is the output's verdict on one batch, passed to the stream goroutine.
type ack struct {
	ok    bool
	epoch uint64
	pos   Position
}

// pending is what the window remembers of a batch the output holds.
type pending struct {
	pos   Position
	lines int
	bytes int
	// throttled: task lines the batch's throttle records report dropped.
	throttled int
}

// window is a stream's in-flight window: the batch being filled, the
// batches the output holds, their verdicts, and the committed position.
// It is the only place that commits a stream's position to the checkpoint.
//
// The rule is commit before ack: a batch's position is committed (in
// Written, on the output's goroutine) before the stream hears of it, so
// the stream lets go of files only once the checkpoint no longer needs
// them. The output commits on its own goroutine because it outlives the
// streams: at shutdown it writes what it still holds after every stream
// stopped, and those positions must reach the checkpoint too.
//
// A failed batch makes the window rewind: it drops what is after the
// commit and says so with a verdict (rewound, to) that the stream applies
// to its reader at the top of its loop; the window never moves the
// reader itself.
type window struct {
	id      taskstream.ID
	out     Output
	cp      Checkpoint
	metrics *streamMetrics

	// Shared with the output's goroutine (Epoch, Written and Failed run
	// there); inflight slot seq%BatchesPerStream is written before Submit.
	epoch    atomic.Uint64
	acks     chan ack
	inflight [BatchesPerStream]pending

	// Owned by the stream's goroutine.
	batch      *forward.Batch
	seq        uint64
	nInflight  int
	localEpoch uint64
	committed  Position
	// rewindTo is a verdict not applied yet: the output failed a batch,
	// the stream must read again from here.
	rewindTo  Position
	rewinding bool
	// throttled: task lines the batch being filled reports dropped over
	// the rate limit.
	throttled int
}

func newWindow(id taskstream.ID, out Output, cp Checkpoint, m *streamMetrics) *window {
	return &window{id: id, out: out, cp: cp, metrics: m, acks: make(chan ack, BatchesPerStream)}
}

// Epoch, Written and Failed implement forward.Source; they run on the
// output's goroutine.
func (w *window) Epoch() uint64 { return w.epoch.Load() }

func (w *window) Written(b *forward.Batch) {
	p := w.inflight[b.Seq%BatchesPerStream]
	w.commit(p.pos, false)
	w.metrics.linesForwarded.Add(float64(p.lines - b.Dropped))
	w.metrics.bytesForwarded.Add(float64(p.bytes))
	if p.throttled > 0 {
		// Counted once the record saying so is out: a batch failed and
		// read again is not counted twice.
		w.metrics.linesThrottled.Add(float64(p.throttled))
	}
	w.acks <- ack{ok: true, epoch: b.Epoch, pos: p.pos}
}

func (w *window) Failed(b *forward.Batch) {
	w.epoch.CompareAndSwap(b.Epoch, b.Epoch+1)
	w.acks <- ack{ok: false, epoch: b.Epoch}
}

// commit is the one call of Checkpoint.Commit for the stream's position.
func (w *window) commit(p Position, finished bool) {
	w.cp.Commit(checkpoint.Entry{
		AllocID: w.id.AllocID, Task: w.id.Task, Stream: w.id.Stream,
		FileIndex: p.Index, Offset: p.Offset, Dev: p.Dev, Inode: p.Ino, InLongLine: p.InLongLine, Finished: finished,
	})
}

// start records where the stream begins; commit says it is a new position
// to save (a stream that starts where its checkpoint says need not).
func (w *window) start(p Position, commit bool) {
	w.committed = p
	if commit {
		w.commit(p, false)
	}
}

// rewound takes the verdict of a failed batch, if one is pending.
func (w *window) rewound() (Position, bool) {
	if !w.rewinding {
		return Position{}, false
	}
	w.rewinding = false
	return w.rewindTo, true
}

// pendingRewind says a verdict waits: the stream must stop framing.
func (w *window) pendingRewind() bool { return w.rewinding }

// haveBatch makes sure a batch buffer is at hand, without waiting. It
// takes in the verdicts that arrived meanwhile.
func (w *window) haveBatch() bool {
	if w.batch != nil {
		return true
	}
	w.drainAcks()
	if w.nInflight >= BatchesPerStream {
		return false
	}
	select {
	case b := <-w.out.Free():
		w.batch = b
		return true
	default:
		return false
	}
}

// waitBatch waits for a batch buffer or a verdict. A wake-up meanwhile is
// handed to onWake at once: new files are opened before anything else.
func (w *window) waitBatch(ctx context.Context, wake <-chan struct{}, onWake func()) error {
	for w.batch == nil && !w.rewinding {
		free := w.out.Free()
		if w.nInflight >= BatchesPerStream {
			free = nil // an ack must come first
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case b := <-free:
			w.batch = b
		case a := <-w.acks:
			w.handle(a)
		case <-wake:
			onWake()
		}
	}
	return nil
}

// waitAcks waits until the output answered every batch it holds; false
// means one failed (a verdict waits) or ctx ended. A wake-up meanwhile is
// handed to onWake at once.
func (w *window) waitAcks(ctx context.Context, wake <-chan struct{}, onWake func()) bool {
	for w.nInflight > 0 {
		select {
		case <-ctx.Done():
			return false
		case a := <-w.acks:
			w.handle(a)
			if !a.ok {
				return false
			}
		case <-wake:
			onWake()
		}
	}
	return !w.rewinding
}

func (w *window) drainAcks() {
	for {
		select {
		case a := <-w.acks:
			w.handle(a)
		default:
			return
		}
	}
}

// handle takes one verdict; released says the committed position moved,
// so that files before it may be let go.
func (w *window) handle(a ack) {
	w.nInflight--
	switch {
	case a.ok:
		w.committed = a.pos
	case a.epoch == w.localEpoch:
		// Everything after the commit is void: the batches the output
		// still holds are failed by epoch, the one being filled is
		// emptied, and the stream reads again from the commit.
		w.localEpoch = w.epoch.Load()
		if w.batch != nil {
			w.batch.Data, w.batch.Lines = w.batch.Data[:0], 0
		}
		w.throttled = 0
		w.rewindTo, w.rewinding = w.committed, true
	}
}

// holdsLines says the batch being filled has lines.
func (w *window) holdsLines() bool { return w.batch != nil && w.batch.Lines > 0 }

// full says the batch being filled reached the output's batch size.
func (w *window) full() bool { return len(w.batch.Data) >= w.out.BatchBytes() }

// submit hands the batch to the output with resume, the position a
// restart should resume from once it is written.
func (w *window) submit(resume Position) {
	b := w.batch
	w.batch = nil
	w.inflight[w.seq%BatchesPerStream] = pending{pos: resume, lines: b.Lines, bytes: len(b.Data), throttled: w.throttled}
	w.throttled = 0
	b.Source, b.Epoch, b.Seq = w, w.localEpoch, w.seq
	w.seq++
	w.nInflight++
	w.metrics.linesRead.Add(float64(b.Lines))
	w.out.Submit(b)
}

// submitOrRelease hands over the batch before the stream waits: submitted
// when it holds lines, else given back to the pool. A waiting stream never
// holds a buffer, or a node with more quiet streams than buffers would
// leave the others none.
func (w *window) submitOrRelease(resume Position) {
	switch {
	case w.batch == nil:
	case w.batch.Lines > 0:
		w.submit(resume)
	default:
		w.out.Release(w.batch)
		w.batch = nil
	}
}

// idle says nothing is in flight or being filled: the read position may
// be committed as it is.
func (w *window) idle() bool { return w.nInflight == 0 && !w.holdsLines() && !w.rewinding }

// commitIdle records progress that carried no line (moving to the next
// file, skipping a hole) so that a restart does not look for a file that
// is gone; true when it moved.
func (w *window) commitIdle(resume Position) bool {
	if !w.idle() || resume == w.committed {
		return false
	}
	w.committed = resume
	w.commit(resume, false)
	return true
}

// finish commits the final position; finished marks the entry retired.
func (w *window) finish(p Position, finished bool) {
	w.committed = p
	w.commit(p, finished)
}

// close gives back the batch being filled.
func (w *window) close() {
	if w.batch != nil {
		w.out.Release(w.batch)
		w.batch = nil
	}
}
