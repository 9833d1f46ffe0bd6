package tailer

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/enrich"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/multiline"
)

// handling is how a stream turns framed lines into records: as they are
// (plain, the fast path), or as the task's meta says (joined into
// multiline events, rate limited, with their level and JSON object).
// Owned by the stream's goroutine; a new handling (an in-place job
// update changed the meta) waits in stream.newHandling until pump takes
// it.
type handling struct {
	enrich.Handling
	plain bool
	// comb joins lines into events (nil: multiline off).
	comb *multiline.Combiner[Position]
	// limit drops what is over the rate limit (nil: no limit).
	limit *throttle
}

func (s *stream) useHandling(h enrich.Handling) {
	s.h = handling{Handling: h, plain: h.Plain()}
	if h.Multiline != nil {
		s.h.comb = multiline.NewCombiner[Position](h.Multiline, s.cfg.MultilineMaxLines, s.cfg.MultilineMaxBytes)
	}
	if h.RateLimit > 0 {
		s.h.limit = newThrottle(h.RateLimit)
	}
}

// setHandling hands the stream a new handling; called from the manager.
func (s *stream) setHandling(h enrich.Handling) {
	s.newHandling.Store(&h)
	s.poke()
}

// takeHandling switches to a new handling, if one waits, once what the
// old one holds is out (it needs a batch for that).
func (s *stream) takeHandling() {
	if s.newHandling.Load() == nil || !s.win.haveBatch() || s.win.pendingRewind() {
		return
	}
	s.emitHeldNow(true)
	s.useHandling(*s.newHandling.Swap(nil))
	s.log.Info("log_forwarder_* meta changed: handling the lines as it now says")
}

// emit hands one framed line on, and submits the batch when full. Only
// whole records are added to the batch, so it may pass the output's batch
// size by what one line made.
func (s *stream) emit(l line) {
	if l.truncated {
		s.noteTruncated(l)
	}
	if s.h.plain {
		// The fast path: every log_forwarder_* key off.
		if l.start.Index != s.renderIdx {
			s.setFile(l.start.Index)
		}
		b := s.win.batch
		b.Data = s.render.AppendLine(b.Data, s.timestamp, l.data, l.start.Offset, l.truncated)
		b.Lines++
	} else if s.h.comb != nil {
		s.h.comb.Add(multiline.Line[Position]{Data: l.data, Start: l.start, Truncated: l.truncated}, s.emitEvent)
	} else {
		s.emitRecord(l.data, l.start, 1, l.truncated)
	}
	if s.win.full() {
		s.win.submit(s.resume())
	}
}

// emitEvent takes an event from the combiner; the stream keeps it in a
// field (s.emitEvent is a method value made once, not per line).
func (s *stream) emitEventTo(e multiline.Event[Position]) {
	s.emitRecord(e.Data, e.Start, e.Lines, e.Truncated)
}

// emitRecord renders a line or an event, if the rate limit lets it pass.
func (s *stream) emitRecord(data []byte, start Position, lines int, truncated bool) {
	if s.h.limit != nil {
		if s.h.limit.due(s.lastData) {
			s.emitThrottled()
		}
		if !s.h.limit.allow(s.lastData, lines, start) {
			return
		}
	}
	s.setFile(start.Index)
	b := s.win.batch
	b.Data = s.render.AppendRecord(b.Data, s.timestamp, data, start.Offset, enrich.RecordOpts{
		Truncated: truncated, Lines: lines, JSON: s.h.JSON, DetectLevel: s.h.DetectLevel})
	b.Lines++
}

// emitThrottled renders the record of the lines dropped over the rate
// limit, at the first of them; they count as throttled once the output
// confirms it.
func (s *stream) emitThrottled() {
	dropped, first := s.h.limit.take()
	s.setFile(first.Index)
	b := s.win.batch
	b.Data = s.render.AppendThrottle(b.Data, s.timestamp, dropped, s.h.limit.rate, first.Offset)
	b.Lines++
	s.win.throttled += dropped
}

func (s *stream) setFile(index int64) {
	if index != s.renderIdx {
		s.render.SetFile(s.files.path(index))
		s.renderIdx = index
	}
}

// heldFor is how long until something held must go out for lack of new
// lines (an event at the multiline timeout, drops due for their record),
// and whether anything is held at all.
func (s *stream) heldFor(now time.Time) (time.Duration, bool) {
	wait, held := time.Duration(0), false
	if s.h.comb != nil {
		if _, ok := s.h.comb.Pending(); ok {
			wait, held = s.cfg.MultilineTimeout-now.Sub(s.lastData), true
		}
	}
	if s.h.limit != nil {
		if _, ok := s.h.limit.pending(); ok {
			if d := s.h.limit.dueIn(now); !held || d < wait {
				wait = d
			}
			held = true
		}
	}
	return max(wait, 0), held
}

// flushHeld emits what waits for time rather than for lines, once its
// time came: an event no line ended within the multiline timeout, and the
// record of drops a second old. force emits everything held (the stream
// finishes, or its file was truncated under it). It waits for a batch;
// a rewind meanwhile leaves everything to be read again.
func (s *stream) flushHeld(ctx context.Context, force bool) error {
	wait, held := s.heldFor(time.Now())
	if !held || wait > 0 && !force {
		return nil
	}
	if ok, err := s.batchForFlush(ctx); !ok || err != nil {
		return err
	}
	s.emitHeldNow(force)
	if s.win.full() {
		s.win.submit(s.resume())
	}
	return nil
}

// emitHeldNow emits into the batch at hand what is held and due (all of
// it with force).
func (s *stream) emitHeldNow(force bool) {
	now := time.Now()
	if s.h.comb != nil && (force || now.Sub(s.lastData) >= s.cfg.MultilineTimeout) {
		s.h.comb.Flush(s.emitEvent)
	}
	if s.h.limit != nil {
		if _, ok := s.h.limit.pending(); ok && (force || s.h.limit.due(now)) {
			s.emitThrottled()
		}
	}
}

// batchForFlush waits for a batch to emit into; false when a rewind came
// instead (or ctx ended: then the error).
func (s *stream) batchForFlush(ctx context.Context) (bool, error) {
	for !s.win.haveBatch() {
		if err := s.win.waitBatch(ctx, s.notices.wake, s.onFileEvents); err != nil {
			return false, err
		}
		if s.win.pendingRewind() {
			return false, nil
		}
	}
	return !s.win.pendingRewind(), nil
}

// emitPartial ends the unfinished line as it is, without its newline: the
// stream is finished, or its file was truncated under it. A pending
// rewind after it says the output failed a batch while this waited for a
// buffer: the line will be read again.
func (s *stream) emitPartial(ctx context.Context) error {
	l, ok := s.fr.flush()
	if !ok {
		return nil
	}
	if ok, err := s.batchForFlush(ctx); !ok || err != nil {
		return err
	}
	s.emit(l)
	return nil
}

// forgetHeld drops what the handling holds: a rewind reads it again.
func (s *stream) forgetHeld() {
	if s.h.comb != nil {
		s.h.comb.Reset()
	}
	if s.h.limit != nil {
		s.h.limit.forget()
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
