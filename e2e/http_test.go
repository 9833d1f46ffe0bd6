package e2e_test

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/e2e"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/fakevector"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/scenario"
)

// minRenderedLine is a lower bound on a rendered line of the scenarios
// (metadata and file path included), to turn request sizes into lines.
const minRenderedLine = 250

// duplicateWindow is how many lines one fault may make the receiver
// accept twice: the requests on their way (Inflight of BatchBytes each),
// plus, for a kill, what was confirmed since the last checkpoint save.
func duplicateWindow(cfg scenario.HTTPConfig, ckptLines int) int {
	return cfg.Inflight*cfg.BatchBytes/minRenderedLine + ckptLines
}

func TestHTTPSIGKILLAtRandomMomentsLosesNothing(t *testing.T) {
	cfg := scenario.HTTPConfig{Events: 20, BatchBytes: 64 << 10, Inflight: 2, CheckpointInterval: 50 * time.Millisecond}
	rep := scenario.HTTPKill(t, cfg)
	t.Log(rep.Summary())
	require.True(t, rep.OK(), "%s\n%+v", rep.Summary(), rep.PerStream)
	assert.Zero(t, rep.Missing)
	assert.Zero(t, rep.OrderViolations)
	// Three streams write about 1800 lines/s: a checkpoint interval (and
	// the restart) confirms at most a few hundred lines not yet saved.
	assert.LessOrEqual(t, rep.Duplicates, cfg.Events*duplicateWindow(cfg, 300), rep.Summary())
}

func TestHTTPReceiverCrashAtRandomMomentsLosesNothing(t *testing.T) {
	cfg := scenario.HTTPConfig{Events: 20, BatchBytes: 64 << 10, Inflight: 2}
	rep := scenario.HTTPReceiverCrash(t, cfg)
	t.Log(rep.Summary())
	require.True(t, rep.OK(), "%s\n%+v", rep.Summary(), rep.PerStream)
	assert.Zero(t, rep.Missing)
	assert.Zero(t, rep.OrderViolations)
	// The crash drops what was not answered, so a duplicate needs a crash
	// between recording a request and answering it: at most the requests
	// on their way.
	assert.LessOrEqual(t, rep.Duplicates, cfg.Events*duplicateWindow(cfg, 0), rep.Summary())
}

func TestHTTPPoisonLinesAreSkippedAndLogged(t *testing.T) {
	rep := scenario.PoisonLines(t, scenario.HTTPConfig{Events: 5})
	t.Log(rep.Summary())
	require.True(t, rep.OK(), "%s\n%+v", rep.Summary(), rep.PerStream)
	assert.GreaterOrEqual(t, rep.Events, 5)
	assert.Zero(t, rep.PoisonAccepted)
	assert.Equal(t, rep.Events, rep.PoisonLogged, "each skipped line is logged with its file and offset")
	assert.Zero(t, rep.Duplicates, "no fault but the poison: each line once")
}

func TestHTTPOutputOnceWithHeadersTLSAndNodeID(t *testing.T) {
	allocDir := t.TempDir()
	e2e.CopyDir(t, filepath.Join(fixtures, "alloc-logs"), allocDir)
	certs, err := fakevector.NewCerts(t.TempDir())
	require.NoError(t, err)
	fv, err := fakevector.Start(fakevector.Options{TLS: certs.ServerTLS(true), KeepHeaders: true})
	require.NoError(t, err)
	defer fv.Close()
	ckpt := filepath.Join(t.TempDir(), "checkpoint.msgpack")
	const secret = "Bearer top-secret-token"
	code, _, stderr := e2e.Run(t, 30*time.Second, "run", "--offline", "--once", "--alloc-dir", allocDir,
		"--checkpoint", ckpt, "--output", fv.URL(), "--node-id", "node-1234",
		"--http-header", "Authorization: "+secret, "--http-header", "X-Tenant: a",
		"--tls-ca", certs.CAFile, "--tls-cert", certs.ClientCertFile, "--tls-key", certs.ClientKeyFile,
		"--batch-bytes", "16384", "--log-level", "debug")
	require.Equal(t, 0, code, stderr)

	got := decode(t, fv.Lines())
	perFile := map[string]int{}
	for _, l := range got {
		perFile[l.File]++
		assert.Equal(t, "node-1234", l.Nomad.NodeID, "the idempotency key needs the node")
	}
	assert.Equal(t, fixtureLines(t, allocDir), perFile, "every line exactly once")
	assert.Greater(t, fv.Requests(), 1, "--batch-bytes splits the run into several requests")
	for _, h := range fv.Headers() {
		assert.Equal(t, secret, h.Get("Authorization"))
		assert.Equal(t, "a", h.Get("X-Tenant"))
		assert.Equal(t, "gzip", h.Get("Content-Encoding"))
		assert.Equal(t, "application/x-ndjson", h.Get("Content-Type"))
	}
	assert.NotContains(t, stderr, "top-secret", "header values never appear in logs")
	assert.Contains(t, stderr, "Authorization", "header names do")

	// The checkpoint says everything was confirmed.
	code, out, stderr := e2e.Run(t, 10*time.Second, "offsets", "list", "--checkpoint", ckpt, "--alloc-dir", allocDir, "--json")
	require.Equal(t, 0, code, stderr)
	var rows []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &rows))
	require.Len(t, rows, 6)
	for _, row := range rows {
		assert.Equal(t, 0.0, row["lag_bytes"], "%v", row)
	}
}

func TestHTTPOutputCommitsNothingUntilTheReceiverAnswers(t *testing.T) {
	allocDir := t.TempDir()
	e2e.CopyDir(t, filepath.Join(fixtures, "alloc-logs"), allocDir)
	fv, err := fakevector.Start(fakevector.Options{})
	require.NoError(t, err)
	defer fv.Close()
	fv.SetMode(fakevector.Fail)
	ckpt := filepath.Join(t.TempDir(), "checkpoint.msgpack")
	metricsAddr := freeAddr(t)
	p := e2e.Start(t, "run", "--offline", "--alloc-dir", allocDir, "--checkpoint", ckpt, "--output", fv.URL(),
		"--checkpoint-interval", "10ms", "--flush-interval", "10ms", "--metrics-addr", metricsAddr)
	// Wait for the resends, and for a checkpoint save after the streams
	// started (they commit their start at once).
	require.Eventually(t, func() bool { return fv.Status(500) >= 3 && !modTime(ckpt).IsZero() }, 10*time.Second, time.Millisecond)
	assert.Contains(t, p.Stderr(), "retrying")
	var metrics string
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + metricsAddr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		metrics = string(b)
		return strings.Contains(metrics, `nlf_output_http_retries_total{reason="server_error"}`)
	}, 10*time.Second, 10*time.Millisecond)
	assert.Contains(t, metrics, `nlf_output_http_requests_total{code="500"}`)
	assert.Contains(t, metrics, "nlf_output_lines_total 0", "nothing confirmed")
	p.Kill()

	// Nothing was confirmed, so the checkpoint holds every stream at its
	// start; a run against a healthy receiver sends everything.
	code, out, stderr := e2e.Run(t, 10*time.Second, "offsets", "list", "--checkpoint", ckpt, "--alloc-dir", allocDir, "--json")
	require.Equal(t, 0, code, stderr)
	var rows []struct {
		Offset   int64 `json:"offset"`
		LagBytes int64 `json:"lag_bytes"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &rows))
	require.NotEmpty(t, rows)
	for _, row := range rows {
		assert.Zero(t, row.Offset)
		assert.Positive(t, row.LagBytes)
	}
	assert.Zero(t, fv.Count())
	fv.SetMode(fakevector.OK)
	code, _, stderr = e2e.Run(t, 30*time.Second, "run", "--offline", "--once", "--alloc-dir", allocDir, "--checkpoint", ckpt, "--output", fv.URL())
	require.Equal(t, 0, code, stderr)
	perFile := map[string]int{}
	for _, l := range decode(t, fv.Lines()) {
		perFile[l.File]++
	}
	assert.Equal(t, fixtureLines(t, allocDir), perFile)
}

func TestHTTPFlagsAreChecked(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--output", "tcp://127.0.0.1:1", "--http-header", "A: b"}, "need an http:// or https:// --output"},
		{[]string{"--output", "http://127.0.0.1:1/", "--tls-ca", "/x"}, "https://"},
		{[]string{"--output", "http://127.0.0.1:1/", "--http-header", "no-colon-secret"}, "Name: value"},
		{[]string{"--output", "http://127.0.0.1:1/", "--inflight", "0"}, "--inflight"},
		{[]string{"--output", "https://127.0.0.1:1/", "--tls-cert", "/x"}, "go together"},
	} {
		args := append([]string{"run", "--offline", "--once", "--alloc-dir", t.TempDir(), "--checkpoint", filepath.Join(t.TempDir(), "c")}, tc.args...)
		code, _, stderr := e2e.Run(t, 10*time.Second, args...)
		assert.NotEqual(t, 0, code, "%v", tc.args)
		assert.Contains(t, stderr, tc.want, "%v", tc.args)
		assert.False(t, strings.Contains(stderr, "secret"), "%v: %s", tc.args, stderr)
	}
}
