package enrich

import (
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/nomad/api"
)

// ClientConfig says how to reach the Nomad HTTP API. Everything else comes
// from the NOMAD_* environment variables that api.DefaultConfig reads
// (NOMAD_ADDR, NOMAD_TOKEN, NOMAD_REGION, NOMAD_CACERT, NOMAD_CAPATH,
// NOMAD_CLIENT_CERT, NOMAD_CLIENT_KEY, NOMAD_TLS_SERVER_NAME,
// NOMAD_SKIP_VERIFY, NOMAD_HTTP_AUTH).
type ClientConfig struct {
	// Address overrides NOMAD_ADDR (--nomad-addr): http(s)://HOST:PORT or
	// unix:///PATH.
	Address string
	// MaxResponseBytes bounds a response body, decompressed (default
	// 64 MiB, --nomad-max-response-bytes): a broken or hostile API cannot
	// make the daemon grow without limit. Decoding a listing costs about
	// three times its size.
	MaxResponseBytes int64
}

// ClientInfo says how a client was set up, for the startup log. It never
// holds the token itself.
type ClientInfo struct {
	// Address is where requests go, with any password redacted.
	Address string
	// AddressFrom names where the address came from: "--nomad-addr",
	// "NOMAD_ADDR", "NOMAD_UNIX_ADDR", "NOMAD_SECRETS_DIR" or "default".
	AddressFrom string
	// TokenFrom names where the token came from: "NOMAD_TOKEN",
	// "NOMAD_SECRETS_DIR/nomad_token" or "" for none.
	TokenFrom string
	TLS       bool
	// Region is the client's region (NOMAD_REGION), "" for the agent's.
	Region string
}

// The Task API socket and workload identity token file inside a task's
// secrets dir (Nomad's api_hook.go and identity_hook.go).
const (
	taskAPISocket = "api.sock"
	taskTokenFile = "nomad_token"
)

// ErrResponseTooLarge is returned for a response body beyond
// ClientConfig.MaxResponseBytes.
var ErrResponseTooLarge = errors.New("response body exceeds the size limit")

// NewClient builds a Nomad API client from the environment and cfg. The
// address is, in order: cfg.Address, NOMAD_ADDR, NOMAD_UNIX_ADDR (set by
// `identity { env = true }`), the Task API socket
// $NOMAD_SECRETS_DIR/api.sock when it exists, else Nomad's default. The
// token is NOMAD_TOKEN, else the workload identity file
// $NOMAD_SECRETS_DIR/nomad_token (`identity { file = true }`).
func NewClient(cfg ClientConfig) (*api.Client, ClientInfo, error) {
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = 64 << 20
	}
	conf := api.DefaultConfig()
	info := ClientInfo{AddressFrom: "default", Region: conf.Region}
	secrets := os.Getenv("NOMAD_SECRETS_DIR")
	switch {
	case cfg.Address != "":
		conf.Address, info.AddressFrom = cfg.Address, "--nomad-addr"
	case os.Getenv("NOMAD_ADDR") != "":
		info.AddressFrom = "NOMAD_ADDR"
	case os.Getenv("NOMAD_UNIX_ADDR") != "":
		conf.Address, info.AddressFrom = os.Getenv("NOMAD_UNIX_ADDR"), "NOMAD_UNIX_ADDR"
	case secrets != "" && isSocket(filepath.Join(secrets, taskAPISocket)):
		conf.Address, info.AddressFrom = "unix://"+filepath.Join(secrets, taskAPISocket), "NOMAD_SECRETS_DIR"
	}
	if conf.SecretID != "" {
		info.TokenFrom = "NOMAD_TOKEN"
	} else if secrets != "" {
		if tok, err := os.ReadFile(filepath.Join(secrets, taskTokenFile)); err == nil && len(strings.TrimSpace(string(tok))) > 0 {
			conf.SecretID, info.TokenFrom = strings.TrimSpace(string(tok)), "NOMAD_SECRETS_DIR/nomad_token"
		}
	}

	u, err := url.Parse(conf.Address)
	if err != nil {
		return nil, info, fmt.Errorf("Nomad address %q (from %s) is not a URL: %w", redactAddress(conf.Address), info.AddressFrom, err)
	}
	info.Address = u.Redacted()
	transport := &http.Transport{
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
		TLSClientConfig:     &tls.Config{MinVersion: tls.VersionTLS12},
	}
	switch u.Scheme {
	case "unix":
		path := u.Path
		if path == "" {
			path = u.Opaque
		}
		if path == "" {
			return nil, info, fmt.Errorf("Nomad address %q (from %s) names no socket path", info.Address, info.AddressFrom)
		}
		dialer := &net.Dialer{Timeout: 10 * time.Second}
		transport.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "unix", path)
		}
	case "http", "https":
		transport.Proxy = http.ProxyFromEnvironment
		transport.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
		info.TLS = u.Scheme == "https"
	default:
		return nil, info, fmt.Errorf("Nomad address %q (from %s): want http://, https:// or unix://", info.Address, info.AddressFrom)
	}
	httpClient := &http.Client{Transport: transport}
	// The api package applies TLS settings only to a client it builds
	// itself; ours (for the socket dialer and the size limit) gets them here.
	if err := api.ConfigureTLS(httpClient, conf.TLSConfig); err != nil {
		return nil, info, fmt.Errorf("configure TLS for the Nomad API (NOMAD_CACERT, NOMAD_CLIENT_CERT, ...): %w", err)
	}
	httpClient.Transport = &limitedTransport{
		next:   transport,
		max:    cfg.MaxResponseBytes,
		bearer: u.Scheme == "unix",
	}
	conf.HttpClient = httpClient
	client, err := api.NewClient(conf)
	if err != nil {
		return nil, info, fmt.Errorf("create Nomad API client for %s: %w", info.Address, err)
	}
	return client, info, nil
}

func isSocket(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode()&os.ModeSocket != 0
}

func redactAddress(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	if at := strings.LastIndexByte(s, '@'); at >= 0 {
		return "xxxxx" + s[at:]
	}
	return s
}

// limitedTransport bounds response bodies (after decompression) and, on
// the Task API socket, also sends the token as a bearer token, the form
// Nomad's Task API documentation shows.
type limitedTransport struct {
	next   http.RoundTripper
	max    int64
	bearer bool
}

func (t *limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.bearer {
		if tok := req.Header.Get("X-Nomad-Token"); tok != "" && req.Header.Get("Authorization") == "" {
			req = req.Clone(req.Context())
			req.Header.Set("Authorization", "Bearer "+tok)
		}
	}
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body := resp.Body
	var r io.Reader = body
	if strings.EqualFold(resp.Header.Get("Content-Encoding"), "gzip") {
		// Decompress here rather than in the api package, so that the
		// limit applies to what is decoded, not to what was sent.
		zr, err := gzip.NewReader(body)
		if err != nil {
			body.Close()
			return nil, fmt.Errorf("gzip response from %s: %w", req.URL.Path, err)
		}
		r = zr
		resp.Header.Del("Content-Encoding")
		resp.ContentLength = -1
	}
	resp.Body = &limitedBody{r: r, c: body, left: t.max}
	return resp, nil
}

type limitedBody struct {
	r    io.Reader
	c    io.Closer
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more tells a body of exactly the limit from a longer one.
		var one [1]byte
		if n, _ := b.r.Read(one[:]); n > 0 {
			return 0, ErrResponseTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.c.Close() }
