package forward

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"

	"go.uber.org/zap"
)

// HTTPConfig sets up an HTTPWriter. Zero values take the defaults.
type HTTPConfig struct {
	// URL is where batches are POSTed (http:// or https://).
	URL *url.URL
	// Header is added to every request (authentication). Its values are
	// never logged.
	Header http.Header
	// TLS configures https:// (nil: system roots).
	TLS *tls.Config
	// RequestBytes caps a request body before compression (default 1 MiB,
	// --batch-bytes). A 413 halves it for the rest of the run.
	RequestBytes int
	// FlushInterval is the longest a line waits for a request to fill
	// (default 200ms, --flush-interval).
	FlushInterval time.Duration
	// Inflight is how many requests may await their answer at once
	// (default 2, --inflight).
	Inflight int
	// Timeout bounds one attempt of a request (default 60s): Vector holds
	// its answer while its sinks retry, so it must be generous.
	Timeout time.Duration
	// Buffers is how many batches may exist at once (default 32).
	Buffers int
	// BatchBytes is the size at which streams cut a batch (default 15/32 of
	// RequestBytes, at most 256 KiB, the socket writer's): a source may
	// have SourceWindow (two) batches in the writer, and two batches, each
	// a line beyond the cut, should still fit in one request; and batches
	// no larger than the socket's keep the pool's memory the same (bigger
	// ones cost a third more RSS for a few percent of CPU).
	BatchBytes int
	// SourceWindow is how many batches one source may have in the writer
	// at once (the tailer's BatchesPerStream; default 2). A request at
	// least half full whose sources all have that many batches in it
	// cannot grow from them: it goes at once instead of waiting for
	// FlushInterval, so that one busy stream is not slowed down.
	SourceWindow int
	// MinBackoff and MaxBackoff bound the wait between resends of a
	// request the receiver did not take (defaults 100ms and 5s).
	MinBackoff, MaxBackoff time.Duration
	// SinkRejectBackoff caps the slower resends after a sink refused a
	// request (400 "Contents failed to deliver to sink"; default 60s).
	SinkRejectBackoff time.Duration
	// Transport replaces the HTTP transport (tests).
	Transport   http.RoundTripper
	Log         *zap.Logger
	Metrics     *Metrics
	HTTPMetrics *HTTPMetrics
}

const (
	defaultRequestBytes      = 1 << 20
	defaultFlushInterval     = 200 * time.Millisecond
	defaultInflight          = 2
	defaultHTTPTimeout       = 60 * time.Second
	defaultSinkRejectBackoff = 60 * time.Second
	maxHTTPBatchBytes        = 256 << 10
	minHTTPBatchBytes        = 4 << 10
	// maxDropsWithoutAccept is how many lines may be skipped as poison
	// while the receiver accepts nothing else. A receiver that refuses
	// everything is misconfigured, not fed poison: beyond this, refused
	// lines are held and resent until it accepts something again.
	maxDropsWithoutAccept = 8
	// gzipLevel trades a slightly larger body for a third of the CPU of
	// the default level (see BenchmarkHTTPEncode).
	gzipLevel = gzip.BestSpeed
)

// HTTPWriter sends batches to Vector's http_server source as gzipped
// newline-delimited JSON, and reports a batch Written only once the
// request that carried it was answered 2xx, which with acknowledgements
// enabled on Vector's sinks means the sinks have the lines. It implements
// the same methods as Writer.
//
// Up to Inflight requests are on the way at once, but the batches of one
// source are never in two of them: a source's next batch waits until the
// request with its previous one was answered. So each source sees its
// verdicts in order and the receiver gets each source's lines in order,
// resends included.
type HTTPWriter struct {
	batches
	cfg    HTTPConfig
	url    string
	client *http.Client

	// limit is the request size limit, lowered by 413 answers.
	limit atomic.Int64
	// dropsSinceAccept counts lines skipped as poison since the receiver
	// last accepted a request.
	dropsSinceAccept atomic.Int64

	gzips  sync.Pool // *gzip.Writer
	bodies sync.Pool // *bytes.Buffer
}

// NewHTTP makes an HTTPWriter; Run starts it.
func NewHTTP(cfg HTTPConfig) *HTTPWriter {
	if cfg.RequestBytes <= 0 {
		cfg.RequestBytes = defaultRequestBytes
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = defaultFlushInterval
	}
	if cfg.Inflight <= 0 {
		cfg.Inflight = defaultInflight
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultHTTPTimeout
	}
	if cfg.Buffers <= 0 {
		cfg.Buffers = defaultBuffers
	}
	if cfg.BatchBytes <= 0 {
		cfg.BatchBytes = min(max(cfg.RequestBytes/32*15, minHTTPBatchBytes), maxHTTPBatchBytes)
	}
	if cfg.SourceWindow <= 0 {
		cfg.SourceWindow = 2
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = defaultMaxBackoff
	}
	if cfg.SinkRejectBackoff <= 0 {
		cfg.SinkRejectBackoff = defaultSinkRejectBackoff
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.HTTPMetrics == nil {
		cfg.HTTPMetrics = NewHTTPMetrics(nil)
	}
	if cfg.Transport == nil {
		cfg.Transport = &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:     cfg.TLS,
			TLSHandshakeTimeout: 10 * time.Second,
			MaxIdleConnsPerHost: cfg.Inflight,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		}
	}
	w := &HTTPWriter{
		cfg: cfg,
		url: cfg.URL.String(),
		client: &http.Client{
			Transport: cfg.Transport,
			// A redirect would resend the body elsewhere (or turn the POST
			// into a GET): answer it as the setup problem it is.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		batches: newBatches(cfg.Buffers, cfg.BatchBytes),
	}
	w.limit.Store(int64(cfg.RequestBytes))
	cfg.HTTPMetrics.RequestLimit.Set(float64(cfg.RequestBytes))
	w.gzips.New = func() any {
		zw, _ := gzip.NewWriterLevel(nil, gzipLevel)
		return zw
	}
	w.bodies.New = func() any { return new(bytes.Buffer) }
	return w
}

// String names the output for logs, without any password in the URL.
func (w *HTTPWriter) String() string { return w.cfg.URL.Redacted() }

// Run sends batches until Close was called and everything was answered, or
// until ctx ends: then what was not confirmed is failed. Requests the
// receiver does not take are resent forever, so Run returns no error.
func (w *HTTPWriter) Run(ctx context.Context) error {
	work := make(chan *request, w.cfg.Inflight)
	done := make(chan *request, w.cfg.Inflight)
	var wg sync.WaitGroup
	for range w.cfg.Inflight {
		wg.Go(func() {
			for r := range work {
				w.send(ctx, r)
				done <- r
			}
		})
	}
	d := dispatcher{w: w, busy: make(map[Source]int), perSource: make(map[Source]int)}
	d.run(ctx, work, done)
	close(work)
	wg.Wait()
	return nil
}

// request is the batches one POST carries (or several, after a split).
type request struct {
	batches []*Batch
	bytes   int
	// settled[i] is how many bytes of batches[i] the receiver accepted or
	// refused for good; the batch is Written when all are settled.
	settled []int
	// dropped[i] is how many lines of batches[i] were skipped as poison.
	dropped []int
}

// waiting is a batch whose source has a request on the way.
type waiting struct {
	b     *Batch
	since time.Time
}

// dispatcher groups queued batches into requests and hands out verdicts.
// It runs on Run's goroutine, the only caller of the sources' methods.
type dispatcher struct {
	w            *HTTPWriter
	pending      []*Batch // for the next request, in submission order
	pendingBytes int
	pendingSince time.Time
	perSource    map[Source]int // batches in pending, per source
	deferred     []waiting      // their source has a request on the way
	busy         map[Source]int // batches on the way, per source
	inflight     int
	flushDue     bool
	closing      bool
}

func (d *dispatcher) run(ctx context.Context, work chan<- *request, done <-chan *request) {
	w := d.w
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	armed := false
	closing := w.closing
	for {
		for d.inflight < w.cfg.Inflight && d.ready() {
			if armed {
				timer.Stop()
				armed = false
			}
			if r := d.seal(); r != nil {
				d.inflight++
				work <- r
			}
		}
		if d.closing && d.inflight == 0 && len(d.pending) == 0 && len(d.deferred) == 0 && len(w.queue) == 0 {
			return
		}
		if len(d.pending) > 0 && !d.flushDue && !armed {
			timer.Reset(time.Until(d.pendingSince.Add(w.cfg.FlushInterval)))
			armed = true
		}
		queue := w.queue
		if d.pendingBytes >= int(w.limit.Load()) {
			queue = nil // full: take more once a request is on its way
		}
		select {
		case b := <-queue:
			d.add(b, time.Now())
		case r := <-done:
			d.finish(r)
		case <-timer.C:
			armed = false
			d.flushDue = true
		case <-closing:
			closing = nil
			d.closing = true
		case <-ctx.Done():
			d.stop(done)
			return
		}
	}
}

// ready says whether the pending batches should go now: the request is
// full, its oldest line waited FlushInterval, the writer is closing, every
// buffer is taken so nothing more can come, or it is half full and its
// sources can add nothing more.
func (d *dispatcher) ready() bool {
	if len(d.pending) == 0 {
		return false
	}
	w := d.w
	limit := int(w.limit.Load())
	return d.pendingBytes >= limit || d.flushDue || d.closing ||
		(len(w.pool.free) == 0 && len(w.queue) == 0) ||
		(d.pendingBytes >= limit/2 && d.saturated())
}

// saturated reports whether every source in pending has all the batches
// it may have in the writer there.
func (d *dispatcher) saturated() bool {
	for _, n := range d.perSource {
		if n < d.w.cfg.SourceWindow {
			return false
		}
	}
	return true
}

func (d *dispatcher) add(b *Batch, now time.Time) {
	if d.busy[b.Source] > 0 || d.isDeferred(b.Source) {
		d.deferred = append(d.deferred, waiting{b: b, since: now})
		return
	}
	d.addPending(b, now)
}

func (d *dispatcher) addPending(b *Batch, since time.Time) {
	if len(d.pending) == 0 || since.Before(d.pendingSince) {
		d.pendingSince = since
	}
	d.pending = append(d.pending, b)
	d.pendingBytes += len(b.Data)
	d.perSource[b.Source]++
}

func (d *dispatcher) isDeferred(s Source) bool {
	for _, q := range d.deferred {
		if q.b.Source == s {
			return true
		}
	}
	return false
}

// seal takes whole batches from pending, up to the request size limit (at
// least one), into a request. Batches left behind whose source is now on
// the way wait in deferred. nil means every batch taken was stale.
func (d *dispatcher) seal() *request {
	limit := int(d.w.limit.Load())
	r := &request{}
	taken := 0
	for _, b := range d.pending {
		if len(r.batches) > 0 && r.bytes+len(b.Data) > limit {
			break
		}
		taken++
		if b.Epoch != b.Source.Epoch() {
			// The source rewound after making it: it will read these
			// lines again.
			d.w.fail(b)
			continue
		}
		r.batches = append(r.batches, b)
		r.bytes += len(b.Data)
		d.busy[b.Source]++
	}
	rest, since := d.pending[taken:], d.pendingSince
	d.pending, d.pendingBytes, d.flushDue = nil, 0, false
	clear(d.perSource)
	for _, b := range rest {
		if d.busy[b.Source] > 0 {
			d.deferred = append(d.deferred, waiting{b: b, since: since})
		} else {
			d.addPending(b, since)
		}
	}
	if len(r.batches) == 0 {
		return nil
	}
	r.settled = make([]int, len(r.batches))
	r.dropped = make([]int, len(r.batches))
	return r
}

// finish reports a request's verdicts, in submission order, and lets the
// next batches of its sources go.
func (d *dispatcher) finish(r *request) {
	d.inflight--
	w := d.w
	failed := false
	for i, b := range r.batches {
		d.busy[b.Source]--
		if d.busy[b.Source] == 0 {
			delete(d.busy, b.Source)
		}
		if failed || r.settled[i] != len(b.Data) {
			// Unconfirmed (a hard stop): the source rewinds, and its later
			// batches are stale.
			failed = true
			w.fail(b)
			continue
		}
		w.cfg.Metrics.BytesWritten.Add(float64(len(b.Data)))
		b.Dropped = r.dropped[i]
		w.cfg.Metrics.LinesWritten.Add(float64(b.Lines - b.Dropped))
		b.Source.Written(b)
		w.pool.put(b)
	}
	kept := d.deferred[:0]
	for _, q := range d.deferred {
		if d.busy[q.b.Source] == 0 {
			d.addPending(q.b, q.since)
			continue
		}
		kept = append(kept, q)
	}
	clear(d.deferred[len(kept):])
	d.deferred = kept
}

// stop is the hard stop: everything not confirmed is failed, after the
// requests on the way have given up.
func (d *dispatcher) stop(done <-chan *request) {
	for d.inflight > 0 {
		d.finish(<-done)
	}
	for _, b := range d.pending {
		d.w.fail(b)
	}
	for _, q := range d.deferred {
		d.w.fail(q.b)
	}
	d.pending, d.deferred = nil, nil
	d.w.failQueued()
}
