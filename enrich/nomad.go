package enrich

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/nomad/api"
	"golang.org/x/sys/unix"
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
	// MaxResponseBytes bounds the allocations listing, decompressed
	// (default DefaultMaxResponseBytes, --nomad-max-response-bytes): a
	// broken or hostile API cannot keep the daemon reading forever. The
	// listing is decoded one allocation at a time (at most
	// MaxAllocationBytes each), so memory does not grow with it; the other
	// responses are bounded at 1 MiB, error bodies at 4 KiB.
	MaxResponseBytes int64
}

// DefaultMaxResponseBytes is the default bound of the allocations listing.
const DefaultMaxResponseBytes = 64 << 20

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
	// DialVia is the short path a unix socket too long to dial by its
	// own path is dialled through (/proc/self/fd/N/api.sock), else "".
	DialVia string
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

// ErrRedirectRefused is returned for a redirect to another scheme, host or
// port: the request carries the Nomad token (X-Nomad-Token, which Go's
// client does not strip on redirects), and it must reach no one but the
// configured API.
var ErrRedirectRefused = errors.New("redirect to another origin refused")

// maxRedirects is how many same-origin redirects one request may follow
// (net/http's default).
const maxRedirects = 10

// maxSmallResponse bounds the bodies of the requests other than the
// listing (the node's record, the agent's self): the api package decodes
// them whole, and real ones are a few KiB.
const maxSmallResponse = 1 << 20

// Client is a Nomad API client: the api package's, over an HTTP client
// that bounds every response, refuses redirects to another origin and can
// dial a Task API socket whose path is too long for a socket address; and
// a listing of a node's allocations decoded one at a time (Allocations).
// It is safe for concurrent use; Close releases it.
type Client struct {
	api         *api.Client
	maxResponse int64
	// dirFD is the folder of a socket too long to dial by its path,
	// held open (O_PATH) for the client's life and dialled as
	// /proc/self/fd/<dirFD>/<name>; -1 when unused. Closed by Close.
	dirFD int
}

// API is the api package's client, for the small requests.
func (c *Client) API() *api.Client { return c.api }

// Address is the address the client was configured with.
func (c *Client) Address() string { return c.api.Address() }

// Close drops idle connections and the socket's folder, if held.
func (c *Client) Close() {
	c.api.Close()
	if c.dirFD >= 0 {
		unix.Close(c.dirFD)
		c.dirFD = -1
	}
}

// NewClient builds a Nomad API client from the environment and cfg. The
// address is, in order: cfg.Address, NOMAD_ADDR, NOMAD_UNIX_ADDR (set by
// `identity { env = true }`), the Task API socket
// $NOMAD_SECRETS_DIR/api.sock when it exists, else Nomad's default. The
// token is NOMAD_TOKEN, else the workload identity file
// $NOMAD_SECRETS_DIR/nomad_token (`identity { file = true }`).
func NewClient(cfg ClientConfig) (*Client, ClientInfo, error) {
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
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
		if strings.HasPrefix(conf.Address, "/") {
			// A bare path is a socket too.
			conf.Address = "unix://" + conf.Address
		}
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
	c := &Client{maxResponse: cfg.MaxResponseBytes, dirFD: -1}
	switch u.Scheme {
	case "unix":
		path := u.Path
		if path == "" {
			path = u.Opaque
		}
		if path == "" {
			return nil, info, fmt.Errorf("Nomad address %q (from %s) names no socket path", info.Address, info.AddressFrom)
		}
		dialPath, dirFD, err := socketDialPath(path)
		if err != nil {
			return nil, info, fmt.Errorf("Nomad address %s (from %s): %w", info.Address, info.AddressFrom, err)
		}
		c.dirFD = dirFD
		if dialPath != path {
			info.DialVia = dialPath
		}
		dialer := &net.Dialer{Timeout: 10 * time.Second}
		transport.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "unix", dialPath)
		}
	case "http", "https":
		transport.Proxy = http.ProxyFromEnvironment
		transport.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
		info.TLS = u.Scheme == "https"
	default:
		return nil, info, fmt.Errorf("Nomad address %q (from %s): want http://, https:// or unix://", info.Address, info.AddressFrom)
	}
	fail := func(err error) (*Client, ClientInfo, error) {
		if c.dirFD >= 0 {
			unix.Close(c.dirFD)
		}
		return nil, info, err
	}
	httpClient := &http.Client{Transport: transport, CheckRedirect: checkRedirect}
	// The api package applies TLS settings only to a client it builds
	// itself; ours (for the socket dialer and the size limit) gets them here.
	if err := api.ConfigureTLS(httpClient, conf.TLSConfig); err != nil {
		return fail(fmt.Errorf("configure TLS for the Nomad API (NOMAD_CACERT, NOMAD_CLIENT_CERT, ...): %w", err))
	}
	httpClient.Transport = &limitedTransport{
		next:   transport,
		max:    maxSmallResponse,
		bearer: u.Scheme == "unix",
	}
	conf.HttpClient = httpClient
	if c.api, err = api.NewClient(conf); err != nil {
		return fail(fmt.Errorf("create Nomad API client for %s: %w", info.Address, err))
	}
	return c, info, nil
}

// checkRedirect follows a redirect only to the origin (scheme, host and
// port) the request was first sent to.
func checkRedirect(req *http.Request, via []*http.Request) error {
	first := via[0].URL
	if !sameOrigin(first, req.URL) {
		return fmt.Errorf("%w: the Nomad API at %s answered with a redirect to %s (another scheme, host or port), "+
			"which would have been sent the Nomad token; point --nomad-addr or NOMAD_ADDR at the address that answers",
			ErrRedirectRefused, origin(first), origin(req.URL))
	}
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects", len(via))
	}
	return nil
}

func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Hostname(), b.Hostname()) && port(a) == port(b)
}

// port is u's port, or the scheme's default one.
func port(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	switch strings.ToLower(u.Scheme) {
	case "http":
		return "80"
	case "https":
		return "443"
	}
	return ""
}

// origin is how a URL is named in an error: scheme and host, never a
// password, path or query.
func origin(u *url.URL) string {
	return strings.ToLower(u.Scheme) + "://" + u.Host
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
