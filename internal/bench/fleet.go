package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/logmon"
)

// logmonFlush is how often Nomad's logmon flushes its 64 KiB buffer to the
// file: a task's lines reach the disk in one write per flush.
const logmonFlush = 100 * time.Millisecond

// fleet is a node's worth of live task streams: allocations (benchAllocID)
// with one task whose stdout and stderr are written through the logmon
// imitation (Nomad's default rotation: 10 files of 10 MiB). Stream 2i is
// the stdout of allocation i, 2i+1 its stderr.
type fleet struct {
	allocDir   string
	allocsFile string
	streams    []*liveStream
	written    atomic.Int64
	gen        *lineGen // used by one writer at a time
	buf        []byte
}

type liveStream struct {
	id  int
	out *logmon.Rotator
	seq int64
}

// newFleet creates the log folders and first files of allocs allocations
// whose task is named task, below dir/alloc.
func newFleet(dir string, allocs int, task string) (*fleet, error) {
	return newFleetOf(dir, allocs, task, logmon.Options{MaxFiles: 10, FileSize: 10 << 20})
}

// newFleetOf is newFleet with the rotation of o.
func newFleetOf(dir string, allocs int, task string, o logmon.Options) (*fleet, error) {
	f := &fleet{
		allocDir:   filepath.Join(dir, "alloc"),
		allocsFile: filepath.Join(dir, "allocations.json"),
		gen:        newLineGen(uint64(allocs)),
	}
	for i := range allocs {
		logDir, err := logmon.AllocLogDir(f.allocDir, benchAllocID(i))
		if err != nil {
			f.close()
			return nil, err
		}
		for _, stream := range []string{"stdout", "stderr"} {
			out, err := logmon.New(logDir, task, stream, o)
			if err != nil {
				f.close()
				return nil, fmt.Errorf("create stream: %w", err)
			}
			f.streams = append(f.streams, &liveStream{id: len(f.streams), out: out})
		}
	}
	return f, nil
}

func (f *fleet) close() {
	for _, s := range f.streams {
		s.out.Close()
	}
}

// flush writes n marked lines to s in one write, as logmon's flush does.
func (f *fleet) flush(s *liveStream, n int) error {
	now := time.Now().UnixNano()
	b := f.buf[:0]
	for range n {
		b = appendMark(b, s.id, s.seq, now)
		b = append(f.gen.appendBody(b, len(b)-markLen+30+f.gen.rng.IntN(121)), '\n')
		s.seq++
	}
	f.buf = b
	if _, err := s.out.Write(b); err != nil {
		return fmt.Errorf("write stream %d: %w", s.id, err)
	}
	f.written.Add(int64(n))
	return nil
}

// flushAll writes n lines to every stream.
func (f *fleet) flushAll(n int) error {
	for _, s := range f.streams {
		if err := f.flush(s, n); err != nil {
			return err
		}
	}
	return nil
}

// write writes rate lines per second to every stream until ctx ends: one
// write per stream per logmon flush period, the streams' flushes spread
// evenly over the period as independent tasks' would be.
func (f *fleet) write(ctx context.Context, rate int) error {
	perFlush := max(1, rate*int(logmonFlush)/int(time.Second))
	n := len(f.streams)
	start := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for round := 0; ; round++ {
		for i, s := range f.streams {
			due := start.Add(time.Duration(round)*logmonFlush + time.Duration(i)*logmonFlush/time.Duration(n))
			if wait := time.Until(due); wait > 0 {
				// Wake at most every millisecond, writing what came due.
				timer.Reset(max(wait, time.Millisecond))
				select {
				case <-ctx.Done():
					return nil
				case <-timer.C:
				}
			}
			if err := f.flush(s, perFlush); err != nil {
				return err
			}
		}
	}
}

// nomadLayout gives the fleet's folders the modes a Nomad agent running as
// root gives them (nomad-logs.md section 9: <data_dir>/alloc 0711, each
// allocation 0755, alloc/ and alloc/logs 0777) and puts logmon's FIFOs
// (.<task>.<stream>.fifo, 0600) beside the log files, which the forwarder
// must pass over when it lists a folder.
func (f *fleet) nomadLayout(task string) error {
	if err := os.Chmod(f.allocDir, 0o711); err != nil {
		return fmt.Errorf("nomad layout: %w", err)
	}
	entries, err := os.ReadDir(f.allocDir)
	if err != nil {
		return fmt.Errorf("nomad layout: %w", err)
	}
	for _, e := range entries {
		alloc := filepath.Join(f.allocDir, e.Name())
		for path, mode := range map[string]os.FileMode{
			alloc: 0o755, filepath.Join(alloc, "alloc"): 0o777, filepath.Join(alloc, "alloc", "logs"): 0o777,
		} {
			if err := os.Chmod(path, mode); err != nil {
				return fmt.Errorf("nomad layout: %w", err)
			}
		}
		for _, stream := range []string{"stdout", "stderr"} {
			fifo := filepath.Join(alloc, "alloc", "logs", "."+task+"."+stream+".fifo")
			if err := syscall.Mkfifo(fifo, 0o600); err != nil {
				return fmt.Errorf("nomad layout: logmon's FIFO: %w", err)
			}
		}
	}
	return nil
}
