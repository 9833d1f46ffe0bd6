package forward

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/fakevector"
)

// testSource makes numbered lines and records the verdicts on its batches.
type testSource struct {
	name  string
	epoch atomic.Uint64

	// changed gets a token after each verdict.
	changed chan struct{}

	mu      sync.Mutex
	next    int      // next line number
	written []uint64 // batch Seqs, in verdict order
	failed  []uint64
	seq     uint64
}

func newSource(name string) *testSource {
	return &testSource{name: name, changed: make(chan struct{}, 1)}
}

func (s *testSource) Epoch() uint64 { return s.epoch.Load() }

func (s *testSource) Written(b *Batch) {
	s.mu.Lock()
	s.written = append(s.written, b.Seq)
	s.mu.Unlock()
	s.signal()
}

func (s *testSource) signal() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

func (s *testSource) Failed(b *Batch) {
	s.epoch.CompareAndSwap(b.Epoch, b.Epoch+1)
	s.mu.Lock()
	s.failed = append(s.failed, b.Seq)
	s.mu.Unlock()
	s.signal()
}

func (s *testSource) verdicts() (written, failed []uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint64(nil), s.written...), append([]uint64(nil), s.failed...)
}

// line renders line n of the source the way enrich does, in short.
func (s *testSource) line(n int, extra string) string {
	return fmt.Sprintf(`{"message":"%s %06d%s","file":"/alloc/%s.stdout.0","offset":%d}`+"\n", s.name, n, extra, s.name, n*100)
}

// submit fills a batch with n lines (poison marks the lines whose number
// it returns true for) and submits it.
func (s *testSource) submit(t *testing.T, w *HTTPWriter, n int, poison func(int) bool) {
	t.Helper()
	var b *Batch
	select {
	case b = <-w.Free():
	case <-time.After(10 * time.Second):
		t.Fatal("no free batch")
	}
	s.mu.Lock()
	for range n {
		extra := ""
		if poison != nil && poison(s.next) {
			extra = " POISON"
		}
		b.Data = append(b.Data, s.line(s.next, extra)...)
		b.Lines++
		s.next++
	}
	b.Source, b.Epoch, b.Seq = s, s.epoch.Load(), s.seq
	s.seq++
	s.mu.Unlock()
	w.Submit(b)
}

type accepted struct {
	Message string `json:"message"`
	File    string `json:"file"`
	Offset  int64  `json:"offset"`
}

// perSource splits the fake's accepted lines by source into line numbers.
func perSource(t *testing.T, fv *fakevector.Server) map[string][]int {
	t.Helper()
	out := map[string][]int{}
	for _, raw := range fv.Lines() {
		var a accepted
		require.NoError(t, json.Unmarshal(raw, &a), "%s", raw)
		var name string
		var n int
		_, err := fmt.Sscanf(a.Message, "%s %d", &name, &n)
		require.NoError(t, err, a.Message)
		out[name] = append(out[name], n)
	}
	return out
}

func seqRange(from, to int, skip func(int) bool) []int {
	var out []int
	for i := from; i < to; i++ {
		if skip == nil || !skip(i) {
			out = append(out, i)
		}
	}
	return out
}

type rig struct {
	t       *testing.T
	fv      *fakevector.Server
	w       *HTTPWriter
	logs    *observer.ObservedLogs
	metrics *HTTPMetrics
	cancel  context.CancelFunc
	done    chan error
}

func newRig(t *testing.T, fo fakevector.Options, tweak func(*HTTPConfig)) *rig {
	t.Helper()
	fv, err := fakevector.Start(fo)
	require.NoError(t, err)
	t.Cleanup(fv.Close)
	u, err := url.Parse(fv.URL())
	require.NoError(t, err)
	core, logs := observer.New(zapcore.DebugLevel)
	r := &rig{t: t, fv: fv, logs: logs, metrics: NewHTTPMetrics(nil), done: make(chan error, 1)}
	cfg := HTTPConfig{
		URL: u, FlushInterval: 5 * time.Millisecond, Timeout: 5 * time.Second,
		MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond, SinkRejectBackoff: 50 * time.Millisecond,
		Log: zap.New(core), HTTPMetrics: r.metrics,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	r.w = NewHTTP(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- r.w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

// closeAndWait closes the writer and waits for Run to return.
func (r *rig) closeAndWait() {
	r.t.Helper()
	r.w.Close()
	select {
	case err := <-r.done:
		require.NoError(r.t, err)
		r.done <- nil // for the cleanup
	case <-time.After(20 * time.Second):
		r.t.Fatal("Run did not return after Close")
	}
}

func waitWritten(t *testing.T, s *testSource, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		w, _ := s.verdicts()
		return len(w) >= n
	}, 20*time.Second, time.Millisecond, "%s: %d batches written", s.name, n)
}

func TestHTTPDeliversEveryLineOnceInOrder(t *testing.T) {
	r := newRig(t, fakevector.Options{KeepHeaders: true}, func(c *HTTPConfig) {
		c.Header = http.Header{"Authorization": {"Bearer s3cret"}}
		c.RequestBytes = 8 << 10 // several requests
	})
	sources := []*testSource{newSource("a"), newSource("b"), newSource("c")}
	for range 20 {
		for _, s := range sources {
			s.submit(r.t, r.w, 10, nil)
			// A stream has at most two batches in the writer.
			waitWritten(t, s, int(s.seq)-1)
		}
	}
	r.closeAndWait()
	got := perSource(t, r.fv)
	for _, s := range sources {
		assert.Equal(t, seqRange(0, 200, nil), got[s.name], s.name)
		written, failed := s.verdicts()
		assert.Equal(t, u64Range(20), written, "verdicts in submission order")
		assert.Empty(t, failed)
	}
	require.NotEmpty(t, r.fv.Headers())
	for _, h := range r.fv.Headers() {
		assert.Equal(t, "application/x-ndjson", h.Get("Content-Type"))
		assert.Equal(t, "gzip", h.Get("Content-Encoding"))
		assert.Equal(t, "Bearer s3cret", h.Get("Authorization"))
	}
	assert.Greater(t, r.fv.Requests(), 1)
}

func u64Range(n int) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = uint64(i)
	}
	return out
}

func TestHTTPCommitsOnlyAfterTheAnswer(t *testing.T) {
	r := newRig(t, fakevector.Options{}, func(c *HTTPConfig) { c.Timeout = 100 * time.Millisecond })
	r.fv.SetMode(fakevector.Hang)
	s := newSource("a")
	s.submit(t, r.w, 5, nil)
	require.Eventually(t, func() bool { return r.fv.InFlight() == 1 }, 10*time.Second, time.Millisecond)
	written, _ := s.verdicts()
	assert.Empty(t, written, "a request on its way commits nothing")
	// The hung request times out and is resent; once the receiver answers,
	// the batch is written.
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(r.metrics.Retries.WithLabelValues(retryNetwork)) >= 1
	}, 10*time.Second, time.Millisecond)
	r.fv.SetMode(fakevector.OK)
	waitWritten(t, s, 1)
	assert.Equal(t, seqRange(0, 5, nil), perSource(t, r.fv)["a"])
}

func TestHTTPRetriesServerErrorsResetsAndCrashes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fail  func(*fakevector.Server)
		heal  func(*fakevector.Server)
		until func(*fakevector.Server) bool
	}{
		{"500", func(f *fakevector.Server) { f.SetMode(fakevector.Fail) }, func(f *fakevector.Server) { f.SetMode(fakevector.OK) },
			func(f *fakevector.Server) bool { return f.Status(500) >= 3 }},
		{"reset", func(f *fakevector.Server) { f.SetMode(fakevector.Reset) }, func(f *fakevector.Server) { f.SetMode(fakevector.OK) },
			func(f *fakevector.Server) bool { return f.Requests() >= 3 }},
		{"crash", func(f *fakevector.Server) { f.SetDelay(time.Hour) }, func(f *fakevector.Server) {
			f.Crash()
			f.SetDelay(0)
			require.NoError(t, f.Restart())
		}, func(f *fakevector.Server) bool { return f.InFlight() == 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, fakevector.Options{}, nil)
			tc.fail(r.fv)
			s := newSource("a")
			s.submit(t, r.w, 5, nil)
			s.submit(t, r.w, 5, nil)
			require.Eventually(t, func() bool { return tc.until(r.fv) }, 10*time.Second, time.Millisecond)
			written, failed := s.verdicts()
			assert.Empty(t, written)
			assert.Empty(t, failed, "retried forever, never failed")
			tc.heal(r.fv)
			waitWritten(t, s, 2)
			assert.Equal(t, seqRange(0, 10, nil), perSource(t, r.fv)["a"])
		})
	}
}

func TestHTTPBisectsToSkipOnlyPoisonLines(t *testing.T) {
	r := newRig(t, fakevector.Options{}, nil)
	r.fv.SetPoison([]byte("POISON"))
	poison := func(n int) bool { return n == 17 || n == 18 || n == 150 }
	a, b := newSource("a"), newSource("b")
	for range 10 {
		a.submit(t, r.w, 20, poison)
		b.submit(t, r.w, 20, nil)
		waitWritten(t, a, int(a.seq)-1)
		waitWritten(t, b, int(b.seq)-1)
	}
	r.closeAndWait()
	got := perSource(t, r.fv)
	assert.Equal(t, seqRange(0, 200, poison), got["a"], "everything but the poison lines, once, in order")
	assert.Equal(t, seqRange(0, 200, nil), got["b"])
	written, _ := a.verdicts()
	assert.Len(t, written, 10, "batches with poison lines are committed past them")
	assert.Equal(t, 3.0, testutil.ToFloat64(r.metrics.PoisonLines))
	logged := r.logs.FilterMessage("receiver refused a line on its own; skipping it").All()
	require.Len(t, logged, 3)
	var offsets []int64
	for _, e := range logged {
		assert.Equal(t, "/alloc/a.stdout.0", e.ContextMap()["file"])
		offsets = append(offsets, e.ContextMap()["offset"].(int64))
	}
	assert.ElementsMatch(t, []int64{1700, 1800, 15000}, offsets)
}

func TestHTTPHoldsLinesWhenTheReceiverRefusesEverything(t *testing.T) {
	r := newRig(t, fakevector.Options{}, nil)
	r.fv.SetPoison([]byte(`"message"`)) // every line: a misconfigured receiver
	s := newSource("a")
	s.submit(t, r.w, 40, nil)
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(r.metrics.Retries.WithLabelValues(retryHoldPoison)) >= 2
	}, 10*time.Second, time.Millisecond)
	assert.Equal(t, float64(maxDropsWithoutAccept), testutil.ToFloat64(r.metrics.PoisonLines),
		"skipping stops while nothing at all is accepted")
	r.fv.SetPoison(nil)
	waitWritten(t, s, 1)
	assert.Equal(t, seqRange(maxDropsWithoutAccept, 40, nil), perSource(t, r.fv)["a"])
}

func TestHTTPSinkRejectionIsResentNotBisected(t *testing.T) {
	r := newRig(t, fakevector.Options{}, nil)
	r.fv.SetMode(fakevector.SinkReject)
	s := newSource("a")
	s.submit(t, r.w, 30, nil)
	require.Eventually(t, func() bool { return r.fv.Status(400) >= 3 }, 10*time.Second, time.Millisecond)
	assert.Equal(t, 3.0, float64(r.fv.Requests()), "the same request resent whole, no split")
	r.fv.SetMode(fakevector.OK)
	waitWritten(t, s, 1)
	assert.Equal(t, seqRange(0, 30, nil), perSource(t, r.fv)["a"])
	assert.Zero(t, testutil.ToFloat64(r.metrics.PoisonLines))
	assert.GreaterOrEqual(t, testutil.ToFloat64(r.metrics.Retries.WithLabelValues(retrySinkReject)), 3.0)
}

func TestHTTP413HalvesTheRequestSize(t *testing.T) {
	r := newRig(t, fakevector.Options{}, func(c *HTTPConfig) { c.RequestBytes = 64 << 10 })
	const maxBody = 3000
	r.fv.SetMaxBytes(maxBody)
	a := newSource("a")
	for range 4 {
		a.submit(t, r.w, 200, nil)
		waitWritten(t, a, int(a.seq)-1)
	}
	big := newSource("big")
	b := <-r.w.Free()
	b.Data = append(b.Data, `{"message":"big 000000 `+strings.Repeat("x", maxBody)+`","file":"/alloc/big.stdout.0","offset":0}`+"\n"...)
	b.Data = append(b.Data, big.line(1, "")...)
	b.Lines, b.Source = 2, big
	big.seq = 1
	r.w.Submit(b)
	r.closeAndWait()
	assert.Equal(t, seqRange(0, 800, nil), perSource(t, r.fv)["a"])
	assert.Equal(t, []int{1}, perSource(t, r.fv)["big"], "a line too large on its own is skipped")
	assert.LessOrEqual(t, testutil.ToFloat64(r.metrics.RequestLimit), float64(maxBody))
	assert.Equal(t, 1.0, testutil.ToFloat64(r.metrics.PoisonLines))
	written, _ := big.verdicts()
	assert.Len(t, written, 1)
}

func TestHTTPKeepsEachSourceInOrderUnderFailures(t *testing.T) {
	r := newRig(t, fakevector.Options{}, func(c *HTTPConfig) {
		c.Inflight = 4
		c.RequestBytes = 2 << 10
		c.Timeout = 50 * time.Millisecond
	})
	sources := []*testSource{newSource("a"), newSource("b"), newSource("c")}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		modes := []fakevector.Mode{fakevector.OK, fakevector.Fail, fakevector.OK, fakevector.Reset, fakevector.OK, fakevector.Hang}
		for i := 0; ; i++ {
			select {
			case <-stop:
				r.fv.SetMode(fakevector.OK)
				return
			default:
			}
			n := r.fv.Requests()
			r.fv.SetMode(modes[i%len(modes)])
			// Switch after a few more requests, not after a while.
			for r.fv.Requests() < n+3 {
				select {
				case <-stop:
					r.fv.SetMode(fakevector.OK)
					return
				case <-time.After(time.Millisecond):
				}
			}
		}
	})
	var sw sync.WaitGroup
	for _, s := range sources {
		sw.Go(func() {
			for range 30 {
				s.submit(t, r.w, 10, nil)
				// Like a stream: at most two batches in the writer.
				for {
					w, _ := s.verdicts()
					if len(w) >= int(s.seq)-1 {
						break
					}
					<-s.changed
				}
			}
		})
	}
	sw.Wait()
	close(stop)
	wg.Wait()
	r.closeAndWait()
	got := perSource(t, r.fv)
	for _, s := range sources {
		assert.Equal(t, seqRange(0, 300, nil), got[s.name], "%s: every line once, in order", s.name)
		written, failed := s.verdicts()
		assert.Equal(t, u64Range(30), written)
		assert.Empty(t, failed)
	}
}

func TestHTTPFlushIntervalAndClose(t *testing.T) {
	t.Run("interval", func(t *testing.T) {
		r := newRig(t, fakevector.Options{}, func(c *HTTPConfig) { c.FlushInterval = 20 * time.Millisecond })
		s := newSource("a")
		s.submit(t, r.w, 1, nil)
		waitWritten(t, s, 1)
	})
	t.Run("close sends at once", func(t *testing.T) {
		r := newRig(t, fakevector.Options{}, func(c *HTTPConfig) { c.FlushInterval = time.Hour })
		s := newSource("a")
		s.submit(t, r.w, 3, nil)
		r.closeAndWait()
		written, _ := s.verdicts()
		assert.Len(t, written, 1)
		assert.Equal(t, seqRange(0, 3, nil), perSource(t, r.fv)["a"])
	})
}

func TestHTTPBusySourceDoesNotWaitForTheFlushInterval(t *testing.T) {
	r := newRig(t, fakevector.Options{}, func(c *HTTPConfig) {
		c.FlushInterval = time.Hour
		c.RequestBytes = 16 << 10
	})
	s := newSource("a")
	// Two batches, all a source may have in the writer, more than half a
	// request: nothing more can join from this source, so they go now.
	s.submit(t, r.w, 100, nil)
	s.submit(t, r.w, 100, nil)
	waitWritten(t, s, 2)
	assert.Equal(t, 1, r.fv.Requests())
	assert.Equal(t, seqRange(0, 200, nil), perSource(t, r.fv)["a"])
}

func TestHTTPHardStopFailsWhatIsNotConfirmed(t *testing.T) {
	r := newRig(t, fakevector.Options{}, nil)
	r.fv.SetMode(fakevector.Hang)
	a, b := newSource("a"), newSource("b")
	a.submit(t, r.w, 5, nil)
	a.submit(t, r.w, 5, nil)
	b.submit(t, r.w, 5, nil)
	require.Eventually(t, func() bool { return r.fv.InFlight() >= 1 }, 10*time.Second, time.Millisecond)
	r.cancel()
	select {
	case err := <-r.done:
		require.NoError(t, err)
		r.done <- nil
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after a hard stop")
	}
	for _, s := range []*testSource{a, b} {
		written, failed := s.verdicts()
		assert.Empty(t, written)
		assert.Len(t, failed, int(s.seq), "%s: every batch failed, so the stream rewinds", s.name)
	}
	assert.Len(t, r.w.Free(), cap(r.w.pool.free), "every buffer is back in the pool")
}

func TestHTTPStaleBatchesAreFailedNotSent(t *testing.T) {
	r := newRig(t, fakevector.Options{}, func(c *HTTPConfig) { c.FlushInterval = time.Hour })
	s := newSource("a")
	s.submit(t, r.w, 3, nil)
	s.epoch.Add(1) // the source rewound after making it
	r.closeAndWait()
	_, failed := s.verdicts()
	assert.Len(t, failed, 1)
	assert.Zero(t, r.fv.Count())
}

func TestHTTPSTLSWithClientCertificate(t *testing.T) {
	certs, err := fakevector.NewCerts(t.TempDir())
	require.NoError(t, err)
	tlsCfg, err := TLSOptions{CAFile: certs.CAFile, CertFile: certs.ClientCertFile, KeyFile: certs.ClientKeyFile}.Config()
	require.NoError(t, err)
	r := newRig(t, fakevector.Options{TLS: certs.ServerTLS(true)}, func(c *HTTPConfig) { c.TLS = tlsCfg })
	assert.True(t, strings.HasPrefix(r.fv.URL(), "https://"))
	s := newSource("a")
	s.submit(t, r.w, 3, nil)
	waitWritten(t, s, 1)
	assert.Equal(t, seqRange(0, 3, nil), perSource(t, r.fv)["a"])

	t.Run("without the client certificate", func(t *testing.T) {
		noCert, err := TLSOptions{CAFile: certs.CAFile}.Config()
		require.NoError(t, err)
		r2 := newRig(t, fakevector.Options{TLS: certs.ServerTLS(true)}, func(c *HTTPConfig) { c.TLS = noCert })
		s := newSource("a")
		s.submit(t, r2.w, 1, nil)
		require.Eventually(t, func() bool {
			return testutil.ToFloat64(r2.metrics.Retries.WithLabelValues(retryNetwork)) >= 2
		}, 10*time.Second, time.Millisecond)
		written, _ := s.verdicts()
		assert.Empty(t, written)
	})
}

func TestParseHeadersNeverShowsValues(t *testing.T) {
	h, err := ParseHeaders([]string{"Authorization: Bearer abc:def", "X-Scope:  team-a "})
	require.NoError(t, err)
	assert.Equal(t, "Bearer abc:def", h.Get("Authorization"))
	assert.Equal(t, "team-a", h.Get("X-Scope"))
	for _, bad := range []string{"no colon secret", ": secret", "Bad Name: secret", "X-Evil: secret\r\nInjected: x", "Content-Encoding: secret"} {
		_, err := ParseHeaders([]string{bad})
		require.Error(t, err, bad)
		assert.NotContains(t, err.Error(), "secret", "errors must not show header values")
	}
}

func TestLineOrigin(t *testing.T) {
	for _, tc := range []struct {
		line   string
		file   string
		offset int64
	}{
		{`{"timestamp":"t","message":"m","stream":"stdout","file":"/a/b.stdout.3","offset":123,"nomad":{}}`, "/a/b.stdout.3", 123},
		{`{"message":"tricky \",\"file\":\"/fake\",\"offset\":9","stream":"x","file":"/real \"q\"","offset":7,"nomad":{}}`, `/real "q"`, 7},
		{`not json at all`, "", -1},
	} {
		file, offset := lineOrigin([]byte(tc.line))
		assert.Equal(t, tc.file, file, tc.line)
		assert.Equal(t, tc.offset, offset, tc.line)
	}
}

func TestCutKeepsWholeLines(t *testing.T) {
	a := []byte("aaaa\nbb\ncccccc\n")
	b := []byte("dd\neeeeeeeeee\n")
	c := chunk{{0, a}, {1, b}}
	for limit := 1; limit <= len(a)+len(b)+1; limit++ {
		pieces := chunks(c, limit)
		var joined []byte
		for _, p := range pieces {
			require.NotEmpty(t, p)
			size := p.bytes()
			if !p.oneLine() {
				assert.LessOrEqual(t, size, limit, "limit %d", limit)
			}
			for _, s := range p {
				require.Equal(t, byte('\n'), s.data[len(s.data)-1], "limit %d: a piece ends mid-line", limit)
				joined = append(joined, s.data...)
			}
		}
		assert.Equal(t, string(a)+string(b), string(joined), "limit %d", limit)
	}
}

// Issue 16, item 3: a receiver that echoes the request back in its error
// answer must not put the token in the daemon's log.
func TestHTTPAnswersAreLoggedWithHeaderValuesRedacted(t *testing.T) {
	const token = "s3cr3t-t0ken-of-the-tenant"
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, "bad credentials: Authorization=%q, token %s", r.Header.Get("Authorization"), token)
	}))
	defer echo.Close()
	u, err := url.Parse(echo.URL)
	require.NoError(t, err)
	core, logs := observer.New(zapcore.DebugLevel)
	w := NewHTTP(HTTPConfig{URL: u, Header: http.Header{"Authorization": {"Bearer " + token}},
		FlushInterval: time.Millisecond, MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond, Log: zap.New(core)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	s := newSource("a")
	s.submit(t, w, 1, nil)
	require.Eventually(t, func() bool { return logs.FilterFieldKey("answer").Len() > 0 }, 10*time.Second, time.Millisecond)
	for _, e := range logs.All() {
		for k, v := range e.ContextMap() {
			assert.NotContains(t, fmt.Sprint(v), token, "field %s", k)
		}
	}
	answer := fmt.Sprint(logs.FilterFieldKey("answer").All()[0].ContextMap()["answer"])
	assert.Contains(t, answer, "[redacted]")
}

func TestHeaderLinesFromAFileOrTheEnvironment(t *testing.T) {
	lines, err := HeaderLines("NLF_HTTP_HEADERS", "# tenant\nX-Tenant: a\n\n  Authorization: Bearer xyz  \n")
	require.NoError(t, err)
	assert.Equal(t, []string{"X-Tenant: a", "Authorization: Bearer xyz"}, lines)
	_, err = HeaderLines("--http-header-file /etc/h", "X-Tenant: a\nBearer secret-no-name\n")
	require.Error(t, err)
	assert.Equal(t, "--http-header-file /etc/h line 2: want 'Name: value'", err.Error())
	assert.NotContains(t, err.Error(), "secret")
}

func TestOpenPicksTheWriterAndChecksItsOptions(t *testing.T) {
	s, err := Open("tcp://127.0.0.1:9000", Options{})
	require.NoError(t, err)
	assert.False(t, s.Acknowledges())
	s, err = Open("http://127.0.0.1:8687/", Options{Header: http.Header{"X-A": {"b"}}})
	require.NoError(t, err)
	assert.True(t, s.Acknowledges())
	assert.ErrorContains(t, Check("unix:///alloc/vector.sock", Options{Header: http.Header{"X-A": {"b"}}}), "need an http:// or https://")
	assert.ErrorContains(t, Check("http://127.0.0.1:8687/", Options{TLS: TLSOptions{SkipVerify: true}}), "--tls-* options need an https://")
	assert.NoError(t, Check("https://127.0.0.1:8687/", Options{TLS: TLSOptions{SkipVerify: true}}))
}
