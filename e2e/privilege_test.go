package e2e_test

import (
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/e2e"
)

// With the Nomad API, the daemon needs no privilege: Nomad makes the alloc
// dir 0711 (traverse, not list), alloc/ and alloc/logs/ 0777 and the log
// files 0644, and the API says which alloc IDs to look for. This runs the
// binary as "nobody" over a tree with exactly those modes.
func TestRunsAsAnUnprivilegedUserWithTheAPI(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to start a process as another user")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)

	w := newWorld(t)
	// Nomad's modes: data_dir/alloc 0711 (root), <id> 0755, alloc/ and
	// logs/ 0777, files 0644. The temp dirs above it must be traversable.
	dataDir := filepath.Dir(w.allocDir)
	require.NoError(t, os.Chmod(dataDir, 0o711))
	require.NoError(t, os.Chmod(w.allocDir, 0o711))
	require.NoError(t, filepath.Walk(w.allocDir, func(path string, info os.FileInfo, err error) error {
		if err != nil || path == w.allocDir {
			return err
		}
		switch {
		case info.IsDir() && (filepath.Base(path) == "alloc" || filepath.Base(path) == "logs"):
			return os.Chmod(path, 0o777)
		case info.IsDir():
			return os.Chmod(path, 0o755)
		}
		return os.Chmod(path, 0o644)
	}))
	ckptDir := t.TempDir()
	require.NoError(t, os.Chmod(filepath.Dir(ckptDir), 0o711))
	require.NoError(t, os.Chown(ckptDir, uid, gid))
	ckpt := filepath.Join(ckptDir, "checkpoint.msgpack")

	p := e2e.StartAs(t, &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, "run", "--nomad-addr", w.api.URL(),
		"--alloc-dir", w.allocDir, "--checkpoint", ckpt, "--output", w.recv.URL(), "--metrics-addr", "",
		"--drain-delay", "100ms", "--checkpoint-interval", "50ms")
	want := fixtureLines(t, w.allocDir)
	want[filepath.Join(w.allocDir, runningWithLogs, "alloc", "logs", "server.stdout.0")]-- // held partial line
	total := 0
	for _, n := range want {
		total += n
	}
	require.Eventually(t, func() bool { return len(decode(t, w.recv.Lines())) >= total }, 20*time.Second, 10*time.Millisecond)
	assert.Len(t, decode(t, w.recv.Lines()), total)
	require.NoError(t, p.Signal(syscall.SIGTERM))
	code, err := p.Wait(5 * time.Second)
	require.NoError(t, err)
	assert.Equal(t, 0, code)
	assert.NotContains(t, p.Stderr(), "permission denied")
}
