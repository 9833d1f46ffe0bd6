package tailer

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/checkpoint"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/enrich"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/multiline"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/taskstream"
)

// readChunk is the size of one read from a log file.
const readChunk = 128 << 10

// fairShare is how many chunks one pump reads before it lets the stream's
// loop go round (acks, wake-ups) and other goroutines run: a stream with a
// long backlog must not keep a core from the others.
const fairShare = 32

// errFinished is returned by start for a stream whose checkpoint entry says
// it was drained and retired already.
var errFinished = errors.New("stream already finished")

// Stream states; see stream.state.
const (
	stateRunning int32 = iota
	stateDraining
	stateFinished
)

// stream follows the files of one target, in one goroutine (run): the
// loop and the lifecycle (running, draining, finished). Its reader state
// is in files (which file, which byte) and fr (which line); its output
// state in win (which batches, which commit). It applies the window's
// rewinds in one place, at the top of pump.
type stream struct {
	id      taskstream.ID
	cfg     *Config
	log     *streamLog
	render  *enrich.Renderer
	metrics *streamMetrics
	readBuf *sync.Pool

	// markFinished: write Finished into the checkpoint when drained
	// (false with --once, which stops without the allocation ending).
	markFinished bool
	// reopen: the checkpoint says finished, but the allocation is listed
	// as running: take the stream up again where it stopped.
	reopen bool

	// jobLabels name the stream's job in metrics; the manager's.
	jobLabels jobLabels

	// Shared with the watcher, the budget and the manager.
	notices *notices
	// newMeta is metadata the manager wants rendered from now on (a task
	// restart changes restarts), taken at the next wake-up.
	newMeta atomic.Pointer[enrich.Meta]
	// newHandling is a handling the manager wants used from now on (an
	// in-place job update changed the meta), taken by pump.
	newHandling atomic.Pointer[enrich.Handling]
	// state is stateRunning, stateDraining (its allocation stopped, or
	// its folder is gone) or stateFinished (retired). The manager may
	// move it between running and draining; only the stream finishes it.
	state atomic.Int32

	// Owned by run.
	files     fileSet
	win       *window
	fr        framer
	watched   bool
	listing   *sharedListing // the folder's listing, shared while watched
	lastData  time.Time
	timestamp []byte
	renderIdx int64
	h         handling
	// emitEvent is s.emitEventTo, made once: the combiner's callback.
	emitEvent func(multiline.Event[Position])
	// holesLogged counts the holes reported, to log the first ones only.
	truncLog   time.Time
	truncCount int64
}

func newStream(cfg *Config, d enrich.Desired, markFinished bool, readBuf *sync.Pool) *stream {
	log := newStreamLog(cfg.Log, d.Target)
	m := cfg.Metrics.forStream(d.Meta)
	s := &stream{
		id:           d.Target,
		cfg:          cfg,
		log:          log,
		render:       enrich.NewRenderer(d.Target.Stream, d.Meta),
		metrics:      m,
		readBuf:      readBuf,
		markFinished: markFinished,
		notices:      newNotices(),
		fr:           framer{max: cfg.MaxLineBytes},
		renderIdx:    -1,
	}
	s.emitEvent = s.emitEventTo
	s.useHandling(d.Handling)
	s.win = newWindow(d.Target, cfg.Output, cfg.Checkpoint, m)
	s.files = fileSet{
		root: cfg.Root, id: d.Target, dir: enrich.LogDir(d.Target.AllocID), key: d.Target.Task + "." + d.Target.Stream,
		log: log, metrics: m, notices: s.notices, budget: cfg.Budget,
		reached: -1, refused: make(map[int64]bool), list: s.list, watched: s.isWatched,
		hold: cfg.Budget.join(s.notices),
	}
	if d.MaxFiles > 0 {
		s.notices.maxFiles.Store(int64(d.MaxFiles))
	}
	s.notices.preopen, s.notices.drop = s.files.preopen, s.files.dropPreopened
	if d.Terminal {
		s.state.Store(stateDraining)
	}
	return s
}

func (s *stream) draining() bool { return s.state.Load() != stateRunning }

// drain starts the drain rule; it reports whether the stream was running.
func (s *stream) drain() bool { return s.state.CompareAndSwap(stateRunning, stateDraining) }

// undrain takes a draining stream back to running; false when it was not
// draining (running, or finished already).
func (s *stream) undrain() bool { return s.state.CompareAndSwap(stateDraining, stateRunning) }

func (s *stream) poke() { s.notices.poke() }

// run follows the stream until it is drained (nil) or ctx ends (its
// error: what the output did not confirm is read again by the next run).
func (s *stream) run(ctx context.Context) error {
	defer s.cfg.Budget.leave(s.files.hold)
	defer s.closeAll()
	defer s.notices.closePreopened() // once the watcher no longer knows the stream
	absDir := s.cfg.Root.Join(s.files.dir)
	s.subscribe(absDir)
	defer s.cfg.Watcher.unsubscribe(absDir, s.id.Task, s.id.Stream)
	if err := s.start(); err != nil {
		return err
	}
	s.lastData = time.Now()
	poll := time.NewTimer(time.Hour)
	defer poll.Stop()
	// pump reads until the end of what exists; only a wake-up, a poll or
	// a rewind can make more. (An ack alone does not: reading after each
	// one would cost a read that finds nothing per batch.)
	needRead := true
	for {
		if needRead {
			more, err := s.pump(ctx)
			if err != nil {
				return err // ctx ended
			}
			needRead = more
		}
		if err := s.flushHeld(ctx, false); err != nil {
			return err
		}
		needRead = needRead || s.win.pendingRewind()
		s.files.release(s.win.committed)
		s.win.submitOrRelease(s.resume())
		if s.win.commitIdle(s.resume()) {
			s.files.release(s.win.committed)
		}
		if s.draining() && s.win.nInflight == 0 {
			if wait := s.cfg.DrainDelay - time.Since(s.lastData); wait <= 0 {
				done, err := s.finish(ctx)
				if err != nil || done {
					return err
				}
				needRead = true
				continue
			} else {
				poll.Reset(min(wait, s.nextPoll()))
			}
		} else {
			poll.Reset(s.nextPoll())
		}
		if needRead {
			// A fair-share pause: take what waits, without waiting.
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-s.notices.wake:
				s.onWake()
			case a := <-s.win.acks:
				s.win.handle(a)
			default:
			}
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.notices.wake:
			s.onWake()
			needRead = true
		case a := <-s.win.acks:
			s.win.handle(a)
			needRead = s.win.pendingRewind()
		case <-poll.C:
			s.onPoll(absDir)
			needRead = true
		}
	}
}

// start positions the stream: at its checkpoint, or where --read-from says.
func (s *stream) start() error {
	s.files.refresh()
	e, ok := s.cfg.Checkpoint.Get(s.id)
	if ok && e.Finished && !s.reopen {
		return errFinished
	}
	if ok {
		if pos, ok := s.files.resume(e); ok {
			s.fr.resumeAt(pos)
			s.win.start(pos, e.Finished || pos != entryPosition(e))
			return nil
		}
	} else if s.cfg.ReadFrom == ReadFromEnd {
		if pos, ok := s.files.startAtEnd(); ok {
			s.win.start(pos, true)
			return nil
		}
	}
	pos := s.files.startAtLowest()
	s.win.start(pos, len(s.files.files) > 0 || ok)
	return nil
}

func entryPosition(e checkpoint.Entry) Position {
	return Position{Index: e.FileIndex, Offset: e.Offset, Dev: e.Dev, Ino: e.Inode, InLongLine: e.InLongLine}
}

// resume is where a restart must read again to lose nothing not yet
// emitted: the first of the lines dropped over the rate limit and not yet
// reported, else the start of the multiline event being built, else the
// start of the unfinished line, else the read position.
func (s *stream) resume() Position {
	if s.h.limit != nil {
		if p, ok := s.h.limit.pending(); ok {
			return p
		}
	}
	if s.h.comb != nil {
		if p, ok := s.h.comb.Pending(); ok {
			return p
		}
	}
	return s.fr.resume(s.files.position())
}

// applyRewind takes the window's verdict: the output failed a batch, so
// the reader goes back to the last commit, and reads everything after it
// again. This is the one place a rewind moves the reader.
func (s *stream) applyRewind() {
	if to, ok := s.win.rewound(); ok {
		s.forgetHeld()
		s.fr.resumeAt(to)
		s.files.seek(to)
	}
}

// pump reads, frames and submits until every open file is read to its end
// and no newer file exists, or until it had its fair share (more: it
// stopped with bytes left to read). It returns an error only when ctx
// ended.
func (s *stream) pump(ctx context.Context) (more bool, err error) {
	// bufp is a pooled read buffer, held only while this stream can read.
	var bufp *[]byte
	// readSome: this call read bytes; one that read none checks whether
	// the file was truncated.
	readSome := false
	defer func() {
		if bufp != nil {
			s.readBuf.Put(bufp)
		}
	}()
	for chunks := 0; ; {
		s.applyRewind()
		s.takeHandling()
		// New files first: logmon may purge them within milliseconds.
		s.onFileEvents()
		lf, hasNext, ok := s.files.current()
		if !ok {
			return false, nil
		}
		if chunks == fairShare {
			return true, nil
		}
		if bufp == nil {
			bufp = s.readBuf.Get().(*[]byte)
		}
		buf := *bufp
		off := s.files.readOff
		n, err := lf.readAt(buf, off)
		if err != nil {
			s.log.Warn("read failed; retrying at the next wake-up", zap.String("file", lf.f.Name()), zap.Error(err))
			return false, nil
		}
		if n > 0 && (buf[0] == 0 || buf[n-1] == 0) {
			var skipped bool
			if n, skipped = s.skipHole(lf, off, n); skipped {
				continue
			}
		}
		if n > 0 {
			if !s.win.haveBatch() {
				// Waiting for the output: give the read buffer back so
				// that memory does not grow with the number of waiting
				// streams, and read these bytes again afterwards.
				s.readBuf.Put(bufp)
				bufp = nil
				if err := s.win.waitBatch(ctx, s.notices.wake, s.onWake); err != nil {
					return false, err
				}
				continue
			}
			if s.win.pendingRewind() {
				continue // taking a batch brought a failure: read again from the commit
			}
			if chunks++; chunks > 1 {
				// Give way between chunks: the watcher, back from its
				// wait for inotify events, needs a P to tell a stream of
				// a new file, and with every P busy it would wait for the
				// next preemption (10 ms; logmon can create and purge a
				// file in less under a burst).
				runtime.Gosched()
			}
			s.lastData = time.Now()
			s.timestamp = enrich.AppendTimestamp(s.timestamp[:0], s.lastData)
			s.metrics.bytesRead.Add(float64(n))
			s.consume(buf[:n], lf)
			readSome = true
			if s.win.pendingRewind() || n == len(buf) || s.files.readOff < off+int64(n) {
				// A failure came back while framing, or there is more to
				// read, or a batch to wait for first.
				continue
			}
			// A short read ended at the end of the file as it is now:
			// reading again would find nothing (a later write wakes the
			// stream), and would cost a system call per wake-up.
		}
		if hasNext {
			// logmon closes file N before it creates N+1, and N+1 existed
			// before this read: N is complete.
			s.files.next()
			continue
		}
		if s.files.openNew() > 0 {
			continue // read N once more now that N+1 is known to exist
		}
		if readSome {
			return false, nil
		}
		// Woken, but nothing to read: the file may have shrunk.
		if size := lf.currentSize(); size < s.files.readOff {
			s.log.Warn("file shrank below the read offset (truncated); reading it again from the start",
				zap.String("file", lf.f.Name()), zap.Int64("offset", s.files.readOff), zap.Int64("size", size))
			s.metrics.filesTruncated.Inc()
			if err := s.emitPartial(ctx); err != nil {
				return false, err
			}
			if err := s.flushHeld(ctx, true); err != nil {
				return false, err
			}
			if !s.win.pendingRewind() {
				s.files.readOff = 0
			}
			continue
		}
		return false, nil
	}
}

// skipHole handles a read of n bytes at off that begins or ends with a
// zero byte: a hole of a sparse file is skipped (counted and logged once
// per file as refused bytes: logmon never writes one), and a read that
// runs into a hole is cut where the hole begins. skipped says the read
// position moved past a hole.
func (s *stream) skipHole(lf *logFile, off int64, n int) (int, bool) {
	if data := lf.dataAt(off); data > off {
		if !lf.holeLogged {
			lf.holeLogged = true
			s.log.Warn("skipping a hole in a sparse log file (logmon never writes one; a file grown with truncate?)",
				zap.String("file", lf.f.Name()), zap.Int64("offset", off), zap.Int64("bytes", data-off))
		}
		s.metrics.bytesRefused.Add(float64(data - off))
		if s.fr.inLine {
			s.fr.reset() // a line cut by a hole is not a line
		}
		s.files.readOff = data
		return 0, true
	}
	if h := lf.holeAfter(off); h > off && h < off+int64(n) {
		return int(h - off), false
	}
	return n, false
}

// consume frames data, read from lf at the read offset, into the batch. It
// stops early when the batch is full and no next batch is free, or when
// taking the next batch brought news of a failure; the rest of data is
// read again later, from wherever the stream then is.
func (s *stream) consume(data []byte, lf *logFile) {
	for len(data) > 0 {
		if !s.win.haveBatch() || s.win.pendingRewind() {
			return
		}
		n, l, ok := s.fr.frame(data, Position{Index: lf.index, Offset: s.files.readOff, Dev: lf.dev, Ino: lf.ino})
		data = data[n:]
		s.files.readOff += int64(n)
		if ok {
			s.emit(l)
		}
	}
}

// finish ends a drained stream: one last look for newer files, then the
// partial last line, then the wait for the output to confirm everything.
// done=false means there was more to read after all.
func (s *stream) finish(ctx context.Context) (done bool, err error) {
	// One last look: bytes written since the last read (the wake-up that
	// announced them may not have been taken yet), and newer files.
	if more, err := s.pump(ctx); err != nil || more {
		return false, err
	}
	s.files.refresh()
	if s.files.openNew() > 0 || s.win.holdsLines() {
		return false, nil
	}
	if !s.draining() {
		return false, nil // listed as running again: the partial line waits
	}
	if err := s.emitPartial(ctx); err != nil || s.win.pendingRewind() {
		return false, err
	}
	if err := s.flushHeld(ctx, true); err != nil || s.win.pendingRewind() {
		return false, err
	}
	s.win.submitOrRelease(s.resume())
	if !s.win.waitAcks(ctx, s.notices.wake, s.onFileEvents) {
		return false, ctx.Err() // rewound: read again (or stopped)
	}
	if s.markFinished && !s.state.CompareAndSwap(stateDraining, stateFinished) {
		return false, nil // listed as running again meanwhile: go on
	}
	s.files.reportUnopened()
	s.win.finish(s.files.position(), s.markFinished)
	if s.markFinished {
		s.log.Info("stream drained and retired")
	}
	return true, nil
}

func (s *stream) closeAll() {
	s.files.closeAll()
	s.win.close()
}
