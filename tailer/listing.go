package tailer

import (
	"os"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/enrich"
)

// maxListed bounds the indexes a listing keeps per stream (the lowest,
// and the highest): logmon keeps max_files files (10 by default), so a
// folder with more is one that tasks filled, and its memory is bounded.
const maxListed = 1 << 16

// folderIndexes is a listing of one log folder: for each stream
// ("<task>.<stream>") the indexes of its files, ascending.
type folderIndexes map[string][]int64

// listFolder reads d, an open log folder, in chunks (it may hold very many
// names), keeping the streams keep says yes to (nil: all). A listing that
// fails halfway still tells what it saw.
func listFolder(d *os.File, keep func(key string) bool) folderIndexes {
	out := make(folderIndexes)
	highest := make(map[string]int64)
	_ = enrich.EachLogFile(d, func(task, stream string, index int64) {
		key := task + "." + stream
		if keep != nil && !keep(key) {
			return
		}
		if hi, ok := highest[key]; !ok || index > hi {
			highest[key] = index
		}
		idx := append(out[key], index)
		if len(idx) == 2*maxListed {
			idx = lowest(idx)
		}
		out[key] = idx
	})
	for key, idx := range out {
		idx = lowest(idx)
		if hi := highest[key]; idx[len(idx)-1] != hi {
			idx = append(idx, hi)
		}
		out[key] = idx
	}
	return out
}

// lowest sorts idx and keeps its maxListed lowest values.
func lowest(idx []int64) []int64 {
	slices.Sort(idx)
	return idx[:min(len(idx), maxListed)]
}

// sharedListing lets the streams of one folder share one listing until a
// file of the folder is created or deleted: a folder that a task filled
// with thousands of names is then listed once per change, not once per
// stream and wake-up. The watcher owns it (one per watched folder) and
// bumps its generation on each creation and deletion it sees there.
type sharedListing struct {
	gen atomic.Uint64

	mu      sync.Mutex // held while listing, so streams wait for one listing
	valid   bool
	takenAt uint64 // gen when the listing began
	indexes folderIndexes
}

// get returns a listing no older than the last creation or deletion the
// watcher reported, listing the folder with list when there is none.
func (l *sharedListing) get(list func() (folderIndexes, bool)) (folderIndexes, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.valid && l.takenAt == l.gen.Load() {
		return l.indexes, true
	}
	gen := l.gen.Load() // before listing: a change during it makes the next get list again
	idx, ok := list()
	l.valid, l.takenAt, l.indexes = ok, gen, idx
	return idx, ok
}

func (l *sharedListing) changed() { l.gen.Add(1) }
