package forward

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/recv"
)

// source records what the writer said about its batches.
type source struct {
	epoch   atomic.Uint64
	mu      sync.Mutex
	written []uint64
	failed  []uint64
}

func (s *source) Epoch() uint64 { return s.epoch.Load() }

func (s *source) Written(b *Batch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.written = append(s.written, b.Seq)
}

func (s *source) Failed(b *Batch) {
	s.epoch.CompareAndSwap(b.Epoch, b.Epoch+1)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failed = append(s.failed, b.Seq)
}

func (s *source) verdicts() (written, failed []uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint64(nil), s.written...), append([]uint64(nil), s.failed...)
}

// flakyOutput dials connections that record writes; failDials dials fail
// first, and then failWrites writes fail.
type flakyOutput struct {
	mu         sync.Mutex
	buf        bytes.Buffer
	dials      int
	failDials  int
	failWrites int
	// dialedAt and failedAt are when each dial and each failed write
	// happened.
	dialedAt, failedAt []time.Time
}

func (o *flakyOutput) String() string { return "flaky" }

func (o *flakyOutput) Dial(context.Context) (io.WriteCloser, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.dials++
	o.dialedAt = append(o.dialedAt, time.Now())
	if o.failDials > 0 {
		o.failDials--
		return nil, errors.New("connection refused")
	}
	return flakyConn{o}, nil
}

type flakyConn struct{ o *flakyOutput }

func (c flakyConn) Close() error { return nil }

func (c flakyConn) Write(p []byte) (int, error) {
	c.o.mu.Lock()
	defer c.o.mu.Unlock()
	if c.o.failWrites > 0 {
		c.o.failWrites--
		c.o.failedAt = append(c.o.failedAt, time.Now())
		return 0, errors.New("broken pipe")
	}
	return c.o.buf.Write(p)
}

func (o *flakyOutput) String2() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

func submit(t *testing.T, w *Writer, src *source, seq uint64, data string) {
	t.Helper()
	var b *Batch
	select {
	case b = <-w.Free():
	case <-time.After(5 * time.Second):
		t.Fatal("no free batch")
	}
	b.Data = append(b.Data, data...)
	b.Lines = strings.Count(data, "\n")
	b.Source, b.Epoch, b.Seq = src, src.Epoch(), seq
	w.Submit(b)
}

func runWriter(t *testing.T, w *Writer) (stop func() error) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	return func() error {
		w.Close()
		select {
		case err := <-done:
			cancel()
			return err
		case <-time.After(10 * time.Second):
			cancel()
			return errors.New("writer did not stop")
		}
	}
}

func TestWritesInOrderAndReportsWritten(t *testing.T) {
	out := &flakyOutput{}
	w := New(Config{Output: out, Buffers: 4})
	stop := runWriter(t, w)
	src := &source{}
	for i := range 20 {
		submit(t, w, src, uint64(i), strings.Repeat("x", i)+"\n")
	}
	require.NoError(t, stop())
	written, failed := src.verdicts()
	assert.Len(t, written, 20)
	assert.Empty(t, failed)
	for i, s := range written {
		assert.Equal(t, uint64(i), s)
	}
	var want strings.Builder
	for i := range 20 {
		want.WriteString(strings.Repeat("x", i) + "\n")
	}
	assert.Equal(t, want.String(), out.String2())
	assert.Equal(t, 20.0, testutil.ToFloat64(w.cfg.Metrics.LinesWritten))
}

func TestFailedWriteFailsTheBatchAndDropsStaleOnes(t *testing.T) {
	out := &flakyOutput{failWrites: 1}
	w := New(Config{Output: out, Buffers: 4, Linger: -1, MaxBackoff: time.Millisecond})
	src := &source{}
	// Queue three batches before the writer runs: they go out in one write
	// that fails, so all three are failed and the source rewinds once.
	submit(t, w, src, 0, "a\n")
	submit(t, w, src, 1, "b\n")
	submit(t, w, src, 2, "c\n")
	stop := runWriter(t, w)
	require.Eventually(t, func() bool { _, f := src.verdicts(); return len(f) == 3 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, uint64(1), src.Epoch(), "one rewind, not three")

	// A batch made before the rewind (old epoch) is never written.
	b := <-w.Free()
	b.Data, b.Lines = append(b.Data, "stale\n"...), 1
	b.Source, b.Epoch, b.Seq = src, 0, 3
	w.Submit(b)
	submit(t, w, src, 4, "fresh\n")
	require.NoError(t, stop())
	written, failed := src.verdicts()
	assert.Equal(t, []uint64{4}, written)
	assert.Equal(t, []uint64{0, 1, 2, 3}, failed)
	assert.Equal(t, "fresh\n", out.String2())
	assert.Equal(t, 1.0, testutil.ToFloat64(w.cfg.Metrics.WriteErrors))
}

func TestReconnectsWithBackoffUntilTheOutputIsBack(t *testing.T) {
	out := &flakyOutput{failDials: 3}
	w := New(Config{Output: out, MaxBackoff: 5 * time.Millisecond})
	stop := runWriter(t, w)
	src := &source{}
	submit(t, w, src, 0, "hello\n")
	require.NoError(t, stop())
	written, _ := src.verdicts()
	assert.Equal(t, []uint64{0}, written)
	assert.Equal(t, 4, out.dials)
	assert.Equal(t, 3.0, testutil.ToFloat64(w.cfg.Metrics.DialErrors))
}

// A peer that accepts connections and resets them must not be redialled in
// a tight loop: every failed write waits, longer each time, until a write
// succeeds.
func TestFailedWritesBackOffUntilAWriteSucceeds(t *testing.T) {
	out := &flakyOutput{failWrites: 3}
	logs, observed := observer.New(zap.WarnLevel)
	w := New(Config{Output: out, Linger: -1, MaxBackoff: time.Second, Log: zap.New(logs)})
	w.minBackoff = 10 * time.Millisecond
	stop := runWriter(t, w)
	src := &source{}
	// The source does not resend, so each attempt gets a batch of its own.
	attempt := func(seq uint64) {
		submit(t, w, src, seq, fmt.Sprintf("line %d\n", seq))
		require.Eventually(t, func() bool { wr, f := src.verdicts(); return len(wr)+len(f) == int(seq)+1 },
			5*time.Second, time.Millisecond)
	}
	for seq := range uint64(4) {
		attempt(seq)
	}
	out.mu.Lock()
	out.failWrites = 1
	out.mu.Unlock()
	attempt(4)
	attempt(5)
	require.NoError(t, stop())

	written, failed := src.verdicts()
	assert.Equal(t, []uint64{0, 1, 2, 4}, failed)
	assert.Equal(t, []uint64{3, 5}, written)
	// Full jitter: the n-th wait in a row lies in [min*2^(n-1)/2, min*2^(n-1)].
	lows := []time.Duration{5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond, 5 * time.Millisecond}
	out.mu.Lock()
	failedAt, dialedAt := out.failedAt, out.dialedAt
	out.mu.Unlock()
	require.Len(t, failedAt, 4)
	require.Len(t, dialedAt, 5)
	for i, failed := range failedAt {
		assert.GreaterOrEqual(t, dialedAt[i+1].Sub(failed), lows[i], "redial %d came before its backoff", i+1)
	}

	failures := observed.FilterMessageSnippet("write to output failed").All()
	require.Len(t, failures, 4)
	for i, e := range failures {
		wait, ok := e.ContextMap()["retry_in"].(time.Duration)
		require.True(t, ok, "the warning says when the retry comes: %v", e.ContextMap())
		assert.GreaterOrEqual(t, wait, lows[i], "wait %d", i)
		assert.LessOrEqual(t, wait, 2*lows[i], "wait %d: only a good write resets the backoff", i)
		assert.GreaterOrEqual(t, dialedAt[i+1].Sub(failedAt[i]), wait, "redial %d came before its backoff", i+1)
	}
}

func TestHardStopFailsWhatIsQueued(t *testing.T) {
	out := &flakyOutput{failDials: 1 << 30} // never reachable
	w := New(Config{Output: out, MaxBackoff: time.Millisecond})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	src := &source{}
	submit(t, w, src, 0, "a\n")
	submit(t, w, src, 1, "b\n")
	require.Eventually(t, func() bool { out.mu.Lock(); defer out.mu.Unlock(); return out.dials > 2 }, 5*time.Second, time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	written, failed := src.verdicts()
	assert.Empty(t, written)
	assert.ElementsMatch(t, []uint64{0, 1}, failed)
	assert.Len(t, w.Free(), cap(w.Free()), "every buffer is back in the pool")
}

func TestStdoutCannotBeReopened(t *testing.T) {
	o, err := ParseOutput("stdout", &bytes.Buffer{})
	require.NoError(t, err)
	_, err = o.Dial(t.Context())
	require.NoError(t, err)
	_, err = o.Dial(t.Context())
	require.ErrorIs(t, err, ErrPermanent)
}

func TestParseOutput(t *testing.T) {
	for spec, want := range map[string]string{
		"stdout":                  "stdout",
		"tcp://127.0.0.1:9000":    "tcp://127.0.0.1:9000",
		"unix:///run/vector.sock": "unix:///run/vector.sock",
	} {
		o, err := ParseOutput(spec, io.Discard)
		require.NoError(t, err, spec)
		assert.Equal(t, want, o.String())
	}
	for _, bad := range []string{"tcp://nohost", "udp://1.2.3.4:5", "unix://", "ftp://x"} {
		_, err := ParseOutput(bad, io.Discard)
		assert.Error(t, err, bad)
	}
}

func TestWritesReachATCPPeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		got <- string(b)
	}()
	o, err := ParseOutput("tcp://"+ln.Addr().String(), io.Discard)
	require.NoError(t, err)
	w := New(Config{Output: o})
	stop := runWriter(t, w)
	src := &source{}
	submit(t, w, src, 0, "one\n")
	submit(t, w, src, 1, "two\n")
	require.NoError(t, stop())
	assert.Equal(t, "one\ntwo\n", <-got)
}

func BenchmarkWriterThroughput(b *testing.B) {
	w := New(Config{Output: discardOutput{}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	src := &countingSource{}
	line := []byte(strings.Repeat("x", 299) + "\n")
	b.SetBytes(int64(len(line)) * 800)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		batch := <-w.Free()
		for range 800 {
			batch.Data = append(batch.Data, line...)
		}
		batch.Lines, batch.Source, batch.Seq = 800, src, uint64(i)
		w.Submit(batch)
	}
}

// countingSource only counts, so the benchmark measures the writer alone.
type countingSource struct{ written atomic.Int64 }

func (*countingSource) Epoch() uint64      { return 0 }
func (s *countingSource) Written(b *Batch) { s.written.Add(int64(b.Lines)) }
func (*countingSource) Failed(*Batch)      {}

type discardOutput struct{}

func (discardOutput) String() string { return "discard" }

func (discardOutput) Dial(context.Context) (io.WriteCloser, error) { return nopCloser{io.Discard}, nil }

func TestPeerThatClosesGracefullyLosesNothing(t *testing.T) {
	r, err := recv.Listen("")
	require.NoError(t, err)
	o, err := ParseOutput(r.URL(), io.Discard)
	require.NoError(t, err)
	w := New(Config{Output: o, MaxBackoff: 5 * time.Millisecond, Linger: -1})
	stop := runWriter(t, w)
	src := &source{}
	submit(t, w, src, 0, "before\n")
	require.Eventually(t, func() bool { return r.Count() == 1 }, 5*time.Second, time.Millisecond)
	r.Stop() // the receiver goes away gracefully...
	require.NoError(t, r.Start())
	for i := range 50 {
		submit(t, w, src, uint64(i+1), fmt.Sprintf("after %d\n", i))
	}
	require.NoError(t, stop())
	_, failed := src.verdicts()
	require.Eventually(t, func() bool { return r.Count() >= 51-len(failed) }, 5*time.Second, time.Millisecond)
	// Every batch is either received or failed (to be resent by its
	// stream): none is reported written and lost.
	written, _ := src.verdicts()
	assert.Equal(t, len(written), r.Count())
	r.Stop()
}

// writeSyscalls is how many write-type system calls (write, writev, ...)
// this process has made, from /proc/self/io.
func writeSyscalls(t *testing.T) int {
	t.Helper()
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skipf("cannot count write system calls: %v", err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "syscw: "); ok {
			n, err := strconv.Atoi(v)
			require.NoError(t, err)
			return n
		}
	}
	t.Skip("/proc/self/io has no syscw")
	return 0
}

// The batches a write gathers go out in one writev, not one write each.
func TestAGroupIsOneWritev(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			addr := ""
			if network == "unix" {
				addr = "unix:" + filepath.Join(t.TempDir(), "vector.sock")
			}
			r, err := recv.Listen(addr)
			require.NoError(t, err)
			defer r.Stop()
			o, err := ParseOutput(r.URL(), io.Discard)
			require.NoError(t, err)
			const batches = 16
			w := New(Config{Output: o, Buffers: batches, Linger: -1})
			src := &source{}
			// Queued before Run starts, so they form one group.
			for i := range batches {
				submit(t, w, src, uint64(i), fmt.Sprintf("line %d\n", i))
			}
			before := writeSyscalls(t)
			stop := runWriter(t, w)
			require.Eventually(t, func() bool { wr, _ := src.verdicts(); return len(wr) == batches }, 5*time.Second, time.Millisecond)
			writes := writeSyscalls(t) - before
			require.NoError(t, stop())
			require.Eventually(t, func() bool { return r.Count() == batches }, 5*time.Second, time.Millisecond)
			assert.Less(t, writes, batches/2, "%d batches took %d write system calls", batches, writes)
		})
	}
}

// A batch that grew far past its size (one huge line escapes to several
// times its length) does not keep its buffer in the pool for good.
func TestAnOversizedBufferIsNotKeptInThePool(t *testing.T) {
	out := &flakyOutput{}
	w := New(Config{Output: out, Buffers: 2, BatchBytes: 1024, Linger: -1})
	size := w.pool.size
	stop := runWriter(t, w)
	src := &source{}
	huge := strings.Repeat("x", maxGrowth*size) + "\n"
	submit(t, w, src, 0, huge)
	grown := strings.Repeat("y", 2*size) + "\n"
	submit(t, w, src, 1, grown)
	require.NoError(t, stop())
	written, _ := src.verdicts()
	require.Equal(t, []uint64{0, 1}, written)
	assert.Equal(t, huge+grown, out.String2())

	require.Len(t, w.Free(), 2)
	caps := []int{cap((<-w.Free()).Data), cap((<-w.Free()).Data)}
	slices.Sort(caps)
	assert.Equal(t, size, caps[0], "the huge batch's buffer was replaced by one of the configured size")
	assert.Greater(t, caps[1], len(grown), "a buffer that grew a little is kept")
	assert.LessOrEqual(t, caps[1], maxGrowth*size)
}

func TestWriterIsNamedAfterItsOutput(t *testing.T) {
	o, err := ParseOutput("tcp://127.0.0.1:9000", io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "tcp://127.0.0.1:9000", New(Config{Output: o}).String())
}
