package tailer

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/checkpoint"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/enrich"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/forward"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/multiline"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/safefs"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/taskstream"
)

// Where a stream with no checkpoint starts.
const (
	ReadFromBeginning = "beginning"
	ReadFromEnd       = "end"
)

// Output is where streams send their batches: the socket writer or the
// HTTP writer of package forward.
type Output interface {
	Free() <-chan *forward.Batch
	Submit(b *forward.Batch)
	Release(b *forward.Batch)
	BatchBytes() int
}

// Checkpoint is where streams find and commit their positions (a
// *checkpoint.Store). It must be safe for concurrent use.
type Checkpoint interface {
	Get(taskstream.ID) (checkpoint.Entry, bool)
	Commit(checkpoint.Entry)
	Entries() []checkpoint.Entry
	Delete(...taskstream.ID)
	EventMarks
}

// Config sets up a Manager.
type Config struct {
	Root       *safefs.Root
	Output     Output
	Checkpoint Checkpoint
	// Watcher supplies wake-ups; nil means every stream polls.
	Watcher *Watcher
	// Budget bounds the files all streams hold open (default: NewBudget
	// with its defaults, reporting to Metrics).
	Budget       *Budget
	ReadFrom     string
	MaxLineBytes int
	// The bounds of a multiline event (defaults: 500 lines, MaxLineBytes)
	// and how long one waits for its next line (default 1s).
	MultilineMaxLines int
	MultilineMaxBytes int
	MultilineTimeout  time.Duration
	// DrainDelay is how long a stopped allocation's stream must see no new
	// bytes before it is retired.
	DrainDelay time.Duration
	// PollInterval is the safety-net poll of a watched stream (default
	// 10s); FallbackPollInterval that of a stream inotify cannot watch
	// (default 250ms).
	PollInterval         time.Duration
	FallbackPollInterval time.Duration
	// LagCheckInterval is how often the lag of every stream is measured
	// for the retention warnings (default 30s), besides every scrape.
	LagCheckInterval time.Duration
	Log              *zap.Logger
	Metrics          *Metrics
}

func (c *Config) setDefaults() {
	if c.ReadFrom == "" {
		c.ReadFrom = ReadFromBeginning
	}
	if c.MaxLineBytes <= 0 {
		c.MaxLineBytes = 102400
	}
	if c.MultilineMaxLines <= 0 {
		c.MultilineMaxLines = multiline.DefaultMaxLines
	}
	if c.MultilineMaxBytes <= 0 {
		c.MultilineMaxBytes = c.MaxLineBytes
	}
	if c.MultilineTimeout <= 0 {
		c.MultilineTimeout = time.Second
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 10 * time.Second
	}
	if c.FallbackPollInterval <= 0 {
		c.FallbackPollInterval = 250 * time.Millisecond
	}
	if c.LagCheckInterval <= 0 {
		c.LagCheckInterval = 30 * time.Second
	}
	if c.Log == nil {
		c.Log = zap.NewNop()
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	if c.Budget == nil {
		c.Budget = NewBudget(0, 0, c.Metrics.HeldFiles, c.Metrics.HeldBytes)
	}
}

// Manager runs one stream per desired target and retires streams once
// they are drained.
type Manager struct {
	cfg     Config
	readBuf sync.Pool
	lag     *lagMonitor

	// jobs counts the streams of each namespace and job, so that a job's
	// metric series go with its last stream. Owned by Run's goroutine.
	jobs map[jobLabels]int
}

// NewManager makes a Manager.
func NewManager(cfg Config) *Manager {
	cfg.setDefaults()
	m := &Manager{cfg: cfg, lag: newLagMonitor(cfg.Root, cfg.Checkpoint), jobs: make(map[jobLabels]int)}
	m.readBuf.New = func() any {
		b := make([]byte, readChunk)
		return &b
	}
	return m
}

type running struct {
	s    *stream
	meta enrich.Meta // what the stream renders, as last listed
	// handling is how the stream handles lines, as last listed.
	handling enrich.Handling
	cancel   context.CancelFunc
	// done is closed when the stream's goroutine has returned (retired,
	// or stopped); its exit may not have been handled yet.
	done chan struct{}
}

// Run tails the targets of each snapshot that arrives on updates, until ctx
// ends. A target missing from a later snapshot is drained like one whose
// allocation stopped. Run returns once every stream has stopped.
func (m *Manager) Run(ctx context.Context, updates <-chan []enrich.Desired) error {
	streams := make(map[taskstream.ID]*running)
	exited := make(chan *running)
	var wg sync.WaitGroup
	defer func() {
		for _, r := range streams {
			r.cancel()
		}
		// Streams may still report their exit while they are waited for.
		allDone := make(chan struct{})
		var waiter sync.WaitGroup
		waiter.Go(func() { wg.Wait(); close(allDone) })
		defer waiter.Wait()
		for {
			select {
			case <-exited:
			case <-allDone:
				return
			}
		}
	}()
	events := newEventSource(m.cfg.Output, m.cfg.Checkpoint, m.cfg.Log, m.cfg.Metrics)
	wg.Go(func() { events.run(ctx, nil) })
	// The lag is measured at every scrape; this measures it for the
	// warnings on a node that nobody scrapes.
	lagCheck := time.NewTicker(m.cfg.LagCheckInterval)
	defer lagCheck.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-lagCheck.C:
			m.lag.measure()
		case r := <-exited:
			if streams[r.s.id] == r { // not a newer stream of the same target
				delete(streams, r.s.id)
			}
			r.cancel()
			m.untrack(r.s)
			m.updateGauges(streams)
		case snapshot, ok := <-updates:
			if !ok {
				updates = nil
				continue
			}
			events.offer(snapshot)
			m.apply(ctx, snapshot, streams, exited, &wg)
			m.forgetGone(streams)
			m.updateGauges(streams)
		}
	}
}

func (m *Manager) apply(ctx context.Context, snapshot []enrich.Desired, streams map[taskstream.ID]*running, exited chan<- *running, wg *sync.WaitGroup) {
	seen := make(map[taskstream.ID]bool, len(snapshot))
	for _, d := range snapshot {
		seen[d.Target] = true
		if r, ok := streams[d.Target]; ok {
			if !r.meta.Equal(d.Meta) {
				// The task restarted (or the job changed): its lines carry
				// the new metadata from now on.
				r.meta = d.Meta
				r.s.setMeta(d.Meta)
			}
			if !r.handling.Equal(d.Handling) {
				r.handling = d.Handling
				r.s.setHandling(d.Handling)
			}
			switch {
			case d.Terminal:
				if r.s.drain() {
					r.s.log.Info("allocation stopped; draining stream", zap.Duration("drain_delay", m.cfg.DrainDelay))
					r.s.poke()
				}
				continue
			case r.s.undrain():
				// A listing that left it out (or called it stopped) was
				// wrong: the allocation runs, its stream goes on.
				r.s.log.Info("allocation listed as running again; no longer draining")
				continue
			case r.s.state.Load() != stateFinished:
				continue
			}
			// Retired a moment ago, yet listed as running: once its
			// goroutine is gone (it has nothing left to wait for), it is
			// started again below.
			<-r.done
			delete(streams, d.Target)
		}
		reopen := false
		if e, ok := m.cfg.Checkpoint.Get(d.Target); ok && e.Finished {
			if d.Terminal {
				continue
			}
			// Retired while its allocation was missing from a listing,
			// but it runs: take it up again where it stopped.
			m.cfg.Log.Warn("reopening a stream marked finished: its allocation is listed as running",
				zap.String("alloc_id", d.Target.AllocID), zap.String("task", d.Target.Task), zap.String("stream", d.Target.Stream))
			reopen = true
		}
		s := newStream(&m.cfg, d, true, &m.readBuf)
		s.reopen = reopen
		m.track(s, d)
		sctx, cancel := context.WithCancel(ctx)
		r := &running{s: s, meta: d.Meta, handling: d.Handling, cancel: cancel, done: make(chan struct{})}
		streams[d.Target] = r
		s.log.Info("target added", zap.Bool("terminal", d.Terminal))
		wg.Go(func() {
			defer cancel()
			err := s.run(sctx)
			close(r.done)
			if err != nil && !errors.Is(err, errFinished) && sctx.Err() == nil {
				s.log.Error("stream stopped", zap.Error(err))
			}
			select {
			case exited <- r:
			case <-ctx.Done():
			}
		})
	}
	for t, r := range streams {
		if !seen[t] && r.s.drain() {
			r.s.log.Info("allocation no longer listed; draining stream", zap.Duration("drain_delay", m.cfg.DrainDelay))
			r.s.poke()
		}
	}
}

// forgetGone deletes the checkpoint entries of streams not running whose
// alloc dir no longer exists: nothing is left to read or to protect.
func (m *Manager) forgetGone(streams map[taskstream.ID]*running) {
	var gone []taskstream.ID
	checked := make(map[string]bool)
	// A task's events are kept while its allocation has streams: a
	// running allocation's folder may not exist yet, its events do.
	live := make(map[string]bool, len(streams))
	for id := range streams {
		live[id.AllocID] = true
	}
	for _, e := range m.cfg.Checkpoint.Entries() {
		if _, ok := streams[e.Key()]; ok || e.Key().IsEvents() && live[e.AllocID] {
			continue
		}
		exists, ok := checked[e.AllocID]
		if !ok {
			// An alloc ID that is no UUID names no allocation: forgotten.
			exists = enrich.ValidAllocID(e.AllocID) == nil && m.cfg.Root.Exists(e.AllocID)
			checked[e.AllocID] = exists
		}
		if !exists {
			gone = append(gone, e.Key())
		}
	}
	if len(gone) > 0 {
		m.cfg.Checkpoint.Delete(gone...)
		m.cfg.Log.Info("forgot checkpoint entries of allocations whose alloc dir is gone", zap.Int("entries", len(gone)))
	}
}

func (m *Manager) updateGauges(streams map[taskstream.ID]*running) {
	draining := 0
	for _, r := range streams {
		if r.s.draining() {
			draining++
		}
	}
	m.cfg.Metrics.TargetsActive.Set(float64(len(streams)))
	m.cfg.Metrics.TargetsDrain.Set(float64(draining))
}

// RunOnce reads every target to its end, emits each partial last line,
// waits until the output confirmed everything, and returns. It returns
// nil only when every stream finished with everything it read confirmed
// and committed; when ctx ended first (SIGTERM, or the output gave up) it
// returns an *UnfinishedError.
func (m *Manager) RunOnce(ctx context.Context, targets []enrich.Desired) error {
	cfg := m.cfg
	cfg.DrainDelay = 0
	var wg sync.WaitGroup
	var unfinished atomic.Int64
	for _, d := range targets {
		d.Terminal = true
		s := newStream(&cfg, d, false, &m.readBuf)
		wg.Go(func() {
			err := s.run(ctx)
			if err != nil && !errors.Is(err, errFinished) && ctx.Err() == nil {
				s.log.Error("stream stopped", zap.Error(err))
			}
			// nil: read to its end and confirmed; errFinished: nothing
			// to read; anything else (ctx ended) left lines behind.
			if err != nil && !errors.Is(err, errFinished) {
				unfinished.Add(1)
			}
		})
	}
	// The task events go out too, and are waited for like the lines.
	events := newEventSource(m.cfg.Output, m.cfg.Checkpoint, m.cfg.Log, m.cfg.Metrics)
	events.offer(targets)
	eventsCtx, stopEvents := context.WithCancel(ctx)
	idle := make(chan struct{})
	wg.Go(func() { events.run(eventsCtx, idle) })
	wg.Go(func() {
		select {
		case <-idle:
		case <-ctx.Done():
			unfinished.Add(1)
		}
		stopEvents()
	})
	m.cfg.Metrics.TargetsActive.Set(float64(len(targets)))
	wg.Wait()
	m.cfg.Metrics.TargetsActive.Set(0)
	if n := unfinished.Load(); n > 0 {
		return &UnfinishedError{Streams: int(n), Of: len(targets), Err: context.Cause(ctx)}
	}
	return nil
}

// track registers a started stream for the lag metrics and its job's
// series.
func (m *Manager) track(s *stream, d enrich.Desired) {
	labels := jobOf(d.Meta)
	m.jobs[labels]++
	m.lag.add(&liveStream{
		id: s.id, namespace: labels.namespace, job: labels.job,
		retention: int64(d.MaxFiles) * int64(d.MaxFileSizeMB) << 20,
		log:       s.log, heldPurged: func() int64 { return m.cfg.Budget.purgedBytes(s.files.hold) },
	})
	s.jobLabels = labels
}

// untrack undoes track once the stream's goroutine is gone; a job's
// series are deleted with its last stream, so that dispatched and
// periodic children, each a job of its own, do not pile up series.
func (m *Manager) untrack(s *stream) {
	m.lag.remove(s.id)
	if m.jobs[s.jobLabels]--; m.jobs[s.jobLabels] <= 0 {
		delete(m.jobs, s.jobLabels)
		m.cfg.Metrics.forgetJob(s.jobLabels)
	}
}
