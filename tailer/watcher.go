package tailer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/enrich"
)

// eventRound is how long the watcher lets write events gather after it
// read some. On a node with a thousand streams logmon writes ten thousand
// times a second; reading each event as it comes (as fsnotify does) wakes
// a thread per write, and the runtime's wake-ups, not the reading, were
// most of the daemon's CPU. Reading in rounds costs a line at most a
// round of latency (logmon itself holds lines up to 100 ms); an isolated
// write is still read at once. Creations and deletions never wait for a round:
// they come through an inotify instance of their own (see Watcher).
const eventRound = 25 * time.Millisecond

// On a busy node a round grows with the writes it gathered, up to
// maxEventRound: every write event costs its stream a wake-up (a read, a
// batch, an ack, a commit), and at 5,000 streams writing 20 lines a second
// those wake-ups, not the lines, were nearly all of the daemon's CPU. A
// longer round lets one wake-up take several writes. Each roundStepEvents
// events in a round lengthen the next by eventRound; a quiet node keeps
// 25 ms rounds.
const (
	maxEventRound   = 100 * time.Millisecond
	roundStepEvents = 1000
)

// nextRoundLength is how long the round after one that dispatched events
// write events lasts.
func nextRoundLength(events int) time.Duration {
	return min(eventRound+time.Duration(events/roundStepEvents)*eventRound, maxEventRound)
}

// Two inotify instances watch each folder: one for the events that must
// reach their stream at once (a new file, which logmon may purge within
// milliseconds; a deleted one; the folder going away), one for writes,
// read in rounds.
const (
	nowMask    = unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_DELETE | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR
	roundsMask = unix.IN_MODIFY | unix.IN_ONLYDIR
)

// Watcher turns inotify events on alloc log folders into wake-ups of the
// streams whose files they name. One Watcher serves every stream; it is
// safe for concurrent use. Run reads both inotify descriptors itself.
type Watcher struct {
	now    int // non-blocking inotify descriptor: creations, deletions
	rounds int // non-blocking inotify descriptor: writes, read in rounds
	stop   int // eventfd that interrupts Run's wait
	log    *zap.Logger
	// maxWatches caps the watches this Watcher adds (0: none but the
	// kernel's max_user_watches); a folder beyond it is not watched and
	// its streams poll.
	maxWatches int

	// dead: the watcher stopped and delivers no more events. An atomic,
	// so that streams, which ask at every poll, need not take mu.
	dead atomic.Bool
	// watches is how many inotify watches the Watcher holds (two per
	// folder), for nlf_inotify_watches.
	watches atomic.Int64

	mu     sync.Mutex
	closed bool
	dirs   map[string]*watchedDir
	byWD   map[wdKey]*watchedDir
}

// wdKey names a watch: watch descriptors are per inotify instance.
type wdKey struct {
	rounds bool
	wd     int32
}

type watchedDir struct {
	path            string
	nowWD, roundsWD int32
	subs            map[string]waker // "<task>.<stream>" -> stream
	listing         sharedListing
}

// NewWatcher starts two inotify instances. If the kernel refuses them
// (limits reached), streams fall back to polling. maxWatches caps the
// watches (0: only the kernel's limit).
func NewWatcher(log *zap.Logger, maxWatches int) (*Watcher, error) {
	now, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify_init1: %w", err)
	}
	rounds, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		unix.Close(now)
		return nil, fmt.Errorf("inotify_init1: %w", err)
	}
	stop, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(now)
		unix.Close(rounds)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	return &Watcher{now: now, rounds: rounds, stop: stop, log: log, maxWatches: maxWatches,
		dirs: make(map[string]*watchedDir), byWD: make(map[wdKey]*watchedDir)}, nil
}

// Watches is how many inotify watches the Watcher holds.
func (w *Watcher) Watches() int64 {
	if w == nil {
		return 0
	}
	return w.watches.Load()
}

// Run dispatches events until ctx ends, then closes the inotify instances.
func (w *Watcher) Run(ctx context.Context) {
	// The interrupter wakes the wait in poll when ctx ends; it is done
	// before the descriptors are closed.
	exited := make(chan struct{})
	var interrupter sync.WaitGroup
	interrupter.Go(func() {
		select {
		case <-ctx.Done():
			unix.Write(w.stop, []byte{1, 0, 0, 0, 0, 0, 0, 0})
		case <-exited:
		}
	})
	defer func() {
		close(exited)
		interrupter.Wait()
		w.close()
	}()
	buf := make([]byte, 64<<10)
	// nextRound is when writes may be read again (zero: at once).
	var nextRound time.Time
	for {
		// Block in poll (not in the runtime's netpoller, which would wake
		// a thread for every event even while this goroutine waits out
		// its round) until there are events or Run must stop. During a
		// round only creations and deletions are waited for.
		fds := []unix.PollFd{{Fd: int32(w.stop), Events: unix.POLLIN}, {Fd: int32(w.now), Events: unix.POLLIN}}
		timeout := -1
		if wait := time.Until(nextRound); wait > 0 {
			timeout = int(wait.Milliseconds()) + 1
		} else {
			fds = append(fds, unix.PollFd{Fd: int32(w.rounds), Events: unix.POLLIN})
		}
		if _, err := unix.Poll(fds, timeout); err != nil && !errors.Is(err, unix.EINTR) {
			w.log.Error("waiting for inotify events failed; streams fall back to their polls", zap.Error(err))
			return
		}
		if ctx.Err() != nil {
			return
		}
		if fds[1].Revents != 0 {
			if _, err := w.readAll(w.now, false, buf); err != nil {
				w.log.Error("reading inotify events failed; streams fall back to their polls", zap.Error(err))
				return
			}
		}
		if len(fds) == 3 && fds[2].Revents != 0 {
			events, err := w.readAll(w.rounds, true, buf)
			if err != nil {
				w.log.Error("reading inotify events failed; streams fall back to their polls", zap.Error(err))
				return
			}
			nextRound = time.Now().Add(nextRoundLength(events))
		}
	}
}

// readAll reads and dispatches every queued event of one instance, and
// says how many reached a stream.
func (w *Watcher) readAll(fd int, rounds bool, buf []byte) (events int, err error) {
	for {
		n, err := unix.Read(fd, buf)
		switch {
		case errors.Is(err, unix.EAGAIN):
			return events, nil
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return events, fmt.Errorf("read inotify events: %w", err)
		}
		events += w.dispatch(buf[:n], rounds)
	}
}

// dispatch wakes the streams that the events in buf concern, and says how
// many events reached a stream.
func (w *Watcher) dispatch(buf []byte, rounds bool) (events int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(buf) >= unix.SizeofInotifyEvent {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[0]))
		end := unix.SizeofInotifyEvent + int(ev.Len)
		name, _, _ := bytes.Cut(buf[unix.SizeofInotifyEvent:end], []byte{0}) // the name is NUL-padded
		buf = buf[end:]

		if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
			w.log.Warn("inotify queue overflowed; waking every stream to look for itself")
			for _, d := range w.dirs {
				d.listing.changed()
				d.notifyAll()
			}
			continue
		}
		d := w.byWD[wdKey{rounds, ev.Wd}]
		if d == nil {
			continue
		}
		if ev.Mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF|unix.IN_IGNORED) != 0 {
			// The folder went away (alloc GC): every stream in it must
			// look at what it still holds.
			if ev.Mask&unix.IN_IGNORED != 0 { // the kernel dropped the watch
				delete(w.byWD, wdKey{rounds, ev.Wd})
				w.watches.Add(-1)
				if w.byWD[wdKey{false, d.nowWD}] != d && w.byWD[wdKey{true, d.roundsWD}] != d {
					delete(w.dirs, d.path) // a folder made again later is watched anew
				}
			}
			d.listing.changed()
			d.notifyAll()
			continue
		}
		task, stream, index, ok := enrich.ParseLogFileName(string(name))
		if !ok {
			continue
		}
		kind := fileWritten
		switch {
		case ev.Mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0:
			kind = fileCreated
			d.listing.changed()
		case ev.Mask&unix.IN_DELETE != 0:
			kind = fileDeleted
			d.listing.changed()
		}
		if s := d.subs[task+"."+stream]; s != nil {
			s.notify(index, kind)
			events++
		}
	}
	return events
}

func (d *watchedDir) notifyAll() {
	for _, s := range d.subs {
		s.notify(-1, lookAgain)
	}
}

// subscribe asks for s to be woken by events on the files of task.stream
// in dir, and returns the folder's listing, which the folder's streams
// share. It returns nil when the folder cannot be watched (it does not
// exist yet, or inotify limits are reached): the stream must poll.
func (w *Watcher) subscribe(dir, task, stream string, s waker) *sharedListing {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	d := w.dirs[dir]
	if d == nil {
		if w.maxWatches > 0 && w.watches.Load()+2 > int64(w.maxWatches) {
			return nil
		}
		nowWD, err := unix.InotifyAddWatch(w.now, dir, nowMask)
		if err != nil {
			w.noteWatchError(dir, err)
			return nil
		}
		roundsWD, err := unix.InotifyAddWatch(w.rounds, dir, roundsMask)
		if err != nil {
			_, _ = unix.InotifyRmWatch(w.now, uint32(nowWD))
			w.noteWatchError(dir, err)
			return nil
		}
		d = &watchedDir{path: dir, nowWD: int32(nowWD), roundsWD: int32(roundsWD), subs: make(map[string]waker)}
		w.dirs[dir] = d
		w.byWD[wdKey{false, d.nowWD}], w.byWD[wdKey{true, d.roundsWD}] = d, d
		w.watches.Add(2)
	}
	d.subs[task+"."+stream] = s
	return &d.listing
}

// noteWatchError logs once when the kernel's watch limit is reached: the
// streams of that folder, and of later ones, poll instead.
func (w *Watcher) noteWatchError(dir string, err error) {
	if errors.Is(err, unix.ENOSPC) {
		w.log.Warn("inotify watch limit reached (fs.inotify.max_user_watches); streams of this folder poll instead",
			zap.String("folder", dir), zap.Int64("watches", w.watches.Load()))
	}
}

// unsubscribe undoes subscribe; the folder's watches go with its last
// stream.
func (w *Watcher) unsubscribe(dir, task, stream string) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	d := w.dirs[dir]
	if d == nil {
		return
	}
	delete(d.subs, task+"."+stream)
	if len(d.subs) == 0 {
		delete(w.dirs, dir)
		for _, k := range []wdKey{{false, d.nowWD}, {true, d.roundsWD}} {
			if w.byWD[k] != d {
				continue // the kernel dropped it already (IN_IGNORED)
			}
			delete(w.byWD, k)
			w.watches.Add(-1)
			if !w.closed {
				fd := w.now
				if k.rounds {
					fd = w.rounds
				}
				_, _ = unix.InotifyRmWatch(fd, uint32(k.wd)) // fails harmlessly when the folder is gone
			}
		}
	}
}

func (w *Watcher) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	w.dead.Store(true)
	unix.Close(w.now)
	unix.Close(w.rounds)
	unix.Close(w.stop)
	// No more events will come: every stream must look for itself now
	// (alive says so from here on).
	for _, d := range w.dirs {
		d.notifyAll()
	}
}

// alive reports whether the watcher still delivers events; streams that
// relied on it poll often once it does not.
func (w *Watcher) alive() bool { return w != nil && !w.dead.Load() }
