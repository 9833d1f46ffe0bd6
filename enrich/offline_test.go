package enrich_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

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

// Issue 10, part 2: Nomad creates the allocation's folder with an empty
// alloc/logs before logmon starts; the task's first file must be found at
// once, not at the next rescan.
func TestScannerFindsANewTaskStreamAtOnce(t *testing.T) {
	dir := t.TempDir()
	const alloc, later = "aaaaaaaa-0000-0000-0000-0000000000a1", "aaaaaaaa-0000-0000-0000-0000000000a2"
	logs := filepath.Join(dir, alloc, "alloc", "logs")
	require.NoError(t, os.MkdirAll(logs, 0o777))
	s := &enrich.Scanner{Root: openRoot(t, dir)}
	out := make(chan []enrich.Desired)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { s.Run(ctx, time.Hour, out); close(done) }()
	defer func() { cancel(); <-done }()
	next := func(want func([]enrich.Desired) bool) time.Duration {
		t.Helper()
		start := time.Now()
		for {
			select {
			case ds := <-out:
				if want(ds) {
					return time.Since(start)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no scan found it")
			}
		}
	}
	next(func(ds []enrich.Desired) bool { return len(ds) == 0 })
	require.NoError(t, os.WriteFile(filepath.Join(logs, "web.stdout.0"), []byte("hi\n"), 0o644))
	took := next(func(ds []enrich.Desired) bool { return len(ds) == 2 && ds[0].Target.Task == "web" })
	assert.Less(t, took, time.Second)

	// A later allocation, made a folder at a time as Nomad does.
	require.NoError(t, os.Mkdir(filepath.Join(dir, later), 0o755))
	require.NoError(t, os.Mkdir(filepath.Join(dir, later, "alloc"), 0o777))
	require.NoError(t, os.Mkdir(filepath.Join(dir, later, "alloc", "logs"), 0o777))
	require.NoError(t, os.WriteFile(filepath.Join(dir, later, "alloc", "logs", "api.stderr.0"), nil, 0o644))
	took = next(func(ds []enrich.Desired) bool { return allocIDs(ds)[later] })
	assert.Less(t, took, time.Second)
}

// Issue 16, item 2: offline, task names come from file names, which a task
// can create without end: at most --max-streams-per-alloc streams of an
// allocation are followed, the rest logged once and counted, and the
// streams already followed are never pushed out by new names.
func TestScannerCapsTheStreamsOfAnAllocation(t *testing.T) {
	dir := t.TempDir()
	const alloc = "aaaaaaaa-0000-0000-0000-0000000000b1"
	logs := filepath.Join(dir, alloc, "alloc", "logs")
	require.NoError(t, os.MkdirAll(logs, 0o777))
	require.NoError(t, os.WriteFile(filepath.Join(logs, "zzz-real.stdout.0"), nil, 0o644))
	refused := prometheus.NewCounter(prometheus.CounterOpts{Name: "refused"})
	core, logged := observer.New(zap.InfoLevel)
	s := &enrich.Scanner{Root: openRoot(t, dir), Refused: refused, Log: zap.New(core), Options: enrich.Options{MaxStreamsPerAlloc: 8}}
	ds, err := s.Scan()
	require.NoError(t, err)
	require.Len(t, ds, 2)
	for i := range 100 {
		require.NoError(t, os.WriteFile(filepath.Join(logs, fmt.Sprintf("fake%03d.stdout.0", i)), nil, 0o644))
	}
	ds, err = s.Scan()
	require.NoError(t, err)
	assert.Len(t, ds, 8)
	tasks := map[string]bool{}
	for _, d := range ds {
		tasks[d.Target.Task] = true
	}
	assert.True(t, tasks["zzz-real"], "the task followed before keeps its streams")
	assert.Equal(t, float64(2*(101-4)), testutil.ToFloat64(refused))
	_, err = s.Scan()
	require.NoError(t, err)
	assert.Equal(t, float64(2*(101-4)), testutil.ToFloat64(refused), "counted once")
	assert.Equal(t, 1, logged.FilterMessageSnippet("more task streams than --max-streams-per-alloc").Len())
}

// Folder names that are not UUIDs are no Nomad allocation's.
func TestScannerRefusesFoldersThatAreNoAllocID(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{strings.Repeat("d", 200), "not-an-alloc"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, name, "alloc", "logs"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, name, "alloc", "logs", "web.stdout.0"), nil, 0o644))
	}
	refused := prometheus.NewCounter(prometheus.CounterOpts{Name: "refused"})
	s := &enrich.Scanner{Root: openRoot(t, dir), Refused: refused}
	ds, err := s.Scan()
	require.NoError(t, err)
	assert.Empty(t, ds)
	assert.Equal(t, 2.0, testutil.ToFloat64(refused))
}
