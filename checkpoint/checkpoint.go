package checkpoint

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/taskstream"
)

// FormatVersion is written into every file. Version 2 added the entries of
// task events (EventTime, EventSeq); a version 1 file has none and loads as
// it is. A file of a version above FormatVersion is refused rather than
// misread: a binary of version 1 refuses a version 2 file the same way
// ("format version 2, this build reads 1"), because it would take the event
// entries for log streams and drop their times at its next save, so that
// every task's events would be sent again after the upgrade that follows.
const FormatVersion = 2

// minFormatVersion is the oldest version this build still reads.
const minFormatVersion = 1

// ErrNewerVersion is in the chain of the *CorruptError for a file written by
// a newer version of the forwarder.
var ErrNewerVersion = errors.New("written by a newer version of nomad-log-forwarder")

// Entry is the committed position of one task stream: the first byte of the
// first line not yet confirmed written, in file <task>.<stream>.<FileIndex>,
// whose device and inode were Dev and Inode.
//
// The entry of a task's events (Stream taskstream.Events, see EventMark)
// has no file: its FileIndex, Offset, Dev and Inode are 0, and EventTime
// and EventSeq say which events were confirmed written.
type Entry struct {
	AllocID   string `msgpack:"alloc_id"`
	Task      string `msgpack:"task"`
	Stream    string `msgpack:"stream"`
	FileIndex int64  `msgpack:"file_index"`
	Offset    int64  `msgpack:"offset"`
	Dev       uint64 `msgpack:"dev"`
	Inode     uint64 `msgpack:"inode"`
	// InLongLine: Offset is inside a line longer than --max-line-bytes
	// whose head was already sent; the rest of it is skipped.
	InLongLine bool `msgpack:"in_long_line,omitempty"`
	// EventTime and EventSeq, in the entry of a task's events only, are
	// its EventMark: the Time (unix nanoseconds) of the last task event
	// whose record the output confirmed, and that event's Seq.
	EventTime int64     `msgpack:"event_time,omitempty"`
	EventSeq  int       `msgpack:"event_seq,omitempty"`
	Finished  bool      `msgpack:"finished"`
	UpdatedAt time.Time `msgpack:"updated_at"`
}

// Key returns the stream the entry belongs to.
func (e Entry) Key() taskstream.ID {
	return taskstream.ID{AllocID: e.AllocID, Task: e.Task, Stream: e.Stream}
}

// file is the on-disk envelope. Entries is kept as raw msgpack so the
// checksum covers exactly the bytes that are decoded.
type file struct {
	Version  int                `msgpack:"version"`
	Checksum uint32             `msgpack:"crc32c"`
	Entries  msgpack.RawMessage `msgpack:"entries"`
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// CorruptError says the checkpoint file cannot be trusted, and what to do.
type CorruptError struct {
	Path string
	Err  error
}

func (e *CorruptError) Error() string {
	if errors.Is(e.Err, ErrNewerVersion) {
		return fmt.Sprintf("checkpoint %s was %v; the daemon will not overwrite it. "+
			"Run that version (or a newer one), or move the file aside to start over "+
			"(every stream then starts as --read-from says)", e.Path, e.Err)
	}
	return fmt.Sprintf("checkpoint %s is unreadable: %v; the daemon will not overwrite it. "+
		"Move it aside to start over (every stream then starts as --read-from says), "+
		"or restore a good copy", e.Path, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// Read loads the entries of the checkpoint at path. A missing file is an
// empty checkpoint; anything that does not decode completely and match its
// checksum is a *CorruptError. A symlink, a file that is not regular or one
// larger than MaxFileBytes is a *RefusedError.
func Read(path string) ([]Entry, error) {
	entries, err := ReadExisting(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return entries, err
}

// ReadExisting is Read for a checkpoint that must exist: a missing one is
// a *NotFoundError ("no checkpoint at PATH").
func ReadExisting(path string) ([]Entry, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	entries, err := decode(data)
	if err != nil {
		return nil, &CorruptError{Path: path, Err: err}
	}
	return entries, nil
}

func decode(data []byte) ([]Entry, error) {
	if len(data) == 0 {
		return nil, errors.New("file is empty")
	}
	r := bytes.NewReader(data)
	dec := msgpack.NewDecoder(r)
	var f file
	if err := dec.Decode(&f); err != nil {
		// msgpack's message quotes the byte it stumbled on: a file that is
		// not a checkpoint at all must not have its content printed.
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, errors.New("the envelope is truncated")
		}
		return nil, errors.New("not a checkpoint: no msgpack envelope at its start")
	}
	if rest, _ := io.ReadAll(dec.Buffered()); r.Len() != 0 || len(rest) != 0 {
		return nil, errors.New("trailing bytes after the envelope")
	}
	switch {
	case f.Version > FormatVersion:
		return nil, fmt.Errorf("%w (format version %d, this build reads %d to %d)", ErrNewerVersion, f.Version, minFormatVersion, FormatVersion)
	case f.Version < minFormatVersion:
		return nil, fmt.Errorf("format version %d is unknown (this build reads %d to %d)", f.Version, minFormatVersion, FormatVersion)
	}
	if got := crc32.Checksum(f.Entries, crcTable); got != f.Checksum {
		return nil, fmt.Errorf("checksum mismatch (stored %08x, computed %08x)", f.Checksum, got)
	}
	var entries []Entry
	if err := msgpack.Unmarshal(f.Entries, &entries); err != nil {
		return nil, fmt.Errorf("decode entries: %w", err)
	}
	for i, e := range entries {
		if err := e.validate(f.Version); err != nil {
			return nil, fmt.Errorf("entry %d is invalid (%v): %+v", i, err, e)
		}
	}
	return entries, nil
}

func (e Entry) validate(version int) error {
	switch {
	case e.AllocID == "" || e.Task == "" || e.Stream == "":
		return errors.New("no alloc ID, task or stream")
	case !e.Key().IsEvents():
		if e.FileIndex < 0 || e.Offset < 0 {
			return errors.New("negative file index or offset")
		}
		if e.EventTime != 0 || e.EventSeq != 0 {
			return errors.New("an event time on a log stream")
		}
	case version < 2:
		return errors.New("an entry of task events in a format 1 file")
	case e.FileIndex != 0 || e.Offset != 0 || e.Dev != 0 || e.Inode != 0 || e.InLongLine:
		return errors.New("a file position on the entry of task events")
	case e.EventTime < 0 || e.EventSeq < 0:
		return errors.New("negative event time or sequence")
	}
	return nil
}

func encode(entries []Entry) ([]byte, error) {
	raw, err := msgpack.Marshal(entries)
	if err != nil {
		return nil, fmt.Errorf("encode entries: %w", err)
	}
	return msgpack.Marshal(&file{Version: FormatVersion, Checksum: crc32.Checksum(raw, crcTable), Entries: raw})
}

// Store holds the committed positions of every stream and saves them.
type Store struct {
	path      string
	now       func() time.Time
	metrics   *Metrics
	writeFile func(path string, data []byte) error // WriteFileAtomic; tests slow it down

	// saveMu is held by a save from its snapshot to its rename, so saves
	// reach the disk in the order they took their snapshots: an older
	// snapshot can never be renamed over a newer one.
	saveMu sync.Mutex

	mu      sync.Mutex
	entries map[taskstream.ID]Entry
	version uint64 // bumped by every change
	saved   uint64 // version last written to disk
	saveErr error  // last save's error, nil after a good save
}

// Open loads the checkpoint at path, removing temp files that a crash
// during an earlier save left in its folder. m may be nil. The folder is
// created if missing; a missing file is an empty checkpoint.
func Open(path string, m *Metrics) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create checkpoint folder: %w", err)
	}
	entries, err := Read(path)
	if err != nil {
		return nil, err
	}
	return newStore(path, m, entries), nil
}

// OpenExisting is Open for a checkpoint that must exist (the offsets CLI):
// a missing one is a *NotFoundError, and nothing is created.
func OpenExisting(path string, m *Metrics) (*Store, error) {
	entries, err := ReadExisting(path)
	if err != nil {
		return nil, err
	}
	return newStore(path, m, entries), nil
}

func newStore(path string, m *Metrics, entries []Entry) *Store {
	if m == nil {
		m = NewMetrics(nil)
	}
	removeTemps(path)
	s := &Store{path: path, now: time.Now, metrics: m, writeFile: WriteFileAtomic, entries: make(map[taskstream.ID]Entry, len(entries))}
	for _, e := range entries {
		s.entries[e.Key()] = e
	}
	return s
}

// Path is the checkpoint file's path.
func (s *Store) Path() string { return s.path }

// Get returns the entry of k.
func (s *Store) Get(k taskstream.ID) (Entry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[k]
	return e, ok
}

// Entries returns every entry, sorted by key.
func (s *Store) Entries() []Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sortedLocked()
}

func (s *Store) sortedLocked() []Entry {
	out := make([]Entry, 0, len(s.entries))
	for _, e := range s.entries {
		out = append(out, e)
	}
	Sort(out)
	return out
}

// Sort orders entries by alloc ID, task and stream.
func Sort(entries []Entry) {
	sort.Slice(entries, func(i, j int) bool {
		a, b := entries[i], entries[j]
		if a.AllocID != b.AllocID {
			return a.AllocID < b.AllocID
		}
		if a.Task != b.Task {
			return a.Task < b.Task
		}
		return a.Stream < b.Stream
	})
}

// Commit records e (its UpdatedAt is set here).
func (s *Store) Commit(e Entry) {
	e.UpdatedAt = s.now().UTC()
	s.mu.Lock()
	s.entries[e.Key()] = e
	s.version++
	s.mu.Unlock()
}

// Delete removes the entries of k.
func (s *Store) Delete(keys ...taskstream.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		if _, ok := s.entries[k]; ok {
			delete(s.entries, k)
			s.version++
		}
	}
}

// Healthy reports the error of the last save, nil when it succeeded.
func (s *Store) Healthy() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.saveErr
}

// Save writes the entries to disk if anything changed since the last save.
// It is safe to call from any goroutine, alongside Run: concurrent saves
// take turns, and the file ends up holding the newest of their snapshots.
func (s *Store) Save() error {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	s.mu.Lock()
	version := s.version
	if version == s.saved && s.saveErr == nil && s.fileExistsLocked() {
		s.mu.Unlock()
		return nil
	}
	entries := s.sortedLocked()
	s.mu.Unlock()

	data, err := encode(entries)
	if err == nil {
		err = s.writeFile(s.path, data)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.saveErr = err
	if err != nil {
		s.metrics.SaveErrors.Inc()
		return fmt.Errorf("save checkpoint %s: %w", s.path, err)
	}
	s.metrics.Saves.Inc()
	if version > s.saved {
		s.saved = version
	}
	return nil
}

// fileExistsLocked keeps Save from skipping the very first write: a new
// store with no changes still leaves a file behind, so `offsets list`
// works after a run that shipped nothing.
func (s *Store) fileExistsLocked() bool {
	if s.saved > 0 {
		return true
	}
	_, err := os.Lstat(s.path)
	return err == nil
}

// Run saves every interval until ctx ends, then saves once more, so what
// was committed up to then is on disk when it returns. Save errors go to
// onError (which may be nil) and are retried at the next tick. Other
// goroutines may Save meanwhile (a final save after the output drained):
// saves are serialized, see Save.
func (s *Store) Run(ctx context.Context, interval time.Duration, onError func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	save := func() {
		if err := s.Save(); err != nil && onError != nil {
			onError(err)
		}
	}
	for {
		select {
		case <-ctx.Done():
			save()
			return
		case <-t.C:
			save()
		}
	}
}

// WriteFileAtomic replaces path with data so that a crash at any instant
// leaves either the old content or the new: temp file in the same folder,
// fsync, rename over path, fsync the folder so the rename itself is durable.
// The new file keeps the owner and mode of the regular file it replaces
// (0600 when there was none); the temp file is created with O_EXCL and
// O_NOFOLLOW, so a name planted in the folder is never written through.
func WriteFileAtomic(path string, data []byte) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	own := ownerOf(path)
	tmp, err := createTemp(dir, base, randomSuffix)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = own.apply(tmp); err != nil {
		return err
	}
	if _, err = tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp.Name(), err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename %s: %w", tmp.Name(), err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open folder %s: %w", dir, err)
	}
	defer d.Close()
	if err = d.Sync(); err != nil {
		return fmt.Errorf("fsync folder %s: %w", dir, err)
	}
	return nil
}

const tempInfix = ".tmp-"

// removeTemps deletes temp files an interrupted save left next to path.
func removeTemps(path string) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	names, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, n := range names {
		if strings.HasPrefix(n.Name(), base+tempInfix) {
			os.Remove(filepath.Join(dir, n.Name()))
		}
	}
}
