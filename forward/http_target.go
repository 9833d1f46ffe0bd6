package forward

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
)

// ParseHTTPURL checks an http:// or https:// output URL.
func ParseHTTPURL(spec string) (*url.URL, error) {
	u, err := url.Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("parse output: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("output %s: want http://HOST:PORT/PATH or https://HOST:PORT/PATH", u.Redacted())
	}
	if strings.HasSuffix(u.Host, ":") {
		return nil, fmt.Errorf("output %s: the port is empty", u.Redacted())
	}
	if port := u.Port(); port != "" {
		if err := checkPort(port); err != nil {
			return nil, fmt.Errorf("output %s: %w", u.Redacted(), err)
		}
	}
	if u.Path == "" {
		u.Path = "/"
	}
	return u, nil
}

// ParseHeaders parses repeated "Name: value" options into a header set.
// Errors name the header, never its value: values are secrets (tokens).
func ParseHeaders(specs []string) (http.Header, error) {
	h := make(http.Header, len(specs))
	for _, spec := range specs {
		name, value, ok := strings.Cut(spec, ":")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		switch {
		case !ok || name == "":
			return nil, errors.New("HTTP header: want 'Name: value'")
		case !validHeaderName(name):
			return nil, fmt.Errorf("HTTP header %q: not a valid header name", name)
		case !validHeaderValue(value):
			return nil, fmt.Errorf("HTTP header %q: the value holds characters a header cannot carry", name)
		}
		switch http.CanonicalHeaderKey(name) {
		case "Content-Type", "Content-Encoding", "Content-Length", "Transfer-Encoding":
			return nil, fmt.Errorf("HTTP header %q: set by the forwarder itself", name)
		}
		h.Add(name, value)
	}
	return h, nil
}

// HeaderNames lists the names in h, for logs that must not show values.
func HeaderNames(h http.Header) []string {
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// TLSOptions are the --tls-* flags.
type TLSOptions struct {
	CAFile     string // PEM bundle to verify the server with, instead of the system's
	CertFile   string // client certificate (PEM), for servers that verify clients
	KeyFile    string
	SkipVerify bool
}

// Set reports whether any option is given.
func (o TLSOptions) Set() bool {
	return o.CAFile != "" || o.CertFile != "" || o.KeyFile != "" || o.SkipVerify
}

// Config builds the client TLS configuration.
func (o TLSOptions) Config() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: o.SkipVerify}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s: no PEM certificate in it", o.CAFile)
		}
		cfg.RootCAs = pool
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load --tls-cert/--tls-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// validHeaderName: a header name is an RFC 9110 token.
func validHeaderName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
		if !ok {
			return false
		}
	}
	return s != ""
}

// validHeaderValue: no control characters but tab (no header injection).
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
