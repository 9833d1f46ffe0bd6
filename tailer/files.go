package tailer

import (
	"errors"
	"io/fs"
	"os"
	"slices"

	"go.uber.org/zap"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/checkpoint"
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
	log     *zap.Logger
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

// take asks the budget for one more descriptor for s, for a file it just
// opened (so one that exists). When s itself is the biggest holder of
// purged files, it gives up its oldest one first, but only for a file
// logmon is about to purge (atRisk): one that stays in its folder can
// wait for room without losing a line.
func (h *holding) take(s *fileSet, atRisk bool) bool {
	for {
		ok, self := s.budget.acquire(h)
		if !self || !atRisk {
			return ok
		}
		if !s.giveUpOldestPurged("--max-held-files") {
			return false
		}
	}
}

// atRisk says logmon purges file idx at its next rotation: with
// max_files files kept, the newest file seen is max_files-1 ahead.
func (s *fileSet) atRisk(idx int64) bool {
	return s.notices.highestSeen.Load() >= idx+s.notices.maxFiles.Load()-1
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

// noteDeleted looks at which held files lost their name (logmon purged
// them), so that the budget knows the bytes only we keep on disk.
func (s *fileSet) noteDeleted() {
	for _, lf := range s.files {
		if lf.unlinked {
			continue
		}
		links, size, err := lf.stat()
		if err != nil || links > 0 {
			continue
		}
		lf.unlinked, lf.size = true, size
		s.budget.purgedFile(s.hold, size)
	}
}

// giveUpAsked closes as many of the oldest purged files as the budget
// asked this stream to give up.
func (s *fileSet) giveUpAsked() {
	for s.notices.shed.Load() > 0 {
		s.notices.shed.Add(-1)
		if !s.giveUpOldestPurged("--max-held-files or --max-held-bytes") {
			return
		}
	}
}

// giveUpOldestPurged closes the oldest held file that lost its name and
// is not read to its end yet (files before it hold lines in flight): its
// unread lines are lost, logged and counted. false: there is none.
func (s *fileSet) giveUpOldestPurged(limit string) bool {
	for i := s.readAt; i < len(s.files); i++ {
		lf := s.files[i]
		if !lf.unlinked || i == len(s.files)-1 {
			continue // still in its folder, or the newest (logmon may write it)
		}
		from := int64(0)
		if i == s.readAt {
			from = s.readOff
		}
		s.log.Warn("the daemon holds as many purged log files as it may ("+limit+"): giving up the oldest; its unread lines are lost",
			zap.String("file", lf.f.Name()), zap.Int64("from_offset", from), zap.Int64("bytes_lost", max(lf.size-from, 0)))
		s.metrics.filesDropped.Inc()
		s.closeFile(lf)
		s.files = append(s.files[:i], s.files[i+1:]...)
		if i == s.readAt {
			s.readOff = 0
		}
		return true
	}
	return false
}

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

// resume positions the set at e, a checkpointed position. false: the
// checkpointed file cannot be trusted, start at the lowest index instead.
func (s *fileSet) resume(e checkpoint.Entry) (Position, bool) {
	s.setReached(e.FileIndex)
	lf, counted, err := s.openIndex(e.FileIndex)
	if err == nil && counted {
		s.budget.release(s.hold, false, 0) // adopted below, or closed
	}
	switch {
	case err == nil && e.Inode != 0 && (lf.ino != e.Inode || lf.dev != e.Dev):
		lf.close()
		s.log.Warn("checkpointed file was replaced by another file (inode changed); starting this stream over at its lowest index",
			zap.Int64("file_index", e.FileIndex), zap.Uint64("checkpoint_inode", e.Inode), zap.Uint64("inode", lf.ino))
		return Position{}, false
	case err == nil:
		s.budget.adopt(s.hold)
		pos := Position{Index: lf.index, Offset: e.Offset, Dev: lf.dev, Ino: lf.ino, InLongLine: e.InLongLine}
		if size := lf.currentSize(); size < e.Offset {
			s.log.Warn("checkpointed file is shorter than the saved offset (truncated); reading it from the start",
				zap.String("file", lf.f.Name()), zap.Int64("offset", e.Offset), zap.Int64("size", size))
			s.metrics.filesTruncated.Inc()
			pos = Position{Index: lf.index, Dev: lf.dev, Ino: lf.ino}
		}
		s.files, s.openNext, s.readOff = []*logFile{lf}, e.FileIndex+1, pos.Offset
		return pos, true
	case errors.Is(err, fs.ErrNotExist):
		next, ok := s.lowestExisting(e.FileIndex + 1)
		if !ok {
			// Nothing at or after the checkpoint yet: wait for that index,
			// which will be a new file, read from its start.
			s.openNext = e.FileIndex
			return Position{Index: e.FileIndex}, true
		}
		s.reportGap(e.FileIndex, next, "while the daemon was not running")
		s.openNext = next
		s.setReached(next - 1)
		s.openNew()
		return s.position(), true
	default:
		s.log.Warn("cannot open checkpointed file; starting this stream at its lowest index", zap.Error(err))
		return Position{}, false
	}
}

// startAtLowest positions the set at the lowest file of the stream. logmon
// starts every stream at index 0: when the lowest file is above it, the
// files below were purged before anyone read them (the daemon was not
// running, or the allocation rotated before it was listed): a loss,
// logged and counted.
func (s *fileSet) startAtLowest() Position {
	s.closeAll()
	s.readOff = 0
	lo, ok := s.lowestExisting(0)
	if !ok {
		lo = 0
	}
	if lo > 0 {
		s.reportGap(0, lo, "before the stream was first seen")
	}
	s.openNext = lo
	s.setReached(lo - 1)
	s.openNew()
	return s.position()
}

// startAtEnd positions the set after the last complete line of the
// highest file (--read-from end); false: there is no file yet.
func (s *fileSet) startAtEnd() (Position, bool) {
	idx, _ := s.indexes()
	if len(idx) == 0 {
		return Position{}, false
	}
	// logmon's files are one run of consecutive indexes: its top is the
	// file being written, not a far index dropped into the folder.
	hi := idx[0]
	for _, i := range idx[1:] {
		if i != hi+1 {
			break
		}
		hi = i
	}
	lf, counted, err := s.openIndex(hi)
	if err != nil {
		return Position{}, false
	}
	if !counted {
		s.budget.adopt(s.hold)
	}
	s.files, s.openNext = []*logFile{lf}, hi+1
	s.setReached(hi)
	s.readOff = lf.lastLineEnd()
	return Position{Index: hi, Offset: s.readOff, Dev: lf.dev, Ino: lf.ino}, true
}
