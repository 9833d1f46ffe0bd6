package bench

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// httpReceiver is the HTTP peer of the http scenario, in the place of
// Vector's http_server source: it gunzips each POST, counts its lines and
// answers 200 at once. It keeps nothing else (internal/fakevector records
// every line, which for millions of lines costs more memory and CPU than
// the harness should take from the machine it shares with the daemon).
type httpReceiver struct {
	ln  net.Listener
	srv *http.Server
	wg  sync.WaitGroup

	lines    atomic.Int64
	bytes    atomic.Int64 // decompressed
	wire     atomic.Int64 // request bodies as sent (gzipped)
	requests atomic.Int64
	lastAt   atomic.Int64 // unix ns of the last line

	gzips sync.Pool // *gzip.Reader
	bufs  sync.Pool // *[]byte
}

func listenHTTP() (*httpReceiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the forwarder: %w", err)
	}
	h := &httpReceiver{ln: ln}
	h.bufs.New = func() any {
		b := make([]byte, 256<<10)
		return &b
	}
	h.srv = &http.Server{Handler: h, ErrorLog: log.New(io.Discard, "", 0), ReadHeaderTimeout: 10 * time.Second}
	h.wg.Go(func() { _ = h.srv.Serve(ln) })
	return h, nil
}

// url is the forwarder's --output for this receiver.
func (h *httpReceiver) url() string { return "http://" + h.ln.Addr().String() + "/" }

func (h *httpReceiver) close() {
	h.srv.Close()
	h.wg.Wait()
}

func (h *httpReceiver) count() int64 { return h.lines.Load() }

func (h *httpReceiver) last() time.Time { return time.Unix(0, h.lastAt.Load()) }

func (h *httpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.Header.Get("Content-Encoding") != "gzip" {
		http.Error(w, "want a gzipped POST", http.StatusUnsupportedMediaType)
		return
	}
	body := &countingReader{r: r.Body}
	lines, size, err := h.countLines(body)
	if err != nil {
		http.Error(w, "decode body: "+err.Error(), http.StatusBadRequest)
		return
	}
	h.wire.Add(body.n)
	h.bytes.Add(size)
	h.requests.Add(1)
	h.lastAt.Store(time.Now().UnixNano())
	h.lines.Add(lines)
	w.WriteHeader(http.StatusOK)
}

// countLines gunzips r and counts its lines and bytes.
func (h *httpReceiver) countLines(r io.Reader) (lines, size int64, err error) {
	var zr *gzip.Reader
	if v := h.gzips.Get(); v != nil {
		zr = v.(*gzip.Reader)
		err = zr.Reset(r)
	} else {
		zr, err = gzip.NewReader(r)
	}
	if err != nil {
		return 0, 0, err
	}
	defer h.gzips.Put(zr)
	bufp := h.bufs.Get().(*[]byte)
	defer h.bufs.Put(bufp)
	for {
		n, err := zr.Read(*bufp)
		lines += int64(bytes.Count((*bufp)[:n], []byte{'\n'}))
		size += int64(n)
		if errors.Is(err, io.EOF) {
			return lines, size, nil
		}
		if err != nil {
			return 0, 0, err
		}
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
