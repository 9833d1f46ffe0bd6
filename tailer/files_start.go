package tailer

import (
	"errors"
	"io/fs"

	"go.uber.org/zap"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/checkpoint"
)

// Where a stream's file set starts: at its checkpoint, at its lowest
// file, or after the last complete line (--read-from end).

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
