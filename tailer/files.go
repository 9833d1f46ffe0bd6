package tailer

import (
	"errors"
	"io/fs"
	"os"
	"slices"

	"go.uber.org/zap"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/enrich"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/safefs"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/taskstream"
)

// defaultMaxFiles is logmon's max_files when the task's LogConfig is not
// known (Nomad's default).
const defaultMaxFiles = 10

// maxGapLogs bounds the warnings for one gap: each purged file is named
// up to this many, the rest are summed up in one line (a folder that tasks
// can write must not be able to make the daemon log without end).
const maxGapLogs = 100

// maxCountedGap bounds what one gap adds to nlf_files_skipped_total. A
// file is at least 1 MiB, so more files than this is no task's output but
// a name planted in the folder.
const maxCountedGap = 1_000_000

// fileSet is a stream's files: which are open, which one is read and
// where, which index comes next, and what was refused, skipped or lost on
// the way. It answers "what is the next byte to read, and from which
// file", and knows nothing of batches. It belongs to the stream's
// goroutine; what other goroutines tell it comes through notices.
type fileSet struct {
	root    *safefs.Root
	id      taskstream.ID
	dir     string // the log folder, relative to the alloc dir
	key     string // "<task>.<stream>", as listings name the stream
	log     *streamLog
	metrics *streamMetrics
	notices *notices
	budget  *Budget
	hold    *holding
	// list lists the log folder (shared with the folder's other streams
	// while the watcher keeps the listing current); watched says whether
	// inotify reports this stream's files.
	list    func() (folderIndexes, bool)
	watched func() bool

	// Owned by the stream's goroutine.
	files    []*logFile // open, ascending index
	readAt   int        // files[readAt] is being read
	readOff  int64
	openNext int64 // the next index to try to open
	// reached is the highest index opened or passed (-1: none yet); the
	// stream follows no index beyond notices.limit.
	reached       int64
	refused       map[int64]bool
	sawDir        bool  // the log folder existed once; its absence now means GC
	outOfSequence int64 // the highest index last reported by noteOutOfSequence
	farLogged     int64 // the far index last logged
}

func (s *fileSet) setReached(idx int64) {
	s.reached = max(s.reached, idx)
	s.notices.reached.Store(s.reached)
}

// position is where reading continues.
func (s *fileSet) position() Position {
	if s.readAt < len(s.files) {
		lf := s.files[s.readAt]
		return Position{Index: lf.index, Offset: s.readOff, Dev: lf.dev, Ino: lf.ino}
	}
	return Position{Index: s.openNext}
}

// current is the file being read, and whether a newer one is open (then
// the current one is complete: logmon closes file N before it creates N+1).
func (s *fileSet) current() (lf *logFile, hasNext, ok bool) {
	if s.readAt >= len(s.files) {
		return nil, false, false
	}
	return s.files[s.readAt], s.readAt+1 < len(s.files), true
}

// next moves to the start of the next open file.
func (s *fileSet) next() {
	s.readAt++
	s.readOff = 0
}

// seek goes back to p, a committed position, for a rewind. The committed
// file may have been given up (held-file budget) or never opened (purged
// before): then reading goes on at the first file held, and what lay
// between is lost, logged and counted.
func (s *fileSet) seek(p Position) {
	for i, lf := range s.files {
		if lf.index == p.Index {
			s.readAt, s.readOff = i, p.Offset
			return
		}
	}
	s.readAt, s.readOff = 0, 0
	if len(s.files) > 0 && p.Index < s.files[0].index && p.Offset > 0 {
		s.log.Warn("resending after an output failure, but the committed log file is no longer held; "+
			"its uncommitted lines are lost", zap.String("file", s.path(p.Index)), zap.Int64("offset", p.Offset))
		s.metrics.filesSkipped.Inc()
	}
}

// release closes the files that lie wholly before committed and are read.
func (s *fileSet) release(committed Position) {
	n := 0
	for n < s.readAt && s.files[n].index < committed.Index {
		s.closeFile(s.files[n])
		n++
	}
	if n > 0 {
		s.files = append(s.files[:0], s.files[n:]...)
		s.readAt -= n
	}
}

func (s *fileSet) closeFile(lf *logFile) {
	s.budget.release(s.hold, lf.unlinked, lf.size)
	lf.close()
}

// openNew opens every newer file that exists, as far as the held-file
// budget and the stream's limit allow, and reports how many it opened. A
// file that is gone although a newer one exists was purged before it
// could be opened: that is reported as a gap.
func (s *fileSet) openNew() (opened int) {
	for {
		idx := s.openNext
		if idx > s.notices.limit() {
			return opened
		}
		if s.watched() && idx > s.notices.highestSeen.Load() {
			if s.notices.farSeen.Load() < idx {
				return opened // no event named this file: it does not exist yet
			}
			// A file beyond the limit was seen when this one was not
			// within it yet: the listing (shared, so cheap) tells whether
			// this one exists.
			if s.refresh(); idx > s.notices.highestSeen.Load() {
				return opened
			}
		}
		lf, counted, err := s.openIndex(idx)
		switch {
		case err == nil:
			if !counted && !s.hold.take(s, s.atRisk(idx)) {
				lf.close()
				return opened // still in its folder: opened once the budget allows
			}
			s.files = append(s.files, lf)
			s.openNext = idx + 1
			s.setReached(idx)
			opened++
		case safefs.IsRefused(err):
			var refused *safefs.RefusedError
			errors.As(err, &refused)
			if refused.Path != s.path(idx) {
				// A folder on the way is a symlink: no file of this stream
				// can be read until that changes.
				s.refuseOnce(-1, err)
				return opened
			}
			s.refuseOnce(idx, err)
			s.openNext = idx + 1
			s.setReached(idx)
		case errors.Is(err, fs.ErrNotExist):
			if idx >= s.notices.highestSeen.Load() {
				return opened
			}
			// A newer file exists, but not this one. logmon purges the
			// oldest files first, so if this index was purged, the file
			// before it is gone from the folder too. If that one is still
			// there, the newer file is not logmon's (a file dropped into
			// the folder): wait for this index rather than skip to it.
			if n := len(s.files); n > 0 && s.files[n-1].index == idx-1 &&
				s.root.IsFile(s.rel(idx-1), s.files[n-1].dev, s.files[n-1].ino) {
				s.noteOutOfSequence(idx)
				return opened
			}
			next, ok := s.nextExisting(idx + 1)
			if !ok {
				return opened
			}
			s.reportGap(idx, next, "")
			s.openNext = next
			s.setReached(next - 1)
		default:
			s.log.Warn("cannot open log file; retrying at the next wake-up", zap.Error(err))
			return opened
		}
	}
}

// noteFar logs, once per index, a file whose index lies beyond what
// logmon can have reached: it is ignored.
func (s *fileSet) noteFar() {
	far := s.notices.farSeen.Load()
	if far <= s.notices.limit() || far == s.farLogged {
		return
	}
	s.farLogged = far
	s.log.Warn("ignoring a log file whose index is beyond what logmon can have reached "+
		"(the last index reached plus the task's max_files): not logmon's, a file dropped into the folder",
		zap.String("file", s.path(far)), zap.Int64("last_index_reached", s.reached), zap.Int64("max_files", s.notices.maxFiles.Load()))
}

// refuseOnce logs and counts a refused path once; index -1 stands for the
// stream's log folder.
func (s *fileSet) refuseOnce(index int64, err error) {
	if s.refused[index] {
		return
	}
	s.refused[index] = true
	s.log.Warn("refusing to read: symlinks, hard links and special files below the alloc dir are never followed", zap.Error(err))
	s.metrics.filesRefused.Inc()
}

func (s *fileSet) rel(idx int64) string {
	return s.dir + "/" + enrich.LogFileName(s.id.Task, s.id.Stream, idx)
}

func (s *fileSet) path(idx int64) string { return s.root.Join(s.rel(idx)) }

// reportGap logs and counts the files from..to-1, purged before they
// could be opened.
func (s *fileSet) reportGap(from, to int64, when string) {
	msg := "log file was purged before it could be opened; its lines are lost"
	if when != "" {
		msg += " (" + when + ")"
	}
	for i := from; i < min(to, from+maxGapLogs); i++ {
		s.log.Warn(msg, zap.String("file", s.path(i)))
	}
	if to-from > maxGapLogs {
		s.log.Warn("more log files were purged before they could be opened; their lines are lost",
			zap.Int64("files", to-from-maxGapLogs), zap.String("up_to", s.path(to-1)))
	}
	s.metrics.filesSkipped.Add(float64(min(to-from, maxCountedGap)))
}

// noteOutOfSequence logs, once per index, a newer log file that cannot be
// logmon's because the file before the missing one is still there.
func (s *fileSet) noteOutOfSequence(missing int64) {
	hi := s.notices.highestSeen.Load()
	if s.outOfSequence == hi {
		return // said already for this stray file
	}
	s.outOfSequence = hi
	s.log.Warn("a log file with a higher index exists, but not the next one, and the current file was not purged: "+
		"not logmon's rotation (a file dropped into the folder?); waiting for the next index",
		zap.String("waiting_for", s.path(missing)), zap.Int64("highest_index_seen", hi))
}

// openIndex opens file idx, or takes it from the watcher, who opened it
// when it appeared; counted says the budget counts it already.
func (s *fileSet) openIndex(idx int64) (lf *logFile, counted bool, err error) {
	f := s.notices.take(idx)
	counted = f != nil
	if f == nil {
		if f, err = s.root.OpenFile(s.rel(idx)); err != nil {
			return nil, false, err
		}
	}
	s.sawDir = true
	lf, err = openLogFile(f, idx)
	if err != nil && counted {
		s.budget.release(s.hold, false, 0)
	}
	return lf, counted, err
}

// preopen opens file idx for the watcher, who saw it created (see
// notices.preopen), within the budget. It runs on the watcher's
// goroutine: it touches nothing the stream owns but its share of the
// budget, which is safe for concurrent use.
func (s *fileSet) preopen(idx int64) *os.File {
	if ok, _ := s.budget.acquire(s.hold); !ok {
		return nil // the stream opens it itself, making room if it must
	}
	f, err := s.root.OpenFile(s.rel(idx))
	if err != nil {
		s.budget.release(s.hold, false, 0)
		return nil
	}
	return f
}

// dropPreopened gives back what the watcher opened and nobody took.
func (s *fileSet) dropPreopened(f *os.File) {
	f.Close()
	s.budget.release(s.hold, false, 0)
}

// indexes lists the stream's files (ascending), noting the highest one
// within the limit as seen.
func (s *fileSet) indexes() ([]int64, bool) {
	all, ok := s.list()
	if !ok {
		return nil, false
	}
	s.sawDir = true
	idx := all[s.key]
	if len(idx) > 0 {
		// The highest within the limit, and the highest of all (a far
		// one is noted as such).
		if at, _ := slices.BinarySearch(idx, s.notices.limit()+1); at > 0 {
			s.notices.see(idx[at-1])
		}
		s.notices.see(idx[len(idx)-1])
	}
	return idx, true
}

// nextExisting is the lowest index >= from of this stream's files within
// its limit.
func (s *fileSet) nextExisting(from int64) (int64, bool) {
	idx, _ := s.indexes()
	limit := s.notices.limit()
	for _, i := range idx {
		if i >= from && i <= limit {
			return i, true
		}
	}
	return 0, false
}

// lowestExisting is the lowest index >= from of this stream's files,
// whatever the limit: where a stream starts.
func (s *fileSet) lowestExisting(from int64) (int64, bool) {
	idx, _ := s.indexes()
	for _, i := range idx {
		if i >= from {
			return i, true
		}
	}
	return 0, false
}

// refresh lists the folder to learn of files events may not have told.
func (s *fileSet) refresh() { s.indexes() }

// reportUnopened counts and logs the files this stream saw but never
// opened because the alloc dir was deleted first (client GC or a
// replacement can delete it at once): their lines are lost.
func (s *fileSet) reportUnopened() {
	hi := s.notices.highestSeen.Load()
	if hi < s.openNext || s.root.Exists(s.dir) {
		return
	}
	n := hi - s.openNext + 1
	s.log.Warn("the alloc dir was deleted before these log files could be opened; their lines are lost",
		zap.String("first_file", s.path(s.openNext)), zap.Int64("files", n))
	s.metrics.filesSkipped.Add(float64(n))
}

func (s *fileSet) closeAll() {
	for _, lf := range s.files {
		s.closeFile(lf)
	}
	s.files, s.readAt = nil, 0
}
