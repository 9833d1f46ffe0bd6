package deploy

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// forwarderUID is the user the forwarder's image runs as; Vector runs as
// another (root in its image).
const forwarderUID = 65532

// dialEnv names the socket the helper process dials.
const dialEnv = "NLF_TEST_DIAL_SOCKET"

// TestMain lets the test binary act as the dialing process: with dialEnv
// set it dials that socket, prints the outcome and exits, running no test.
func TestMain(m *testing.M) {
	if path := os.Getenv(dialEnv); path != "" {
		c, err := net.DialTimeout("unix", path, 5*time.Second)
		if err != nil {
			fmt.Println("dial:", err)
			os.Exit(1)
		}
		c.Close()
		fmt.Println("connected")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// The socket Vector creates with the mode vector.toml sets must accept a
// connection from the forwarder's user. Vector creates it as root with
// its umask and then applies socket_file_mode; so does this test, and then
// a process running as uid 65532 dials it. Without socket_file_mode (the
// 0755 a root umask of 022 leaves) it must fail, or the test proves
// nothing.
func TestForwarderUserCanDialVectorsSocket(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: Vector's socket is created by root and dialled as uid 65532; run the tests as root (as CI does)")
	}
	src := socketSource(t)
	require.NotNil(t, src.SocketFileMode, "vector.toml sets no socket_file_mode")
	mode := os.FileMode(*src.SocketFileMode)

	// The dialing process is this test binary, run as 65532: it needs a
	// copy it may execute.
	self, err := os.Executable()
	require.NoError(t, err)
	binDir := traversableTempDir(t)
	helper := filepath.Join(binDir, "dialer")
	copyFile(t, self, helper, 0o755)

	for _, tc := range []struct {
		name string
		mode os.FileMode
		ok   bool
	}{
		{"vector.toml's socket_file_mode", mode, true},
		{"Vector's default under umask 022", 0o755, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// /alloc is 0777 in a real allocation; the socket's own mode is
			// what decides.
			dir := traversableTempDir(t)
			require.NoError(t, os.Chmod(dir, 0o777))
			path := filepath.Join(dir, "vector.sock")
			ln, err := net.Listen("unix", path)
			require.NoError(t, err)
			defer ln.Close()
			require.NoError(t, os.Chmod(path, tc.mode))
			accepted := make(chan struct{}, 1)
			go func() {
				if c, err := ln.Accept(); err == nil {
					c.Close()
					accepted <- struct{}{}
				}
			}()

			cmd := exec.Command(helper)
			cmd.Env = append(os.Environ(), dialEnv+"="+path)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: forwarderUID, Gid: forwarderUID}}
			out, err := cmd.CombinedOutput()
			if tc.ok {
				require.NoError(t, err, "uid %d could not connect to a socket of mode %04o: %s", forwarderUID, tc.mode, out)
				assert.Equal(t, "connected", strings.TrimSpace(string(out)))
				select {
				case <-accepted:
				case <-time.After(5 * time.Second):
					t.Fatal("the listener never saw the connection")
				}
			} else {
				require.Error(t, err, "uid %d connected to a socket of mode %04o", forwarderUID, tc.mode)
				assert.Contains(t, string(out), "permission denied")
			}
		})
	}
}

// traversableTempDir is a temp dir another user can reach: t.TempDir's
// folders are 0700.
func traversableTempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o755))
	require.NoError(t, os.Chmod(filepath.Dir(dir), 0o755))
	return dir
}

func copyFile(t *testing.T, from, to string, perm os.FileMode) {
	t.Helper()
	in, err := os.Open(from)
	require.NoError(t, err)
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	require.NoError(t, err)
	_, err = io.Copy(out, in)
	require.NoError(t, err)
	require.NoError(t, out.Close())
}
