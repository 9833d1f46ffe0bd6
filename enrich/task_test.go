package enrich_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/enrich"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/fakenomad"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/safefs"
)

// The derived fixture (testdata/nomad-2.0.5-derived/README.md), made from
// the real captures.
const (
	derivedFixtures = "../testdata/nomad-2.0.5-derived"
	eventsNode      = "8e47e58c-8df8-60d1-ad83-e4a85be0ec5c"
	crashAlloc      = "b224a5bb-2a7a-41c1-0927-0a6e3f1d9428" // failing.once[0]: crash exits 3
	flakyAlloc      = "6d0f3a52-91c4-4be7-8f1d-2c5e7b9a0d13" // flaky.app[0]: app restarted once; proxy, init prestart
	dispatchedAlloc = "a3c81e07-5d2b-4f69-b0e4-71d95c3f28ab" // burst/dispatch-…: dispatched child
	periodicAlloc   = "c7e2f914-0b3a-4d58-9e61-3f8a2d5c7b90" // nightly/periodic-…: periodic child, logs disabled
)

func derivedAllocs(t *testing.T) map[string]*api.Allocation {
	t.Helper()
	allocs, err := enrich.LoadAllocations(derivedFixtures + "/node-allocations-events.json")
	require.NoError(t, err)
	byID := make(map[string]*api.Allocation, len(allocs))
	for _, a := range allocs {
		byID[a.ID] = a
	}
	require.Len(t, byID, 4)
	return byID
}

// byTask returns the targets of one allocation by "task.stream".
func byTask(ds []enrich.Desired) map[string]enrich.Desired {
	m := make(map[string]enrich.Desired, len(ds))
	for _, d := range ds {
		m[d.Target.Task+"."+d.Target.Stream] = d
	}
	return m
}

// renderNomad renders a line of d and returns its nomad object, checking
// that the line is one valid JSON object.
func renderNomad(t *testing.T, d enrich.Desired) map[string]any {
	t.Helper()
	r := enrich.NewRenderer(d.Target.Stream, d.Meta)
	r.SetFile("f")
	line := r.AppendLine(nil, []byte("2026-11-25T00:00:00.000000000Z"), []byte("x"), 0, false)
	require.True(t, strings.HasSuffix(string(line), "}\n"))
	require.Equal(t, 1, strings.Count(string(line), "\n"))
	var got struct {
		Nomad map[string]any `json:"nomad"`
	}
	require.NoError(t, json.Unmarshal(line, &got), "%s", line)
	return got.Nomad
}

func TestLineageLifecycleAndRestartKeys(t *testing.T) {
	allocs := derivedAllocs(t)
	node := enrich.Node{ID: eventsNode, Name: "vm", Datacenter: "dc1"}
	opts := enrich.Options{TaskEvents: true}
	from := func(id string) map[string]enrich.Desired {
		ds, err := enrich.FromAllocation(allocs[id], node, opts)
		require.NoError(t, err)
		return byTask(ds)
	}

	// A dispatched child of a parameterized job.
	n := renderNomad(t, from(dispatchedAlloc)["writer.stdout"])
	assert.Equal(t, "burst", n["parent_job_id"])
	assert.Equal(t, true, n["dispatched"])
	assert.NotContains(t, n, "periodic_child")
	assert.Equal(t, "burst/dispatch-1795621200-5f3a9c1e", n["job_id"])

	// A child of a periodic job.
	n = renderNomad(t, from(periodicAlloc)["writer.stderr"])
	assert.Equal(t, "nightly", n["parent_job_id"])
	assert.Equal(t, true, n["periodic_child"])
	assert.NotContains(t, n, "dispatched")

	// Lifecycle and restarts.
	flaky := from(flakyAlloc)
	n = renderNomad(t, flaky["app.stdout"])
	assert.Equal(t, float64(1), n["restarts"], "TaskStates[app].Restarts")
	assert.NotContains(t, n, "task_lifecycle", "a main task has no lifecycle block")
	assert.NotContains(t, n, "task_sidecar")
	n = renderNomad(t, flaky["proxy.stdout"])
	assert.Equal(t, "prestart", n["task_lifecycle"])
	assert.Equal(t, true, n["task_sidecar"])
	assert.NotContains(t, n, "restarts", "only above 0")
	n = renderNomad(t, flaky["init.stderr"])
	assert.Equal(t, "prestart", n["task_lifecycle"])
	assert.NotContains(t, n, "task_sidecar", "not a sidecar")

	// A plain job has none of them.
	n = renderNomad(t, from(crashAlloc)["crash.stdout"])
	for _, k := range []string{"parent_job_id", "dispatched", "periodic_child", "task_lifecycle", "task_sidecar", "restarts", "node_pool", "node_class", "node_meta"} {
		assert.NotContains(t, n, k)
	}
	assert.Equal(t, "global", n["region"], "offline, the region is the job's")
}

func TestNodeKeys(t *testing.T) {
	a := derivedAllocs(t)[crashAlloc]
	node := enrich.Node{ID: eventsNode, Name: "vm", Datacenter: "dc1", Region: "eu-west", Pool: "gpu", Class: "large",
		Meta: map[string]string{"rack": "r12", "zone": "b", "unasked": "x"}}
	ds, err := enrich.FromAllocation(a, node, enrich.Options{NodeMetaKeys: []string{"rack", "zone", "absent"}})
	require.NoError(t, err)
	require.Len(t, ds, 2)
	n := renderNomad(t, ds[0])
	assert.Equal(t, "eu-west", n["region"], "the node's region wins over the job's")
	assert.Equal(t, "gpu", n["node_pool"])
	assert.Equal(t, "large", n["node_class"])
	assert.Equal(t, map[string]any{"rack": "r12", "zone": "b"}, n["node_meta"])

	// No class, no --node-meta: the keys are left out.
	node.Class = ""
	ds, err = enrich.FromAllocation(a, node, enrich.Options{})
	require.NoError(t, err)
	n = renderNomad(t, ds[0])
	assert.NotContains(t, n, "node_class")
	assert.NotContains(t, n, "node_meta")
	assert.Equal(t, "gpu", n["node_pool"])
}

func TestTaskInfoIsSharedByBothStreams(t *testing.T) {
	ds, err := enrich.FromAllocation(derivedAllocs(t)[flakyAlloc], enrich.Node{}, enrich.Options{TaskEvents: true})
	require.NoError(t, err)
	m := byTask(ds)
	require.Len(t, m, 6)
	app := m["app.stdout"].Task
	require.NotNil(t, app)
	assert.Same(t, app, m["app.stderr"].Task, "one TaskInfo per task")
	assert.NotSame(t, app, m["proxy.stdout"].Task)
	assert.Equal(t, flakyAlloc, app.AllocID)
	assert.Equal(t, "app", app.Task)
	assert.Equal(t, "running", app.State)
	assert.Equal(t, uint64(1), app.Restarts)
	assert.Equal(t, enrich.LogConfig{MaxFiles: 2, MaxFileSizeMB: 1}, app.LogConfig)
	assert.Equal(t, int64(2<<20), app.LogConfig.RetentionBytes())
	assert.Equal(t, "", app.Lifecycle)
	proxy := m["proxy.stdout"].Task
	assert.Equal(t, enrich.LifecyclePrestart, proxy.Lifecycle)
	assert.True(t, proxy.Sidecar)

	var types []string
	for _, ev := range app.Events {
		types = append(types, ev.Type)
	}
	assert.Equal(t, []string{"Received", "Task Setup", "Started", "Terminated", "Restarting", "Started"}, types)
	for i := 1; i < len(app.Events); i++ {
		assert.Less(t, app.Events[i-1].Time, app.Events[i].Time, "ordered by time")
	}
	oom := app.Events[3]
	assert.True(t, oom.OOMKilled)
	assert.Equal(t, 137, oom.ExitCode)
	assert.Equal(t, 9, oom.Signal)
	assert.Equal(t, uint64(0), oom.Restarts, "the first run ended before the restart")
	assert.Equal(t, "Exit Code: 137, Signal: 9", oom.Message)
	assert.Equal(t, uint64(1), app.Events[4].Restarts, "Restarting counts itself")
	assert.Equal(t, "Task restarting in 15.612343551s", app.Events[4].Message)
	assert.Equal(t, map[string]string{"restart_reason": "Restart within policy", "start_delay": "15612343551"}, app.Events[4].Details)
	assert.Equal(t, uint64(1), app.Events[5].Restarts)

	// --task-events=false: no events; the rest stays.
	ds, err = enrich.FromAllocation(derivedAllocs(t)[flakyAlloc], enrich.Node{}, enrich.Options{})
	require.NoError(t, err)
	app = byTask(ds)["app.stdout"].Task
	assert.Nil(t, app.Events)
	assert.Equal(t, uint64(1), app.Restarts)
	assert.Equal(t, 2, app.LogConfig.MaxFiles)
}

func TestFailedTaskEvents(t *testing.T) {
	ds, err := enrich.FromAllocation(derivedAllocs(t)[crashAlloc], enrich.Node{}, enrich.Options{TaskEvents: true})
	require.NoError(t, err)
	crash := byTask(ds)["crash.stderr"].Task
	require.NotNil(t, crash)
	assert.True(t, crash.Failed)
	assert.Equal(t, "dead", crash.State)
	require.Len(t, crash.Events, 5)
	term := crash.Events[3]
	assert.Equal(t, "Terminated", term.Type)
	assert.Equal(t, int64(1795566377937628212), term.Time)
	assert.Equal(t, 3, term.ExitCode)
	assert.False(t, term.OOMKilled, `oom_killed "false"`)
	assert.Equal(t, "Exit Code: 3", term.Message)
	last := crash.Events[4]
	assert.Equal(t, "Not Restarting", last.Type)
	assert.Equal(t, "Policy allows no restarts", last.Message)
	assert.Equal(t, int64(100<<20), crash.LogConfig.RetentionBytes())

	// The mark of a checkpoint: events after it.
	assert.Len(t, crash.EventsAfter(0, 0), 5)
	assert.Equal(t, crash.Events[4:], crash.EventsAfter(term.Time, term.Seq))
	assert.Empty(t, crash.EventsAfter(last.Time, last.Seq))
	assert.Len(t, crash.EventsAfter(term.Time-1, 9), 2, "a time between events")
}

// The fake API serves the derived allocations with the captured node and
// agent: node keys come from GET /v1/node/<id> and the agent's region.
func newEventsWatcher(t *testing.T, agentRegion string, modify func(*enrich.WatcherConfig)) (*enrich.Watcher, *fakenomad.Server, *observer.ObservedLogs, string) {
	t.Helper()
	node, err := os.ReadFile(extraFixtures + "/node.json")
	require.NoError(t, err)
	self, err := os.ReadFile(extraFixtures + "/agent-self.json")
	require.NoError(t, err)
	if agentRegion != "" {
		var m map[string]any
		require.NoError(t, json.Unmarshal(self, &m))
		m["config"].(map[string]any)["Region"] = agentRegion
		self, err = json.Marshal(m)
		require.NoError(t, err)
	}
	allocs, err := enrich.LoadAllocations(derivedFixtures + "/node-allocations-events.json")
	require.NoError(t, err)
	s, err := fakenomad.New(fakenomad.Options{NodeID: eventsNode, Node: node, AgentSelf: self}, allocs...)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	allocDir := t.TempDir()
	for _, id := range []string{crashAlloc, flakyAlloc, dispatchedAlloc, periodicAlloc} {
		require.NoError(t, os.MkdirAll(filepath.Join(allocDir, id, "alloc", "logs"), 0o755))
	}
	root, err := safefs.OpenRoot(allocDir)
	require.NoError(t, err)
	t.Cleanup(func() { root.Close() })
	client, _, err := enrich.NewClient(enrich.ClientConfig{Address: s.URL()})
	require.NoError(t, err)
	t.Cleanup(client.Close)
	core, logs := observer.New(zap.InfoLevel)
	cfg := enrich.WatcherConfig{
		Client: client, Root: root, Log: zap.New(core), Metrics: enrich.NewMetrics(prometheus.NewRegistry()),
		Options:           enrich.Options{TaskEvents: true, NodeMetaKeys: []string{"connect.log_level", "rack"}},
		ReconcileInterval: time.Hour, MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		MinInterval: time.Millisecond,
	}
	if modify != nil {
		modify(&cfg)
	}
	return enrich.NewWatcher(cfg), s, logs, allocDir
}

func TestWatcherGivesEventsAndNodeKeys(t *testing.T) {
	w, _, logs, _ := newEventsWatcher(t, "eu-west", nil)
	ds, err := w.Snapshot(context.Background(), 1)
	require.NoError(t, err)
	got := byAlloc(ds)
	require.Len(t, got, 4)

	n := renderNomad(t, got[crashAlloc][0])
	assert.Equal(t, "eu-west", n["region"], "the agent's region (GET /v1/agent/self config.Region)")
	assert.Equal(t, "default", n["node_pool"], "node.json NodePool")
	assert.NotContains(t, n, "node_class", "node.json has NodeClass \"\"")
	assert.Equal(t, map[string]any{"connect.log_level": "info"}, n["node_meta"])
	assert.Equal(t, 1, logs.FilterMessageSnippet("no such meta key").FilterField(zap.String("node_meta_key", "rack")).Len(),
		"an asked key the node lacks is said once")

	crash := byTask(got[crashAlloc])["crash.stdout"].Task
	require.NotNil(t, crash)
	require.Len(t, crash.Events, 5)
	assert.Equal(t, 3, crash.Events[3].ExitCode)
	flaky := byTask(got[flakyAlloc])
	assert.Equal(t, uint64(1), flaky["app.stderr"].Meta.Restarts)
	assert.True(t, flaky["app.stderr"].Task.Events[3].OOMKilled)
	assert.True(t, byTask(got[dispatchedAlloc])["writer.stdout"].Meta.Dispatched)
	assert.True(t, byTask(got[periodicAlloc])["writer.stdout"].Meta.PeriodicChild)
}

func TestWatcherRegionWithNodeIDComesFromTheClient(t *testing.T) {
	w, s, _, _ := newEventsWatcher(t, "", func(c *enrich.WatcherConfig) {
		c.NodeID = eventsNode
		c.Region = "us-east"
	})
	ds, err := w.Snapshot(context.Background(), 1)
	require.NoError(t, err)
	assert.Equal(t, 0, s.Requests(fakenomad.AgentSelf))
	assert.Equal(t, "us-east", renderNomad(t, ds[0])["region"])

	// Neither the agent nor the client says: each job's Region.
	w, _, _, _ = newEventsWatcher(t, "", func(c *enrich.WatcherConfig) { c.NodeID = eventsNode })
	ds, err = w.Snapshot(context.Background(), 1)
	require.NoError(t, err)
	assert.Equal(t, "global", renderNomad(t, ds[0])["region"])
}

func TestLogsDisabledIsWarnedOncePerTask(t *testing.T) {
	w, s, logs, _ := newEventsWatcher(t, "", nil)
	disabled := func() *observer.ObservedLogs {
		return logs.FilterMessageSnippet("logs are disabled")
	}
	for range 3 {
		_, err := w.Snapshot(context.Background(), 1)
		require.NoError(t, err)
	}
	require.Equal(t, 1, disabled().Len(), "once per task, however many listings")
	entry := disabled().All()[0]
	assert.Equal(t, periodicAlloc, entry.ContextMap()["alloc_id"])
	assert.Equal(t, "writer", entry.ContextMap()["task"])
	assert.Equal(t, "nightly/periodic-1795621300", entry.ContextMap()["job_id"])

	// Gone from the listing and back (another allocation of the same ID
	// would be news): warned again.
	a := s.Allocation(periodicAlloc)
	s.Remove(periodicAlloc)
	_, err := w.Snapshot(context.Background(), 1)
	require.NoError(t, err)
	s.Put(a)
	_, err = w.Snapshot(context.Background(), 1)
	require.NoError(t, err)
	assert.Equal(t, 2, disabled().Len())
}
