// Package recv is a newline-delimited JSON receiver for tests, the fault
// suite and benchmarks: it listens on TCP or a unix socket, like Vector's
// socket source, and records every complete line it receives. It can be
// stopped and restarted on the same address, and can reset its connections.
package recv

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Receiver records lines. Its methods are safe for concurrent use.
type Receiver struct {
	network, address string

	mu      sync.Mutex
	ln      net.Listener
	conns   map[net.Conn]bool
	lines   [][]byte
	arrived []time.Time
	// keepOnly, when set, keeps only the lines that contain it; the
	// others are counted, not stored (a flood would not fit in memory).
	keepOnly []byte
	count    int
	partial  int // connections that ended in the middle of a line
	wg       sync.WaitGroup
	// Delay, when set, is slept after each read: a slow receiver.
	delay time.Duration
	// rate, when set, is the most lines a second the receiver takes.
	rate int
	// paused, while set, holds every read from a connection until Resume
	// closes it.
	paused chan struct{}
	// midLine, when set, is closed by the connection ResetMidLine reset.
	midLine atomic.Pointer[chan struct{}]
	// heldAtResets sums what the kernels held at each ResetMidLine.
	heldAtResets atomic.Int64
}

// Listen starts a receiver on "tcp" 127.0.0.1:0 (addr "") or on the given
// address; addr "unix:/path" listens on a unix socket.
func Listen(addr string) (*Receiver, error) {
	r := &Receiver{network: "tcp", address: addr, conns: make(map[net.Conn]bool)}
	if addr == "" {
		r.address = "127.0.0.1:0"
	}
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		r.network, r.address = "unix", path
	}
	if err := r.Start(); err != nil {
		return nil, err
	}
	return r, nil
}

// Start (re)opens the listener on the same address.
func (r *Receiver) Start() error {
	if r.network == "unix" {
		os.Remove(r.address)
	}
	ln, err := net.Listen(r.network, r.address)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.ln = ln
	r.address = ln.Addr().String()
	r.mu.Unlock()
	r.wg.Go(func() { r.accept(ln) })
	return nil
}

// URL is the address in the forwarder's --output form.
func (r *Receiver) URL() string {
	if r.network == "unix" {
		return "unix://" + r.address
	}
	return "tcp://" + r.address
}

// SetRate makes the receiver take at most n lines a second (0: as many as
// come), pacing its reads in steps of 10 ms: a slow receiver, without a
// sleep per line (which the timer's resolution would make far slower).
func (r *Receiver) SetRate(n int) {
	r.mu.Lock()
	r.rate = max(n, 0)
	r.mu.Unlock()
}

// SetDelay makes every read wait d: a slow receiver.
func (r *Receiver) SetDelay(d time.Duration) {
	r.mu.Lock()
	r.delay = d
	r.mu.Unlock()
}

func (r *Receiver) accept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		r.conns[c] = true
		r.mu.Unlock()
		r.wg.Go(func() { r.serve(c) })
	}
}

func (r *Receiver) serve(c net.Conn) {
	defer func() {
		r.mu.Lock()
		delete(r.conns, c)
		r.mu.Unlock()
		c.Close()
	}()
	br := bufio.NewReaderSize(connReader{r: r, c: c}, 1<<20)
	var pending []byte
	var pace pacer
	for {
		chunk, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			pending = append(pending, chunk...)
			continue
		}
		if err != nil {
			if len(pending)+len(chunk) > 0 {
				r.mu.Lock()
				r.partial++
				r.mu.Unlock()
			}
			return
		}
		line := append(pending, chunk[:len(chunk)-1]...)
		pending = nil
		r.mu.Lock()
		r.count++
		if r.keepOnly == nil || bytes.Contains(line, r.keepOnly) {
			r.lines = append(r.lines, bytes.Clone(line))
			r.arrived = append(r.arrived, time.Now())
		}
		delay, rate := r.delay, r.rate
		r.mu.Unlock()
		if delay > 0 {
			time.Sleep(delay)
		}
		pace.line(rate)
	}
}

// Lines returns a copy of every line received so far, newline stripped.
func (r *Receiver) Lines() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.lines...)
}

// KeepOnlyMatching makes the receiver store only the lines that contain
// substr from now on (Lines, Arrivals); Count still counts every line.
func (r *Receiver) KeepOnlyMatching(substr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keepOnly = []byte(substr)
}

// LinesFrom returns the lines received after the first n, so that a
// long run can be checked as it goes without copying everything each time.
func (r *Receiver) LinesFrom(n int) [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n >= len(r.lines) {
		return nil
	}
	return append([][]byte(nil), r.lines[n:]...)
}

// Arrivals returns when each line of Lines arrived.
func (r *Receiver) Arrivals() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.arrived...)
}

// Count is how many lines were received.
func (r *Receiver) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

// Kept is how many lines are stored (all of them unless KeepOnlyMatching).
func (r *Receiver) Kept() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.lines)
}

// Open is how many connections are open. Once a sender has exited, 0
// means every byte it sent has been read and recorded.
func (r *Receiver) Open() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.conns)
}

// Partial is how many connections ended in the middle of a line.
func (r *Receiver) Partial() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.partial
}

// ResetMidLine resets (RST) the first connection that has received part
// of a line, at that moment: every complete line it read before is
// recorded, the partial one is not (Partial counts it), and whatever the
// kernels held is lost. Reads already waiting complete as usual; the
// moment is found among the reads after them, so lines must be flowing.
// It waits up to timeout for such a moment and reports whether it came.
func (r *Receiver) ResetMidLine(timeout time.Duration) bool {
	done := make(chan struct{})
	r.midLine.Store(&done)
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		r.midLine.CompareAndSwap(&done, nil)
		return false
	}
}

// errMidLineReset ends a connection ResetMidLine reset.
var errMidLineReset = errors.New("reset in the middle of a line")

// Pause stops reading from the connections (lines already read are still
// recorded, and a read already waiting completes): the kernels' buffers
// fill, then the sender blocks. Resume reads on.
func (r *Receiver) Pause() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.paused == nil {
		r.paused = make(chan struct{})
	}
}

// Resume ends a Pause.
func (r *Receiver) Resume() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.paused != nil {
		close(r.paused)
		r.paused = nil
	}
}

// connReader is a connection as the line reader sees it: it waits while
// the receiver is paused. While ResetMidLine waits, it reads a few bytes
// at a time; the line reader only reads when it holds no newline, so
// bytes without one are the start of a line (or more of one): then it
// resets.
type connReader struct {
	r *Receiver
	c net.Conn
}

func (m connReader) Read(p []byte) (int, error) {
	m.r.mu.Lock()
	paused := m.r.paused
	m.r.mu.Unlock()
	if paused != nil {
		<-paused
	}
	done := m.r.midLine.Load()
	if done == nil || len(p) == 0 {
		return m.c.Read(p)
	}
	n, err := m.c.Read(p[:1+rand.IntN(min(len(p), 200))])
	if n > 0 && bytes.IndexByte(p[:n], '\n') < 0 && m.r.midLine.CompareAndSwap(done, nil) {
		m.r.heldAtResets.Add(kernelHeld(m.c))
		resetConn(m.c)
		close(*done)
		return n, errMidLineReset
	}
	return n, err
}

// HeldAtResets is how many bytes the kernels held, summed over the
// connections ResetMidLine reset, at the moment of each reset: unread in
// the receiver's queue, and not yet sent or acknowledged in the sender's
// (found in /proc/net/tcp; loopback IPv4 only). A reset loses them.
func (r *Receiver) HeldAtResets() int64 { return r.heldAtResets.Load() }

// kernelHeld is the bytes of c in the kernels' queues: SIOCINQ on our
// socket, tx_queue of the peer's socket in /proc/net/tcp.
func kernelHeld(c net.Conn) int64 {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return 0
	}
	var held int64
	if raw, err := tc.SyscallConn(); err == nil {
		raw.Control(func(fd uintptr) {
			if n, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ); err == nil {
				held += int64(n)
			}
		})
	}
	return held + peerSendQueue(tc.RemoteAddr(), tc.LocalAddr())
}

// peerSendQueue reads the tx_queue of the socket local->remote from
// /proc/net/tcp, or 0.
func peerSendQueue(local, remote net.Addr) int64 {
	hex := func(a net.Addr) string {
		ta, ok := a.(*net.TCPAddr)
		if !ok || ta.IP.To4() == nil {
			return ""
		}
		ip := ta.IP.To4()
		return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], ta.Port)
	}
	l, r := hex(local), hex(remote)
	data, err := os.ReadFile("/proc/net/tcp")
	if l == "" || r == "" || err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || f[1] != l || f[2] != r {
			continue
		}
		tx, _, _ := strings.Cut(f[4], ":")
		n, err := strconv.ParseInt(tx, 16, 64)
		if err != nil {
			return 0
		}
		return n
	}
	return 0
}

func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// Stop closes the listener and every connection gracefully: FIN first,
// then whatever the sender still sends is read until it closes too.
func (r *Receiver) Stop() { r.stop(false) }

// Reset closes the listener and resets every connection (RST): data the
// kernel had accepted but the receiver had not read is lost.
func (r *Receiver) Reset() { r.stop(true) }

// ResetConns resets the open connections but keeps listening.
func (r *Receiver) ResetConns() {
	r.mu.Lock()
	for c := range r.conns {
		resetConn(c)
	}
	r.mu.Unlock()
}

func (r *Receiver) stop(reset bool) {
	r.Resume() // a paused connection must read on to see its end
	r.mu.Lock()
	if r.ln != nil {
		r.ln.Close()
		r.ln = nil
	}
	r.mu.Unlock()
	if reset {
		r.ResetConns()
	} else {
		// A graceful close: say we are done (FIN) but read on until the
		// sender closes its side, so nothing it sent is thrown away.
		r.mu.Lock()
		for c := range r.conns {
			if hc, ok := c.(interface{ CloseWrite() error }); ok {
				hc.CloseWrite()
			} else {
				c.Close()
			}
		}
		r.mu.Unlock()
	}
	r.wg.Wait()
}

// pacer holds a connection's reads to a rate of lines a second.
type pacer struct {
	rate  int
	start time.Time
	lines int
}

func (p *pacer) line(rate int) {
	if rate != p.rate {
		*p = pacer{rate: rate, start: time.Now()}
	}
	if rate <= 0 {
		return
	}
	p.lines++
	if p.lines%max(rate/100, 1) != 0 {
		return
	}
	if ahead := time.Duration(float64(p.lines)/float64(rate)*float64(time.Second)) - time.Since(p.start); ahead > 0 {
		time.Sleep(ahead)
	}
}
