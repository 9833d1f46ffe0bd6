package enrich_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/nomad/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/enrich"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/safefs"
)

const (
	goodAlloc       = "aaaaaaaa-0000-0000-0000-000000000001"
	linkedAlloc     = "aaaaaaaa-0000-0000-0000-000000000002"
	linkedAllocDir  = "aaaaaaaa-0000-0000-0000-000000000003"
	linkedLogsAlloc = "aaaaaaaa-0000-0000-0000-000000000004"
)

// allocDir makes an alloc dir with one good allocation (task web) and
// three that a task could have planted: the alloc ID folder, its alloc
// folder, or its logs folder is a symlink to a folder outside.
func allocDir(t *testing.T) (dir, outside string) {
	dir, outside = t.TempDir(), t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(outside, "alloc", "logs"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(outside, "alloc", "logs", "secret.stdout.0"), []byte("SECRET\n"), 0o600))
	logs := filepath.Join(dir, goodAlloc, "alloc", "logs")
	require.NoError(t, os.MkdirAll(logs, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(logs, "web.stdout.0"), []byte("hi\n"), 0o644))
	require.NoError(t, os.Symlink(outside, filepath.Join(dir, linkedAlloc)))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, linkedAllocDir), 0o755))
	require.NoError(t, os.Symlink(filepath.Join(outside, "alloc"), filepath.Join(dir, linkedAllocDir, "alloc")))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, linkedLogsAlloc, "alloc"), 0o755))
	require.NoError(t, os.Symlink(filepath.Join(outside, "alloc", "logs"), filepath.Join(dir, linkedLogsAlloc, "alloc", "logs")))
	return dir, outside
}

func openRoot(t *testing.T, dir string) *safefs.Root {
	root, err := safefs.OpenRoot(dir)
	require.NoError(t, err)
	t.Cleanup(func() { root.Close() })
	return root
}

func allocIDs(ds []enrich.Desired) map[string]bool {
	ids := map[string]bool{}
	for _, d := range ds {
		ids[d.Target.AllocID] = true
	}
	return ids
}

func TestScannerCountsEveryRefusalOnce(t *testing.T) {
	dir, _ := allocDir(t)
	refused := prometheus.NewCounter(prometheus.CounterOpts{Name: "refused"})
	s := &enrich.Scanner{Root: openRoot(t, dir), Refused: refused}
	ds, err := s.Scan()
	require.NoError(t, err)
	assert.Equal(t, map[string]bool{goodAlloc: true}, allocIDs(ds))
	assert.Equal(t, 3.0, testutil.ToFloat64(refused), "a symlinked alloc ID, alloc and logs folder")

	_, err = s.Scan()
	require.NoError(t, err)
	assert.Equal(t, 3.0, testutil.ToFloat64(refused), "each refusal counts once, not at every scan")

	// A symlink that is removed and planted again is a new refusal.
	require.NoError(t, os.Rename(filepath.Join(dir, linkedAlloc), filepath.Join(t.TempDir(), "aside")))
	_, err = s.Scan()
	require.NoError(t, err)
	require.NoError(t, os.Symlink(t.TempDir(), filepath.Join(dir, linkedAlloc)))
	_, err = s.Scan()
	require.NoError(t, err)
	assert.Equal(t, 4.0, testutil.ToFloat64(refused))

	// Nil counters count nowhere.
	_, err = (&enrich.Scanner{Root: openRoot(t, dir)}).Scan()
	require.NoError(t, err)
}

func TestScannerCountsRefusedAllocations(t *testing.T) {
	base := loadAllocs(t, fixtures+"/node-allocations.json")["chatty.web[1]"]
	a := *base
	job := *a.Job
	group := *job.TaskGroups[0]
	bad := *group.Tasks[0]
	bad.Name = "../../etc"
	group.Tasks = []*api.Task{group.Tasks[0], &bad}
	job.TaskGroups = []*api.TaskGroup{&group}
	a.Job = &job
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, a.ID, "alloc", "logs"), 0o755))

	files := prometheus.NewCounter(prometheus.CounterOpts{Name: "files"})
	allocs := prometheus.NewCounter(prometheus.CounterOpts{Name: "allocs"})
	s := &enrich.Scanner{Root: openRoot(t, dir), Allocs: []*api.Allocation{&a}, Refused: files, AllocationsRefused: allocs}
	for range 2 {
		ds, err := s.Scan()
		require.NoError(t, err)
		assert.Equal(t, []string{"server.stderr", "server.stdout"}, tasks(ds), "the good task stays")
	}
	assert.Equal(t, 1.0, testutil.ToFloat64(allocs))
	assert.Equal(t, 0.0, testutil.ToFloat64(files))
}

func TestScannerTakesTheNodeFromTheAllocations(t *testing.T) {
	allocs := loadAllocs(t, fixtures+"/node-allocations.json")
	a := allocs["chatty.web[1]"]
	require.NotEmpty(t, a.NodeID)
	require.NotEmpty(t, a.NodeName)
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, a.ID, "alloc", "logs"), 0o755))
	other := "bbbbbbbb-0000-0000-0000-000000000001" // on disk, not in the saved response
	require.NoError(t, os.MkdirAll(filepath.Join(dir, other, "alloc", "logs"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, other, "alloc", "logs", "job.stderr.0"), nil, 0o644))

	s := &enrich.Scanner{Root: openRoot(t, dir), Allocs: []*api.Allocation{nil, a}}
	assert.Equal(t, enrich.Node{ID: a.NodeID, Name: a.NodeName}, s.ResolvedNode())
	ds, err := s.Scan()
	require.NoError(t, err)
	require.NotEmpty(t, ds)
	for _, d := range ds {
		assert.Equal(t, a.NodeID, d.Meta.NodeID, d.Target)
		assert.Equal(t, a.NodeName, d.Meta.NodeName, d.Target)
	}
	assert.True(t, allocIDs(ds)[other])

	// A node ID given by the operator wins; the name still comes from
	// the allocations.
	s.Node = enrich.Node{ID: "operator-given"}
	assert.Equal(t, enrich.Node{ID: "operator-given", Name: a.NodeName}, s.ResolvedNode())
	assert.Equal(t, enrich.Node{}, (&enrich.Scanner{}).ResolvedNode())
}
