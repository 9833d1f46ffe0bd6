package tailer

import "go.uber.org/zap"

// What a stream's file set does for the node's held-file budget: note the
// held files logmon purged, and give up the oldest of them when asked.

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
