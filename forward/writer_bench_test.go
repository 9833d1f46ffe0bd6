package forward

import (
	"bytes"
	"context"
	"io"
	"sync"
	"testing"
)

// nopSource is told nothing: the benchmark measures the writer alone.
type nopSource struct{}

func (nopSource) Epoch() uint64  { return 0 }
func (nopSource) Written(*Batch) {}
func (nopSource) Failed(*Batch)  {}

// BenchmarkWriter hands the writer full batches of rendered lines, as
// streams do under load, and lets it write them (to io.Discard). One op
// is one batch; allocs/op must stay 0.
func BenchmarkWriter(b *testing.B) {
	out, err := ParseOutput("stdout", io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	w := New(Config{Output: out})
	line := []byte(`{"timestamp":"2026-11-25T14:00:00.123456789Z","message":"GET /api/v1/items/4711 200","stream":"stdout","file":"/opt/nomad/data/alloc/e333a86a-cefe-d673-f65e-b5a2e1172d99/alloc/logs/server.stdout.0","offset":123456,"nomad":{"namespace":"default","job_name":"http","task_name":"server","alloc_id":"e333a86a-cefe-d673-f65e-b5a2e1172d99"}}` + "\n")
	lines := w.BatchBytes() / len(line)
	data := bytes.Repeat(line, lines)
	var wg sync.WaitGroup
	wg.Go(func() { w.Run(context.Background()) })
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		batch := <-w.Free()
		batch.Data = append(batch.Data[:0], data...)
		batch.Lines, batch.Source = lines, nopSource{}
		w.Submit(batch)
	}
	w.Close()
	wg.Wait()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*lines), "ns/line")
}
