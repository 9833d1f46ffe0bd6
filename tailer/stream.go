package tailer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/checkpoint"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/enrich"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/forward"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/safefs"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/taskstream"
)

const (
	// MaxOpenFiles bounds the descriptors one stream holds: the file being
	// read, older files whose lines are not committed yet, and newer files
	// opened ahead so that logmon's purge cannot take them.
	MaxOpenFiles = 16
	// BatchesPerStream is how many batches of one stream the output may
	// hold at once. Two let a stream render its next batch while the last
	// one is written.
	BatchesPerStream = 2
	// readChunk is the size of one read from a log file.
	readChunk = 128 << 10
)

// errFinished is returned by start for a stream whose checkpoint entry says
// it was drained and retired already.
var errFinished = errors.New("stream already finished")

// logFile is an open log file of a stream.
type logFile struct {
	f     *os.File
	fd    int // f's descriptor, read with pread
	index int64
	dev   uint64
	ino   uint64
}

// readAt is one pread. Unlike os.File.ReadAt it does not read again after
// a short read: on a log file that is its end as it is now, and a second
// system call per wake-up is measurable on a node with many streams.
func (lf *logFile) readAt(buf []byte, off int64) (int, error) {
	for {
		n, err := syscall.Pread(lf.fd, buf, off)
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return 0, &os.PathError{Op: "pread", Path: lf.f.Name(), Err: err}
		}
		return n, nil
	}
}

func (lf *logFile) close() {
	if lf.f != nil {
		lf.f.Close()
		lf.f = nil
	}
}

// ack is the output's verdict on one batch, passed to the stream goroutine.
type ack struct {
	ok    bool
	epoch uint64
	pos   Position
}

// pending is what the stream remembers of a batch the output holds.
type pending struct {
	pos   Position
	lines int
	bytes int
}

// stream follows the files of one target. Its fields below "owned by run"
// belong to its goroutine; the others are shared with the output's and the
// watcher's goroutines, and say so.
type stream struct {
	target  taskstream.ID
	dir     string // log folder relative to the alloc dir
	cfg     *Config
	log     *zap.Logger
	render  *enrich.Renderer
	metrics streamMetrics
	readBuf *sync.Pool

	// markFinished: write Finished into the checkpoint when drained
	// (false with --once, which stops without the allocation ending).
	markFinished bool

	// Shared with the output's goroutine.
	epoch    atomic.Uint64
	acks     chan ack
	inflight [BatchesPerStream]pending // slot seq%BatchesPerStream, written before Submit

	// Shared with the watcher and the manager.
	wake chan struct{}
	// highestSeen is the highest index of this stream's files that an
	// event or a listing named. A watched stream trusts it: it does not
	// try to open a file no event named, which on a busy node would be
	// a failed open per write.
	highestSeen atomic.Int64
	// lookAgain: events may have been lost (queue overflow, the folder
	// went away): list the folder rather than trust highestSeen.
	lookAgain atomic.Bool
	// state is stateRunning, stateDraining (its allocation stopped, or
	// its folder is gone) or stateFinished (retired). The manager may
	// move it between running and draining; only the stream finishes it.
	state atomic.Int32

	// Owned by run.
	files      []*logFile // open, ascending index
	readAt     int        // files[readAt] is being read
	readOff    int64
	openNext   int64 // the next index to try to open
	fr         framer
	batch      *forward.Batch
	seq        uint64
	nInflight  int
	localEpoch uint64
	// rewinds counts rewinds, so that bytes read before one are never
	// framed after it.
	rewinds   uint64
	committed Position // last position the output confirmed
	lastData  time.Time
	timestamp []byte
	renderIdx int64
	refused   map[int64]bool
	watched   bool
	sawDir    bool // the log folder existed once; its absence now means GC
	// outOfSequence is the highest index last reported by
	// noteOutOfSequence.
	outOfSequence int64
	truncLog      time.Time
	truncCount    int64
}

func newStream(cfg *Config, d enrich.Desired, markFinished bool, readBuf *sync.Pool) *stream {
	s := &stream{
		target:       d.Target,
		dir:          enrich.LogDir(d.Target.AllocID),
		cfg:          cfg,
		log:          cfg.Log.With(zap.String("alloc_id", d.Target.AllocID), zap.String("task", d.Target.Task), zap.String("stream", d.Target.Stream)),
		render:       enrich.NewRenderer(d.Target.Stream, d.Meta),
		metrics:      cfg.Metrics.forStream(d.Meta),
		readBuf:      readBuf,
		markFinished: markFinished,
		acks:         make(chan ack, BatchesPerStream),
		wake:         make(chan struct{}, 1),
		fr:           framer{max: cfg.MaxLineBytes},
		renderIdx:    -1,
		refused:      make(map[int64]bool),
	}
	s.highestSeen.Store(-1)
	if d.Terminal {
		s.state.Store(stateDraining)
	}
	return s
}

// notify is called by the watcher: a file of this stream changed or
// appeared (index >= 0), or something happened that it should look at.
func (s *stream) notify(index int64) {
	if index < 0 {
		s.lookAgain.Store(true)
	}
	for {
		cur := s.highestSeen.Load()
		if index <= cur || s.highestSeen.CompareAndSwap(cur, index) {
			break
		}
	}
	s.poke()
}

// Stream states; see stream.state.
const (
	stateRunning int32 = iota
	stateDraining
	stateFinished
)

func (s *stream) draining() bool { return s.state.Load() != stateRunning }

// drain starts the drain rule; it reports whether the stream was running.
func (s *stream) drain() bool { return s.state.CompareAndSwap(stateRunning, stateDraining) }

// undrain takes a draining stream back to running; false when it was not
// draining (running, or finished already).
func (s *stream) undrain() bool { return s.state.CompareAndSwap(stateDraining, stateRunning) }

func (s *stream) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Epoch, Written and Failed implement forward.Source; they run on the
// output's goroutine.
func (s *stream) Epoch() uint64 { return s.epoch.Load() }

func (s *stream) Written(b *forward.Batch) {
	p := s.inflight[b.Seq%BatchesPerStream]
	s.cfg.Checkpoint.Commit(s.entry(p.pos, false))
	s.metrics.linesForwarded.Add(float64(p.lines - b.Dropped))
	s.metrics.bytesForwarded.Add(float64(p.bytes))
	s.acks <- ack{ok: true, epoch: b.Epoch, pos: p.pos}
}

func (s *stream) Failed(b *forward.Batch) {
	s.epoch.CompareAndSwap(b.Epoch, b.Epoch+1)
	s.acks <- ack{ok: false, epoch: b.Epoch}
}

func (s *stream) entry(p Position, finished bool) checkpoint.Entry {
	return checkpoint.Entry{
		AllocID: s.target.AllocID, Task: s.target.Task, Stream: s.target.Stream,
		FileIndex: p.Index, Offset: p.Offset, Dev: p.Dev, Inode: p.Ino, InLongLine: p.InLongLine, Finished: finished,
	}
}

// run follows the stream until it is drained (nil) or ctx ends.
func (s *stream) run(ctx context.Context) error {
	defer s.closeAll()
	absDir := s.cfg.Root.Join(s.dir)
	s.watched = s.cfg.Watcher.subscribe(absDir, s.target.Task, s.target.Stream, s)
	defer s.cfg.Watcher.unsubscribe(absDir, s.target.Task, s.target.Stream)
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
			if err := s.pump(ctx); err != nil {
				return nil // ctx ended
			}
			needRead = false
		}
		s.submitOrRelease()
		s.commitIdlePosition()
		if s.draining() && s.nInflight == 0 {
			if wait := s.cfg.DrainDelay - time.Since(s.lastData); wait <= 0 {
				done, err := s.finish(ctx)
				if err != nil || done {
					return nil
				}
				needRead = true
				continue
			} else {
				poll.Reset(min(wait, s.pollInterval()))
			}
		} else {
			poll.Reset(s.pollInterval())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
			s.onWake()
			needRead = true
		case a := <-s.acks:
			s.handleAck(a)
			needRead = needRead || !a.ok
		case <-poll.C:
			s.onPoll(absDir)
			needRead = true
		}
	}
}

// isWatched: inotify tells this stream about its files, so it need not
// look for them itself.
func (s *stream) isWatched() bool { return s.watched && s.cfg.Watcher.alive() }

func (s *stream) pollInterval() time.Duration {
	if s.isWatched() {
		return s.cfg.PollInterval
	}
	return s.cfg.FallbackPollInterval
}

// onWake follows an event on the stream's files.
func (s *stream) onWake() {
	if s.lookAgain.Swap(false) {
		s.refreshHighest()
	}
	s.openAhead()
}

// onPoll is the fallback for lost or missing inotify events.
func (s *stream) onPoll(absDir string) {
	if !s.watched {
		s.watched = s.cfg.Watcher.subscribe(absDir, s.target.Task, s.target.Stream, s)
	}
	if s.isWatched() {
		// A safety net against lost events: list the folder. (An
		// unwatched stream polls often, and tries to open the next file
		// instead, which costs less than a listing.)
		s.refreshHighest()
	}
	if s.openAhead() == 0 && len(s.files) == 0 {
		s.refreshHighest()
		s.openAhead()
	}
	if s.sawDir && !s.draining() && !s.cfg.Root.Exists(s.target.AllocID) {
		// The alloc dir is gone (GC): nothing new can appear, so the
		// stream drains what its descriptors still hold.
		s.drain()
	}
}

// start positions the stream: at its checkpoint, or where --read-from says.
func (s *stream) start() error {
	s.refreshHighest()
	e, ok := s.cfg.Checkpoint.Get(s.target)
	if ok && e.Finished {
		return errFinished
	}
	if ok {
		if s.resumeFrom(e) {
			return nil
		}
	} else if s.cfg.ReadFrom == ReadFromEnd {
		if hi := s.highestSeen.Load(); hi >= 0 {
			if lf, err := s.openIndex(hi); err == nil {
				s.files, s.openNext = []*logFile{lf}, hi+1
				s.readOff = lastLineEnd(lf.f)
				s.committed = Position{Index: hi, Offset: s.readOff, Dev: lf.dev, Ino: lf.ino}
				s.cfg.Checkpoint.Commit(s.entry(s.committed, false))
				return nil
			}
		}
	}
	s.startAtLowest()
	return nil
}

// resumeFrom opens the checkpointed file; false means start at the lowest.
func (s *stream) resumeFrom(e checkpoint.Entry) bool {
	lf, err := s.openIndex(e.FileIndex)
	switch {
	case err == nil && e.Inode != 0 && (lf.ino != e.Inode || lf.dev != e.Dev):
		lf.close()
		s.log.Warn("checkpointed file was replaced by another file (inode changed); starting this stream over at its lowest index",
			zap.Int64("file_index", e.FileIndex), zap.Uint64("checkpoint_inode", e.Inode), zap.Uint64("inode", lf.ino))
		return false
	case err == nil:
		s.committed = Position{Index: lf.index, Offset: e.Offset, Dev: lf.dev, Ino: lf.ino, InLongLine: e.InLongLine}
		if size := fileSize(lf.f); size < e.Offset {
			s.log.Warn("checkpointed file is shorter than the saved offset (truncated); reading it from the start",
				zap.String("file", lf.f.Name()), zap.Int64("offset", e.Offset), zap.Int64("size", size))
			s.metrics.filesTruncated.Inc()
			s.committed = Position{Index: lf.index, Dev: lf.dev, Ino: lf.ino}
		}
		s.files, s.openNext, s.readOff = []*logFile{lf}, e.FileIndex+1, s.committed.Offset
		s.fr.resumeAt(s.committed)
		return true
	case errors.Is(err, fs.ErrNotExist):
		next, ok := s.nextExisting(e.FileIndex + 1)
		if !ok {
			// Nothing at or after the checkpoint yet: wait for that index,
			// which will be a new file, read from its start.
			s.openNext = e.FileIndex
			s.committed = Position{Index: e.FileIndex}
			return true
		}
		s.reportGap(e.FileIndex, next, "while the daemon was not running")
		s.openNext = next
		s.openAhead()
		s.committed = s.readPosition()
		return true
	default:
		s.log.Warn("cannot open checkpointed file; starting this stream at its lowest index", zap.Error(err))
		return false
	}
}

func (s *stream) startAtLowest() {
	s.closeAll()
	s.readOff = 0
	lo, ok := s.nextExisting(0)
	if !ok {
		lo = 0
	}
	s.openNext = lo
	s.openAhead()
	s.committed = s.readPosition()
	if len(s.files) > 0 {
		s.cfg.Checkpoint.Commit(s.entry(s.committed, false))
	}
}

// readPosition is where the stream reads next.
func (s *stream) readPosition() Position {
	if s.readAt < len(s.files) {
		lf := s.files[s.readAt]
		return Position{Index: lf.index, Offset: s.readOff, Dev: lf.dev, Ino: lf.ino}
	}
	return Position{Index: s.openNext, Offset: 0}
}

// pump reads, frames and submits until every open file is read to its end
// and no newer file exists. It returns an error only when ctx ended.
func (s *stream) pump(ctx context.Context) error {
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
	for {
		if s.readAt >= len(s.files) {
			if s.openAhead() == 0 {
				return nil
			}
			continue
		}
		if bufp == nil {
			bufp = s.readBuf.Get().(*[]byte)
		}
		buf := *bufp
		lf := s.files[s.readAt]
		hadNext := s.readAt+1 < len(s.files)
		off := s.readOff
		n, err := lf.readAt(buf, off)
		if err != nil {
			s.log.Warn("read failed; retrying at the next wake-up", zap.String("file", lf.f.Name()), zap.Error(err))
			return nil
		}
		if n > 0 {
			rewinds := s.rewinds
			if !s.haveBatch() {
				// Waiting for the output: give the read buffer back so
				// that memory does not grow with the number of waiting
				// streams, and read these bytes again afterwards.
				s.readBuf.Put(bufp)
				bufp = nil
				if err := s.waitForBatch(ctx); err != nil {
					return err
				}
				continue
			}
			if s.rewinds != rewinds {
				continue // taking a batch drained a failure: read again from the commit
			}
			s.lastData = time.Now()
			s.timestamp = enrich.AppendTimestamp(s.timestamp[:0], s.lastData)
			s.metrics.bytesRead.Add(float64(n))
			s.consume(buf[:n], lf)
			readSome = true
			if s.rewinds != rewinds || n == len(buf) || s.readOff < off+int64(n) {
				// A failure came back while framing (the position is the
				// last commit now, maybe in an earlier file), or there is
				// more to read, or a batch to wait for first.
				continue
			}
			// A short read ended at the end of the file as it is now:
			// reading again would find nothing (a later write wakes the
			// stream), and would cost a system call per wake-up.
		}
		if hadNext {
			// logmon closes file N before it creates N+1, and N+1 existed
			// before this read: N is complete.
			s.readAt++
			s.readOff = 0
			continue
		}
		if s.openAhead() > 0 {
			continue // read N once more now that N+1 is known to exist
		}
		if readSome {
			return nil
		}
		// Woken, but nothing to read: the file may have shrunk.
		if size := fileSize(lf.f); size < s.readOff {
			s.log.Warn("file shrank below the read offset (truncated); reading it again from the start",
				zap.String("file", lf.f.Name()), zap.Int64("offset", s.readOff), zap.Int64("size", size))
			s.metrics.filesTruncated.Inc()
			rewound, err := s.emitPartial(ctx)
			if err != nil {
				return err
			}
			if !rewound {
				s.readOff = 0
			}
			continue
		}
		return nil
	}
}

// emitPartial ends the unfinished line as it is, without its newline: the
// stream is finished, or its file was truncated under it. rewound says the
// output failed a batch while this waited for a buffer: the stream went
// back to its last commit, and the line will be read again.
func (s *stream) emitPartial(ctx context.Context) (rewound bool, err error) {
	l, ok := s.fr.flush()
	if !ok {
		return false, nil
	}
	epoch := s.localEpoch
	for !s.haveBatch() {
		if err := s.waitForBatch(ctx); err != nil {
			return false, err
		}
	}
	if s.localEpoch != epoch {
		return true, nil
	}
	s.emit(l)
	return false, nil
}

// consume frames data, read from lf at s.readOff, into the batch. It stops
// early when the batch is full and no next batch is free, or when taking
// the next batch brought news of a failure and the stream rewound; the
// rest of data is read again later, from wherever the stream now is.
func (s *stream) consume(data []byte, lf *logFile) {
	rewinds := s.rewinds
	for len(data) > 0 {
		if !s.haveBatch() || s.rewinds != rewinds {
			return
		}
		n, l, ok := s.fr.frame(data, Position{Index: lf.index, Offset: s.readOff, Dev: lf.dev, Ino: lf.ino})
		data = data[n:]
		s.readOff += int64(n)
		if ok {
			s.emit(l)
		}
	}
}

// emit renders one line into the batch and submits the batch when full.
func (s *stream) emit(l line) {
	if l.start.Index != s.renderIdx {
		s.render.SetFile(s.cfg.Root.Join(s.fileRel(l.start.Index)))
		s.renderIdx = l.start.Index
	}
	if l.truncated {
		s.noteTruncated(l)
	}
	s.batch.Data = s.render.AppendLine(s.batch.Data, s.timestamp, l.data, l.start.Offset, l.truncated)
	s.batch.Lines++
	if len(s.batch.Data) >= s.cfg.Output.BatchBytes() {
		s.submit()
	}
}

func (s *stream) noteTruncated(l line) {
	s.truncCount++
	s.metrics.linesTruncated.Inc()
	if s.truncCount == 1 || time.Since(s.truncLog) > 10*time.Second {
		s.truncLog = time.Now()
		s.log.Warn("line longer than --max-line-bytes: emitted truncated, rest skipped",
			zap.Int64("file_index", l.start.Index), zap.Int64("offset", l.start.Offset),
			zap.Int("max_line_bytes", s.cfg.MaxLineBytes), zap.Int64("truncated_lines_so_far", s.truncCount))
	}
}

// haveBatch makes sure a batch buffer is at hand, without waiting.
func (s *stream) haveBatch() bool {
	if s.batch != nil {
		return true
	}
	s.drainAcks()
	if s.nInflight >= BatchesPerStream {
		return false
	}
	select {
	case b := <-s.cfg.Output.Free():
		s.batch = b
		return true
	default:
		return false
	}
}

// waitForBatch waits for a batch buffer, opening new files meanwhile.
func (s *stream) waitForBatch(ctx context.Context) error {
	for s.batch == nil {
		free := s.cfg.Output.Free()
		if s.nInflight >= BatchesPerStream {
			free = nil // an ack must come first
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case b := <-free:
			s.batch = b
		case a := <-s.acks:
			s.handleAck(a)
		case <-s.wake:
			s.onWake()
		}
	}
	return nil
}

func (s *stream) drainAcks() {
	for {
		select {
		case a := <-s.acks:
			s.handleAck(a)
		default:
			return
		}
	}
}

// submit hands the batch to the output with the position a restart
// should resume from once it is written.
func (s *stream) submit() {
	b := s.batch
	s.batch = nil
	pos := s.fr.resume(s.readPosition())
	s.inflight[s.seq%BatchesPerStream] = pending{pos: pos, lines: b.Lines, bytes: len(b.Data)}
	b.Source, b.Epoch, b.Seq = s, s.localEpoch, s.seq
	s.seq++
	s.nInflight++
	s.metrics.linesRead.Add(float64(b.Lines))
	s.cfg.Output.Submit(b)
}

// submitOrRelease hands over the batch before the stream waits: submitted
// when it holds lines, else given back to the pool. A waiting stream never
// holds a buffer, or a node with more quiet streams than buffers would
// leave the others none.
func (s *stream) submitOrRelease() {
	switch {
	case s.batch == nil:
	case s.batch.Lines > 0:
		s.submit()
	default:
		s.cfg.Output.Release(s.batch)
		s.batch = nil
	}
}

// commitIdlePosition records progress that carried no line (moving to the
// next file) so that a restart does not look for a file that is gone.
func (s *stream) commitIdlePosition() {
	if s.nInflight > 0 || (s.batch != nil && s.batch.Lines > 0) {
		return
	}
	pos := s.fr.resume(s.readPosition())
	if pos != s.committed && len(s.files) > 0 {
		s.committed = pos
		s.cfg.Checkpoint.Commit(s.entry(pos, false))
		s.releaseFiles()
	}
}

func (s *stream) handleAck(a ack) {
	s.nInflight--
	switch {
	case a.ok:
		s.committed = a.pos
		s.releaseFiles()
	case a.epoch == s.localEpoch:
		s.rewind()
	}
}

// rewind goes back to the last committed position after the output lost
// a batch; everything after it is read and sent again.
func (s *stream) rewind() {
	s.rewinds++
	s.localEpoch = s.epoch.Load()
	if s.batch != nil {
		s.batch.Data, s.batch.Lines = s.batch.Data[:0], 0
	}
	s.fr.resumeAt(s.committed)
	for i, lf := range s.files {
		if lf.index == s.committed.Index {
			s.readAt, s.readOff = i, s.committed.Offset
			return
		}
	}
	// The committed file was never opened (it was purged before): start
	// at the first file held.
	s.readAt, s.readOff = 0, 0
}

// releaseFiles closes files that lie wholly before the committed position.
func (s *stream) releaseFiles() {
	n := 0
	for n < s.readAt && s.files[n].index < s.committed.Index {
		s.files[n].close()
		n++
	}
	if n > 0 {
		s.files = append(s.files[:0], s.files[n:]...)
		s.readAt -= n
	}
}

// openAhead opens every newer file that exists, up to MaxOpenFiles, and
// reports how many it opened. A file that is gone although a newer one
// exists was purged before it could be opened: that is reported as a gap.
func (s *stream) openAhead() (opened int) {
	for len(s.files) < MaxOpenFiles {
		idx := s.openNext
		if s.isWatched() && idx > s.highestSeen.Load() {
			return opened // no event named this file: it does not exist yet
		}
		lf, err := s.openIndex(idx)
		switch {
		case err == nil:
			s.files = append(s.files, lf)
			s.openNext = idx + 1
			opened++
			continue
		case safefs.IsRefused(err):
			var refused *safefs.RefusedError
			errors.As(err, &refused)
			if refused.Path != s.cfg.Root.Join(s.fileRel(idx)) {
				// A folder on the way is a symlink: no file of this
				// stream can be read until that changes.
				s.refuseOnce(-1, err)
				return opened
			}
			s.refuseOnce(idx, err)
			s.openNext = idx + 1
			continue
		case errors.Is(err, fs.ErrNotExist):
			if idx >= s.highestSeen.Load() {
				return opened
			}
			// A newer file exists, but not this one. logmon purges the
			// oldest files first, so if this index was purged, the file
			// before it is gone from the folder too. If that one is still
			// there, the newer file is not logmon's (a file dropped into
			// the folder): wait for this index rather than skip to it.
			if n := len(s.files); n > 0 && s.files[n-1].index == idx-1 &&
				s.cfg.Root.IsFile(s.fileRel(idx-1), s.files[n-1].dev, s.files[n-1].ino) {
				s.noteOutOfSequence(idx)
				return opened
			}
			next, ok := s.nextExisting(idx + 1)
			if !ok {
				return opened
			}
			s.reportGap(idx, next, "")
			s.openNext = next
			continue
		default:
			s.log.Warn("cannot open log file; retrying at the next wake-up", zap.Error(err))
			return opened
		}
	}
	return opened
}

// refuseOnce logs and counts a refused path once; index -1 stands for the
// stream's log folder.
func (s *stream) refuseOnce(index int64, err error) {
	if s.refused[index] {
		return
	}
	s.refused[index] = true
	s.log.Warn("refusing to read: symlinks and special files below the alloc dir are never followed", zap.Error(err))
	s.metrics.filesRefused.Inc()
}

func (s *stream) fileRel(idx int64) string {
	return s.dir + "/" + enrich.LogFileName(s.target.Task, s.target.Stream, idx)
}

// maxGapLogs bounds the warnings for one gap: each purged file is named
// up to this many, the rest are summed up in one line (a folder that tasks
// can write must not be able to make the daemon log without end).
const maxGapLogs = 100

func (s *stream) reportGap(from, to int64, when string) {
	msg := "log file was purged before it could be opened; its lines are lost"
	if when != "" {
		msg += " (" + when + ")"
	}
	for i := from; i < min(to, from+maxGapLogs); i++ {
		s.log.Warn(msg, zap.String("file", s.cfg.Root.Join(s.fileRel(i))))
	}
	if to-from > maxGapLogs {
		s.log.Warn("more log files were purged before they could be opened; their lines are lost",
			zap.Int64("files", to-from-maxGapLogs), zap.String("up_to", s.cfg.Root.Join(s.fileRel(to-1))))
	}
	s.metrics.filesSkipped.Add(float64(to - from))
}

// noteOutOfSequence logs, once per index, a newer log file that cannot be
// logmon's because the file before the missing one is still there.
func (s *stream) noteOutOfSequence(missing int64) {
	hi := s.highestSeen.Load()
	if s.outOfSequence == hi {
		return // said already for this stray file
	}
	s.outOfSequence = hi
	s.log.Warn("a log file with a higher index exists, but not the next one, and the current file was not purged: "+
		"not logmon's rotation (a file dropped into the folder?); waiting for the next index",
		zap.String("waiting_for", s.cfg.Root.Join(s.fileRel(missing))), zap.Int64("highest_index_seen", s.highestSeen.Load()))
}

func (s *stream) openIndex(idx int64) (*logFile, error) {
	f, err := s.cfg.Root.OpenFile(s.fileRel(idx))
	if err != nil {
		return nil, err
	}
	s.sawDir = true
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("fstat %s: %w", f.Name(), err)
	}
	return &logFile{f: f, fd: int(f.Fd()), index: idx, dev: uint64(st.Dev), ino: st.Ino}, nil
}

// nextExisting lists the log folder for the lowest index >= from of this
// stream, and updates highestSeen from what it saw.
func (s *stream) nextExisting(from int64) (int64, bool) {
	lo, hi, ok := s.listIndexes(from)
	if ok {
		s.notifyHighest(hi)
	}
	return lo, ok
}

func (s *stream) refreshHighest() {
	if _, hi, ok := s.listIndexes(0); ok {
		s.notifyHighest(hi)
	}
}

func (s *stream) notifyHighest(hi int64) {
	for {
		cur := s.highestSeen.Load()
		if hi <= cur || s.highestSeen.CompareAndSwap(cur, hi) {
			return
		}
	}
}

// listIndexes reads the log folder in chunks (it may hold very many
// files) and returns the lowest index >= from and the highest index.
func (s *stream) listIndexes(from int64) (lo, hi int64, ok bool) {
	d, err := s.cfg.Root.OpenDir(s.dir)
	if err != nil {
		if safefs.IsRefused(err) {
			s.refuseOnce(-1, err)
		}
		return 0, 0, false
	}
	defer d.Close()
	s.sawDir = true
	lo, hi = -1, -1
	// A listing that fails halfway still tells what it saw.
	_ = enrich.EachLogFile(d, func(task, stream string, idx int64) {
		if task != s.target.Task || stream != s.target.Stream {
			return
		}
		hi = max(hi, idx)
		if idx >= from && (lo < 0 || idx < lo) {
			lo = idx
		}
	})
	return lo, hi, lo >= 0
}

// finish ends a drained stream: one last look for newer files, then the
// partial last line, then the wait for the output to confirm everything.
// done=false means there was more to read after all.
func (s *stream) finish(ctx context.Context) (done bool, err error) {
	// One last look: bytes written since the last read (the wake-up that
	// announced them may not have been taken yet), and newer files.
	if err := s.pump(ctx); err != nil {
		return false, err
	}
	s.refreshHighest()
	if s.openAhead() > 0 || s.batch != nil && s.batch.Lines > 0 {
		return false, nil
	}
	if !s.draining() {
		return false, nil // listed as running again: the partial line waits
	}
	if rewound, err := s.emitPartial(ctx); err != nil || rewound {
		return false, err
	}
	s.submitOrRelease()
	for s.nInflight > 0 {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case a := <-s.acks:
			s.handleAck(a)
			if !a.ok {
				return false, nil // rewound: read again
			}
		}
	}
	if s.markFinished && !s.state.CompareAndSwap(stateDraining, stateFinished) {
		return false, nil // listed as running again meanwhile: go on
	}
	s.reportUnopened()
	s.committed = s.readPosition()
	s.cfg.Checkpoint.Commit(s.entry(s.committed, s.markFinished))
	if s.markFinished {
		s.log.Info("stream drained and retired")
	}
	return true, nil
}

// reportUnopened counts and logs the files this stream saw but never
// opened because the alloc dir was deleted first (client GC or a
// replacement can delete it at once): their lines are lost.
func (s *stream) reportUnopened() {
	hi := s.highestSeen.Load()
	if hi < s.openNext || s.cfg.Root.Exists(s.dir) {
		return
	}
	n := hi - s.openNext + 1
	s.log.Warn("the alloc dir was deleted before these log files could be opened; their lines are lost",
		zap.String("first_file", s.cfg.Root.Join(s.fileRel(s.openNext))), zap.Int64("files", n))
	s.metrics.filesSkipped.Add(float64(n))
}

func (s *stream) closeAll() {
	for _, lf := range s.files {
		lf.close()
	}
	s.files, s.readAt = nil, 0
	if s.batch != nil {
		s.cfg.Output.Release(s.batch)
		s.batch = nil
	}
}

func fileSize(f *os.File) int64 {
	st, err := f.Stat()
	if err != nil {
		return -1
	}
	return st.Size()
}

// lastLineEnd is the offset just after the last newline in the file's last
// 64 KiB (or its size when there is none), where --read-from end starts.
func lastLineEnd(f *os.File) int64 {
	size := fileSize(f)
	if size <= 0 {
		return 0
	}
	start := max(0, size-64<<10)
	buf := make([]byte, size-start)
	n, _ := f.ReadAt(buf, start)
	for i := n - 1; i >= 0; i-- {
		if buf[i] == '\n' {
			return start + int64(i) + 1
		}
	}
	return size
}
