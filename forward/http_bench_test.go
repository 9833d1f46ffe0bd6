package forward

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/enrich"
)

// benchData renders n lines the way a stream does, with typical metadata
// and messages of 60-200 bytes.
func benchData(n int) []byte {
	idx := 0
	r := enrich.NewRenderer("stdout", enrich.Meta{
		Namespace: "default", NodeID: "f0f0f0f0-1111-2222-3333-444444444444", NodeName: "client-1", Datacenter: "dc1",
		JobID: "web", JobName: "web", JobType: "service", GroupName: "app", TaskName: "server",
		AllocID: "977ac344-4ea7-a153-a4b6-95ed026410d6", AllocName: "web.app[0]", AllocIndex: &idx,
	})
	r.SetFile("/opt/nomad/data/alloc/977ac344-4ea7-a153-a4b6-95ed026410d6/alloc/logs/server.stdout.0")
	ts := enrich.AppendTimestamp(nil, time.Date(2026, 11, 25, 14, 0, 0, 123456789, time.UTC))
	var out []byte
	off := int64(0)
	for i := range n {
		msg := fmt.Sprintf(`10.0.%d.%d - - [25/Nov/2026:14:00:00 +0000] "GET /api/v1/items/%d HTTP/1.1" %d %d "-" "curl/8.5.0" rt=%d.%03d`,
			i%256, i*7%256, i*13, 200+i%3*100, 100+i*31%5000, i%3, i*17%1000)
		out = r.AppendLine(out, ts, []byte(msg), off, false)
		off += int64(len(msg) + 1)
	}
	return out
}

// BenchmarkHTTPEncode measures gzipping one full request (1 MiB of
// rendered lines) at the level the writer uses and at the default level.
func BenchmarkHTTPEncode(b *testing.B) {
	data := benchData(8000)
	data = data[:bytes.LastIndexByte(data[:1<<20], '\n')+1]
	lines := bytes.Count(data, newline)
	for _, level := range []int{gzip.HuffmanOnly, gzip.BestSpeed, gzip.DefaultCompression} {
		b.Run(fmt.Sprintf("level=%d", level), func(b *testing.B) {
			zw, _ := gzip.NewWriterLevel(nil, level)
			var body bytes.Buffer
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				body.Reset()
				zw.Reset(&body)
				zw.Write(data)
				zw.Close()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*lines), "ns/line")
			b.ReportMetric(float64(len(data))/float64(body.Len()), "ratio")
		})
	}
}

// BenchmarkHTTPWriterEncode is the writer's own path: a chunk of batches
// into a pooled gzip writer and body buffer.
func BenchmarkHTTPWriterEncode(b *testing.B) {
	w := NewHTTP(HTTPConfig{URL: &url.URL{Scheme: "http", Host: "127.0.0.1:1", Path: "/"}})
	data := benchData(4000)
	var c chunk
	for i := 0; i < len(data); {
		end := min(len(data), i+w.BatchBytes())
		end = i + bytes.LastIndexByte(data[i:end], '\n') + 1
		c = append(c, span{len(c), data[i:end]})
		i = end
	}
	lines := bytes.Count(data, newline)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		w.bodies.Put(w.encode(c))
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*lines), "ns/line")
}

// benchSource acknowledges batches to a channel. The batch itself goes
// back to the pool when Written returns: only its size is passed on.
type benchSource struct{ acks chan [2]int }

func (s *benchSource) Epoch() uint64    { return 0 }
func (s *benchSource) Written(b *Batch) { s.acks <- [2]int{b.Lines, len(b.Data)} }
func (s *benchSource) Failed(*Batch)    {} // only at the end, on the hard stop

// BenchmarkWriters pushes rendered lines through each writer to a local
// receiver that reads and discards (so that the receiver's work is as
// small as it gets), from 4 sources that each keep two batches in the
// writer, as streams do. cpu-ns/line is the process's CPU time (user +
// system, receiver included) per line.
func BenchmarkWriters(b *testing.B) {
	data := benchData(20000)
	for _, kind := range []string{"socket", "http"} {
		b.Run(kind, func(b *testing.B) {
			var w interface {
				Free() <-chan *Batch
				Submit(*Batch)
				BatchBytes() int
				Run(context.Context) error
				Close()
			}
			switch kind {
			case "socket":
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				defer ln.Close()
				go func() {
					for {
						c, err := ln.Accept()
						if err != nil {
							return
						}
						go func() { io.Copy(io.Discard, c); c.Close() }()
					}
				}()
				out, _ := ParseOutput("tcp://"+ln.Addr().String(), nil)
				w = New(Config{Output: out})
			case "http":
				srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
					io.Copy(io.Discard, r.Body)
				}))
				defer srv.Close()
				u, _ := url.Parse(srv.URL)
				w = NewHTTP(HTTPConfig{URL: u})
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- w.Run(ctx) }()
			defer func() { cancel(); <-done }()

			const sources = 4
			srcs := make([]*benchSource, sources)
			for i := range srcs {
				srcs[i] = &benchSource{acks: make(chan [2]int, 2)}
			}
			fill := func(bt *Batch, pos int) int {
				for len(bt.Data) < w.BatchBytes() {
					if pos >= len(data) {
						pos = 0
					}
					end := pos + bytes.IndexByte(data[pos:], '\n') + 1
					bt.Data = append(bt.Data, data[pos:end]...)
					bt.Lines++
					pos = end
				}
				return pos
			}
			var ru0, ru1 syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			lines, bytesSent := 0, 0
			b.ResetTimer()
			// Each iteration confirms one batch of some source; sources
			// refill as streams would.
			pos := 0
			for _, s := range srcs {
				for range 2 {
					bt := <-w.Free()
					pos = fill(bt, pos)
					bt.Source = s
					w.Submit(bt)
				}
			}
			for i := 0; i < b.N; i++ {
				s := srcs[i%sources]
				ack := <-s.acks
				lines += ack[0]
				bytesSent += ack[1]
				nb := <-w.Free()
				pos = fill(nb, pos)
				nb.Source = s
				w.Submit(nb)
			}
			b.StopTimer()
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
			cpu := time.Duration(syscall.TimevalToNsec(ru1.Utime) - syscall.TimevalToNsec(ru0.Utime) +
				syscall.TimevalToNsec(ru1.Stime) - syscall.TimevalToNsec(ru0.Stime))
			b.ReportMetric(float64(lines)/b.Elapsed().Seconds(), "lines/s")
			b.ReportMetric(float64(bytesSent)/b.Elapsed().Seconds()/1e6, "MB/s")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(lines), "cpu-ns/line")
		})
	}
}
