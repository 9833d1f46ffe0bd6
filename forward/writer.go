package forward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"go.uber.org/zap"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/backoff"
)

// Config sets up a Writer. Zero values take the defaults.
type Config struct {
	Output Output
	// Buffers is how many batches may exist at once (default 32).
	Buffers int
	// BatchBytes is the size at which streams cut a batch (default 256 KiB).
	BatchBytes int
	// Linger is how long a small write waits for more batches to join it
	// (default 5ms; negative: never). Lines never wait longer than this in
	// the writer.
	Linger time.Duration
	// MaxBackoff caps the wait before reconnecting after a failed dial or
	// a failed write (default 5s).
	MaxBackoff time.Duration
	Log        *zap.Logger
	Metrics    *Metrics
}

const (
	defaultBuffers    = 32
	defaultBatchBytes = 256 << 10
	defaultLinger     = 5 * time.Millisecond
	defaultMaxBackoff = 5 * time.Second
	// minWriteBytes is what a write gathers before it stops lingering.
	minWriteBytes = 64 << 10
	// minBackoff keeps the first retry after a single failure quick: the
	// first wait is between half of it and all of it.
	minBackoff = 100 * time.Millisecond
)

// Writer writes batches to the output in the order they were submitted.
type Writer struct {
	batches
	cfg        Config
	minBackoff time.Duration
}

// New makes a Writer; Run starts it.
func New(cfg Config) *Writer {
	if cfg.Buffers <= 0 {
		cfg.Buffers = defaultBuffers
	}
	if cfg.BatchBytes <= 0 {
		cfg.BatchBytes = defaultBatchBytes
	}
	if cfg.Linger == 0 {
		cfg.Linger = defaultLinger
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = defaultMaxBackoff
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	return &Writer{
		batches:    newBatches(cfg.Buffers, cfg.BatchBytes),
		cfg:        cfg,
		minBackoff: min(minBackoff, cfg.MaxBackoff),
	}
}

// String names the output, like the HTTPWriter's String.
func (w *Writer) String() string { return w.cfg.Output.String() }

// Run writes batches until Close was called and the queue is empty, or
// until ctx ends (then what is queued is failed, not written). It returns
// an error only when the output can never be written again.
func (w *Writer) Run(ctx context.Context) error {
	var (
		conn   io.WriteCloser
		dst    io.Writer // conn, or the connection it wraps
		stop   func() bool
		group  = make([]*Batch, 0, w.cfg.Buffers)
		bufs   = make([][]byte, 0, w.cfg.Buffers)
		retry  = backoff.Backoff{Min: w.minBackoff, Max: w.cfg.MaxBackoff}
		timer  = time.NewTimer(time.Hour)
		dialed bool
	)
	timer.Stop()
	disconnect := func() {
		if conn != nil {
			stop()
			conn.Close()
			conn, dst = nil, nil
			w.cfg.Metrics.Connected.Set(0)
		}
	}
	defer disconnect()
	defer w.failQueued()

	for {
		first := w.next(ctx)
		if first == nil {
			return nil
		}
		group = w.gather(ctx, append(group[:0], first), timer)
		group = w.dropStale(group)
		if len(group) == 0 {
			continue
		}
		for conn == nil {
			c, err := w.cfg.Output.Dial(ctx)
			if err == nil {
				conn, dst = c, writeTarget(c)
				// A write stuck on a peer that stopped reading must not
				// outlive a hard stop.
				stop = context.AfterFunc(ctx, func() { setDeadline(c) })
				w.cfg.Metrics.Connects.Inc()
				w.cfg.Metrics.Connected.Set(1)
				if dialed {
					w.cfg.Log.Info("reconnected to output", zap.Stringer("output", w.cfg.Output))
				}
				dialed = true
				break
			}
			if errors.Is(err, ErrPermanent) || ctx.Err() != nil {
				w.failAll(group)
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("connect to %s: %w", w.cfg.Output, err)
			}
			w.cfg.Metrics.DialErrors.Inc()
			wait := retry.Next()
			w.cfg.Log.Warn("cannot connect to output; streams wait, nothing is lost",
				zap.Stringer("output", w.cfg.Output), zap.Error(err), zap.Duration("retry_in", wait))
			if !backoff.Sleep(ctx, wait) {
				w.failAll(group)
				return nil
			}
		}

		bufs = bufs[:0]
		for _, b := range group {
			bufs = append(bufs, b.Data)
		}
		// One writev for the whole group (dst is the *net.TCPConn or
		// *net.UnixConn itself, see writeTarget); WriteTo consumes its
		// receiver, so it gets a copy of the slice header and bufs keeps
		// its capacity.
		vec := net.Buffers(bufs)
		if _, err := vec.WriteTo(dst); err != nil {
			w.cfg.Metrics.WriteErrors.Inc()
			disconnect()
			w.failAll(group)
			// A peer that accepts and then resets would otherwise be
			// redialled at once, over and over, each time making every
			// stream rewind.
			wait := retry.Next()
			if ctx.Err() == nil {
				w.cfg.Log.Warn("write to output failed; resending from the last commit",
					zap.Stringer("output", w.cfg.Output), zap.Error(err), zap.Duration("retry_in", wait))
			}
			if !backoff.Sleep(ctx, wait) {
				return nil
			}
			continue
		}
		// Only a write proves the output works: a peer that accepts
		// connections and resets them keeps the backoff growing.
		retry.Reset()
		for _, b := range group {
			w.cfg.Metrics.BytesWritten.Add(float64(len(b.Data)))
			w.cfg.Metrics.LinesWritten.Add(float64(b.Lines))
			b.Source.Written(b)
			w.pool.put(b)
		}
	}
}

// next waits for the first batch of a write; nil means Run should return.
func (w *Writer) next(ctx context.Context) *Batch {
	select {
	case b := <-w.queue:
		return b
	case <-ctx.Done():
		return nil
	case <-w.closing:
		select {
		case b := <-w.queue:
			return b
		default:
			return nil
		}
	}
}

// gather adds queued batches to group. When the write is still small it
// lingers briefly for more, so that many quiet streams share one syscall.
func (w *Writer) gather(ctx context.Context, group []*Batch, timer *time.Timer) []*Batch {
	size := len(group[0].Data)
	lingering := false
	defer func() {
		if lingering {
			timer.Stop()
		}
	}()
	for len(group) < cap(group) && size < w.cfg.BatchBytes*4 {
		select {
		case b := <-w.queue:
			group = append(group, b)
			size += len(b.Data)
			continue
		default:
		}
		if w.cfg.Linger < 0 || size >= minWriteBytes {
			return group
		}
		if !lingering {
			lingering = true
			timer.Reset(w.cfg.Linger)
		}
		select {
		case b := <-w.queue:
			group = append(group, b)
			size += len(b.Data)
		case <-timer.C:
			lingering = false
			return group
		case <-w.closing:
			return w.drainNow(group)
		case <-ctx.Done():
			return group
		}
	}
	return group
}

func (w *Writer) drainNow(group []*Batch) []*Batch {
	for len(group) < cap(group) {
		select {
		case b := <-w.queue:
			group = append(group, b)
		default:
			return group
		}
	}
	return group
}

// dropStale fails the batches whose source rewound since making them.
func (w *Writer) dropStale(group []*Batch) []*Batch {
	live := group[:0]
	for _, b := range group {
		if b.Epoch != b.Source.Epoch() {
			w.fail(b)
			continue
		}
		live = append(live, b)
	}
	return live
}

func (w *Writer) failAll(group []*Batch) {
	for _, b := range group {
		w.fail(b)
	}
}

// writeTarget is what the group is written to. net.Buffers uses writev
// only when it writes to the standard library's own connection types, not
// to a wrapper, so a connection that wraps one hands it out.
func writeTarget(c io.WriteCloser) io.Writer {
	if nc, ok := c.(interface{ NetConn() net.Conn }); ok {
		return nc.NetConn()
	}
	return c
}

func setDeadline(c io.WriteCloser) {
	if d, ok := c.(interface{ SetWriteDeadline(time.Time) error }); ok {
		d.SetWriteDeadline(time.Unix(1, 0))
	}
}
