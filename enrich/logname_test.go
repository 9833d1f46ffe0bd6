package enrich_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/enrich"
)

// Every log file of a folder bigger than one listing chunk is seen once,
// and nothing else is.
func TestEachLogFileWalksABigFolderOnce(t *testing.T) {
	dir := t.TempDir()
	want := map[string]bool{}
	for i := range 1100 { // more than one chunk of 1024
		name := enrich.LogFileName("web.v2", enrich.Stdout, int64(i))
		want[name] = true
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), nil, 0o644))
	}
	want["api.stderr.0"] = true
	for _, name := range []string{"api.stderr.0", ".web.v2.stdout.fifo", "web.v2.stdout.007", "notes.txt", "web.stdin.0"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), nil, 0o644))
	}
	d, err := os.Open(dir)
	require.NoError(t, err)
	defer d.Close()
	seen := map[string]int{}
	require.NoError(t, enrich.EachLogFile(d, func(task, stream string, index int64) {
		seen[enrich.LogFileName(task, stream, index)]++
	}))
	assert.Len(t, seen, len(want))
	for name, n := range seen {
		assert.True(t, want[name], "%s is not a log file", name)
		assert.Equal(t, 1, n, name)
	}
}

func TestEachLogFileSaysWhenTheFolderCannotBeListed(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "not-a-folder"))
	require.NoError(t, err)
	defer f.Close()
	err = enrich.EachLogFile(f, func(string, string, int64) { t.Error("called for a file") })
	require.Error(t, err)
	assert.Contains(t, err.Error(), fmt.Sprintf("list log folder %s", f.Name()))
}
