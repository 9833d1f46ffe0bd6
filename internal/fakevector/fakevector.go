// Package fakevector imitates Vector's http_server source with end-to-end
// acknowledgements, for tests, the fault suite and benchmarks. It gunzips
// POSTed newline-delimited JSON and records the lines of every request it
// answers with 200: "accepted" means what Vector's sinks would have
// confirmed. It can be switched to fail in the ways the real one does (500,
// 400 for a poison line, 413 for a large body, a sink rejection) and in the
// ways a network or a crash does (hang, connection reset, crash: every
// request not answered yet is dropped, unrecorded, and nothing listens until
// Restart).
package fakevector

import (
	"bytes"
	"compress/gzip"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Mode is how the server answers a well-formed request.
type Mode int

const (
	// OK accepts the lines and answers 200.
	OK Mode = iota
	// Fail answers 500 "Error delivering contents to sink" (a sink failed).
	Fail
	// SinkReject answers 400 "Contents failed to deliver to sink" (a sink
	// refused the events for good).
	SinkReject
	// Hang never answers: the request waits until the client gives up or
	// the server crashes.
	Hang
	// Reset closes the connection with a RST instead of answering.
	Reset
)

// Server is a fake http_server source. Its methods are safe for concurrent
// use.
type Server struct {
	tlsConfig *tls.Config

	mu        sync.Mutex
	addr      string // fixed after the first Start, so Restart reuses it
	srv       *http.Server
	conns     map[net.Conn]bool
	gen       uint64        // bumped by Crash: older requests are dropped
	crashed   chan struct{} // closed by Crash, for hanging requests
	mode      Mode
	poison    []byte
	maxBytes  int
	delay     time.Duration
	lines     [][]byte
	requests  int
	statuses  map[int]int
	inFlight  int
	headers   []http.Header
	keepHdrs  bool
	listening bool
	closed    bool
	// handlers counts running handlers; Add only under mu while !closed,
	// so that Close's Wait comes after every Add.
	handlers sync.WaitGroup
	serving  sync.WaitGroup
}

// Options configure a Server.
type Options struct {
	// TLS, when set, serves HTTPS with it.
	TLS *tls.Config
	// KeepHeaders records the headers of every request (see Headers).
	KeepHeaders bool
}

// Start listens on 127.0.0.1 at a free port.
func Start(o Options) (*Server, error) {
	s := &Server{tlsConfig: o.TLS, keepHdrs: o.KeepHeaders, statuses: map[int]int{}, conns: map[net.Conn]bool{}, addr: "127.0.0.1:0"}
	if err := s.Restart(); err != nil {
		return nil, err
	}
	return s, nil
}

// URL is where to POST, in the forwarder's --output form.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	scheme := "http"
	if s.tlsConfig != nil {
		scheme = "https"
	}
	return scheme + "://" + s.addr + "/"
}

// Restart listens again on the same address after Crash (or does nothing
// if the server is listening).
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listening || s.closed {
		return nil
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("fakevector: listen on %s: %w", s.addr, err)
	}
	s.addr = ln.Addr().String()
	if s.tlsConfig != nil {
		ln = tls.NewListener(ln, s.tlsConfig)
	}
	s.crashed = make(chan struct{})
	srv := &http.Server{
		Handler:           http.HandlerFunc(s.handle),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0), // resets and crashes are the point
		ConnState:         s.connState,
	}
	s.srv = srv
	s.listening = true
	s.serving.Go(func() { _ = srv.Serve(ln) })
	return nil
}

func (s *Server) connState(c net.Conn, state http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch state {
	case http.StateNew:
		s.conns[c] = true
	case http.StateClosed, http.StateHijacked:
		delete(s.conns, c)
	}
}

// Crash stops listening and resets every connection: the requests not yet
// answered are lost, never recorded, and never answered. Restart brings the
// server back.
func (s *Server) Crash() {
	s.mu.Lock()
	if !s.listening {
		s.mu.Unlock()
		return
	}
	s.listening = false
	s.gen++
	close(s.crashed)
	srv := s.srv
	for c := range s.conns {
		resetConn(c)
	}
	s.mu.Unlock()
	srv.Close()
}

// Close stops the server for good and waits for its goroutines.
func (s *Server) Close() {
	s.Crash()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.serving.Wait()
	s.handlers.Wait()
}

// SetMode switches how requests are answered from now on.
func (s *Server) SetMode(m Mode) {
	s.mu.Lock()
	s.mode = m
	s.mu.Unlock()
}

// SetPoison makes every request with a line containing marker fail with
// 400 "Failed decoding body", as Vector answers a body with a line it cannot
// decode; nil turns it off.
func (s *Server) SetPoison(marker []byte) {
	s.mu.Lock()
	s.poison = bytes.Clone(marker)
	s.mu.Unlock()
}

// SetMaxBytes makes requests whose decompressed body is larger than n fail
// with 413; 0 turns it off.
func (s *Server) SetMaxBytes(n int) {
	s.mu.Lock()
	s.maxBytes = n
	s.mu.Unlock()
}

// SetDelay holds every answer for d, like sinks that take time to confirm.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	s.delay = d
	s.mu.Unlock()
}

// Lines returns a copy of every accepted line, newline stripped, in the
// order they were accepted.
func (s *Server) Lines() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.lines...)
}

// Count is how many lines were accepted.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.lines)
}

// Requests is how many requests arrived (answered or not).
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// Status is how many requests were answered with code.
func (s *Server) Status(code int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statuses[code]
}

// InFlight is how many requests are being handled and not answered yet.
func (s *Server) InFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inFlight
}

// Headers returns the headers of every request so far (with KeepHeaders).
func (s *Server) Headers() []http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]http.Header(nil), s.headers...)
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == "/ping" {
		io.WriteString(w, "pong")
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.handlers.Add(1)
	defer s.handlers.Done()
	gen, crashed := s.gen, s.crashed
	s.requests++
	s.inFlight++
	if s.keepHdrs {
		s.headers = append(s.headers, r.Header.Clone())
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inFlight--
		s.mu.Unlock()
	}()

	if r.Method != http.MethodPost {
		s.answer(w, gen, http.StatusMethodNotAllowed, "Method not allowed", nil)
		return
	}
	body, err := readBody(r)
	var unsupported *unsupportedEncodingError
	switch {
	case errors.As(err, &unsupported):
		s.answer(w, gen, http.StatusUnsupportedMediaType, err.Error(), nil)
		return
	case err != nil:
		// The connection broke while reading, or the gzip is torn.
		s.answer(w, gen, http.StatusBadRequest, "Failed decompressing payload: "+err.Error(), nil)
		return
	}

	s.mu.Lock()
	mode, poison, maxBytes, delay := s.mode, s.poison, s.maxBytes, s.delay
	s.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-crashed:
			return
		case <-r.Context().Done():
			return
		}
	}
	switch mode {
	case Hang:
		select {
		case <-crashed:
		case <-r.Context().Done():
		}
		return
	case Reset:
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				resetConn(c)
				return
			}
		}
		panic(http.ErrAbortHandler)
	case Fail:
		s.answer(w, gen, http.StatusInternalServerError, "Error delivering contents to sink", nil)
		return
	case SinkReject:
		s.answer(w, gen, http.StatusBadRequest, "Contents failed to deliver to sink", nil)
		return
	}
	if maxBytes > 0 && len(body) > maxBytes {
		s.answer(w, gen, http.StatusRequestEntityTooLarge, "Payload too large", nil)
		return
	}
	lines := splitLines(body)
	if poison != nil {
		for _, l := range lines {
			if bytes.Contains(l, poison) {
				s.answer(w, gen, http.StatusBadRequest, "Failed decoding body: trailing characters at line 1 column 3", nil)
				return
			}
		}
	}
	s.answer(w, gen, http.StatusOK, "", lines)
}

// answer records lines (for a 200) and writes the response, unless the
// server crashed since the request arrived: then the request is dropped.
func (s *Server) answer(w http.ResponseWriter, gen uint64, code int, msg string, lines [][]byte) {
	s.mu.Lock()
	if s.gen != gen {
		s.mu.Unlock()
		return
	}
	s.statuses[code]++
	if code == http.StatusOK {
		s.lines = append(s.lines, lines...)
	}
	s.mu.Unlock()
	if code == http.StatusOK {
		w.WriteHeader(code)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	fmt.Fprintf(w, `{"code":%d,"message":%q}`, code, msg)
}

type unsupportedEncodingError struct{ encoding string }

func (e *unsupportedEncodingError) Error() string { return "Unsupported encoding " + e.encoding }

// readBody decodes the body the way Vector does: Content-Encoding names
// the compression; gzip and identity are what the forwarder sends.
func readBody(r *http.Request) ([]byte, error) {
	var rd io.Reader = r.Body
	switch enc := strings.TrimSpace(strings.ToLower(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		rd = zr
	default:
		return nil, &unsupportedEncodingError{encoding: enc}
	}
	return io.ReadAll(rd)
}

// splitLines splits newline-delimited lines, dropping empty ones, as
// Vector's newline_delimited framing with the json codec does.
func splitLines(body []byte) [][]byte {
	var out [][]byte
	for len(body) > 0 {
		i := bytes.IndexByte(body, '\n')
		var l []byte
		if i < 0 {
			l, body = body, nil
		} else {
			l, body = body[:i], body[i+1:]
		}
		if len(l) > 0 {
			out = append(out, bytes.Clone(l))
		}
	}
	return out
}

func resetConn(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}
