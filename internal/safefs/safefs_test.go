package safefs

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// A log file is read in blocking mode (O_NONBLOCK was only for the open,
// against FIFOs) and, for its owner or root, without access-time updates:
// every read of a file just written would otherwise write its inode.
func TestOpenFileReadsBlockingAndWithoutAtime(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "a", "alloc", "logs"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a", "alloc", "logs", "web.stdout.0"), []byte("x\n"), 0o644))
	root, err := OpenRoot(dir)
	require.NoError(t, err)
	defer root.Close()

	f, err := root.OpenFile("a/alloc/logs/web.stdout.0")
	require.NoError(t, err)
	defer f.Close()
	flags, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	require.NoError(t, err)
	assert.Zero(t, flags&unix.O_NONBLOCK, "O_NONBLOCK cleared")
	assert.NotZero(t, flags&unix.O_NOATIME, "the test owns the file, so O_NOATIME is allowed")
}
