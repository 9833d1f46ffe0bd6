package enrich_test

import (
	"compress/gzip"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/nomad/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/enrich"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/fakenomad"
)

// clearNomadEnv makes the test independent of the NOMAD_* variables of
// whoever runs it.
func clearNomadEnv(t *testing.T) {
	for _, k := range []string{"NOMAD_ADDR", "NOMAD_UNIX_ADDR", "NOMAD_SECRETS_DIR", "NOMAD_TOKEN", "NOMAD_REGION",
		"NOMAD_NAMESPACE", "NOMAD_HTTP_AUTH", "NOMAD_CACERT", "NOMAD_CAPATH", "NOMAD_CLIENT_CERT", "NOMAD_CLIENT_KEY",
		"NOMAD_TLS_SERVER_NAME", "NOMAD_SKIP_VERIFY"} {
		t.Setenv(k, "")
	}
}

func fake(t *testing.T, o fakenomad.Options) *fakenomad.Server {
	t.Helper()
	s, err := fakenomad.FromFixtures(fixtures, "node-allocations.json", o)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

// listOnce lists the node's allocations the way the watcher does, and
// returns how many there were.
func listOnce(t *testing.T, c *enrich.Client, s *fakenomad.Server) error {
	t.Helper()
	_, err := c.Allocations(s.NodeID(), nil, func(*api.Allocation) error { return nil })
	return err
}

func TestClientFromNomadAddrAndToken(t *testing.T) {
	clearNomadEnv(t)
	s := fake(t, fakenomad.Options{Token: "tok"})
	t.Setenv("NOMAD_ADDR", s.URL())
	t.Setenv("NOMAD_TOKEN", "tok")
	t.Setenv("NOMAD_REGION", "eu")
	c, info, err := enrich.NewClient(enrich.ClientConfig{})
	require.NoError(t, err)
	assert.Equal(t, "NOMAD_ADDR", info.AddressFrom)
	assert.Equal(t, "NOMAD_TOKEN", info.TokenFrom)
	require.NoError(t, listOnce(t, c, s))
	assert.Equal(t, "tok", s.Queries()[0].Token)
}

func TestNomadAddrFlagWins(t *testing.T) {
	clearNomadEnv(t)
	s := fake(t, fakenomad.Options{})
	t.Setenv("NOMAD_ADDR", "http://127.0.0.1:1")
	t.Setenv("NOMAD_UNIX_ADDR", "unix:///nonexistent.sock")
	c, info, err := enrich.NewClient(enrich.ClientConfig{Address: s.URL()})
	require.NoError(t, err)
	assert.Equal(t, "--nomad-addr", info.AddressFrom)
	assert.Equal(t, "", info.TokenFrom)
	require.NoError(t, listOnce(t, c, s))
}

func TestTaskAPISocketWithWorkloadIdentity(t *testing.T) {
	t.Run("NOMAD_UNIX_ADDR and NOMAD_TOKEN (identity env = true)", func(t *testing.T) {
		clearNomadEnv(t)
		s := fake(t, fakenomad.Options{Token: "jwt", UnixSocket: filepath.Join(t.TempDir(), "api.sock")})
		t.Setenv("NOMAD_UNIX_ADDR", s.URL())
		t.Setenv("NOMAD_TOKEN", "jwt")
		c, info, err := enrich.NewClient(enrich.ClientConfig{})
		require.NoError(t, err)
		assert.Equal(t, "NOMAD_UNIX_ADDR", info.AddressFrom)
		require.NoError(t, listOnce(t, c, s))
	})
	t.Run("secrets dir socket and token file (identity file = true)", func(t *testing.T) {
		clearNomadEnv(t)
		secrets := t.TempDir()
		s := fake(t, fakenomad.Options{Token: "jwt-from-file", UnixSocket: filepath.Join(secrets, "api.sock")})
		require.NoError(t, os.WriteFile(filepath.Join(secrets, "nomad_token"), []byte("jwt-from-file\n"), 0o600))
		t.Setenv("NOMAD_SECRETS_DIR", secrets)
		c, info, err := enrich.NewClient(enrich.ClientConfig{})
		require.NoError(t, err)
		assert.Equal(t, "NOMAD_SECRETS_DIR", info.AddressFrom)
		assert.Equal(t, "NOMAD_SECRETS_DIR/nomad_token", info.TokenFrom)
		assert.Equal(t, "unix://"+filepath.Join(secrets, "api.sock"), info.Address)
		require.NoError(t, listOnce(t, c, s))
		assert.Equal(t, "jwt-from-file", s.Queries()[0].Token)
	})
	t.Run("NOMAD_ADDR beats the socket", func(t *testing.T) {
		clearNomadEnv(t)
		secrets := t.TempDir()
		sock := fake(t, fakenomad.Options{UnixSocket: filepath.Join(secrets, "api.sock")})
		tcp := fake(t, fakenomad.Options{})
		t.Setenv("NOMAD_SECRETS_DIR", secrets)
		t.Setenv("NOMAD_ADDR", tcp.URL())
		c, _, err := enrich.NewClient(enrich.ClientConfig{})
		require.NoError(t, err)
		require.NoError(t, listOnce(t, c, tcp))
		assert.Equal(t, 0, sock.Requests(fakenomad.Allocations))
	})
}

func TestTLSFromTheEnvironment(t *testing.T) {
	clearNomadEnv(t)
	s := fake(t, fakenomad.Options{TLS: true})
	t.Setenv("NOMAD_ADDR", s.URL())

	c, info, err := enrich.NewClient(enrich.ClientConfig{})
	require.NoError(t, err)
	assert.True(t, info.TLS)
	assert.ErrorContains(t, listOnce(t, c, s), "certificate", "an unknown CA is refused")

	ca := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(ca, s.CACertPEM(), 0o644))
	t.Setenv("NOMAD_CACERT", ca)
	c, _, err = enrich.NewClient(enrich.ClientConfig{})
	require.NoError(t, err)
	require.NoError(t, listOnce(t, c, s), "NOMAD_CACERT is honoured")

	t.Setenv("NOMAD_CACERT", "")
	t.Setenv("NOMAD_SKIP_VERIFY", "true")
	c, _, err = enrich.NewClient(enrich.ClientConfig{})
	require.NoError(t, err)
	require.NoError(t, listOnce(t, c, s), "NOMAD_SKIP_VERIFY is honoured")

	t.Setenv("NOMAD_SKIP_VERIFY", "")
	t.Setenv("NOMAD_CACERT", filepath.Join(t.TempDir(), "missing.pem"))
	_, _, err = enrich.NewClient(enrich.ClientConfig{})
	assert.ErrorContains(t, err, "TLS")
}

func TestBadAddresses(t *testing.T) {
	clearNomadEnv(t)
	_, info, err := enrich.NewClient(enrich.ClientConfig{Address: "ftp://user:hunter2@example.com"})
	assert.ErrorContains(t, err, "want http://")
	assert.NotContains(t, err.Error(), "hunter2")
	assert.NotContains(t, info.Address, "hunter2")
	_, _, err = enrich.NewClient(enrich.ClientConfig{Address: "unix://"})
	assert.ErrorContains(t, err, "socket path")
}

func TestResponsesAreBoundedAfterDecompression(t *testing.T) {
	clearNomadEnv(t)
	body, err := os.ReadFile(fixtures + "/node-allocations.json")
	require.NoError(t, err)
	// Nomad gzips when asked; the limit counts decompressed bytes.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.Contains(t, r.Header.Get("Accept-Encoding"), "gzip")
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("X-Nomad-Index", "32")
		zw := gzip.NewWriter(w)
		_, _ = zw.Write(body)
		_ = zw.Close()
	}))
	defer srv.Close()

	c, _, err := enrich.NewClient(enrich.ClientConfig{Address: srv.URL})
	require.NoError(t, err)
	n := 0
	meta, err := c.Allocations("c055d2fa-60f1-812e-3b10-5985f6b956c8", nil, func(*api.Allocation) error { n++; return nil })
	require.NoError(t, err)
	assert.Equal(t, 5, n)
	assert.Equal(t, uint64(32), meta.LastIndex)

	c, _, err = enrich.NewClient(enrich.ClientConfig{Address: srv.URL, MaxResponseBytes: int64(len(body)) / 2})
	require.NoError(t, err)
	_, err = c.Allocations("c055d2fa-60f1-812e-3b10-5985f6b956c8", nil, func(*api.Allocation) error { return nil })
	assert.ErrorIs(t, err, enrich.ErrResponseTooLarge)

	c, _, err = enrich.NewClient(enrich.ClientConfig{Address: srv.URL, MaxResponseBytes: int64(len(body))})
	require.NoError(t, err)
	_, err = c.Allocations("c055d2fa-60f1-812e-3b10-5985f6b956c8", nil, func(*api.Allocation) error { return nil })
	assert.NoError(t, err, "exactly the limit is fine")
}

func TestNodeIDValidation(t *testing.T) {
	assert.NoError(t, enrich.ValidNodeID("c055d2fa-60f1-812e-3b10-5985f6b956c8"))
	for _, bad := range []string{"", "../agent/self", "a?b", "a/b", "a%2Fb", "a b"} {
		assert.Error(t, enrich.ValidNodeID(bad), bad)
	}
}

// Issue 16 item 4: the client re-sent X-Nomad-Token to another host after
// a 307. A redirect to another origin is refused, with an error that says
// why; one to the same origin is followed.
func TestRedirectsToAnotherOriginAreRefused(t *testing.T) {
	clearNomadEnv(t)
	const token = "s3cret-token"
	body, err := os.ReadFile(fixtures + "/node-allocations.json")
	require.NoError(t, err)
	var elsewhere atomic.Int32
	var tokensElsewhere atomic.Value
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		tokensElsewhere.Store(r.Header.Get("X-Nomad-Token") + r.Header.Get("Authorization"))
		w.Header().Set("X-Nomad-Index", "32")
		_, _ = w.Write(body)
	}))
	defer other.Close()
	var sameOriginTokens atomic.Value
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/node/n/allocations": // to the other server: another port
			http.Redirect(w, r, other.URL+r.URL.Path, http.StatusTemporaryRedirect)
		case "/v1/node/same/allocations":
			http.Redirect(w, r, "/v1/moved", http.StatusTemporaryRedirect)
		case "/v1/moved":
			sameOriginTokens.Store(r.Header.Get("X-Nomad-Token"))
			w.Header().Set("X-Nomad-Index", "32")
			_, _ = w.Write(body)
		default:
			http.NotFound(w, r)
		}
	}))
	defer api.Close()
	t.Setenv("NOMAD_TOKEN", token)
	c, _, err := enrich.NewClient(enrich.ClientConfig{Address: api.URL})
	require.NoError(t, err)

	_, _, err = c.API().Nodes().Allocations("n", nil)
	require.Error(t, err)
	assert.ErrorIs(t, err, enrich.ErrRedirectRefused)
	assert.ErrorContains(t, err, "redirect to "+other.URL)
	assert.ErrorContains(t, err, "another scheme, host or port")
	assert.Zero(t, elsewhere.Load(), "nothing, token or not, reached the other server")
	assert.Nil(t, tokensElsewhere.Load())
	assert.NotContains(t, err.Error(), token)

	allocs, _, err := c.API().Nodes().Allocations("same", nil)
	require.NoError(t, err, "a redirect to the same origin is followed")
	assert.Len(t, allocs, 5)
	assert.Equal(t, token, sameOriginTokens.Load())
}

func TestSameOrigin(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"http://127.0.0.1:4646/v1/x", "http://127.0.0.1:4646/v1/y?z=1", true},
		{"http://nomad.local/v1/x", "http://NOMAD.local:80/v1/y", true},
		{"https://nomad.local/v1/x", "https://nomad.local:443/", true},
		{"http://127.0.0.1:4646/", "http://127.0.0.1:4647/", false},
		{"http://127.0.0.1:4646/", "https://127.0.0.1:4646/", false},
		{"https://nomad.local/", "http://nomad.local/", false},
		{"http://nomad.local/", "http://evil.local/", false},
		{"http://nomad.local/", "http://nomad.local.evil/", false},
	} {
		a, err := url.Parse(tc.a)
		require.NoError(t, err)
		b, err := url.Parse(tc.b)
		require.NoError(t, err)
		assert.Equal(t, tc.same, enrich.SameOriginForTest(a, b), "%s -> %s", tc.a, tc.b)
	}
}

// Issue 16 item 8: raw_exec sees its Task API socket by its host path,
// <alloc_dir>/<id>/<task>/secrets/api.sock; past 107 bytes it could not be
// dialled, and every request failed as "unreachable", forever. It is
// dialled through its opened folder, in all three ways of naming it.
func TestALongTaskAPISocketPathIsDialledThroughItsFolder(t *testing.T) {
	base := t.TempDir()
	secrets := filepath.Join(base, strings.Repeat("d", 24), "alloc", "e333a86a-cefe-d673-f65e-b5a2e1172d99", "forwarder", "secrets")
	require.NoError(t, os.MkdirAll(secrets, 0o755))
	sock := filepath.Join(secrets, "api.sock")
	require.Greater(t, len(sock), 107, "the test needs a path too long for a socket address")
	// Binding the long path is as impossible as dialling it: listen at a
	// short one, then move the socket into place.
	short := filepath.Join(base, "s.sock")
	s := fake(t, fakenomad.Options{Token: "jwt", UnixSocket: short})
	require.NoError(t, os.Rename(short, sock))
	require.NoError(t, os.WriteFile(filepath.Join(secrets, "nomad_token"), []byte("jwt\n"), 0o600))

	for _, tc := range []struct {
		name string
		env  map[string]string
		cfg  enrich.ClientConfig
		from string
	}{
		{"NOMAD_UNIX_ADDR", map[string]string{"NOMAD_UNIX_ADDR": "unix://" + sock, "NOMAD_TOKEN": "jwt"}, enrich.ClientConfig{}, "NOMAD_UNIX_ADDR"},
		{"NOMAD_UNIX_ADDR without scheme", map[string]string{"NOMAD_UNIX_ADDR": sock, "NOMAD_TOKEN": "jwt"}, enrich.ClientConfig{}, "NOMAD_UNIX_ADDR"},
		{"NOMAD_SECRETS_DIR", map[string]string{"NOMAD_SECRETS_DIR": secrets}, enrich.ClientConfig{}, "NOMAD_SECRETS_DIR"},
		{"--nomad-addr", map[string]string{"NOMAD_TOKEN": "jwt"}, enrich.ClientConfig{Address: "unix://" + sock}, "--nomad-addr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearNomadEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			c, info, err := enrich.NewClient(tc.cfg)
			require.NoError(t, err)
			defer c.Close()
			assert.Equal(t, tc.from, info.AddressFrom)
			assert.Equal(t, "unix://"+sock, info.Address)
			assert.Regexp(t, `^/proc/self/fd/[0-9]+/api\.sock$`, info.DialVia)
			require.NoError(t, listOnce(t, c, s))
			node, _, err := c.API().Nodes().Info(s.NodeID(), nil)
			require.NoError(t, err)
			assert.Equal(t, "vm", node.Name)
		})
	}

	// A path that fits is dialled as it is.
	clearNomadEnv(t)
	fits := fake(t, fakenomad.Options{UnixSocket: filepath.Join(base, "fits.sock")})
	c, info, err := enrich.NewClient(enrich.ClientConfig{Address: fits.URL()})
	require.NoError(t, err)
	defer c.Close()
	assert.Empty(t, info.DialVia)
	require.NoError(t, listOnce(t, c, fits))
}

// Where the folder cannot be opened, or the socket's own name is too long,
// the error says the path is too long and what to do.
func TestATooLongSocketPathThatCannotBeShortenedSaysSo(t *testing.T) {
	clearNomadEnv(t)
	base := t.TempDir()
	missing := filepath.Join(base, strings.Repeat("m", 80), "secrets", "api.sock")
	_, _, err := enrich.NewClient(enrich.ClientConfig{Address: "unix://" + missing})
	require.Error(t, err)
	assert.ErrorContains(t, err, "longer than the 107 a unix socket address holds")
	assert.ErrorContains(t, err, "symlink")

	longName := filepath.Join(base, strings.Repeat("n", 100)+".sock")
	_, _, err = enrich.NewClient(enrich.ClientConfig{Address: "unix://" + longName})
	require.Error(t, err)
	assert.ErrorContains(t, err, "so is its name alone")
}

// Issue 16 item 6: an error body is read no further than 4 KiB (a 300 MiB
// one cost 539 MB), and the log says it was cut.
func TestAnErrorBodyIsReadOnlyTo4KiB(t *testing.T) {
	clearNomadEnv(t)
	s := fake(t, fakenomad.Options{HugeBytes: 300 << 20})
	c, _, err := enrich.NewClient(enrich.ClientConfig{Address: s.URL()})
	require.NoError(t, err)
	s.SetFault(fakenomad.HugeError)
	err = listOnce(t, c, s)
	require.Error(t, err)
	// (A failure must not print a 300 MiB message: lengths first.)
	require.Less(t, len(err.Error()), 4<<10+200)
	assert.ErrorContains(t, err, "500")
	assert.ErrorContains(t, err, "rpc error: no cluster leader")
	assert.ErrorContains(t, err, "cut at 4 KiB")
	// The small requests too.
	_, _, err = c.API().Nodes().Info(s.NodeID(), nil)
	require.Error(t, err)
	require.Less(t, len(err.Error()), 4<<10+200)
	assert.ErrorContains(t, err, "cut at 4 KiB")
}

// Issue 16 item 6: the listing is decoded one allocation at a time. A
// listing over the limit is refused after the allocations that fit were
// handed on one by one; an allocation over MaxAllocationBytes is refused
// whatever the limit of the listing.
func TestTheListingIsDecodedOneAllocationAtATime(t *testing.T) {
	clearNomadEnv(t)
	s := fake(t, fakenomad.Options{HugeBytes: 4 << 20})
	c, _, err := enrich.NewClient(enrich.ClientConfig{Address: s.URL(), MaxResponseBytes: 1 << 20})
	require.NoError(t, err)
	s.SetFault(fakenomad.HugeList)
	n := 0
	_, err = c.Allocations(s.NodeID(), nil, func(a *api.Allocation) error {
		n++
		assert.NotNil(t, a.Job)
		return nil
	})
	assert.ErrorIs(t, err, enrich.ErrResponseTooLarge)
	assert.Greater(t, n, 10, "the allocations before the limit were handed on as they came")

	big := fake(t, fakenomad.Options{HugeBytes: enrich.MaxAllocationBytes + 1<<20})
	c, _, err = enrich.NewClient(enrich.ClientConfig{Address: big.URL(), MaxResponseBytes: 256 << 20})
	require.NoError(t, err)
	big.SetFault(fakenomad.Huge) // one allocation whose ID never ends
	_, err = c.Allocations(big.NodeID(), nil, func(*api.Allocation) error { return nil })
	assert.ErrorIs(t, err, enrich.ErrAllocationTooLarge)

	// fn's error ends the listing.
	big.SetFault(fakenomad.NoFault)
	stop := errors.New("stop")
	_, err = c.Allocations(big.NodeID(), nil, func(*api.Allocation) error { return stop })
	assert.ErrorIs(t, err, stop)
}
