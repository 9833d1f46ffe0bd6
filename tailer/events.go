package tailer

import (
	"context"
	"slices"
	"sync"

	"go.uber.org/zap"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/checkpoint"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/enrich"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/forward"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/taskstream"
)

// EventMarks is where the event source finds and commits how far each
// task's events were confirmed (a *checkpoint.Store).
type EventMarks interface {
	EventMark(allocID, task string) (checkpoint.EventMark, bool)
	CommitEventMark(allocID, task string, m checkpoint.EventMark) bool
}

// taskKey names a task of an allocation.
type taskKey struct{ alloc, task string }

// taskEvents is what the event source knows of one task.
type taskEvents struct {
	info   *enrich.TaskInfo
	render *enrich.Renderer
	meta   enrich.Meta
	// sent is the mark of the last event rendered into a batch that did
	// not fail; committed the mark the checkpoint holds.
	sent, committed checkpoint.EventMark
	listed          bool // in the last snapshot
}

// markMove is what a batch of event records advances: task's mark to m.
type markMove struct {
	task taskKey
	m    checkpoint.EventMark
}

// eventSource emits each task's events (from Nomad's task states) as
// records through the same output and acknowledgements as lines: one
// batch at a time, in order, a task's mark committed only once the
// output confirmed its records (commit before ack, as in window), and
// resent from the mark after a failure. Every listing repeats the events,
// so the source remembers per task what it sent. Its state belongs to the
// goroutine in run; offer and Written/Failed are safe from others.
type eventSource struct {
	out     Output
	marks   EventMarks
	log     *zap.Logger
	metrics *Metrics

	// The latest snapshot offered, taken by run (latest wins).
	mu      sync.Mutex
	offered []enrich.Desired
	hasNew  bool
	wake    chan struct{}

	// Shared with the output's goroutine: moves is written before Submit
	// and read in Written (one batch is in flight at a time).
	acks  chan bool
	moves []markMove

	// Owned by run.
	tasks map[taskKey]*taskEvents
	busy  bool
}

func newEventSource(out Output, marks EventMarks, log *zap.Logger, m *Metrics) *eventSource {
	return &eventSource{out: out, marks: marks, log: log, metrics: m,
		wake: make(chan struct{}, 1), acks: make(chan bool, 1), tasks: make(map[taskKey]*taskEvents)}
}

// offer hands run a snapshot of the targets; it never blocks.
func (e *eventSource) offer(snapshot []enrich.Desired) {
	e.mu.Lock()
	e.offered, e.hasNew = snapshot, true
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Epoch, Written and Failed implement forward.Source, on the output's
// goroutine. Only one batch is out at a time, so none is ever stale.
func (e *eventSource) Epoch() uint64 { return 0 }

func (e *eventSource) Written(b *forward.Batch) {
	for _, mv := range e.moves {
		e.marks.CommitEventMark(mv.task.alloc, mv.task.task, mv.m)
	}
	e.metrics.EventsForwarded.Add(float64(b.Lines - b.Dropped))
	e.acks <- true
}

func (e *eventSource) Failed(*forward.Batch) { e.acks <- false }

// run emits events until ctx ends. idle, when not nil, is closed the
// first time every offered event is confirmed (for --once).
func (e *eventSource) run(ctx context.Context, idle chan<- struct{}) {
	for {
		if !e.busy && e.pending() {
			select {
			case <-ctx.Done():
				return
			case b := <-e.out.Free():
				e.fill(b)
				continue
			case <-e.wake:
				e.take()
				continue
			}
		}
		if !e.busy && idle != nil && !e.hasOffer() {
			close(idle)
			idle = nil
		}
		select {
		case <-ctx.Done():
			return
		case <-e.wake:
			e.take()
		case ok := <-e.acks:
			e.handle(ok)
		}
	}
}

func (e *eventSource) hasOffer() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.hasNew
}

// take applies the latest snapshot: new tasks start at their checkpoint
// mark, known ones get the listing's events (and metadata), tasks no
// longer listed are forgotten once their batch is answered.
func (e *eventSource) take() {
	e.mu.Lock()
	snapshot, ok := e.offered, e.hasNew
	e.offered, e.hasNew = nil, false
	e.mu.Unlock()
	if !ok {
		return
	}
	for _, t := range e.tasks {
		t.listed = false
	}
	for _, d := range snapshot {
		if d.Task == nil || d.Target.Stream != enrich.Stdout {
			continue // one Desired per task is enough
		}
		k := taskKey{d.Target.AllocID, d.Target.Task}
		t := e.tasks[k]
		if t == nil {
			m, _ := e.marks.EventMark(k.alloc, k.task)
			t = &taskEvents{sent: m, committed: m, meta: d.Meta,
				render: enrich.NewRenderer(taskstream.Events, d.Meta)}
			e.tasks[k] = t
		} else if !t.meta.Equal(d.Meta) {
			t.meta = d.Meta
			t.render.SetMeta(d.Meta)
		}
		t.info, t.listed = d.Task, true
	}
	e.forgetUnlisted()
}

func (e *eventSource) forgetUnlisted() {
	if e.busy {
		return // the batch out may hold their records
	}
	for k, t := range e.tasks {
		if !t.listed {
			delete(e.tasks, k)
		}
	}
}

// pending says some listed task has events after what was sent.
func (e *eventSource) pending() bool {
	for _, t := range e.tasks {
		if t.listed && len(t.info.EventsAfter(t.sent.Time, t.sent.Seq)) > 0 {
			return true
		}
	}
	return false
}

// fill renders pending events into b, task by task in a stable order,
// up to the output's batch size, and submits it.
func (e *eventSource) fill(b *forward.Batch) {
	keys := make([]taskKey, 0, len(e.tasks))
	for k, t := range e.tasks {
		if t.listed {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b taskKey) int {
		if a.alloc != b.alloc {
			return compare(a.alloc, b.alloc)
		}
		return compare(a.task, b.task)
	})
	e.moves = e.moves[:0]
	for _, k := range keys {
		t := e.tasks[k]
		evs := t.info.EventsAfter(t.sent.Time, t.sent.Seq)
		for i, ev := range evs {
			b.Data = t.render.AppendEvent(b.Data, ev)
			b.Lines++
			t.sent = checkpoint.EventMark{Time: ev.Time, Seq: ev.Seq}
			if len(b.Data) >= e.out.BatchBytes() && i < len(evs)-1 {
				break
			}
		}
		if len(evs) > 0 {
			e.moves = append(e.moves, markMove{task: k, m: t.sent})
		}
		if len(b.Data) >= e.out.BatchBytes() {
			break
		}
	}
	if b.Lines == 0 {
		e.out.Release(b)
		return
	}
	b.Source = e
	e.busy = true
	e.out.Submit(b)
}

// handle takes the output's verdict on the batch out: confirmed, its
// marks are committed (Written did); failed, the tasks start again from
// their committed marks.
func (e *eventSource) handle(ok bool) {
	e.busy = false
	for _, mv := range e.moves {
		t := e.tasks[mv.task]
		if t == nil {
			continue
		}
		if ok {
			t.committed = mv.m
		} else {
			t.sent = t.committed
		}
	}
	if !ok {
		e.log.Warn("the output failed a batch of task events; sending them again")
	}
	e.forgetUnlisted()
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
