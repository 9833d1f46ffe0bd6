package tailer

import (
	"time"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/enrich"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/safefs"
)

// What wakes a stream, and what it does about it: the watcher's events
// (through its notices), its own polls when events may have been lost or
// its folder cannot be watched, and the manager's new metadata.

func (s *stream) subscribe(absDir string) {
	s.listing = s.cfg.Watcher.subscribe(absDir, s.id.Task, s.id.Stream, s.notices)
	s.watched = s.listing != nil
}

// isWatched: inotify tells this stream about its files, so it need not
// look for them itself.
func (s *stream) isWatched() bool { return s.watched && s.cfg.Watcher.alive() }

// list lists the stream's log folder: once for all the streams in it
// while the watcher keeps the shared listing current, else directly.
func (s *stream) list() (folderIndexes, bool) {
	direct := func() (folderIndexes, bool) {
		d, err := s.cfg.Root.OpenDir(s.files.dir)
		if err != nil {
			if safefs.IsRefused(err) {
				s.files.refuseOnce(-1, err)
			}
			return nil, false
		}
		defer d.Close()
		return listFolder(d, nil), true
	}
	if s.isWatched() {
		return s.listing.get(direct)
	}
	return direct()
}

// nextPoll is when the stream must look again without being woken: at
// its poll interval, or sooner when something held is due.
func (s *stream) nextPoll() time.Duration {
	if wait, held := s.heldFor(time.Now()); held {
		return min(max(wait, time.Millisecond), s.pollInterval())
	}
	return s.pollInterval()
}

func (s *stream) pollInterval() time.Duration {
	if s.isWatched() {
		return s.cfg.PollInterval
	}
	return s.cfg.FallbackPollInterval
}

// setMeta hands the stream new metadata; called from the manager.
func (s *stream) setMeta(m enrich.Meta) {
	s.newMeta.Store(&m)
	s.poke()
}

// onWake follows what the watcher, the budget or the manager said.
func (s *stream) onWake() {
	if s.newMeta.Load() != nil { // a plain load first: this runs at every wake-up
		s.render.SetMeta(*s.newMeta.Swap(nil))
	}
	if s.notices.recheck.Swap(false) {
		s.files.refresh()
	}
	s.onFileEvents()
}

// onFileEvents opens new files (logmon may purge them within
// milliseconds), after noting which held files lost their name (cheap:
// an fstat per held file, and the budget must know them to make room),
// then gives up those the budget asks for.
func (s *stream) onFileEvents() {
	if s.notices.deleted.Swap(false) {
		s.files.noteDeleted()
	}
	s.files.openNew()
	if s.notices.shed.Load() > 0 {
		s.files.giveUpAsked()
	}
	s.files.noteFar()
}

// onPoll is the fallback for lost or missing inotify events.
func (s *stream) onPoll(absDir string) {
	if !s.watched {
		s.subscribe(absDir)
	}
	if s.isWatched() {
		// A safety net against lost events: list the folder. (An
		// unwatched stream polls often, and tries to open the next file
		// instead, which costs less than a listing.)
		s.files.refresh()
	} else {
		s.files.noteDeleted() // no events say so
	}
	if s.files.openNew() == 0 && len(s.files.files) == 0 {
		s.files.refresh()
		s.files.openNew()
	}
	s.onFileEvents()
	if s.files.sawDir && !s.draining() && !s.cfg.Root.Exists(s.id.AllocID) {
		// The alloc dir is gone (GC): nothing new can appear, so the
		// stream drains what its descriptors still hold.
		s.drain()
	}
}
