package checkpoint

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// The checkpoint, its lock and its temp files are opened without following
// a symlink at the last component, and only regular files are read: the
// offsets CLI runs as root in a folder the daemon's user (65532) may write,
// so a lock replaced by a symlink would make root create a file anywhere,
// and a checkpoint linked to /dev/zero, a FIFO or /etc/shadow would exhaust
// memory, hang, or show a secret's first byte in an error.

// MaxFileBytes is the largest checkpoint read. An entry takes about 150
// bytes, so this is hundreds of thousands of streams: far more than a node
// runs.
const MaxFileBytes = 64 << 20

// NotFoundError says there is no checkpoint file at Path. It matches
// fs.ErrNotExist.
type NotFoundError struct{ Path string }

func (e *NotFoundError) Error() string { return "no checkpoint at " + e.Path }

func (e *NotFoundError) Unwrap() error { return fs.ErrNotExist }

// RefusedError says a checkpoint, lock or temp file is not a regular file
// (a symlink, a device, a FIFO, a folder) or is too large. It never quotes
// the file's content.
type RefusedError struct {
	Path   string
	Reason string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("refusing %s: %s", e.Path, e.Reason)
}

// openNoFollow opens path with flags plus O_NOFOLLOW and O_NONBLOCK (a
// FIFO then opens at once instead of waiting for a writer) and checks
// that it is a regular file.
func openNoFollow(path string, flags int, perm uint32) (*os.File, unix.Stat_t, error) {
	var st unix.Stat_t
	fd, err := unix.Open(path, flags|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, perm)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, st, &RefusedError{Path: path, Reason: "it is a symlink"}
		}
		return nil, st, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, st, &fs.PathError{Op: "fstat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, st, &RefusedError{Path: path, Reason: "not a regular file (" + kindOf(st.Mode) + ")"}
	}
	return os.NewFile(uintptr(fd), path), st, nil
}

// readFile reads the checkpoint at path: a regular file, not a symlink, at
// most MaxFileBytes. A missing file is a *NotFoundError.
func readFile(path string) ([]byte, error) {
	f, st, err := openNoFollow(path, unix.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &NotFoundError{Path: path}
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st.Size > MaxFileBytes {
		return nil, &RefusedError{Path: path, Reason: fmt.Sprintf("%d bytes, more than the %d MiB a checkpoint may have", st.Size, MaxFileBytes>>20)}
	}
	// The file may grow after the fstat: never read more than the cap.
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read checkpoint %s: %w", path, err)
	}
	if len(data) > MaxFileBytes {
		return nil, &RefusedError{Path: path, Reason: fmt.Sprintf("more than the %d MiB a checkpoint may have", MaxFileBytes>>20)}
	}
	return data, nil
}

// exists reports, as an error, whether path is missing (*NotFoundError) or
// not a file that could be a checkpoint.
func exists(path string) error {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return &NotFoundError{Path: path}
		}
		return &fs.PathError{Op: "lstat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return &RefusedError{Path: path, Reason: "it is a symlink"}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return &RefusedError{Path: path, Reason: "not a regular file (" + kindOf(st.Mode) + ")"}
	}
	return nil
}

// owner is the owner and mode a rewrite gives the checkpoint.
type owner struct {
	uid, gid int
	mode     os.FileMode
	known    bool // the file existed: keep its owner
}

// newFileMode is the mode of a checkpoint that did not exist before: its
// alloc IDs are what Nomad hides from other users (the alloc dir is 0711).
const newFileMode = 0o600

// ownerOf is the owner and permission bits of the regular file at path,
// or newFileMode and no owner when there is none (or it is not a regular
// file, which the rename replaces).
func ownerOf(path string) owner {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return owner{mode: newFileMode}
	}
	return owner{uid: int(st.Uid), gid: int(st.Gid), mode: os.FileMode(st.Mode & 0o777), known: true}
}

// apply gives f the owner and mode. When the CLI runs as root on the
// daemon's checkpoint (owned by 65532), the file must stay the daemon's,
// or the daemon fails with "permission denied" and crash-loops. A process
// that is not root cannot give a file away; its chown is skipped when it
// is refused, and the file is then its own, which is what the next reader
// (itself) needs.
func (o owner) apply(f *os.File) error {
	if o.known && (o.uid != os.Geteuid() || o.gid != os.Getegid()) {
		if err := f.Chown(o.uid, o.gid); err != nil && (os.Geteuid() == 0 || !errors.Is(err, unix.EPERM)) {
			return fmt.Errorf("keep the checkpoint's owner %d:%d: %w", o.uid, o.gid, err)
		}
	}
	// Explicitly, so that the umask does not decide.
	if err := f.Chmod(o.mode); err != nil {
		return fmt.Errorf("keep the checkpoint's mode %04o: %w", o.mode, err)
	}
	return nil
}

// createTemp creates a new temp file next to the checkpoint, named
// base+tempInfix+suffix(). O_EXCL|O_NOFOLLOW: a name that exists, a
// symlink included, is never opened; another name is tried.
func createTemp(dir, base string, suffix func() string) (*os.File, error) {
	for range 100 {
		name := filepath.Join(dir, base+tempInfix+suffix())
		f, _, err := openNoFollow(name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, newFileMode)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("create temp file: %w", err)
		}
		return f, nil
	}
	return nil, fmt.Errorf("create temp file in %s: every name tried exists", dir)
}

func randomSuffix() string { return strconv.FormatUint(rand.Uint64(), 36) }

func kindOf(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "a folder"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFLNK:
		return "a symlink"
	}
	return "unknown type"
}
