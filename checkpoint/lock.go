package checkpoint

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ErrLocked means another process holds the checkpoint's lock.
var ErrLocked = errors.New("checkpoint is in use by another process")

// Lock takes an exclusive lock on path+".lock" so that two daemons never
// share a checkpoint and `offsets forget` never edits one a daemon owns.
// The lock dies with the process, so a crash never leaves it stale.
// The lock is taken before Open, so the folder is created here too: a
// fresh host has no /var/lib/nomad-log-forwarder yet.
func Lock(path string) (unlock func() error, err error) {
	name := path + ".lock"
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create checkpoint folder: %w", err)
	}
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file %s: %w", name, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is locked (is a daemon running with this checkpoint?)", ErrLocked, name)
		}
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	return f.Close, nil
}
