package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/logmon"
)

// burstLines is the burst of issue 10: 200,000 lines of about 80 bytes
// (16 MB), which logmon writes into 1 MiB files of which it keeps 3.
const burstLines = 200_000

// burstRate is the pace of the burst that must lose nothing: a quarter
// above what a real logmon managed (about 200 MB/s, nomad-logs.md 9).
const burstRate = 250_000_000

// burst: the daemon follows a stream (offline, its first file there from
// the start) when a task writes the whole burst in one go, at logmon's
// speed: each file is purged a few milliseconds after it appears. Then
// the same at the logmon imitation's own speed (several times any real
// logmon's, no pipe, no buffered writer), for information.
func burst(ctx context.Context, e *env) ([]Row, error) {
	const name = "burst"
	lines := min(burstLines, e.cfg.Lines)
	var rows []Row
	for _, pace := range []int{burstRate, 0} {
		row, err := e.oneBurst(ctx, lines, pace)
		if err != nil {
			return nil, err
		}
		rows = append(rows, row)
	}
	rows[1].Target, rows[1].Result = "informational", ""
	for i := range rows {
		rows[i].Scenario = name
	}
	return rows, nil
}

func (e *env) oneBurst(ctx context.Context, lines, bytesPerSecond int) (Row, error) {
	dir := filepath.Join(e.dir, fmt.Sprintf("burst-%d", bytesPerSecond))
	f, err := newFleetOf(dir, 1, benchTask, logmon.Options{MaxFiles: 3, FileSize: 1 << 20})
	if err != nil {
		return Row{}, err
	}
	defer f.close()
	if err := writeAllocations(f.allocsFile, 1); err != nil {
		return Row{}, err
	}
	r, err := listen(len(f.streams))
	if err != nil {
		return Row{}, err
	}
	l := &live{fleet: f, recv: r}
	defer l.close()
	if err := f.flushAll(1); err != nil {
		return Row{}, err
	}
	d, err := startChild(e.cfg.Forwarder, e.forwarderArgs("burst", r.url(), "run", "--offline",
		"--alloc-dir", f.allocDir, "--allocs-file", f.allocsFile, "--checkpoint", filepath.Join(dir, "checkpoint.msgpack"))...)
	if err != nil {
		return Row{}, err
	}
	l.daemon = d
	if err := r.waitCount(ctx, f.written.Load(), time.Minute); err != nil {
		return Row{}, fmt.Errorf("first lines: %w; the forwarder's log ends with:\n%s", err, l.daemon.output.tail(2000))
	}
	s := f.streams[0]
	took, err := f.burst(s, lines, bytesPerSecond)
	if err != nil {
		return Row{}, err
	}
	written := f.written.Load()
	// Wait for every line, or for the stream to stop delivering: what is
	// missing then was lost.
	last, still := r.count(), time.Now()
	for r.count() < written && time.Since(still) < 5*time.Second {
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return Row{}, err
		}
		if n := r.count(); n != last {
			last, still = n, time.Now()
		}
	}
	if _, err := l.stopDaemon(); err != nil {
		return Row{}, err
	}
	got := r.count()
	dups, _ := r.faults()
	speed := "logmon's speed"
	if bytesPerSecond == 0 {
		speed = "the imitation's own speed"
	}
	metric := fmt.Sprintf("%d lines of ~%d B in one write, 1 MiB files, 3 kept, at %s (%.0f MB/s, %d files purged): lines delivered",
		lines, len(f.buf)/lines, speed, float64(len(f.buf))/took.Seconds()/1e6, len(s.out.Purged()))
	return targetRow("burst", metric, "all, once", fmt.Sprintf("%d of %d, %d twice, %d lost", got, written, dups, written-got),
		got == written && dups == 0), nil
}

// burst writes n marked lines to s, made in memory first, in writes of
// 256 KiB at no more than bytesPerSecond (0: no limit), and says how long
// the writing took.
func (f *fleet) burst(s *liveStream, n, bytesPerSecond int) (time.Duration, error) {
	now := time.Now().UnixNano()
	b := f.buf[:0]
	for range n {
		b = appendMark(b, s.id, s.seq, now)
		b = append(f.gen.appendBody(b, len(b)-markLen+20+f.gen.rng.IntN(41)), '\n')
		s.seq++
	}
	f.buf = b
	const step = 256 << 10
	start := time.Now()
	for off := 0; off < len(b); off += step {
		if _, err := s.out.Write(b[off:min(off+step, len(b))]); err != nil {
			return 0, fmt.Errorf("write stream %d: %w", s.id, err)
		}
		if bytesPerSecond > 0 {
			due := time.Duration(float64(off+step) / float64(bytesPerSecond) * float64(time.Second))
			if ahead := due - time.Since(start); ahead > 0 {
				time.Sleep(ahead)
			}
		}
	}
	f.written.Add(int64(n))
	return time.Since(start), nil
}
