package e2e_test

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/e2e"
)

// closedPort is a loopback TCP port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// A backfill whose output never accepted a line must not look like a
// success: SIGTERM ends it with exit 3, and the checkpoint holds nothing
// that was not confirmed, so the next run sends everything.
func TestOnceExitsThreeWhenTheOutputNeverAccepted(t *testing.T) {
	allocDir := t.TempDir()
	e2e.CopyDir(t, filepath.Join(fixtures, "alloc-logs"), allocDir)
	ckpt := filepath.Join(t.TempDir(), "checkpoint.msgpack")
	p := e2e.Start(t, "run", "--offline", "--once", "--alloc-dir", allocDir, "--checkpoint", ckpt,
		"--metrics-addr", "", "--output", "tcp://"+closedPort(t))
	// Streams are running and the writer is failing to connect.
	require.Eventually(t, func() bool {
		return strings.Contains(p.Stderr(), "reading every stream to its end") && strings.Contains(p.Stderr(), "connection refused")
	}, 20*time.Second, 10*time.Millisecond, p.Stderr())
	require.NoError(t, p.Signal(syscall.SIGTERM))
	code, err := p.Wait(15 * time.Second)
	require.NoError(t, err)
	assert.Equal(t, 3, code, p.Stderr())
	assert.Contains(t, p.Stderr(), "--once stopped before the output confirmed every line")

	code, out, stderr := e2e.Run(t, 10*time.Second, "offsets", "list", "--checkpoint", ckpt, "--alloc-dir", allocDir)
	require.Equal(t, 0, code, stderr)
	assert.NotContains(t, out, "true", "no stream finished")
}

// `offsets forget` as root on the checkpoint of a daemon that runs as
// 65532 leaves it the daemon's, and the daemon runs on with it.
func TestForgetAsRootKeepsTheDaemonsCheckpoint(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the daemon as uid 65532")
	}
	allocDir := t.TempDir()
	e2e.CopyDir(t, filepath.Join(fixtures, "alloc-logs"), allocDir)
	require.NoError(t, filepath.Walk(allocDir, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if info.IsDir() {
			return os.Chmod(path, 0o755)
		}
		return os.Chmod(path, 0o644)
	}))
	require.NoError(t, os.Chmod(filepath.Dir(allocDir), 0o755))
	ckptDir := t.TempDir()
	require.NoError(t, os.Chmod(filepath.Dir(ckptDir), 0o755))
	require.NoError(t, os.Chown(ckptDir, 65532, 65532))
	ckpt := filepath.Join(ckptDir, "checkpoint.msgpack")
	daemon := &syscall.Credential{Uid: 65532, Gid: 65532}
	runOnce := func() {
		t.Helper()
		p := e2e.StartAs(t, daemon, "run", "--offline", "--once", "--alloc-dir", allocDir, "--checkpoint", ckpt,
			"--metrics-addr", "", "--output", "stdout")
		code, err := p.Wait(30 * time.Second)
		require.NoError(t, err)
		require.Equal(t, 0, code, p.Stderr())
		assert.NotContains(t, p.Stderr(), "permission denied")
	}
	runOnce()
	require.NoError(t, os.Chmod(ckpt, 0o644))

	code, out, stderr := e2e.Run(t, 10*time.Second, "offsets", "forget", "--checkpoint", ckpt, "977ac344-4ea7-a153-a4b6-95ed026410d6")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, "removed 2 entries")
	var st syscall.Stat_t
	require.NoError(t, syscall.Stat(ckpt, &st))
	assert.Equal(t, "65532:65532 644", strconv.Itoa(int(st.Uid))+":"+strconv.Itoa(int(st.Gid))+" "+strconv.FormatUint(uint64(st.Mode&0o777), 8))

	runOnce() // would fail with "permission denied" on a root-owned 0600 file
}

// nlf_build_info says which build runs.
func TestBuildInfoIsServed(t *testing.T) {
	addr := freeAddr(t)
	p := e2e.Start(t, "run", "--offline", "--alloc-dir", t.TempDir(), "--checkpoint", filepath.Join(t.TempDir(), "cp"),
		"--output", "stdout", "--metrics-addr", addr)
	var body string
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == http.StatusOK
	}, 10*time.Second, 10*time.Millisecond)
	assert.Regexp(t, `(?m)^nlf_build_info\{goversion="go1\.[^"]+",version="[^"]+"\} 1$`, body)
	require.NoError(t, p.Signal(syscall.SIGTERM))
	code, err := p.Wait(10 * time.Second)
	require.NoError(t, err)
	assert.Equal(t, 0, code)
}
