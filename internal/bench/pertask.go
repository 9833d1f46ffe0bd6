package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/logmon"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/multiline"
)

// The targets of per-task handling: CPU per line at most this many times
// the plain forwarder's on the same file.
const (
	maxMultilineRatio = 1.5
	maxJSONRatio      = 2.5
)

// pertask: the cost of per-task handling. Each handled run reads a file
// made for it (stack traces for multiline java, JSON lines for json) with
// `run --offline --once`, alternately with a plain run over the same
// file, so that the ratio compares the same bytes; the rate limit is
// measured on the throughput scenario's kind of lines, with a limit never
// reached (every line still goes through the limiter and is rendered).
func pertask(ctx context.Context, e *env) ([]Row, error) {
	const name = "pertask"
	cfg := e.cfg
	lines := max(cfg.Lines/2, 1000)
	r, err := listen(0)
	if err != nil {
		return nil, err
	}
	defer r.close()

	type variant struct {
		label, file string
		flags       []string
		records     int   // what the receiver gets: events, with multiline
		size        int64 // of the file
		target      float64
	}
	variants := []*variant{
		{label: "multiline java, stack-trace-heavy log", file: "traces", flags: []string{"--multiline", "java"}, target: maxMultilineRatio},
		{label: "format json, JSON log", file: "json", flags: []string{"--format", "json"}, target: maxJSONRatio},
		{label: "format json + level detect, JSON log", file: "json", flags: []string{"--format", "json", "--level", "detect"}},
		{label: "rate limit not reached, mixed log", file: "mixed", flags: []string{"--rate-limit", "1000000000/s"}},
		{label: "multiline java, mixed log (few traces)", file: "mixed", flags: []string{"--multiline", "java"}},
	}
	data := map[string]*onceData{}
	for i, kind := range []string{"traces", "json", "mixed"} {
		d := &onceData{allocDir: filepath.Join(e.dir, kind, "alloc"), allocsFile: filepath.Join(e.dir, kind, "allocations.json")}
		logDir, err := logmon.AllocLogDir(d.allocDir, benchAllocID(0))
		if err != nil {
			return nil, err
		}
		d.file = filepath.Join(logDir, benchTask+".stdout.0")
		e.progress("writing %d lines of %s", lines, kind)
		switch kind {
		case "traces":
			d.size, err = writeTraces(d.file, lines, uint64(i))
		case "json":
			d.size, err = writeJSONLines(d.file, lines, uint64(i))
		default:
			d.size, err = writeLines(d.file, lines, uint64(i))
		}
		if err != nil {
			return nil, err
		}
		if err := writeAllocations(d.allocsFile, 1); err != nil {
			return nil, err
		}
		data[kind] = d
	}
	for _, v := range variants {
		v.size = data[v.file].size
		v.records = lines
		if len(v.flags) > 1 && v.flags[0] == "--multiline" {
			if v.records, err = countEvents(data[v.file].file, v.flags[1]); err != nil {
				return nil, err
			}
		}
	}

	runs := 0
	once := func(d *onceData, records int, flags ...string) (onceRun, error) {
		runs++
		args := append(d.args(e.dir, name, runs), flags...)
		return timeOnce(ctx, r, records, cfg.Forwarder, e.forwarderArgs(name, r.url(), args...)...)
	}
	var rows []Row
	for _, v := range variants {
		var ratios []float64
		var plain, handled []onceRun
		for i := range cfg.Repeat {
			p, err := once(data[v.file], lines)
			if err != nil {
				return nil, fmt.Errorf("plain over %s: %w", v.file, err)
			}
			h, err := once(data[v.file], v.records, v.flags...)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", v.label, err)
			}
			plain, handled = append(plain, p), append(handled, h)
			ratios = append(ratios, h.cpu.Seconds()/p.cpu.Seconds())
			e.progress("%s, run %d: plain %s CPU, handled %s CPU (%.2fx)", v.label, i+1,
				p.cpu.Round(time.Millisecond), h.cpu.Round(time.Millisecond), ratios[i])
		}
		p, h, ratio := medianRun(plain), medianRun(handled), median(ratios)
		perM := func(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()/float64(lines)*1e6) }
		metric := fmt.Sprintf("%s (%d lines of ~%d B, %d records): CPU-seconds per million lines, against plain on the same file",
			v.label, lines, v.size/int64(lines), v.records)
		row := infoRow(name, metric, perM(h.cpu))
		if v.target > 0 {
			row = targetRow(name, metric, fmt.Sprintf("≤ %.1fx plain", v.target), perM(h.cpu), ratio <= v.target)
		}
		row.Yardstick, row.Ratio = perM(p.cpu), fmtRatio(ratio)
		rows = append(rows, row)
	}
	return rows, nil
}

// countEvents is how many events the preset makes of a file: what the
// receiver gets.
func countEvents(path, preset string) (int, error) {
	rules, err := multiline.Parse(preset)
	if err != nil {
		return 0, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	c := multiline.NewCombiner[int](rules, 0, 0)
	n := 0
	emit := func(multiline.Event[int]) { n++ }
	for l := range bytes.SplitSeq(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
		c.Add(multiline.Line[int]{Data: l}, emit)
	}
	c.Flush(emit)
	return n, nil
}

// writeTraces writes n lines of a Java service that fails often: log
// lines, and exceptions with 5 to 40 frames, causes and elided frames;
// about 80% of the lines belong to a stack trace.
func writeTraces(path string, n int, seed uint64) (int64, error) {
	g := newLineGen(seed)
	return writeGenerated(path, n, func(dst []byte, left int) ([]byte, int) {
		r := g.rng
		if r.IntN(5) > 0 {
			dst = fmt.Appendf(dst, "2026-11-25 14:%02d:%02d.%03d INFO  [main] c.e.%s.Service - %s %s done\n",
				r.IntN(60), r.IntN(60), r.IntN(1000), g.pick(g.words), g.pick(g.words), g.pick(g.words))
			return dst, 1
		}
		dst = fmt.Appendf(dst, "2026-11-25 14:%02d:%02d.%03d ERROR [worker-%d] c.e.%s.Service - request failed\n",
			r.IntN(60), r.IntN(60), r.IntN(1000), r.IntN(16), g.pick(g.words))
		written := 1
		frames := 5 + r.IntN(36)
		dst = fmt.Appendf(dst, "java.lang.IllegalStateException: %s %s for id %d\n", g.pick(g.words), g.pick(g.words), r.IntN(1<<20))
		written++
		for f := 0; f < frames && written < left; f++ {
			dst = fmt.Appendf(dst, "\tat com.example.%s.%s.handle(%s.java:%d)\n", g.pick(g.words), "Service", "Service", r.IntN(900))
			written++
			if f == frames/2 && r.IntN(2) == 0 && written+2 < left {
				dst = fmt.Appendf(dst, "Caused by: java.io.IOException: %s %s\n\t... %d more\n", g.pick(g.words), g.pick(g.words), r.IntN(30))
				written += 2
			}
		}
		return dst, written
	})
}

// writeJSONLines writes n lines of a service that logs JSON objects of
// about 200 bytes, as zap, logrus or bunyan do.
func writeJSONLines(path string, n int, seed uint64) (int64, error) {
	g := newLineGen(seed)
	return writeGenerated(path, n, func(dst []byte, _ int) ([]byte, int) {
		r := g.rng
		dst = fmt.Appendf(dst, `{"level":"%s","ts":"2026-11-25T14:%02d:%02d.%06dZ","logger":"svc.%s","caller":"handler/%s.go:%d","msg":"%s %s","request":{"method":"%s","path":"/api/v1/items/%d","status":%d},"latency_ms":%d.%03d,"user_id":%d}`+"\n",
			g.pick(g.levels), r.IntN(60), r.IntN(60), r.IntN(1000000), g.pick(g.words), g.pick(g.words), r.IntN(400),
			g.pick(g.words), g.pick(g.words), g.pick(g.methods), r.IntN(100000), 200+r.IntN(4)*100, r.IntN(900), r.IntN(1000), r.IntN(1<<20))
		return dst, 1
	})
}

// writeGenerated writes n lines made by next (which appends some lines,
// at most left, and says how many) to path, and returns its size.
func writeGenerated(path string, n int, next func(dst []byte, left int) ([]byte, int)) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, fmt.Errorf("create log file: %w", err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var size int64
	buf := make([]byte, 0, 8<<10)
	for written := 0; written < n; {
		var k int
		buf, k = next(buf[:0], n-written)
		written += k
		size += int64(len(buf))
		w.Write(buf)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return 0, fmt.Errorf("write log file: %w", err)
	}
	return size, f.Close()
}
