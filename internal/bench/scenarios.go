package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/backoff"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/logmon"
)

// maxCPURatio is the throughput target: the forwarder's CPU per line at
// most this many times the yardstick's (issue 13: the median of three
// alternating runs).
const maxCPURatio = 1.3

// throughput: lines already on disk in one stream, `run --offline --once`
// to TCP, against the yardstick reading the same file, alternately.
func throughput(ctx context.Context, e *env) ([]Row, error) {
	const name = "throughput"
	cfg := e.cfg
	data, err := e.writeOnceData()
	if err != nil {
		return nil, err
	}
	r, err := listen(0)
	if err != nil {
		return nil, err
	}
	defer r.close()

	var ideal, fwd []onceRun
	var ratios []float64
	for i := range cfg.Repeat {
		ir, err := timeOnce(ctx, r, cfg.Lines, cfg.Ideal, "-file", data.file, "-addr", r.addr(), "-alloc-id", benchAllocID(0))
		if err != nil {
			return nil, fmt.Errorf("yardstick: %w", err)
		}
		fr, err := timeOnce(ctx, r, cfg.Lines, cfg.Forwarder, e.forwarderArgs(name, r.url(), data.args(e.dir, "tcp", i)...)...)
		if err != nil {
			return nil, fmt.Errorf("forwarder: %w", err)
		}
		ideal, fwd = append(ideal, ir), append(fwd, fr)
		ratios = append(ratios, fr.cpu.Seconds()/ir.cpu.Seconds())
		e.progress("run %d: yardstick %s CPU, forwarder %s CPU (%.2fx)", i+1, ir.cpu.Round(time.Millisecond), fr.cpu.Round(time.Millisecond), ratios[i])
	}
	i, f := medianRun(ideal), medianRun(fwd)
	ratio := median(ratios)
	lines := float64(cfg.Lines)
	perM := func(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()/lines*1e6) }
	mibs := func(wall time.Duration) string {
		return fmt.Sprintf("%.0f MiB/s", float64(data.size)/(1<<20)/wall.Seconds())
	}
	rate := func(wall time.Duration) float64 { return lines / wall.Seconds() }
	label := fmt.Sprintf("%d lines of ~%d B, one stream, --once to TCP (median of %d)", cfg.Lines, data.size/int64(cfg.Lines), cfg.Repeat)
	cpuRow := targetRow(name, "CPU-seconds per million lines", fmt.Sprintf("≤ %.1fx yardstick", maxCPURatio), perM(f.cpu), ratio <= maxCPURatio)
	cpuRow.Yardstick, cpuRow.Ratio = perM(i.cpu), fmtRatio(ratio)
	return []Row{
		{Scenario: name, Metric: label + ": lines/s", Measured: fmtRate(rate(f.wall)), Yardstick: fmtRate(rate(i.wall)), Ratio: fmtRatio(rate(f.wall) / rate(i.wall))},
		{Scenario: name, Metric: "MiB/s of log read", Measured: mibs(f.wall), Yardstick: mibs(i.wall), Ratio: fmtRatio(i.wall.Seconds() / f.wall.Seconds())},
		cpuRow,
		{Scenario: name, Metric: "peak RSS", Measured: fmtMiB(f.rss), Yardstick: fmtMiB(i.rss), Ratio: fmtRatio(float64(f.rss) / float64(i.rss))},
	}, nil
}

// onceData is what a `run --offline --once` reads: Lines generated lines
// in one stream of one allocation, and a saved allocations response that
// gives every line its full nomad object.
type onceData struct {
	allocDir, file, allocsFile string
	size                       int64
}

func (e *env) writeOnceData() (*onceData, error) {
	d := &onceData{allocDir: filepath.Join(e.dir, "alloc"), allocsFile: filepath.Join(e.dir, "allocations.json")}
	logDir, err := logmon.AllocLogDir(d.allocDir, benchAllocID(0))
	if err != nil {
		return nil, err
	}
	d.file = filepath.Join(logDir, benchTask+".stdout.0")
	e.progress("writing %d lines", e.cfg.Lines)
	if d.size, err = writeLines(d.file, e.cfg.Lines, 1); err != nil {
		return nil, err
	}
	if err := writeAllocations(d.allocsFile, 1); err != nil {
		return nil, err
	}
	return d, nil
}

// args are the arguments of the run-th forwarder run of a series, which
// starts with a checkpoint of its own in dir so that it reads everything.
func (d *onceData) args(dir, series string, run int) []string {
	return []string{"run", "--offline", "--once", "--alloc-dir", d.allocDir, "--allocs-file", d.allocsFile,
		"--checkpoint", filepath.Join(dir, fmt.Sprintf("checkpoint-%s-%d.msgpack", series, run))}
}

// onceRun is what one run to the end of the file cost.
type onceRun struct {
	cpu  time.Duration
	wall time.Duration // from the start of the process to the last line received
	rss  int64
}

// sink is a peer that counts the lines delivered to it: the TCP receiver
// or the HTTP one.
type sink interface {
	count() int64
	last() time.Time // when the last line arrived
}

// timeOnce runs a process that ships lines lines to s and exits.
func timeOnce(ctx context.Context, s sink, lines int, bin string, args ...string) (onceRun, error) {
	before := s.count()
	c, err := startChild(bin, args...)
	if err != nil {
		return onceRun{}, err
	}
	if err := c.wait(5 * time.Minute); err != nil {
		return onceRun{}, err
	}
	if err := waitCount(ctx, s, before+int64(lines), time.Minute); err != nil {
		return onceRun{}, err
	}
	if got := s.count() - before; got != int64(lines) {
		return onceRun{}, fmt.Errorf("%s delivered %d lines, want %d", bin, got, lines)
	}
	cpu, rss := c.usage()
	return onceRun{cpu: cpu, wall: s.last().Sub(c.started), rss: rss}, nil
}

func medianRun(runs []onceRun) onceRun {
	var cpu, wall []time.Duration
	var rss []int64
	for _, r := range runs {
		cpu, wall, rss = append(cpu, r.cpu), append(wall, r.wall), append(rss, r.rss)
	}
	return onceRun{cpu: median(cpu), wall: median(wall), rss: median(rss)}
}

func median[T int64 | float64 | time.Duration](v []T) T {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// live is a running forwarder over a fleet of live streams, every stream's
// first lines delivered.
type live struct {
	fleet  *fleet
	recv   *receiver
	daemon *child
}

func (l *live) close() {
	if l.daemon != nil {
		l.daemon.kill()
	}
	l.recv.close()
	if l.fleet != nil {
		l.fleet.close()
	}
}

// startLive creates the fleet, writes one flush to every stream so that
// every file exists, starts the forwarder and waits until it delivered
// those lines. The caller closes what it returns.
func (e *env) startLive(ctx context.Context, name string) (*live, error) {
	return e.startLiveOf(ctx, name, liveOptions{allocs: e.cfg.Allocs, dir: e.dir})
}

// liveOptions say what startLiveOf makes: allocs allocations below dir,
// laid out with Nomad's modes and FIFOs when nomadLayout, and the
// forwarder's extra flags.
type liveOptions struct {
	allocs      int
	dir         string
	nomadLayout bool
	flags       []string
}

func (e *env) startLiveOf(ctx context.Context, name string, o liveOptions) (*live, error) {
	e.progress("creating %d allocations x 2 streams", o.allocs)
	f, err := newFleet(o.dir, o.allocs, benchTask)
	if err != nil {
		return nil, err
	}
	if o.nomadLayout {
		if err := f.nomadLayout(benchTask); err != nil {
			f.close()
			return nil, err
		}
	}
	if err := writeAllocations(f.allocsFile, o.allocs); err != nil {
		f.close()
		return nil, err
	}
	r, err := listen(len(f.streams))
	if err != nil {
		f.close()
		return nil, err
	}
	l := &live{fleet: f, recv: r}
	if err := f.flushAll(e.perFlush()); err != nil {
		l.close()
		return nil, err
	}
	if err := e.startDaemon(name, l, o.flags...); err != nil {
		l.close()
		return nil, err
	}
	if err := r.waitCount(ctx, f.written.Load(), time.Minute); err != nil {
		log := l.daemon.output.tail(2000)
		l.close()
		return nil, fmt.Errorf("first lines of every stream: %w; the forwarder's log ends with:\n%s", err, log)
	}
	return l, nil
}

func (e *env) startDaemon(name string, l *live, flags ...string) error {
	args := append([]string{"run", "--offline", "--alloc-dir", l.fleet.allocDir, "--allocs-file", l.fleet.allocsFile,
		"--checkpoint", filepath.Join(filepath.Dir(l.fleet.allocDir), "checkpoint.msgpack")}, flags...)
	d, err := startChild(e.cfg.Forwarder, e.forwarderArgs(name, l.recv.url(), args...)...)
	l.daemon = d
	if err == nil {
		e.progress("forwarder running, pid %d", d.pid())
	}
	return err
}

// stopDaemon stops the forwarder cleanly and returns its peak RSS.
func (l *live) stopDaemon() (int64, error) {
	d := l.daemon
	l.daemon = nil
	if err := d.stop(); err != nil {
		return 0, err
	}
	_, rss := d.usage()
	return rss, nil
}

// perFlush is how many lines a stream writes per logmon flush.
func (e *env) perFlush() int {
	return max(1, e.cfg.Rate*int(logmonFlush)/int(time.Second))
}

// manyStreams: every stream written live; the forwarder's CPU over the
// window, its peak RSS, and the latency from each write to the receiver.
func manyStreams(ctx context.Context, e *env) ([]Row, error) {
	const name = "many-streams"
	l, err := e.startLive(ctx, name)
	if err != nil {
		return nil, err
	}
	defer l.close()
	f, r := l.fleet, l.recv

	wctx, stopWriters := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var writeErr error
	wg.Go(func() { writeErr = f.write(wctx, e.cfg.Rate) })
	defer func() { stopWriters(); wg.Wait() }()

	e.progress("writing %d lines/s to each of %d streams; measuring for %s after %s", e.cfg.Rate, len(f.streams), e.cfg.ManyStreams, e.cfg.Settle)
	if err := sleep(ctx, e.cfg.Settle); err != nil { // to a steady state
		return nil, err
	}
	r.startRecording()
	cpu, elapsed, err := cpuOver(ctx, l.daemon.pid(), e.cfg.ManyStreams)
	if err != nil {
		return nil, err
	}
	latencies := r.stopRecording()
	stopWriters()
	wg.Wait()
	if writeErr != nil {
		return nil, writeErr
	}
	written := f.written.Load()
	if err := r.waitCount(ctx, written, 30*time.Second); err != nil {
		return nil, fmt.Errorf("delivering the last lines: %w", err)
	}
	rss, err := l.stopDaemon()
	if err != nil {
		return nil, err
	}
	dups, gaps := r.faults()
	pct := 100 * cpu.Seconds() / elapsed.Seconds()
	p50, p99 := percentile(latencies, 0.50), percentile(latencies, 0.99)
	load := fmt.Sprintf("%d streams x %d lines/s, %s", len(f.streams), e.cfg.Rate, e.cfg.ManyStreams)
	return []Row{
		targetRow(name, load+": CPU of one core", "< 25 %", fmt.Sprintf("%.1f %%", pct), pct < 25),
		targetRow(name, "peak RSS", "< 64 MiB", fmtMiB(rss), rss < 64<<20),
		infoRow(name, fmt.Sprintf("latency write → receiver, p50 (%d lines)", len(latencies)), fmtDuration(p50)),
		targetRow(name, "latency write → receiver, p99", "< 250 ms", fmtDuration(p99), p99 < 250*time.Millisecond),
		deliveryRow(name, r, written, dups, gaps),
	}, nil
}

func deliveryRow(name string, r *receiver, written, dups, gaps int64) Row {
	got := r.count()
	return targetRow(name, "lines delivered", "all, once",
		fmt.Sprintf("%d of %d, %d twice, %d lost", got, written, dups, gaps), got == written && dups == 0 && gaps == 0)
}

// idle: the same streams, no writes: the forwarder's CPU over the window.
func idle(ctx context.Context, e *env) ([]Row, error) {
	const name = "idle"
	l, err := e.startLive(ctx, name)
	if err != nil {
		return nil, err
	}
	defer l.close()
	e.progress("measuring for %s without writes after %s", e.cfg.Idle, e.cfg.Settle)
	// Let the first checkpoint saves and the start-up scan pass.
	if err := sleep(ctx, e.cfg.Settle); err != nil {
		return nil, err
	}
	cpu, elapsed, err := cpuOver(ctx, l.daemon.pid(), e.cfg.Idle)
	if err != nil {
		return nil, err
	}
	if _, err := l.stopDaemon(); err != nil {
		return nil, err
	}
	pct := 100 * cpu.Seconds() / elapsed.Seconds()
	metric := fmt.Sprintf("%d streams, no writes for %s: CPU of one core", len(l.fleet.streams), e.cfg.Idle)
	return []Row{
		targetRow(name, metric, "< 1 %", fmt.Sprintf("%.2f %% (%.2f CPU-s)", pct, cpu.Seconds()), pct < 1),
	}, nil
}

// restart: the forwarder stopped after delivering every stream's lines
// (its checkpoint holds them all), a flush written to every stream while it
// is down, then started again: the time until every stream delivered a new
// line, and whether anything was sent twice.
func restart(ctx context.Context, e *env) ([]Row, error) {
	const name = "restart"
	l, err := e.startLive(ctx, name)
	if err != nil {
		return nil, err
	}
	defer l.close()
	f, r := l.fleet, l.recv
	if _, err := l.stopDaemon(); err != nil {
		return nil, err
	}
	if err := f.flushAll(e.perFlush()); err != nil {
		return nil, err
	}
	r.markResume()
	e.progress("restarting with %d checkpointed streams", len(f.streams))
	start := time.Now()
	if err := e.startDaemon(name, l); err != nil {
		return nil, err
	}
	all := len(f.streams)
	err = waitUntil(ctx, time.Minute, func() bool { n, _ := r.resumed(); return n == all },
		func() string { n, _ := r.resumed(); return fmt.Sprintf("%d of %d streams resumed", n, all) })
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
	dups, gaps := r.faults()
	return []Row{
		targetRow(name, fmt.Sprintf("all %d checkpointed streams resumed (first new line delivered), from exec", all), "≤ 2 s", fmtDuration(took), took <= 2*time.Second),
		targetRow(name, "lines sent again after the restart", "0", fmt.Sprint(dups), dups == 0),
		deliveryRow(name, r, written, dups, gaps),
	}, nil
}

// cpuOver measures the CPU time process pid uses over the next d.
func cpuOver(ctx context.Context, pid int, d time.Duration) (cpu, elapsed time.Duration, err error) {
	before, err := cpuTime(pid)
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	if err := sleep(ctx, d); err != nil {
		return 0, 0, err
	}
	after, err := cpuTime(pid)
	if err != nil {
		return 0, 0, err
	}
	return after - before, time.Since(start), nil
}

func sleep(ctx context.Context, d time.Duration) error {
	if !backoff.Sleep(ctx, d) {
		return ctx.Err()
	}
	return nil
}

// httpOutput: the throughput scenario's data, `run --offline --once` to an
// HTTP receiver (gzip, acknowledged: a batch counts once the receiver
// answered) and to the TCP receiver, alternately. No target: it reports
// what the acknowledged output costs beside the socket output.
func httpOutput(ctx context.Context, e *env) ([]Row, error) {
	const name = "http"
	cfg := e.cfg
	data, err := e.writeOnceData()
	if err != nil {
		return nil, err
	}
	r, err := listen(0)
	if err != nil {
		return nil, err
	}
	defer r.close()
	h, err := listenHTTP()
	if err != nil {
		return nil, err
	}
	defer h.close()

	var socket, web []onceRun
	var cpuRatios []float64
	for i := range cfg.Repeat {
		sr, err := timeOnce(ctx, r, cfg.Lines, cfg.Forwarder, e.forwarderArgs(name+"-tcp", r.url(), data.args(e.dir, "tcp", i)...)...)
		if err != nil {
			return nil, fmt.Errorf("forwarder to TCP: %w", err)
		}
		hr, err := timeOnce(ctx, h, cfg.Lines, cfg.Forwarder, e.forwarderArgs(name, h.url(), data.args(e.dir, "http", i)...)...)
		if err != nil {
			return nil, fmt.Errorf("forwarder to HTTP: %w", err)
		}
		socket, web = append(socket, sr), append(web, hr)
		cpuRatios = append(cpuRatios, hr.cpu.Seconds()/sr.cpu.Seconds())
		e.progress("run %d: to TCP %s CPU, %s; to HTTP %s CPU, %s (%.2fx CPU)", i+1,
			sr.cpu.Round(time.Millisecond), sr.wall.Round(time.Millisecond),
			hr.cpu.Round(time.Millisecond), hr.wall.Round(time.Millisecond), cpuRatios[i])
	}
	s, w := medianRun(socket), medianRun(web)
	lines := float64(cfg.Lines)
	perM := func(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()/lines*1e6) }
	rate := func(wall time.Duration) float64 { return lines / wall.Seconds() }
	vsSocket := func(metric, http, tcp, ratio string) Row {
		return Row{Scenario: name, Metric: metric, Target: "informational", Measured: http, Yardstick: "TCP: " + tcp, Ratio: ratio}
	}
	sent := float64(lines) * float64(cfg.Repeat)
	return []Row{
		vsSocket(fmt.Sprintf("%d lines of ~%d B, one stream, --once to HTTP (gzip, 200 at once), vs --once to TCP, alternately (median of %d): lines/s",
			cfg.Lines, data.size/int64(cfg.Lines), cfg.Repeat),
			fmtRate(rate(w.wall)), fmtRate(rate(s.wall)), fmtRatio(rate(w.wall)/rate(s.wall))),
		vsSocket("CPU-seconds per million lines", perM(w.cpu), perM(s.cpu), fmtRatio(median(cpuRatios))),
		vsSocket("peak RSS", fmtMiB(w.rss), fmtMiB(s.rss), fmtRatio(float64(w.rss)/float64(s.rss))),
		vsSocket("bytes sent per line (HTTP: gzipped request bodies)",
			fmt.Sprintf("%.0f B", float64(h.wire.Load())/sent), fmt.Sprintf("%.0f B", float64(h.bytes.Load())/sent),
			fmtRatio(float64(h.wire.Load())/float64(h.bytes.Load()))),
		infoRow(name, "lines per request", fmt.Sprintf("%.0f", float64(h.lines.Load())/float64(h.requests.Load()))),
	}, nil
}
