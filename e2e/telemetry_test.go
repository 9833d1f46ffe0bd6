package e2e_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/e2e"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/recv"
)

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

func TestMetricsAndHealth(t *testing.T) {
	allocDir := t.TempDir()
	e2e.CopyDir(t, filepath.Join(fixtures, "alloc-logs"), allocDir)
	r, err := recv.Listen("")
	require.NoError(t, err)
	defer r.Stop()
	addr := freeAddr(t)
	e2e.Start(t, "run", "--offline", "--alloc-dir", allocDir, "--allocs-file", filepath.Join(fixtures, "api", "node-allocations.json"),
		"--checkpoint", filepath.Join(t.TempDir(), "cp"), "--output", r.URL(), "--metrics-addr", addr)
	require.Eventually(t, func() bool { return r.Count() > 3000 }, 20*time.Second, 10*time.Millisecond)

	var body string
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		// The capture holds writer.stdout.4 only: logmon purged .0 to .3
		// before anyone read them (nomad-logs.md 2.7), a loss the stream
		// reports when it starts at its lowest index.
		return resp.StatusCode == http.StatusOK && strings.Contains(body, "nlf_files_skipped_total 4")
	}, 10*time.Second, 10*time.Millisecond)
	for _, m := range []string{
		`nlf_lines_forwarded_total{job="burst",namespace="default"}`,
		"nlf_lines_read_total", "nlf_output_connects_total 1", "nlf_targets_active 6",
		"nlf_checkpoint_saves_total", `nlf_lag_bytes{job="burst",namespace="default"}`,
		`nlf_stream_retention_bytes{job="burst",namespace="default",stream="stdout",task="writer"} 2.097152e+06`,
		"nlf_held_files", "nlf_held_bytes", "nlf_inotify_watches",
	} {
		assert.Contains(t, body, m)
	}

	resp, err := http.Get("http://" + addr + "/healthz")
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	var h map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&h))
	assert.Equal(t, "ok", h["status"])
}

// Offline, folders a task planted as symlinks are refused before any
// stream exists: the scanner counts them where the tailer counts refused
// files.
func TestOfflineRefusalsAreCounted(t *testing.T) {
	allocDir := t.TempDir()
	e2e.CopyDir(t, filepath.Join(fixtures, "alloc-logs"), allocDir)
	outside := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(outside, "alloc", "logs"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(outside, "alloc", "logs", "steal.stdout.0"), []byte("SECRET\n"), 0o600))
	require.NoError(t, os.Symlink(outside, filepath.Join(allocDir, "aaaaaaaa-0000-0000-0000-000000000001")))
	planted := filepath.Join(allocDir, "aaaaaaaa-0000-0000-0000-000000000002", "alloc")
	require.NoError(t, os.MkdirAll(planted, 0o755))
	require.NoError(t, os.Symlink(filepath.Join(outside, "alloc", "logs"), filepath.Join(planted, "logs")))
	r, err := recv.Listen("")
	require.NoError(t, err)
	defer r.Stop()
	addr := freeAddr(t)
	e2e.Start(t, "run", "--offline", "--alloc-dir", allocDir,
		"--checkpoint", filepath.Join(t.TempDir(), "cp"), "--output", r.URL(), "--metrics-addr", addr)
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), "\nnlf_files_refused_total 2\n")
	}, 20*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return r.Count() > 3000 }, 20*time.Second, 10*time.Millisecond)
	for _, l := range decode(t, r.Lines()) {
		require.NotContains(t, l.Message, "SECRET")
	}
}

// scrapeMetric sums the samples of one metric on the daemon's /metrics.
func scrapeMetric(t *testing.T, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var sum float64
	for _, l := range strings.Split(string(body), "\n") {
		if l == name || strings.HasPrefix(l, name+" ") || strings.HasPrefix(l, name+"{") {
			var v float64
			fields := strings.Fields(l)
			_, err := fmt.Sscan(fields[len(fields)-1], &v)
			require.NoError(t, err, l)
			sum += v
		}
	}
	return sum
}
