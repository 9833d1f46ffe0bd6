package tailer

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// logFile is an open log file of a stream. It belongs to the stream's
// goroutine, like the fileSet that holds it.
type logFile struct {
	f     *os.File
	fd    int // f's descriptor, read with pread
	index int64
	dev   uint64
	ino   uint64
	// unlinked: the file is no longer in its folder (purged by logmon, or
	// its alloc dir was deleted); only this descriptor keeps its bytes.
	// size is its size then: nobody writes a file logmon purged.
	unlinked bool
	size     int64
	// holeLogged: a hole in this file was reported already.
	holeLogged bool
}

func openLogFile(f *os.File, index int64) (*logFile, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("fstat %s: %w", f.Name(), err)
	}
	return &logFile{f: f, fd: int(f.Fd()), index: index, dev: uint64(st.Dev), ino: st.Ino}, nil
}

// readAt is one pread. Unlike os.File.ReadAt it does not read again after
// a short read: on a log file that is its end as it is now, and a second
// system call per wake-up is measurable on a node with many streams.
func (lf *logFile) readAt(buf []byte, off int64) (int, error) {
	for {
		n, err := syscall.Pread(lf.fd, buf, off)
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return 0, &os.PathError{Op: "pread", Path: lf.f.Name(), Err: err}
		}
		return n, nil
	}
}

// dataAt looks for a hole at off: logmon never writes one, but a file
// grown with truncate(2) is all hole, and reading its zeros would cost a
// core until the end. It returns where the data after off begins: off
// itself when off is in data, the file's size when only a hole follows.
func (lf *logFile) dataAt(off int64) int64 {
	next, err := unix.Seek(lf.fd, off, unix.SEEK_DATA)
	switch {
	case errors.Is(err, unix.ENXIO):
		return max(off, lf.currentSize())
	case err != nil:
		return off // no hole support here: read on
	}
	return next
}

// holeAfter is where the first hole after off begins (the file's size
// when there is none).
func (lf *logFile) holeAfter(off int64) int64 {
	h, err := unix.Seek(lf.fd, off, unix.SEEK_HOLE)
	if err != nil {
		return -1
	}
	return h
}

// stat refreshes what the file's inode says: whether it still has a
// name, and its size.
func (lf *logFile) stat() (links uint64, size int64, err error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(lf.fd, &st); err != nil {
		return 0, 0, fmt.Errorf("fstat %s: %w", lf.f.Name(), err)
	}
	return uint64(st.Nlink), st.Size, nil
}

func (lf *logFile) currentSize() int64 {
	_, size, err := lf.stat()
	if err != nil {
		return -1
	}
	return size
}

func (lf *logFile) close() {
	if lf.f != nil {
		lf.f.Close()
		lf.f = nil
	}
}

// lastLineEnd is the offset just after the last newline in the file's last
// 64 KiB (or its size when there is none), where --read-from end starts.
func (lf *logFile) lastLineEnd() int64 {
	size := lf.currentSize()
	if size <= 0 {
		return 0
	}
	start := max(0, size-64<<10)
	buf := make([]byte, size-start)
	n, _ := lf.f.ReadAt(buf, start)
	for i := n - 1; i >= 0; i-- {
		if buf[i] == '\n' {
			return start + int64(i) + 1
		}
	}
	return size
}
