package forward

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Sender is an output the daemon drives: streams take batch buffers from
// it and submit them; Run sends them and reports each back to its source;
// Close says no more will come.
type Sender interface {
	Free() <-chan *Batch
	Submit(b *Batch)
	Release(b *Batch)
	BatchBytes() int
	Run(ctx context.Context) error
	Close()
	String() string
	// Acknowledges says a batch is Written only once the receiver
	// confirmed it (the HTTP output), not once a kernel took its bytes.
	Acknowledges() bool
}

// Options configure Open. Stdout is where "stdout" goes. The HTTP options
// (Header, TLS, RequestBytes, FlushInterval, Inflight, Timeout,
// SourceWindow) apply to http:// and https:// only; TLS to https:// only.
type Options struct {
	Stdout     io.Writer
	Log        *zap.Logger
	Registerer prometheus.Registerer

	Header        http.Header
	TLS           TLSOptions
	RequestBytes  int
	FlushInterval time.Duration
	Inflight      int
	Timeout       time.Duration
	SourceWindow  int
}

// target is what an --output spec names: a socket or stdout, or an HTTP
// URL. This is the one place that tells them apart.
type target struct {
	out Output   // socket or stdout
	url *url.URL // HTTP
}

func parseTarget(spec string, stdout io.Writer) (target, error) {
	if strings.HasPrefix(spec, "http://") || strings.HasPrefix(spec, "https://") {
		u, err := ParseHTTPURL(spec)
		return target{url: u}, err
	}
	out, err := ParseOutput(spec, stdout)
	return target{out: out}, err
}

// Check validates spec and the options that depend on it, without making
// anything, so that a mistake is found before anything starts.
func Check(spec string, o Options) error {
	t, err := parseTarget(spec, io.Discard)
	if err != nil {
		return err
	}
	switch {
	case t.url == nil && len(o.Header) > 0:
		return errors.New("HTTP headers (--http-header, --http-header-file, NLF_HTTP_HEADERS) need an http:// or https:// --output")
	case (t.url == nil || t.url.Scheme != "https") && o.TLS.Set():
		return errors.New("--tls-* options need an https:// --output")
	}
	return nil
}

// Open makes the writer spec names: the socket Writer for stdout,
// tcp:// and unix://, the HTTPWriter for http:// and https://.
func Open(spec string, o Options) (Sender, error) {
	if err := Check(spec, o); err != nil {
		return nil, err
	}
	t, err := parseTarget(spec, o.Stdout)
	if err != nil {
		return nil, err
	}
	if t.url == nil {
		return New(Config{Output: t.out, Log: o.Log, Metrics: NewMetrics(o.Registerer)}), nil
	}
	var tlsCfg *tls.Config
	if t.url.Scheme == "https" {
		if tlsCfg, err = o.TLS.Config(); err != nil {
			return nil, err
		}
	}
	return NewHTTP(HTTPConfig{
		URL: t.url, Header: o.Header, TLS: tlsCfg,
		RequestBytes: o.RequestBytes, FlushInterval: o.FlushInterval, Inflight: o.Inflight, Timeout: o.Timeout,
		SourceWindow: o.SourceWindow, Log: o.Log,
		Metrics: NewMetrics(o.Registerer), HTTPMetrics: NewHTTPMetrics(o.Registerer),
	}), nil
}

// Acknowledges: a socket's Written means the kernel took the bytes.
func (w *Writer) Acknowledges() bool { return false }

// Acknowledges: Written means Vector answered 2xx.
func (w *HTTPWriter) Acknowledges() bool { return true }

// HeaderLines reads header lines ("Name: value", one a line; blank lines
// and lines starting with # are skipped) from text, which came from
// source (a file, an environment variable), for ParseHeaders. An error
// names the source and the line, never a value.
func HeaderLines(source, text string) ([]string, error) {
	var out []string
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if name, _, ok := strings.Cut(line, ":"); !ok || strings.TrimSpace(name) == "" {
			return nil, fmt.Errorf("%s line %d: want 'Name: value'", source, i+1)
		}
		out = append(out, line)
	}
	return out, nil
}
