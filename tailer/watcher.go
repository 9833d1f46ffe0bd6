package tailer

import (
	"context"
	"errors"
	"path/filepath"
	"sync"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/enrich"
)

// waker is what the watcher tells about a stream's files: index is the
// file an event named, or -1 when the event says nothing about one (the
// folder went away, events were lost).
type waker interface {
	notify(index int64)
}

// Watcher turns inotify events on alloc log folders into wake-ups of the
// streams whose files they name. One Watcher serves every stream; it is
// safe for concurrent use.
type Watcher struct {
	fsw *fsnotify.Watcher
	log *zap.Logger

	mu   sync.Mutex
	dirs map[string]map[string]waker // folder -> "<task>.<stream>" -> stream
}

// NewWatcher starts an inotify instance. If the kernel refuses one (limits
// reached), streams fall back to polling.
func NewWatcher(log *zap.Logger) (*Watcher, error) {
	fsw, err := fsnotify.NewBufferedWatcher(1024)
	if err != nil {
		return nil, err
	}
	return &Watcher{fsw: fsw, log: log, dirs: make(map[string]map[string]waker)}, nil
}

// Run dispatches events until ctx ends, then closes the inotify instance.
func (w *Watcher) Run(ctx context.Context) {
	defer w.fsw.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return
			}
			w.dispatch(ev)
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				w.log.Warn("inotify queue overflowed; waking every stream to look for itself")
			} else {
				w.log.Warn("inotify error; waking every stream", zap.Error(err))
			}
			w.wakeAll()
		}
	}
}

func (w *Watcher) dispatch(ev fsnotify.Event) {
	dir, name := filepath.Split(ev.Name)
	dir = filepath.Clean(dir)
	w.mu.Lock()
	defer w.mu.Unlock()
	if subs, ok := w.dirs[ev.Name]; ok && ev.Has(fsnotify.Remove|fsnotify.Rename) {
		// The folder itself went away (alloc GC): every stream in it must
		// look at what it still holds.
		for _, s := range subs {
			s.notify(-1)
		}
		return
	}
	subs := w.dirs[dir]
	if subs == nil {
		return
	}
	task, stream, index, ok := enrich.ParseLogFileName(name)
	if !ok {
		return
	}
	if s := subs[task+"."+stream]; s != nil {
		s.notify(index)
	}
}

func (w *Watcher) wakeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, subs := range w.dirs {
		for _, s := range subs {
			s.notify(-1)
		}
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
	subs := w.dirs[dir]
	if subs == nil {
		if err := w.fsw.Add(dir); err != nil {
			return false
		}
		subs = make(map[string]waker)
		w.dirs[dir] = subs
	}
	subs[task+"."+stream] = s
	return true
}

// unsubscribe undoes subscribe; the folder's watch goes with its last stream.
func (w *Watcher) unsubscribe(dir, task, stream string) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	subs := w.dirs[dir]
	if subs == nil {
		return
	}
	delete(subs, task+"."+stream)
	if len(subs) == 0 {
		delete(w.dirs, dir)
		_ = w.fsw.Remove(dir) // fails harmlessly when the folder is gone
	}
}
