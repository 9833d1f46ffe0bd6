package checkpoint

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/taskstream"
)

const secret = "root:TOPSECRET-HASH:19000:0:99999:7:::"

// refusedQuickly runs f and fails the test unless it returns a
// *RefusedError within a few seconds (a FIFO must not block the reader)
// that does not quote the secret.
func refusedQuickly(t *testing.T, what string, f func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		var refused *RefusedError
		require.ErrorAs(t, err, &refused, what)
		assert.NotContains(t, err.Error(), "TOPSECRET", what)
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: still blocked after 5s", what)
	}
}

// Every way the daemon and the CLI read a checkpoint refuses a symlink,
// whatever it points at, and never prints what is behind it.
func TestSymlinkedCheckpointIsRefused(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "shadow")
	require.NoError(t, os.WriteFile(target, []byte(secret), 0o600))
	fifo := filepath.Join(dir, "fifo")
	require.NoError(t, unix.Mkfifo(fifo, 0o600))
	for name, to := range map[string]string{"a secret": target, "/dev/zero": "/dev/zero", "a FIFO": fifo} {
		path := filepath.Join(t.TempDir(), "checkpoint.msgpack")
		require.NoError(t, os.Symlink(to, path))
		refusedQuickly(t, name+": Read", func() error { _, err := Read(path); return err })
		refusedQuickly(t, name+": ReadExisting", func() error { _, err := ReadExisting(path); return err })
		refusedQuickly(t, name+": Open", func() error { _, err := Open(path, nil); return err })
		refusedQuickly(t, name+": OpenExisting", func() error { _, err := OpenExisting(path, nil); return err })
		refusedQuickly(t, name+": LockExisting", func() error { _, err := LockExisting(path); return err })
	}
	data, err := os.ReadFile(target)
	require.NoError(t, err)
	assert.Equal(t, secret, string(data))
}

// Not through a symlink either: a FIFO or a device in the checkpoint's
// place is refused at once, never read.
func TestSpecialFilesAreRefusedQuickly(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "checkpoint.msgpack")
	require.NoError(t, unix.Mkfifo(fifo, 0o600))
	refusedQuickly(t, "FIFO", func() error { _, err := Read(fifo); return err })
	refusedQuickly(t, "FIFO Open", func() error { _, err := Open(fifo, nil); return err })

	folder := filepath.Join(t.TempDir(), "checkpoint.msgpack")
	require.NoError(t, os.Mkdir(folder, 0o755))
	refusedQuickly(t, "folder", func() error { _, err := Read(folder); return err })

	if os.Geteuid() != 0 {
		t.Skip("creating a device node (a copy of /dev/zero) needs root")
	}
	zero := filepath.Join(t.TempDir(), "checkpoint.msgpack")
	require.NoError(t, unix.Mknod(zero, unix.S_IFCHR|0o644, int(unix.Mkdev(1, 5))))
	refusedQuickly(t, "character device", func() error { _, err := Read(zero); return err })
}

func TestOversizeCheckpointIsRefusedUnread(t *testing.T) {
	path := filepath.Join(t.TempDir(), "checkpoint.msgpack")
	f, err := os.Create(path)
	require.NoError(t, err)
	// Sparse: no 64 MiB written, and none read either.
	require.NoError(t, f.Truncate(MaxFileBytes+1))
	require.NoError(t, f.Close())
	_, err = Read(path)
	var refused *RefusedError
	require.ErrorAs(t, err, &refused)
	assert.Contains(t, err.Error(), "64 MiB")
	_, err = Open(path, nil)
	require.ErrorAs(t, err, &refused)
}

// A lock file replaced by a symlink must not make root create (or open)
// the file it points at.
func TestSymlinkedLockIsRefused(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "checkpoint.msgpack")
	s, err := Open(path, nil)
	require.NoError(t, err)
	require.NoError(t, s.Save())
	target := filepath.Join(t.TempDir(), "created-by-root")
	require.NoError(t, os.Symlink(target, path+".lock"))
	for name, lock := range map[string]func(string) (func() error, error){"Lock": Lock, "LockExisting": LockExisting} {
		unlock, err := lock(path)
		var refused *RefusedError
		require.ErrorAs(t, err, &refused, name)
		assert.Nil(t, unlock)
		_, err = os.Lstat(target)
		assert.ErrorIs(t, err, fs.ErrNotExist, "%s created the symlink's target", name)
	}
}

// A temp file name planted in the folder (a symlink to a file root
// owns) is skipped, never written through.
func TestTempFileNeverFollowsASymlink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	require.NoError(t, os.WriteFile(victim, []byte("keep"), 0o644))
	require.NoError(t, os.Symlink(victim, filepath.Join(dir, "cp"+tempInfix+"planted")))
	suffixes := []string{"planted", "fresh"}
	f, err := createTemp(dir, "cp", func() string {
		s := suffixes[0]
		suffixes = suffixes[1:]
		return s
	})
	require.NoError(t, err)
	defer f.Close()
	assert.Equal(t, filepath.Join(dir, "cp"+tempInfix+"fresh"), f.Name())
	_, err = f.WriteString("new")
	require.NoError(t, err)
	data, err := os.ReadFile(victim)
	require.NoError(t, err)
	assert.Equal(t, "keep", string(data))
}

// The case: `offsets forget` as root on the checkpoint of a daemon
// that runs as 65532 must leave the file the daemon's, with its mode.
func TestRewriteKeepsOwnerAndMode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving a file to uid 65532 needs root")
	}
	path := filepath.Join(t.TempDir(), "checkpoint.msgpack")
	s, err := Open(path, nil)
	require.NoError(t, err)
	s.Commit(entry("a", 1, 10))
	s.Commit(entry("b", 1, 10))
	require.NoError(t, s.Save())
	require.NoError(t, os.Chown(path, 65532, 65532))
	require.NoError(t, os.Chmod(path, 0o644))

	s, err = OpenExisting(path, nil)
	require.NoError(t, err)
	s.Delete(taskstream.ID{AllocID: "a", Task: "web", Stream: "stdout"})
	require.NoError(t, s.Save())

	var st syscall.Stat_t
	require.NoError(t, syscall.Stat(path, &st))
	assert.Equal(t, uint32(65532), st.Uid)
	assert.Equal(t, uint32(65532), st.Gid)
	assert.Equal(t, uint32(0o644), st.Mode&0o7777)
	got, err := Read(path)
	require.NoError(t, err)
	require.Len(t, got, 1, "the rewrite happened")
	assert.Equal(t, "b", got[0].AllocID)
}

// A checkpoint that did not exist is private whatever the umask: it lists
// alloc IDs, which Nomad's 0711 alloc dir hides from other users.
func TestNewCheckpointIsPrivate(t *testing.T) {
	old := unix.Umask(0)
	defer unix.Umask(old)
	path := filepath.Join(t.TempDir(), "checkpoint.msgpack")
	s, err := Open(path, nil)
	require.NoError(t, err)
	require.NoError(t, s.Save())
	info, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm())
}

// The CLI's variants create nothing for a path that does not exist, and
// say so in the words the CLI prints.
func TestExistingVariantsCreateNothing(t *testing.T) {
	base := t.TempDir()
	path := filepath.Join(base, "typo", "checkpoint.msgpack")
	_, err := ReadExisting(path)
	require.EqualError(t, err, "no checkpoint at "+path)
	assert.True(t, errors.Is(err, fs.ErrNotExist))
	_, err = OpenExisting(path, nil)
	require.EqualError(t, err, "no checkpoint at "+path)
	_, err = LockExisting(path)
	require.EqualError(t, err, "no checkpoint at "+path)
	entries, err := os.ReadDir(base)
	require.NoError(t, err)
	assert.Empty(t, entries, "nothing was created")

	// And in an existing folder, no file either.
	path = filepath.Join(base, "checkpoint.msgpack")
	_, err = LockExisting(path)
	require.EqualError(t, err, "no checkpoint at "+path)
	entries, err = os.ReadDir(base)
	require.NoError(t, err)
	assert.Empty(t, entries)
}

// A lock file that root created stays usable by the daemon's user: it is
// opened read-only and made 0644 whatever the umask.
func TestLockFileIsReadableByOthers(t *testing.T) {
	old := unix.Umask(0o077)
	defer unix.Umask(old)
	path := filepath.Join(t.TempDir(), "checkpoint.msgpack")
	unlock, err := Lock(path)
	require.NoError(t, err)
	require.NoError(t, unlock())
	info, err := os.Stat(path + ".lock")
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), info.Mode().Perm())
}

// A file that is not a checkpoint at all is refused without quoting it:
// msgpack's own error names the byte it stumbled on.
func TestCorruptErrorDoesNotQuoteTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "checkpoint.msgpack")
	require.NoError(t, os.WriteFile(path, []byte(secret), 0o600))
	_, err := Read(path)
	var corrupt *CorruptError
	require.ErrorAs(t, err, &corrupt)
	msg := strings.ReplaceAll(err.Error(), path, "PATH")
	assert.NotContains(t, msg, "TOPSECRET")
	// 'r' is 0x72: msgpack would say "invalid code=72".
	assert.NotContains(t, msg, "72")
	assert.NotContains(t, msg, "code=")
}

// A daemon that just started holds its lock before its first save: forget
// must say a daemon runs, not that there is no checkpoint.
func TestLockExistingSeesADaemonBeforeItsFirstSave(t *testing.T) {
	path := filepath.Join(t.TempDir(), "checkpoint.msgpack")
	unlock, err := Lock(path)
	require.NoError(t, err)
	_, err = LockExisting(path)
	require.ErrorIs(t, err, ErrLocked)
	require.NoError(t, unlock())
	_, err = LockExisting(path)
	require.EqualError(t, err, "no checkpoint at "+path, "a lock file alone is no checkpoint")
}
