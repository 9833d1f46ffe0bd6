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

// eventRound is how long the watcher lets inotify events gather after it
// read some. On a node with a thousand streams logmon writes ten thousand
// times a second; reading each event as it comes (as fsnotify does) wakes
// a thread per write, and the runtime's wake-ups, not the reading, were
// most of the daemon's CPU. Reading in rounds costs a line at most this
// much latency (logmon itself holds lines up to 100 ms); an isolated write
// is still read at once.
const eventRound = 25 * time.Millisecond

// watchMask: a file of the folder was created, written or moved in, or the
// folder itself went away.
const watchMask = unix.IN_CREATE | unix.IN_MODIFY | unix.IN_MOVED_TO | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR

// waker is what the watcher tells about a stream's files: index is the
// file an event named, or -1 when the event says nothing about one (the
// folder went away, events were lost).
type waker interface {
	notify(index int64)
}

// Watcher turns inotify events on alloc log folders into wake-ups of the
// streams whose files they name. One Watcher serves every stream; it is
// safe for concurrent use. It reads the inotify descriptor itself, in
// rounds (see eventRound), with one watch per folder.
type Watcher struct {
	inotify int // non-blocking inotify descriptor
	stop    int // eventfd that interrupts Run's wait
	log     *zap.Logger

	// dead: the watcher stopped and delivers no more events. An atomic,
	// so that streams, which ask at every poll, need not take mu.
	dead atomic.Bool

	mu     sync.Mutex
	closed bool
	dirs   map[string]*watchedDir
	byWD   map[int32]*watchedDir
}

type watchedDir struct {
	path string
	wd   int32
	subs map[string]waker // "<task>.<stream>" -> stream
}

// NewWatcher starts an inotify instance. If the kernel refuses one (limits
// reached), streams fall back to polling.
func NewWatcher(log *zap.Logger) (*Watcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify_init1: %w", err)
	}
	stop, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	return &Watcher{inotify: fd, stop: stop, log: log, dirs: make(map[string]*watchedDir), byWD: make(map[int32]*watchedDir)}, nil
}

// Run dispatches events until ctx ends, then closes the inotify instance.
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
	round := time.NewTimer(time.Hour)
	defer round.Stop()
	for {
		// Block in poll (not in the runtime's netpoller, which would wake
		// a thread for every event even while this goroutine waits out
		// its round) until there are events or Run must stop.
		fds := []unix.PollFd{{Fd: int32(w.inotify), Events: unix.POLLIN}, {Fd: int32(w.stop), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, -1); err != nil && !errors.Is(err, unix.EINTR) {
			w.log.Error("waiting for inotify events failed; streams fall back to their polls", zap.Error(err))
			return
		}
		if ctx.Err() != nil {
			return
		}
		if err := w.readAll(buf); err != nil {
			w.log.Error("reading inotify events failed; streams fall back to their polls", zap.Error(err))
			return
		}
		round.Reset(eventRound)
		select {
		case <-ctx.Done():
			return
		case <-round.C:
		}
	}
}

// readAll reads and dispatches every queued event.
func (w *Watcher) readAll(buf []byte) error {
	for {
		n, err := unix.Read(w.inotify, buf)
		switch {
		case errors.Is(err, unix.EAGAIN):
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return fmt.Errorf("read inotify events: %w", err)
		}
		w.dispatch(buf[:n])
	}
}

// dispatch wakes the streams that the events in buf concern.
func (w *Watcher) dispatch(buf []byte) {
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
				d.notifyAll()
			}
			continue
		}
		d := w.byWD[ev.Wd]
		if d == nil {
			continue
		}
		if ev.Mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF|unix.IN_IGNORED) != 0 {
			// The folder went away (alloc GC): every stream in it must
			// look at what it still holds.
			if ev.Mask&unix.IN_IGNORED != 0 { // the kernel dropped the watch
				delete(w.byWD, d.wd)
				delete(w.dirs, d.path)
			}
			d.notifyAll()
			continue
		}
		task, stream, index, ok := enrich.ParseLogFileName(string(name))
		if !ok {
			continue
		}
		if s := d.subs[task+"."+stream]; s != nil {
			s.notify(index)
		}
	}
}

func (d *watchedDir) notifyAll() {
	for _, s := range d.subs {
		s.notify(-1)
	}
}

// subscribe asks for s to be woken by events on the files of task.stream
// in dir. It reports false when the folder cannot be watched (it does not
// exist yet, or inotify limits are reached): the stream must poll.
func (w *Watcher) subscribe(dir, task, stream string, s waker) bool {
	if w == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return false
	}
	d := w.dirs[dir]
	if d == nil {
		wd, err := unix.InotifyAddWatch(w.inotify, dir, watchMask)
		if err != nil {
			return false
		}
		d = &watchedDir{path: dir, wd: int32(wd), subs: make(map[string]waker)}
		w.dirs[dir], w.byWD[d.wd] = d, d
	}
	d.subs[task+"."+stream] = s
	return true
}

// unsubscribe undoes subscribe; the folder's watch goes with its last stream.
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
		delete(w.byWD, d.wd)
		if !w.closed {
			_, _ = unix.InotifyRmWatch(w.inotify, uint32(d.wd)) // fails harmlessly when the folder is gone
		}
	}
}

func (w *Watcher) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	w.dead.Store(true)
	unix.Close(w.inotify)
	unix.Close(w.stop)
	// No more events will come: every stream must look for itself now
	// (alive says so from here on).
	for _, d := range w.dirs {
		for _, s := range d.subs {
			s.notify(-1)
		}
	}
}

// alive reports whether the watcher still delivers events; streams that
// relied on it poll often once it does not.
func (w *Watcher) alive() bool { return w != nil && !w.dead.Load() }
