package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// receiver is the TCP peer of every scenario, in the place of Vector's
// socket source. Its read loop is that of the shared yardstick receiver
// (bufio.Reader.ReadSlice over a 1 MiB buffer): it counts lines and bytes
// and, when it tracks streams, reads the mark that the live writers put at
// the start of each message (see appendMark) to check order, spot lines
// sent twice or lost, and measure the latency from the write.
type receiver struct {
	ln    net.Listener
	track bool
	wg    sync.WaitGroup

	lines  atomic.Int64
	bytes  atomic.Int64
	lastAt atomic.Int64 // unix ns of the last line

	mu        sync.Mutex
	conns     map[net.Conn]bool
	streams   []seen
	dups      int64 // lines whose sequence number was delivered before
	gaps      int64 // sequence numbers skipped
	recording bool
	latencies []int32 // µs, while recording
}

// seen is what the receiver knows of one live stream.
type seen struct {
	next       int64 // the sequence number expected next
	resumeFrom int64 // markResume: the first sequence number after a restart
	resumedAt  int64 // unix ns when resumeFrom (or later) arrived, 0 before
}

// listen starts a receiver on 127.0.0.1. streams > 0 makes it track that
// many live streams.
func listen(streams int) (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the forwarder: %w", err)
	}
	r := &receiver{ln: ln, track: streams > 0, conns: make(map[net.Conn]bool), streams: make([]seen, streams)}
	r.wg.Go(r.accept)
	return r, nil
}

func (r *receiver) addr() string { return r.ln.Addr().String() }

// url is the forwarder's --output for this receiver.
func (r *receiver) url() string { return "tcp://" + r.addr() }

func (r *receiver) close() {
	r.ln.Close()
	r.mu.Lock()
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

func (r *receiver) accept() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		r.conns[c] = true
		r.mu.Unlock()
		r.wg.Go(func() { r.serve(c) })
	}
}

func (r *receiver) serve(c net.Conn) {
	defer func() {
		r.mu.Lock()
		delete(r.conns, c)
		r.mu.Unlock()
		c.Close()
	}()
	br := bufio.NewReaderSize(c, 1<<20)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			for errors.Is(err, bufio.ErrBufferFull) { // a very long line: count it whole
				r.bytes.Add(int64(len(line)))
				line, err = br.ReadSlice('\n')
			}
			if err == nil {
				r.bytes.Add(int64(len(line)))
				r.lines.Add(1)
			}
			continue
		}
		if err != nil {
			return
		}
		now := time.Now().UnixNano()
		if r.track {
			r.note(line, now)
		}
		r.bytes.Add(int64(len(line)))
		r.lastAt.Store(now)
		r.lines.Add(1)
	}
}

// messageMark is how a tracked line's message begins, in the JSON of the
// forwarder and of the yardstick alike.
const messageMark = `"message":"#`

func (r *receiver) note(line []byte, now int64) {
	i := bytes.Index(line, []byte(messageMark))
	if i < 0 {
		return
	}
	stream, seq, written, ok := parseMark(line[i+len(messageMark)-1:])
	if !ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if stream >= len(r.streams) {
		return
	}
	s := &r.streams[stream]
	switch {
	case seq < s.next:
		r.dups++
	case seq > s.next:
		r.gaps += seq - s.next
	}
	s.next = max(s.next, seq+1)
	if s.resumedAt == 0 && seq >= s.resumeFrom {
		s.resumedAt = now
	}
	if r.recording {
		r.latencies = append(r.latencies, int32(min((now-written)/1e3, 1<<31-1)))
	}
}

func (r *receiver) count() int64 { return r.lines.Load() }

func (r *receiver) last() time.Time { return time.Unix(0, r.lastAt.Load()) }

// waitCount waits until at least n lines arrived.
func (r *receiver) waitCount(ctx context.Context, n int64, timeout time.Duration) error {
	return waitCount(ctx, r, n, timeout)
}

// waitCount waits until at least n lines arrived at s.
func waitCount(ctx context.Context, s sink, n int64, timeout time.Duration) error {
	return waitUntil(ctx, timeout, func() bool { return s.count() >= n },
		func() string { return fmt.Sprintf("%d of %d lines arrived", s.count(), n) })
}

// startRecording starts collecting latencies; stopRecording returns them.
func (r *receiver) startRecording() {
	r.mu.Lock()
	r.recording, r.latencies = true, r.latencies[:0]
	r.mu.Unlock()
}

func (r *receiver) stopRecording() []time.Duration {
	r.mu.Lock()
	r.recording = false
	us := r.latencies
	r.latencies = nil
	r.mu.Unlock()
	slices.Sort(us)
	out := make([]time.Duration, len(us))
	for i, v := range us {
		out[i] = time.Duration(v) * time.Microsecond
	}
	return out
}

// markResume says that every line from now on is new: resumed then tells
// how many streams delivered one since, and when the last of them did.
func (r *receiver) markResume() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.streams {
		r.streams[i].resumeFrom, r.streams[i].resumedAt = r.streams[i].next, 0
	}
}

func (r *receiver) resumed() (n int, last time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var lastNs int64
	for _, s := range r.streams {
		if s.resumedAt != 0 {
			n++
			lastNs = max(lastNs, s.resumedAt)
		}
	}
	return n, time.Unix(0, lastNs)
}

// faults is how many lines arrived twice and how many never arrived
// (before a later line of the same stream did).
func (r *receiver) faults() (dups, gaps int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dups, r.gaps
}

// percentile of sorted durations, p in [0, 1].
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

// waitUntil polls cond every 5ms until it holds, ctx ends or timeout
// passes; the error then says what was seen.
func waitUntil(ctx context.Context, timeout time.Duration, cond func() bool, state func() string) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s: %s", timeout, state())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}
