package checkpoint

import (
	"errors"
	"fmt"
	"io/fs"
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
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create checkpoint folder: %w", err)
	}
	return lockFile(path)
}

// LockExisting is Lock for a checkpoint that must exist already (the
// offsets CLI): a missing one is a *NotFoundError, and no folder or file is
// created for it.
func LockExisting(path string) (unlock func() error, err error) {
	if err := exists(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) && heldByOther(path) {
			// A daemon that just started has its lock but no file yet.
			return nil, fmt.Errorf("%w: %s.lock is locked (is a daemon running with this checkpoint?)", ErrLocked, path)
		}
		return nil, err
	}
	return lockFile(path)
}

// heldByOther reports whether path's lock file exists and another process
// holds it. It creates nothing.
func heldByOther(path string) bool {
	f, _, err := openNoFollow(path+".lock", unix.O_RDONLY, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return errors.Is(err, unix.EWOULDBLOCK)
	}
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}

func lockFile(path string) (unlock func() error, err error) {
	name := path + ".lock"
	// Read-only: flock needs no write access, so a lock file that root
	// created (offsets forget) still opens for the daemon's user.
	f, _, err := openNoFollow(name, unix.O_RDONLY|unix.O_CREAT|unix.O_EXCL, 0o644)
	if err == nil {
		// Created here: 0644 whatever the umask, for the same reason.
		if err := f.Chmod(0o644); err != nil {
			f.Close()
			return nil, fmt.Errorf("chmod lock file %s: %w", name, err)
		}
	} else if errors.Is(err, fs.ErrExist) {
		f, _, err = openNoFollow(name, unix.O_RDONLY, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
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
