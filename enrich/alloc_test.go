package enrich_test

import (
	"encoding/json"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/nomad/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/enrich"
)

const (
	fixtures      = "../testdata/nomad-2.0.5/api"
	extraFixtures = "../testdata/nomad-2.0.5-extra"
)

func loadAllocs(t *testing.T, path string) map[string]*api.Allocation {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var allocs []*api.Allocation
	require.NoError(t, json.Unmarshal(data, &allocs))
	byName := make(map[string]*api.Allocation)
	for _, a := range allocs {
		byName[a.Name] = a
	}
	return byName
}

// tasks lists "task.stream" of the targets, sorted.
func tasks(ds []enrich.Desired) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Target.Task+"."+d.Target.Stream)
	}
	sort.Strings(out)
	return out
}

func TestOptOutNearestLevelWins(t *testing.T) {
	allocs := loadAllocs(t, extraFixtures+"/node-allocations-mixed.json")
	node := enrich.Node{ID: "n", Name: "vm", Datacenter: "dc1"}

	// Task meta log_forwarder=false drops the sidecar only.
	ds, err := enrich.FromAllocation(allocs["optout.mixed[0]"], node, enrich.Options{})
	require.NoError(t, err)
	assert.Equal(t, []string{"main.stderr", "main.stdout"}, tasks(ds))

	// Group meta false, overridden by task meta true on "loud".
	ds, err = enrich.FromAllocation(allocs["optout.quietgrp[0]"], node, enrich.Options{})
	require.NoError(t, err)
	assert.Equal(t, []string{"loud.stderr", "loud.stdout"}, tasks(ds))

	// "off" counts as well, at the job level, in any case.
	a := *allocs["chatty.g[0]"]
	job := *a.Job
	job.Meta = map[string]string{"log_forwarder": " OFF "}
	a.Job = &job
	ds, err = enrich.FromAllocation(&a, node, enrich.Options{})
	require.NoError(t, err)
	assert.Empty(t, ds)
}

func TestMetadataFromTheAllocation(t *testing.T) {
	allocs := loadAllocs(t, fixtures+"/node-allocations.json")
	node := enrich.Node{ID: "ignored-when-the-alloc-says", Name: "ignored", Datacenter: "dc1"}
	ds, err := enrich.FromAllocation(allocs["chatty.web[1]"], node, enrich.Options{MetaKeys: []string{"team", "tier", "lang", "absent"}})
	require.NoError(t, err)
	require.Len(t, ds, 2)
	m := ds[0].Meta
	assert.Equal(t, "default", m.Namespace)
	assert.Equal(t, "c055d2fa-60f1-812e-3b10-5985f6b956c8", m.NodeID)
	assert.Equal(t, "vm", m.NodeName)
	assert.Equal(t, "dc1", m.Datacenter)
	assert.Equal(t, "chatty", m.JobID)
	assert.Equal(t, "chatty", m.JobName)
	assert.Equal(t, "service", m.JobType)
	assert.Equal(t, "web", m.GroupName)
	assert.Equal(t, "server", m.TaskName)
	assert.Equal(t, "e333a86a-cefe-d673-f65e-b5a2e1172d99", m.AllocID)
	assert.Equal(t, "chatty.web[1]", m.AllocName)
	require.NotNil(t, m.AllocIndex)
	assert.Equal(t, 1, *m.AllocIndex)
	assert.Equal(t, map[string]string{"team": "payments", "tier": "frontend", "lang": "sh"}, m.Extra)
	assert.False(t, ds[0].Terminal)

	ds, err = enrich.FromAllocation(allocs["failing.once[0]"], node, enrich.Options{})
	require.NoError(t, err)
	require.Len(t, ds, 2)
	assert.True(t, ds[0].Terminal, "failed is terminal")
	assert.Equal(t, "batch", ds[0].Meta.JobType)
}

func TestMetaNearestLevelWins(t *testing.T) {
	a := loadAllocs(t, fixtures+"/node-allocations.json")["chatty.web[1]"]
	c := *a
	job := *c.Job
	job.Meta = map[string]string{"k": "job", "only_job": "j"}
	group := *job.TaskGroups[0]
	group.Meta = map[string]string{"k": "group"}
	task := *group.Tasks[0]
	task.Meta = map[string]string{"k": "task"}
	group.Tasks = []*api.Task{&task}
	job.TaskGroups = []*api.TaskGroup{&group}
	c.Job = &job
	ds, err := enrich.FromAllocation(&c, enrich.Node{}, enrich.Options{MetaKeys: []string{"k", "only_job"}})
	require.NoError(t, err)
	require.NotEmpty(t, ds)
	assert.Equal(t, map[string]string{"k": "task", "only_job": "j"}, ds[0].Meta.Extra)
}

func TestNamesThatLeaveTheAllocDirAreRefused(t *testing.T) {
	base := loadAllocs(t, fixtures+"/node-allocations.json")["chatty.web[1]"]
	for _, id := range []string{"..", ".", "../etc", "a/b", "x\x00y", ""} {
		a := *base
		a.ID = id
		ds, err := enrich.FromAllocation(&a, enrich.Node{}, enrich.Options{})
		assert.Error(t, err, "alloc ID %q", id)
		assert.Empty(t, ds, "alloc ID %q", id)
	}
	for _, task := range []string{"..", "../../etc/passwd", "a/b", "nul\x00"} {
		a := *base
		job := *a.Job
		group := *job.TaskGroups[0]
		bad := *group.Tasks[0]
		bad.Name = task
		group.Tasks = []*api.Task{group.Tasks[0], &bad}
		job.TaskGroups = []*api.TaskGroup{&group}
		a.Job = &job
		ds, err := enrich.FromAllocation(&a, enrich.Node{}, enrich.Options{})
		assert.ErrorContains(t, err, a.ID, "task %q", task)
		assert.Equal(t, []string{"server.stderr", "server.stdout"}, tasks(ds), "the good task stays (task %q)", task)
	}
}

func TestNamespacesAndSelfAreFiltered(t *testing.T) {
	a := loadAllocs(t, fixtures+"/node-allocations.json")["chatty.web[1]"]
	ds, _ := enrich.FromAllocation(a, enrich.Node{}, enrich.Options{Namespaces: []string{"prod"}})
	assert.Empty(t, ds)
	ds, _ = enrich.FromAllocation(a, enrich.Node{}, enrich.Options{Namespaces: []string{"prod", "default"}})
	assert.Len(t, ds, 2)
	ds, _ = enrich.FromAllocation(a, enrich.Node{}, enrich.Options{Namespaces: []string{"*"}})
	assert.Len(t, ds, 2)
	ds, _ = enrich.FromAllocation(a, enrich.Node{}, enrich.Options{SelfAllocID: a.ID})
	assert.Empty(t, ds)
}

// Issue 16 item 12: an alloc ID that is not a UUID was accepted (a
// 5,000-character one reached the checkpoint).
func TestAllocIDsThatAreNotUUIDsAreRefused(t *testing.T) {
	base := loadAllocs(t, fixtures+"/node-allocations.json")["chatty.web[1]"]
	for _, id := range []string{
		strings.Repeat("a", 5000),
		"E333A86A-CEFE-D673-F65E-B5A2E1172D99", // Nomad's are lowercase
		"e333a86a-cefe-d673-f65e-b5a2e1172d9",  // one short
		"e333a86a-cefe-d673-f65e-b5a2e1172d99a",
		"e333a86acefe-d673-f65e-b5a2e1172d99-",
		"g333a86a-cefe-d673-f65e-b5a2e1172d99",
		"e333a86a cefe d673 f65e b5a2e1172d99",
		"hf-link0",
	} {
		a := *base
		a.ID = id
		ds, err := enrich.FromAllocation(&a, enrich.Node{}, enrich.Options{})
		require.Error(t, err, "alloc ID %.40q", id)
		assert.ErrorContains(t, err, "want a UUID")
		assert.Less(t, len(err.Error()), 200, "a hostile ID is not repeated whole in the log")
		assert.Empty(t, ds, "alloc ID %.40q", id)
		assert.Error(t, enrich.ValidAllocID(id))
	}
	assert.NoError(t, enrich.ValidAllocID(base.ID))
	ds, err := enrich.FromAllocation(base, enrich.Node{}, enrich.Options{})
	require.NoError(t, err)
	assert.NotEmpty(t, ds)
}
