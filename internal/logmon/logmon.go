// Package logmon imitates Nomad's logmon file rotator for tests, benchmarks
// and the fault suite: numbered files <task>.<stream>.N in a log folder, a
// new index when the current file reaches its size, the oldest files purged
// beyond MaxFiles right after a rotation, lines kept whole near the end of a
// file unless longer than the scan window, and no buffering at all (every
// Write reaches the file at once, partial lines included), which is harsher
// than the real logmon's 100ms flush.
//
// Its Write follows client/logmon/logging/rotator.go of Nomad 2.0.5.
package logmon

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Rotator writes one task stream. It is safe for concurrent use.
type Rotator struct {
	dir  string
	base string // "<task>.<stream>"
	// MaxFiles is how many files are kept, the current one included.
	maxFiles int
	fileSize int64
	// scanLimit is logmon's lineScanLimit (32 KiB for real).
	scanLimit int64

	mu      sync.Mutex
	f       *os.File
	index   int
	written int64 // bytes in the current file
	purged  []int
}

// Options configure a Rotator; zero values are logmon's defaults scaled
// down: 10 files of 1 MiB, a scan window of a quarter of the file size
// (at most 32 KiB).
type Options struct {
	MaxFiles int
	FileSize int64
	// ScanLimit is the window at the end of a file in which logmon looks
	// for a newline to rotate at.
	ScanLimit int64
}

// New opens (or continues, like logmon after a restart) the stream's files
// in dir, which it creates.
func New(dir, task, stream string, o Options) (*Rotator, error) {
	if o.MaxFiles <= 0 {
		o.MaxFiles = 10
	}
	if o.FileSize <= 0 {
		o.FileSize = 1 << 20
	}
	if o.ScanLimit <= 0 {
		o.ScanLimit = min(o.FileSize/4, 32<<10)
	}
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, err
	}
	r := &Rotator{dir: dir, base: task + "." + stream, maxFiles: o.MaxFiles, fileSize: o.FileSize, scanLimit: o.ScanLimit}
	idx := r.indexes()
	if len(idx) > 0 {
		r.index = idx[len(idx)-1]
	}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

// Path is the file of index i.
func (r *Rotator) Path(i int) string { return filepath.Join(r.dir, r.base+"."+strconv.Itoa(i)) }

// Index is the index of the file being written.
func (r *Rotator) Index() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.index
}

// Purged lists the indexes deleted so far.
func (r *Rotator) Purged() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.purged...)
}

func (r *Rotator) open() error {
	f, err := os.OpenFile(r.Path(r.index), os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	r.f, r.written = f, st.Size()
	return nil
}

// pipeChunk is the most logmon's FileRotator.Write receives at once: it
// is fed by io.Copy from the task's fifo, with io.Copy's 32 KiB buffer.
const pipeChunk = 32 << 10

// Write appends p the way logmon does: in chunks of at most 32 KiB, each
// written as FileRotator.Write writes it.
func (r *Rotator) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var nw int
	for nw < len(p) {
		n, err := r.writeChunk(p[nw:min(len(p), nw+pipeChunk)])
		nw += n
		if err != nil {
			return nw, err
		}
	}
	return nw, nil
}

// writeChunk is FileRotator.Write. Given more than a file's size at once
// with a newline after a line longer than a file, it would rotate forever;
// logmon never is.
func (r *Rotator) writeChunk(p []byte) (int, error) {
	var nw int
	forceRotate := false
	for nw < len(p) {
		if forceRotate || r.written >= r.fileSize {
			if err := r.rotate(); err != nil {
				return nw, err
			}
			forceRotate = false
		}
		remainingSpace := r.fileSize - r.written
		remainingToWrite := int64(len(p) - nw)
		var chunk []byte
		switch {
		case remainingSpace-r.scanLimit >= remainingToWrite:
			chunk = p[nw:]
		default:
			i := bytes.IndexByte(p[nw:], '\n')
			switch {
			case i >= 0 && int64(i+1) <= remainingSpace:
				chunk = p[nw : nw+i+1]
			case i >= 0:
				forceRotate = true
				continue
			case remainingToWrite > r.fileSize:
				chunk = p[nw : nw+int(remainingSpace)] // splits a line
			case r.written == 0:
				chunk = p[nw:] // an empty file takes it: rotating would not help
			default:
				forceRotate = true
				continue
			}
		}
		n, err := r.f.Write(chunk)
		nw += n
		r.written += int64(n)
		if err != nil {
			return nw, err
		}
	}
	return nw, nil
}

func (r *Rotator) rotate() error {
	if err := r.f.Close(); err != nil {
		return err
	}
	r.index++
	if err := r.open(); err != nil {
		return err
	}
	return r.purge()
}

// purge deletes all but the newest maxFiles files, as logmon's
// purgeOldFiles does right after a rotation.
func (r *Rotator) purge() error {
	idx := r.indexes()
	if len(idx) <= r.maxFiles {
		return nil
	}
	for _, i := range idx[:len(idx)-r.maxFiles] {
		if err := os.RemoveAll(r.Path(i)); err != nil {
			return err
		}
		r.purged = append(r.purged, i)
	}
	return nil
}

func (r *Rotator) indexes() []int {
	entries, _ := os.ReadDir(r.dir)
	var idx []int
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), r.base+".")
		if !ok {
			continue
		}
		if i, err := strconv.Atoi(rest); err == nil {
			idx = append(idx, i)
		}
	}
	sort.Ints(idx)
	return idx
}

// Close closes the current file.
func (r *Rotator) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}

// AllocLogDir creates and returns <allocDir>/<allocID>/alloc/logs.
func AllocLogDir(allocDir, allocID string) (string, error) {
	dir := filepath.Join(allocDir, allocID, "alloc", "logs")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return "", fmt.Errorf("create log folder: %w", err)
	}
	return dir, nil
}
