package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The 5,000-stream node (issue 13): 2,500 allocations of one task, two
// streams each, laid out as Nomad lays them out.
const (
	scaleRate        = 20   // lines/s per stream
	scaleCapWatches  = 1000 // --max-inotify-watches of the capped run
	maxIdleStreamMem = 8 << 10
)

// scale: the node of 5,000 streams, in one fleet and one forwarder run
// after another: idle (CPU, memory per stream against a 1,000-stream
// fleet measured the same way just before), live at 20 lines/s a stream
// (CPU, peak RSS, latency, delivery), a restart with every stream
// checkpointed, and a run with inotify capped at 1,000 watches so that
// most streams poll.
func scale(ctx context.Context, e *env) ([]Row, error) {
	const name = "scale"
	cfg := e.cfg
	var rows []Row

	// Memory per idle stream at 1,000 streams.
	small, err := e.startLiveOf(ctx, name, liveOptions{allocs: max(1, cfg.ScaleAllocs/5), dir: filepath.Join(e.dir, "small"), nomadLayout: true})
	if err != nil {
		return nil, err
	}
	smallRSS, smallStreams, err := idleRSS(ctx, e, small)
	small.close()
	if err != nil {
		return nil, err
	}

	l, err := e.startLiveOf(ctx, name, liveOptions{allocs: cfg.ScaleAllocs, dir: filepath.Join(e.dir, "large"), nomadLayout: true})
	if err != nil {
		return nil, err
	}
	defer l.close()
	f, r := l.fleet, l.recv
	streams := len(f.streams)

	// Idle.
	e.progress("idle: measuring for %s after %s", cfg.Idle, cfg.Settle)
	if err := sleep(ctx, cfg.Settle); err != nil {
		return nil, err
	}
	cpu, elapsed, err := cpuOver(ctx, l.daemon.pid(), cfg.Idle)
	if err != nil {
		return nil, err
	}
	rss, err := currentRSS(l.daemon.pid())
	if err != nil {
		return nil, err
	}
	watches, err := inotifyWatches(l.daemon.pid())
	if err != nil {
		return nil, err
	}
	pct := 100 * cpu.Seconds() / elapsed.Seconds()
	perStream := (rss - smallRSS) / int64(streams-smallStreams)
	rows = append(rows,
		targetRow(name, fmt.Sprintf("%d streams, no writes for %s: CPU of one core", streams, cfg.Idle), "< 1 %",
			fmt.Sprintf("%.2f %% (%.2f CPU-s)", pct, cpu.Seconds()), pct < 1),
		infoRow(name, fmt.Sprintf("RSS idle at %d and at %d streams (RSS ÷ streams)", smallStreams, streams),
			fmt.Sprintf("%s (%.1f KiB), %s (%.1f KiB)", fmtMiB(smallRSS), float64(smallRSS)/float64(smallStreams)/1024,
				fmtMiB(rss), float64(rss)/float64(streams)/1024)),
		targetRow(name, fmt.Sprintf("memory per idle stream: RSS growth from %d to %d streams, per stream", smallStreams, streams), "< 8 KiB",
			fmt.Sprintf("%.1f KiB", float64(perStream)/1024), perStream < maxIdleStreamMem),
		infoRow(name, "inotify watches held (the tailer: two per log folder; offline discovery: the alloc dir, and three per allocation not in --allocs-file)", strconv.Itoa(watches)),
	)

	// Live.
	live, err := liveLoad(ctx, e, l, scaleRate, cfg.ManyStreams)
	if err != nil {
		return nil, err
	}
	load := fmt.Sprintf("%d streams x %d lines/s, %s", streams, scaleRate, cfg.ManyStreams)
	rows = append(rows,
		targetRow(name, load+": CPU of one core", "< 40 %", fmt.Sprintf("%.1f %%", live.cpuPct), live.cpuPct < 40),
		targetRow(name, "peak RSS", "< 128 MiB", fmtMiB(live.rss), live.rss < 128<<20),
		infoRow(name, fmt.Sprintf("latency write → receiver, p50 (%d lines)", live.lines), fmtDuration(live.p50)),
		targetRow(name, "latency write → receiver, p99", "< 250 ms", fmtDuration(live.p99), live.p99 < 250*time.Millisecond),
		deliveryRow(name, r, live.written, live.dups, live.gaps),
	)

	// Restart with every stream checkpointed.
	if err := f.flushAll(e.perFlush()); err != nil {
		return nil, err
	}
	r.markResume()
	e.progress("restarting with %d checkpointed streams", streams)
	start := time.Now()
	if err := e.startDaemon(name, l); err != nil {
		return nil, err
	}
	err = waitUntil(ctx, time.Minute, func() bool { n, _ := r.resumed(); return n == streams },
		func() string { n, _ := r.resumed(); return fmt.Sprintf("%d of %d streams resumed", n, streams) })
	if err != nil {
		return nil, err
	}
	_, last := r.resumed()
	took := last.Sub(start)
	written := f.written.Load()
	if err := r.waitCount(ctx, written, 30*time.Second); err != nil {
		return nil, fmt.Errorf("delivering the new lines: %w", err)
	}
	if _, err := l.stopDaemon(); err != nil {
		return nil, err
	}
	dups, _ := r.faults()
	rows = append(rows,
		targetRow(name, fmt.Sprintf("restart: all %d checkpointed streams resumed (first new line delivered), from exec", streams), "< 3 s", fmtDuration(took), took < 3*time.Second),
		targetRow(name, "restart: lines sent again", "0", fmt.Sprint(dups-live.dups), dups == live.dups),
	)

	// inotify capped: most streams poll.
	e.progress("inotify capped at %d watches", scaleCapWatches)
	if err := e.startDaemon(name, l, "--max-inotify-watches", strconv.Itoa(scaleCapWatches)); err != nil {
		return nil, err
	}
	if err := r.waitCount(ctx, f.written.Load(), time.Minute); err != nil {
		return nil, err
	}
	capped, err := liveLoad(ctx, e, l, scaleRate, cfg.ManyStreams)
	if err != nil {
		return nil, err
	}
	rows = append(rows,
		infoRow(name, fmt.Sprintf("inotify capped at %d watches (%d held; the other streams poll every 250 ms): CPU of one core at %d x %d lines/s",
			scaleCapWatches, capped.watches, streams, scaleRate), fmt.Sprintf("%.1f %%", capped.cpuPct)),
		infoRow(name, "inotify capped: latency p99", fmtDuration(capped.p99)),
		deliveryRow(name+" (capped)", r, capped.written, capped.dups, capped.gaps),
	)
	return rows, nil
}

// idleRSS lets a fleet's forwarder settle, and returns its resident set
// and how many streams it follows; it stops the forwarder.
func idleRSS(ctx context.Context, e *env, l *live) (int64, int, error) {
	if err := sleep(ctx, e.cfg.Settle); err != nil {
		return 0, 0, err
	}
	rss, err := currentRSS(l.daemon.pid())
	if err != nil {
		return 0, 0, err
	}
	if _, err := l.stopDaemon(); err != nil {
		return 0, 0, err
	}
	return rss, len(l.fleet.streams), nil
}

// liveResult is what liveLoad measured.
type liveResult struct {
	cpuPct              float64
	rss                 int64
	p50, p99            time.Duration
	lines               int
	written, dups, gaps int64
	watches             int
}

// liveLoad writes rate lines/s to every stream of l while the running
// forwarder is measured for window, then waits for every line and stops
// the forwarder.
func liveLoad(ctx context.Context, e *env, l *live, rate int, window time.Duration) (liveResult, error) {
	f, r := l.fleet, l.recv
	dups0, gaps0 := r.faults()
	wctx, stopWriters := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var writeErr error
	wg.Go(func() { writeErr = f.write(wctx, rate) })
	defer func() { stopWriters(); wg.Wait() }()
	e.progress("writing %d lines/s to each of %d streams; measuring for %s after %s", rate, len(f.streams), window, e.cfg.Settle)
	if err := sleep(ctx, e.cfg.Settle); err != nil {
		return liveResult{}, err
	}
	r.startRecording()
	cpu, elapsed, err := cpuOver(ctx, l.daemon.pid(), window)
	if err != nil {
		return liveResult{}, err
	}
	latencies := r.stopRecording()
	watches, err := inotifyWatches(l.daemon.pid())
	if err != nil {
		return liveResult{}, err
	}
	stopWriters()
	wg.Wait()
	if writeErr != nil {
		return liveResult{}, writeErr
	}
	res := liveResult{cpuPct: 100 * cpu.Seconds() / elapsed.Seconds(), written: f.written.Load(), lines: len(latencies),
		p50: percentile(latencies, 0.50), p99: percentile(latencies, 0.99), watches: watches}
	if err := r.waitCount(ctx, res.written, 30*time.Second); err != nil {
		return liveResult{}, fmt.Errorf("delivering the last lines: %w", err)
	}
	if res.rss, err = l.stopDaemon(); err != nil {
		return liveResult{}, err
	}
	dups, gaps := r.faults()
	res.dups, res.gaps = dups-dups0, gaps-gaps0
	return res, nil
}

// currentRSS is the running process's resident set (VmRSS) in bytes.
func currentRSS(pid int) (int64, error) { return procStatus(pid, "VmRSS:") }

// inotifyWatches counts the watches of the process's inotify instances,
// as the kernel lists them in /proc/<pid>/fdinfo.
func inotifyWatches(pid int) (int, error) {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, fmt.Errorf("count inotify watches: %w", err)
	}
	n := 0
	for _, fd := range fds {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err != nil || target != "anon_inode:inotify" {
			continue
		}
		info, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd.Name()))
		if err != nil {
			return 0, fmt.Errorf("count inotify watches: %w", err)
		}
		n += strings.Count(string(info), "inotify wd:")
	}
	return n, nil
}
