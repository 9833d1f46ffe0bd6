package safefs

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// tree builds <root>/a/alloc/logs/ with one regular file, and an outside
// folder with a secret.
func tree(t *testing.T) (root, outside string) {
	root, outside = t.TempDir(), t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "a", "alloc", "logs"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "a", "alloc", "logs", "web.stdout.0"), []byte("ok\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("SECRET\n"), 0o600))
	return root, outside
}

// both runs f with openat2 and with the per-component fallback.
func both(t *testing.T, f func(t *testing.T, r *Root)) {
	for _, fallback := range []bool{false, true} {
		name := "openat2"
		if fallback {
			name = "fallback"
		}
		t.Run(name, func(t *testing.T) {
			root, _ := tree(t)
			r, err := OpenRoot(root)
			require.NoError(t, err)
			defer r.Close()
			r.noOpenat2.Store(fallback)
			f(t, r)
		})
	}
}

func TestOpensRegularFiles(t *testing.T) {
	both(t, func(t *testing.T, r *Root) {
		f, err := r.OpenFile("a/alloc/logs/web.stdout.0")
		require.NoError(t, err)
		defer f.Close()
		b, err := io.ReadAll(f)
		require.NoError(t, err)
		assert.Equal(t, "ok\n", string(b))

		_, err = r.OpenFile("a/alloc/logs/missing.stdout.0")
		assert.ErrorIs(t, err, fs.ErrNotExist)
	})
}

func TestRefusesSymlinksAnywhere(t *testing.T) {
	for name, setup := range map[string]func(root, outside string) string{
		"leaf": func(root, outside string) string {
			os.Symlink(filepath.Join(outside, "secret"), filepath.Join(root, "a", "alloc", "logs", "web.stdout.1"))
			return "a/alloc/logs/web.stdout.1"
		},
		"relative leaf escaping": func(root, outside string) string {
			rel, _ := filepath.Rel(filepath.Join(root, "a", "alloc", "logs"), filepath.Join(outside, "secret"))
			os.Symlink(rel, filepath.Join(root, "a", "alloc", "logs", "web.stdout.1"))
			return "a/alloc/logs/web.stdout.1"
		},
		"logs folder": func(root, outside string) string {
			os.RemoveAll(filepath.Join(root, "a", "alloc", "logs"))
			os.Symlink(outside, filepath.Join(root, "a", "alloc", "logs"))
			return "a/alloc/logs/secret"
		},
		"alloc id folder": func(root, outside string) string {
			os.MkdirAll(filepath.Join(outside, "alloc", "logs"), 0o755)
			os.WriteFile(filepath.Join(outside, "alloc", "logs", "web.stdout.0"), []byte("SECRET\n"), 0o644)
			os.Symlink(outside, filepath.Join(root, "b"))
			return "b/alloc/logs/web.stdout.0"
		},
		"symlink inside the root too": func(root, outside string) string {
			os.Symlink("web.stdout.0", filepath.Join(root, "a", "alloc", "logs", "web.stdout.1"))
			return "a/alloc/logs/web.stdout.1"
		},
	} {
		for _, fallback := range []bool{false, true} {
			t.Run(name+map[bool]string{false: "/openat2", true: "/fallback"}[fallback], func(t *testing.T) {
				root, outside := tree(t)
				rel := setup(root, outside)
				r, err := OpenRoot(root)
				require.NoError(t, err)
				defer r.Close()
				r.noOpenat2.Store(fallback)
				_, err = r.OpenFile(rel)
				var refused *RefusedError
				require.ErrorAs(t, err, &refused)
				assert.Equal(t, "symlink", refused.Reason)
				assert.NotEmpty(t, refused.Target, "the log says what it pointed at")
			})
		}
	}
}

func TestRefusesSpecialFilesWithoutBlocking(t *testing.T) {
	both(t, func(t *testing.T, r *Root) {
		logs := r.Join("a/alloc/logs")
		require.NoError(t, syscall.Mkfifo(filepath.Join(logs, "web.stdout.1"), 0o666))
		require.NoError(t, os.Mkdir(filepath.Join(logs, "web.stdout.2"), 0o755))
		for _, name := range []string{"web.stdout.1", "web.stdout.2"} {
			_, err := r.OpenFile("a/alloc/logs/" + name) // a FIFO with no writer must not block
			var refused *RefusedError
			require.ErrorAs(t, err, &refused, name)
			assert.Contains(t, refused.Reason, "not a regular file")
		}
		_, err := r.OpenFile("/etc/passwd")
		assert.Error(t, err)
		_, err = r.OpenFile("a/../../etc/passwd")
		assert.Error(t, err)
		assert.False(t, errors.Is(err, fs.ErrNotExist))
	})
}

func TestOpenDirRefusesSymlinkedFolders(t *testing.T) {
	both(t, func(t *testing.T, r *Root) {
		d, err := r.OpenDir("a/alloc/logs")
		require.NoError(t, err)
		names, err := d.Readdirnames(-1)
		require.NoError(t, err)
		assert.Equal(t, []string{"web.stdout.0"}, names)
		d.Close()

		require.NoError(t, os.Symlink(r.Join("a"), r.Join("c")))
		_, err = r.OpenDir("c/alloc/logs")
		assert.True(t, IsRefused(err), "%v", err)
	})
}

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

func TestSizeLooksWithoutOpeningAndRefusesWhatOpenFileRefuses(t *testing.T) {
	both(t, func(t *testing.T, r *Root) {
		logs := r.Join("a/alloc/logs")
		size, err := r.Size("a/alloc/logs/web.stdout.0")
		require.NoError(t, err)
		assert.Equal(t, int64(3), size)

		_, err = r.Size("a/alloc/logs/missing.stdout.0")
		assert.ErrorIs(t, err, fs.ErrNotExist)

		_, outside := tree(t)
		require.NoError(t, os.Symlink(filepath.Join(outside, "secret"), filepath.Join(logs, "web.stdout.1")))
		require.NoError(t, syscall.Mkfifo(filepath.Join(logs, "web.stdout.2"), 0o666))
		require.NoError(t, os.Mkdir(filepath.Join(logs, "web.stdout.3"), 0o755))
		require.NoError(t, os.Symlink(outside, r.Join("b")))
		for rel, reason := range map[string]string{
			"a/alloc/logs/web.stdout.1": "symlink",
			"a/alloc/logs/web.stdout.2": "not a regular file (fifo)",
			"a/alloc/logs/web.stdout.3": "not a regular file (directory)",
			"b/secret":                  "symlink",
			".":                         "not a regular file",
		} {
			size, err := r.Size(rel)
			var refused *RefusedError
			require.ErrorAs(t, err, &refused, rel)
			assert.Contains(t, refused.Reason, reason, rel)
			assert.Zero(t, size)
		}
		_, err = r.Size("a/../../etc/passwd")
		assert.Error(t, err)
		_, err = r.Size("/etc/passwd")
		assert.Error(t, err)

		d, err := r.OpenDir("a/alloc/logs")
		require.NoError(t, err)
		defer d.Close()
		size, err = SizeIn(d, "web.stdout.0")
		require.NoError(t, err)
		assert.Equal(t, int64(3), size)
		_, err = SizeIn(d, "web.stdout.1")
		assert.True(t, IsRefused(err), "%v", err)
		_, err = SizeIn(d, "../../../etc/passwd")
		assert.Error(t, err)
		assert.False(t, IsRefused(err) || errors.Is(err, fs.ErrNotExist), "a name with a slash is not even looked at: %v", err)
	})
}

// A file a task hard-linked into its log folder can be any file of the
// filesystem (as root, a secret when fs.protected_hardlinks is 0): a
// second name is refused, when opened and when measured.
func TestRefusesHardLinkedFiles(t *testing.T) {
	both(t, func(t *testing.T, r *Root) {
		outside := t.TempDir()
		secret := filepath.Join(outside, "secret")
		require.NoError(t, os.WriteFile(secret, []byte("SECRET\n"), 0o600))
		require.NoError(t, os.Link(secret, filepath.Join(r.Path(), "a/alloc/logs/web.stderr.0")))

		_, err := r.OpenFile("a/alloc/logs/web.stderr.0")
		var refused *RefusedError
		require.ErrorAs(t, err, &refused)
		assert.Contains(t, refused.Reason, "2 hard links")
		assert.NotContains(t, err.Error(), "SECRET")

		_, err = r.Size("a/alloc/logs/web.stderr.0")
		assert.True(t, IsRefused(err), "Size refuses it too: %v", err)

		f, err := r.OpenFile("a/alloc/logs/web.stdout.0")
		require.NoError(t, err, "a file with one name is read")
		f.Close()
	})
}
