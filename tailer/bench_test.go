package tailer

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nxadm/tail"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/checkpoint"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/enrich"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/forward"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/safefs"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/taskstream"
)

// The benchmarks here count one op per line, so that allocs/op is
// allocations per line, and report cpu-ns/op: the process's CPU time
// (user+sys, every goroutine) per line, which is what a shipper costs its
// node, where ns/op is wall time.

// benchBlock is a thousand varied lines of about 100 bytes; some need JSON
// escapes (quotes, backslashes, tabs, non-ASCII).
func benchBlock() (block []byte, lineEnds []int) {
	for i := range 1000 {
		switch i % 10 {
		case 0, 1, 2, 3, 4:
			block = fmt.Appendf(block, "2026-11-25T14:00:%02d.%03dZ level=info msg=request method=GET path=/api/v1/items/%d status=200 took=%dms", i%60, i%1000, i*7919%100000, i%97)
		case 5, 6:
			block = fmt.Appendf(block, `{"level":"warn","ts":1764079200.%06d,"msg":"cache miss","key":"user:%d","backend":"redis-%d"}`, i*31%1000000, i*13, i%4)
		case 7:
			block = fmt.Appendf(block, "\tat com.example.orders.Service.handle(Service.java:%d) in worker-%d", i%900, i%16)
		case 8:
			block = fmt.Appendf(block, `WARN could not open C:\data\orders\%d.log: "access denied" (retry %d of 5)`, i, i%5)
		default:
			block = fmt.Appendf(block, "INFO Übertragung für Kunde %d abgeschlossen: %d Einträge ✓", i*17%10000, i%500)
		}
		block = append(block, '\n')
		lineEnds = append(lineEnds, len(block))
	}
	return block, lineEnds
}

// benchFileLines caps the size of a benchmark's file: b.N lines are laid
// out as passes over files of at most this many lines.
const benchFileLines = 200_000

// benchFiles lays out exactly n lines of benchBlock below allocDir, as
// the log file server.stdout.0 of allocations: every pass but the last
// reads one file of benchFileLines lines (the same allocation each time,
// so no gigabytes on disk; hard links would do, but the tailer refuses a
// file with more than one name), the last one holds the rest. It returns
// the allocation of each pass and the total size.
func benchFiles(b *testing.B, allocDir string, n int) (passes []string, size int64) {
	b.Helper()
	block, ends := benchBlock()
	lines := func(k int) []byte {
		data := bytes.Repeat(block, k/len(ends))
		if rest := k % len(ends); rest > 0 {
			data = append(data, block[:ends[rest-1]]...)
		}
		return data
	}
	place := func(i int, data []byte) string {
		alloc := fmt.Sprintf("e333a86a-cefe-d673-f65e-%012d", i)
		dir := filepath.Join(allocDir, alloc, "alloc", "logs")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "server.stdout.0"), data, 0o644); err != nil {
			b.Fatal(err)
		}
		return alloc
	}
	full := ""
	for ; n >= benchFileLines; n -= benchFileLines {
		if full == "" {
			full = place(0, lines(benchFileLines))
		}
		passes = append(passes, full)
		size += int64(benchFileLines) * int64(len(block)) / int64(len(ends))
	}
	if n > 0 {
		data := lines(n)
		passes = append(passes, place(1, data))
		size += int64(len(data))
	}
	return passes, size
}

func benchFile(allocDir, alloc string) string {
	return filepath.Join(allocDir, alloc, "alloc", "logs", "server.stdout.0")
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, since time.Duration) {
	b.ReportMetric(float64(cpuTime(b)-since)/float64(b.N), "cpu-ns/op")
}

// BenchmarkFramer splits lines out of a read buffer.
func BenchmarkFramer(b *testing.B) {
	block, _ := benchBlock()
	fr := framer{max: 102400}
	var rest []byte
	var off int64
	b.SetBytes(int64(len(block) / 1000))
	b.ReportAllocs()
	for b.Loop() {
		if len(rest) == 0 {
			rest, off = block, 0
		}
		n, _, _ := fr.frame(rest, Position{Offset: off}) // every line ends in \n: one per call
		rest, off = rest[n:], off+int64(n)
	}
}

// BenchmarkPipeline is the whole per-line path in one process: a stream
// reads a file, frames and renders its lines into batches, and the writer
// writes them (to io.Discard).
func BenchmarkPipeline(b *testing.B) {
	allocDir := b.TempDir()
	allocs, size := benchFiles(b, allocDir, b.N)
	root, err := safefs.OpenRoot(allocDir)
	if err != nil {
		b.Fatal(err)
	}
	defer root.Close()
	// A checkpoint per pass: a pass over the same file reads it all again.
	stores := make([]*checkpoint.Store, len(allocs))
	for i := range stores {
		if stores[i], err = checkpoint.Open(filepath.Join(b.TempDir(), "checkpoint.msgpack"), nil); err != nil {
			b.Fatal(err)
		}
	}
	out, err := forward.ParseOutput("stdout", io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	metrics := forward.NewMetrics(nil)
	w := forward.New(forward.Config{Output: out, Metrics: metrics})
	var wg sync.WaitGroup
	b.SetBytes(size / int64(b.N))
	b.ReportAllocs()
	cpu := cpuTime(b)
	b.ResetTimer()
	wg.Go(func() { w.Run(context.Background()) })
	for i, alloc := range allocs {
		m := NewManager(Config{Root: root, Output: w, Checkpoint: stores[i]})
		target := enrich.Desired{
			Target: taskstream.ID{AllocID: alloc, Task: "server", Stream: enrich.Stdout},
			Meta: enrich.Meta{Namespace: "default", NodeID: "c055d2fa-60f1-812e-3b10-5985f6b956c8", NodeName: "vm",
				Datacenter: "dc1", JobID: "http", JobName: "http", JobType: "service", GroupName: "app", TaskName: "server",
				AllocID: alloc, AllocName: "http.app[0]"},
		}
		if err := m.RunOnce(context.Background(), []enrich.Desired{target}); err != nil {
			b.Fatal(err)
		}
	}
	w.Close()
	wg.Wait()
	b.StopTimer()
	reportCPU(b, cpu)
	if got := testutil.ToFloat64(metrics.LinesWritten); got != float64(b.N) {
		b.Fatalf("wrote %v lines, want %d", got, b.N)
	}
}

// BenchmarkReadLines reads the lines of a file as nxadm/tail hands them
// out (a string and a channel send per line) and as the tailer does
// (pread into a 128 KiB buffer, lines framed in place). The README's
// reason for not using nxadm/tail.
func BenchmarkReadLines(b *testing.B) {
	b.Run("nxadm-tail", func(b *testing.B) {
		allocDir := b.TempDir()
		allocs, _ := benchFiles(b, allocDir, b.N)
		b.ReportAllocs()
		cpu := cpuTime(b)
		b.ResetTimer()
		n := 0
		for _, alloc := range allocs {
			t, err := tail.TailFile(benchFile(allocDir, alloc), tail.Config{MustExist: true, Logger: tail.DiscardingLogger})
			if err != nil {
				b.Fatal(err)
			}
			for range t.Lines {
				n++
			}
			t.Cleanup()
		}
		b.StopTimer()
		reportCPU(b, cpu)
		if n != b.N {
			b.Fatalf("read %d lines, want %d", n, b.N)
		}
	})
	b.Run("tailer", func(b *testing.B) {
		allocDir := b.TempDir()
		allocs, _ := benchFiles(b, allocDir, b.N)
		buf := make([]byte, readChunk)
		fr := framer{max: 102400}
		b.ReportAllocs()
		cpu := cpuTime(b)
		b.ResetTimer()
		n := 0
		for _, alloc := range allocs {
			n += readAllLines(b, benchFile(allocDir, alloc), buf, &fr)
		}
		b.StopTimer()
		reportCPU(b, cpu)
		if n != b.N {
			b.Fatalf("read %d lines, want %d", n, b.N)
		}
	})
}

// readAllLines frames the lines of path as a stream does, without
// rendering them.
func readAllLines(b *testing.B, path string, buf []byte, fr *framer) (lines int) {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	lf := &logFile{f: f, fd: int(f.Fd())}
	var off int64
	for {
		k, err := lf.readAt(buf, off)
		if err != nil {
			b.Fatal(err)
		}
		if k == 0 {
			return lines
		}
		for data := buf[:k]; len(data) > 0; {
			c, _, ok := fr.frame(data, Position{Offset: off})
			data, off = data[c:], off+int64(c)
			if ok {
				lines++
			}
		}
	}
}
