package safefs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// RefusedError reports a path that exists but must not be read: a symlink
// or a file that is not regular. Target is what a symlink pointed at.
type RefusedError struct {
	Path   string
	Reason string // "symlink" or "not a regular file" or "not a directory"
	Target string
}

func (e *RefusedError) Error() string {
	if e.Target != "" {
		return fmt.Sprintf("refusing %s: %s to %q", e.Path, e.Reason, e.Target)
	}
	return fmt.Sprintf("refusing %s: %s", e.Path, e.Reason)
}

// IsRefused reports whether err is a RefusedError.
func IsRefused(err error) bool {
	var r *RefusedError
	return errors.As(err, &r)
}

// Root is an open alloc dir. Its methods are safe for concurrent use.
type Root struct {
	path string
	fd   int
	// noOpenat2 is set once the kernel said it lacks openat2.
	noOpenat2 atomic.Bool
}

// OpenRoot opens the alloc dir itself. The root may be reached through
// symlinks (an operator's choice); nothing below it may.
func OpenRoot(path string) (*Root, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("resolve alloc dir %s: %w", path, err)
	}
	// O_PATH: the root is only ever a starting point for *at calls, and
	// Nomad makes <data_dir>/alloc mode 0711, which a non-root daemon may
	// traverse but not read (open it for reading).
	fd, err := unix.Open(abs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open alloc dir %s: %w", abs, &fs.PathError{Op: "open", Path: abs, Err: err})
	}
	return &Root{path: abs, fd: fd}, nil
}

// Path is the alloc dir's absolute path.
func (r *Root) Path() string { return r.path }

// Close releases the root's descriptor.
func (r *Root) Close() error { return unix.Close(r.fd) }

// Join returns the absolute path of rel below the root.
func (r *Root) Join(rel string) string { return filepath.Join(r.path, rel) }

// OpenFile opens the regular file at rel (slash-separated, below the root)
// for reading. A missing file gives an error for which errors.Is(err,
// fs.ErrNotExist) holds; a symlink or special file gives a *RefusedError.
func (r *Root) OpenFile(rel string) (*os.File, error) {
	fd, err := r.open(rel, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("fstat %s: %w", r.Join(rel), err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, &RefusedError{Path: r.Join(rel), Reason: "not a regular file (" + modeName(st.Mode) + ")"}
	}
	if st.Nlink > 1 {
		unix.Close(fd)
		return nil, hardLinked(r.Join(rel), uint64(st.Nlink))
	}
	// O_NOATIME as well: reading a file just written would otherwise
	// update its access time, an inode write per read (6% of the daemon's
	// CPU with a thousand busy streams). Only the file's owner or root may
	// set it; others read without.
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err == nil {
		_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFL, flags&^unix.O_NONBLOCK|unix.O_NOATIME)
		if errors.Is(err, unix.EPERM) {
			_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFL, flags&^unix.O_NONBLOCK)
		}
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("clear O_NONBLOCK on %s: %w", r.Join(rel), err)
	}
	return os.NewFile(uintptr(fd), r.Join(rel)), nil
}

// OpenDir opens the directory at rel below the root ("." is the root),
// refusing symlinks.
func (r *Root) OpenDir(rel string) (*os.File, error) {
	fd, err := r.open(rel, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		if errors.Is(err, unix.ENOTDIR) {
			return nil, &RefusedError{Path: r.Join(rel), Reason: "not a directory"}
		}
		return nil, err
	}
	return os.NewFile(uintptr(fd), r.Join(rel)), nil
}

// Size is the size of the regular file at rel below the root, looked at
// without opening it: the folder is opened beneath the root as OpenDir
// does, and the leaf is stat'ed with AT_SYMLINK_NOFOLLOW. A missing file
// gives an error for which errors.Is(err, fs.ErrNotExist) holds; a symlink
// or special file gives a *RefusedError, as OpenFile does.
func (r *Root) Size(rel string) (int64, error) {
	if err := checkRel(rel); err != nil {
		return 0, err
	}
	parent, name := ".", rel
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		parent, name = rel[:i], rel[i+1:]
	}
	if name == "." {
		return 0, &RefusedError{Path: r.path, Reason: "not a regular file (directory)"}
	}
	d, err := r.OpenDir(parent)
	if err != nil {
		return 0, err
	}
	defer d.Close()
	return SizeIn(d, name)
}

// SizeIn is Size for the file name (one path component) in dir, a folder
// opened with OpenDir: one fstatat per file, for callers that look at
// many files of one folder.
func SizeIn(dir *os.File, name string) (int64, error) {
	path := dir.Name() + "/" + name
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return 0, fmt.Errorf("%q is not a file name", name)
	}
	var st unix.Stat_t
	if err := unix.Fstatat(int(dir.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return 0, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		if st.Nlink > 1 {
			return 0, hardLinked(path, uint64(st.Nlink))
		}
		return st.Size, nil
	case unix.S_IFLNK:
		buf := make([]byte, 4096)
		n, err := unix.Readlinkat(int(dir.Fd()), name, buf)
		if err != nil {
			n = 0
		}
		return 0, &RefusedError{Path: path, Reason: "symlink", Target: string(buf[:n])}
	}
	return 0, &RefusedError{Path: path, Reason: "not a regular file (" + modeName(st.Mode) + ")"}
}

// hardLinked refuses a regular file with more than one name. logmon creates
// each log file once and never links it; a second name means someone
// linked a file in from elsewhere on the filesystem (as root the daemon
// could read any file a task managed to link, such as a root-only secret
// where fs.protected_hardlinks is 0).
func hardLinked(path string, links uint64) error {
	return &RefusedError{Path: path, Reason: fmt.Sprintf("a regular file with %d hard links (logmon's files have one)", links)}
}

// Exists reports whether rel names something below the root, without
// following symlinks (a dangling symlink exists).
func (r *Root) Exists(rel string) bool {
	var st unix.Stat_t
	err := unix.Fstatat(r.fd, rel, &st, unix.AT_SYMLINK_NOFOLLOW)
	return err == nil
}

// IsFile reports whether rel (not followed if a symlink) is the file with
// device dev and inode ino: whether a file still has its name.
func (r *Root) IsFile(rel string, dev, ino uint64) bool {
	if checkRel(rel) != nil {
		return false
	}
	var st unix.Stat_t
	if unix.Fstatat(r.fd, rel, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
		return false
	}
	return uint64(st.Dev) == dev && st.Ino == ino
}

func (r *Root) open(rel string, flags int) (int, error) {
	if err := checkRel(rel); err != nil {
		return -1, err
	}
	flags |= unix.O_CLOEXEC | unix.O_NOFOLLOW
	if !r.noOpenat2.Load() {
		fd, err := unix.Openat2(r.fd, rel, &unix.OpenHow{
			Flags:   uint64(flags),
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		})
		switch {
		case err == nil:
			return fd, nil
		case errors.Is(err, unix.ENOSYS):
			r.noOpenat2.Store(true)
		case errors.Is(err, unix.EPERM):
			// Some container runtimes' seccomp profiles answer EPERM for
			// syscalls they do not know; the fallback below decides.
		default:
			return -1, r.explain(rel, err)
		}
	}
	return r.openByComponent(rel, flags)
}

// openByComponent is the fallback for kernels without openat2: walk rel one
// component at a time, each opened with O_NOFOLLOW relative to its parent.
func (r *Root) openByComponent(rel string, flags int) (int, error) {
	parts := strings.Split(rel, "/")
	dir := r.fd
	for i, part := range parts {
		last := i == len(parts)-1
		f := unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
		if last {
			f = flags
		}
		fd, err := unix.Openat(dir, part, f, 0)
		if dir != r.fd {
			unix.Close(dir)
		}
		if err != nil {
			return -1, r.explain(strings.Join(parts[:i+1], "/"), err)
		}
		dir = fd
	}
	return dir, nil
}

// explain turns an open error into one that says what was refused.
func (r *Root) explain(rel string, err error) error {
	path := r.Join(rel)
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOTDIR) {
		// Some component is a symlink (ELOOP from O_NOFOLLOW or
		// RESOLVE_NO_SYMLINKS, EXDEV from RESOLVE_BENEATH): find which.
		if link, target, ok := r.findSymlink(rel); ok {
			return &RefusedError{Path: r.Join(link), Reason: "symlink", Target: target}
		}
	}
	if errors.Is(err, unix.ENXIO) {
		// Opening a unix socket file.
		return &RefusedError{Path: path, Reason: "not a regular file (socket)"}
	}
	return &fs.PathError{Op: "open", Path: path, Err: err}
}

func (r *Root) findSymlink(rel string) (link, target string, ok bool) {
	parts := strings.Split(rel, "/")
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		var st unix.Stat_t
		if unix.Fstatat(r.fd, p, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
			return "", "", false
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			buf := make([]byte, 4096)
			n, err := unix.Readlinkat(r.fd, p, buf)
			if err != nil {
				n = 0
			}
			return p, string(buf[:n]), true
		}
	}
	return "", "", false
}

func checkRel(rel string) error {
	if rel == "." {
		return nil // the root itself
	}
	if rel == "" || strings.HasPrefix(rel, "/") {
		return fmt.Errorf("path %q is not relative to the alloc dir", rel)
	}
	for _, part := range strings.Split(rel, "/") {
		if part == "" || part == "." || part == ".." || strings.ContainsRune(part, 0) {
			return fmt.Errorf("path %q leaves the alloc dir or is malformed", rel)
		}
	}
	return nil
}

func modeName(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFBLK:
		return "block device"
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFLNK:
		return "symlink"
	}
	return "unknown type"
}
