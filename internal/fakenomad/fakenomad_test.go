package fakenomad

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const fixtures = "../../testdata/nomad-2.0.5/api"

func start(t *testing.T) (*Server, *api.Client) {
	t.Helper()
	s, err := FromFixtures(fixtures, "node-allocations.json", Options{})
	require.NoError(t, err)
	t.Cleanup(s.Close)
	c, err := api.NewClient(&api.Config{Address: s.URL()})
	require.NoError(t, err)
	return s, c
}

// list runs one (possibly blocking) query in the background.
func list(c *api.Client, node string, index uint64, wait time.Duration) <-chan result {
	ch := make(chan result, 1)
	go func() {
		allocs, meta, err := c.Nodes().Allocations(node, &api.QueryOptions{WaitIndex: index, WaitTime: wait})
		r := result{allocs: allocs, err: err}
		if meta != nil {
			r.index = meta.LastIndex
		}
		ch <- r
	}()
	return ch
}

type result struct {
	allocs []*api.Allocation
	index  uint64
	err    error
}

func ids(allocs []*api.Allocation) []string {
	var out []string
	for _, a := range allocs {
		out = append(out, a.ID)
	}
	return out
}

func TestServesTheFixture(t *testing.T) {
	s, c := start(t)
	self, err := c.Agent().Self()
	require.NoError(t, err)
	assert.Equal(t, "c055d2fa-60f1-812e-3b10-5985f6b956c8", self.Stats["client"]["node_id"])
	node, _, err := c.Nodes().Info(s.NodeID(), nil)
	require.NoError(t, err)
	assert.Equal(t, "vm", node.Name)
	assert.Equal(t, "dc1", node.Datacenter)

	r := <-list(c, s.NodeID(), 0, 0)
	require.NoError(t, r.err)
	assert.Len(t, r.allocs, 5)
	assert.Equal(t, s.Index(), r.index)
	for _, a := range r.allocs {
		assert.Equal(t, r.index, a.ModifyIndex, "all placed in one write")
		assert.NotNil(t, a.Job)
	}

	r = <-list(c, "11111111-2222-3333-4444-555555555555", 0, 0)
	require.NoError(t, r.err)
	assert.Empty(t, r.allocs, "an unknown node answers 200 []")
	_, _, err = c.Nodes().Info("11111111-2222-3333-4444-555555555555", nil)
	assert.ErrorContains(t, err, "404")
}

func TestBlockingQueryWakesOnChangeNotOnRemoval(t *testing.T) {
	s, c := start(t)
	idx := s.Index()

	// A change wakes a waiter with the higher index and the new state.
	ch := list(c, s.NodeID(), idx, time.Minute)
	require.Eventually(t, func() bool { return s.Waiting() == 1 }, 5*time.Second, time.Millisecond)
	require.True(t, s.SetClientStatus("e333a86a-cefe-d673-f65e-b5a2e1172d99", api.AllocClientStatusComplete))
	r := <-ch
	require.NoError(t, r.err)
	assert.Greater(t, r.index, idx)
	for _, a := range r.allocs {
		if a.ID == "e333a86a-cefe-d673-f65e-b5a2e1172d99" {
			assert.Equal(t, api.AllocClientStatusComplete, a.ClientStatus)
			assert.Equal(t, "dead", a.TaskStates["server"].State)
			assert.Equal(t, r.index, a.ModifyIndex)
		}
	}

	// A removal wakes nobody: the waiter runs out its wait and gets its
	// own index back with a body that no longer lists the allocation.
	idx = r.index
	ch = list(c, s.NodeID(), idx, 300*time.Millisecond)
	require.Eventually(t, func() bool { return s.Waiting() == 1 }, 5*time.Second, time.Millisecond)
	s.Remove("775b866b-f67a-6e48-cf5d-a86db7e7ba1d")
	assert.Equal(t, 1, s.Waiting(), "a removal must not wake the waiter")
	r = <-ch
	require.NoError(t, r.err)
	assert.Equal(t, idx, r.index)
	assert.NotContains(t, ids(r.allocs), "775b866b-f67a-6e48-cf5d-a86db7e7ba1d")
	assert.Len(t, r.allocs, 4)
}

func TestIndexGoesBackwards(t *testing.T) {
	s, c := start(t)
	// Removing the allocation with the highest ModifyIndex lowers the index.
	s.SetClientStatus("b224a5bb-2a7a-41c1-0927-0a6e3f1d9428", api.AllocClientStatusFailed)
	high := s.Index()
	s.Remove("b224a5bb-2a7a-41c1-0927-0a6e3f1d9428")
	assert.Less(t, s.Index(), high)

	// A restore moves it back further; a waiter above it times out and
	// gets the lower index (observed: 69 -> 63).
	s.SetIndex(3)
	low := s.Index()
	assert.LessOrEqual(t, low, uint64(3))
	r := <-list(c, s.NodeID(), high, 200*time.Millisecond)
	require.NoError(t, r.err)
	assert.Equal(t, low, r.index)
	for _, a := range r.allocs {
		assert.LessOrEqual(t, a.ModifyIndex, uint64(3))
	}
}

func TestRemovingTheLastAllocationWakesWaiters(t *testing.T) {
	s, c := start(t)
	idx := s.Index()
	ch := list(c, s.NodeID(), idx, time.Minute)
	require.Eventually(t, func() bool { return s.Waiting() == 1 }, 5*time.Second, time.Millisecond)
	s.Remove(s.IDs()...)
	r := <-ch
	require.NoError(t, r.err)
	assert.Empty(t, r.allocs)
	assert.Greater(t, r.index, idx, "an empty node reports the table index (observed 51 -> 54)")
}

func TestWaitNeedsAUnit(t *testing.T) {
	s, _ := start(t)
	resp, err := http.Get(s.URL() + "/v1/node/" + s.NodeID() + "/allocations?index=1&wait=5")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
}

func TestFaults(t *testing.T) {
	s, c := start(t)
	for _, f := range []Fault{Status500, Status403, Garbage, Truncated, CloseConnection} {
		s.SetFault(f)
		r := <-list(c, s.NodeID(), 0, 0)
		assert.Error(t, r.err, "fault %s", f)
	}
	s.SetFault(NoFault)
	r := <-list(c, s.NodeID(), 0, 0)
	require.NoError(t, r.err)

	// A parked blocking query answers with a fault set meanwhile.
	ch := list(c, s.NodeID(), s.Index(), time.Minute)
	require.Eventually(t, func() bool { return s.Waiting() == 1 }, 5*time.Second, time.Millisecond)
	s.SetFault(Status500)
	r = <-ch
	assert.ErrorContains(t, r.err, "500")

	// Hang holds a request until the fault ends.
	s.SetFault(Hang)
	ch = list(c, s.NodeID(), 0, 0)
	select {
	case <-ch:
		t.Fatal("a hanging request answered")
	case <-time.After(50 * time.Millisecond):
	}
	s.SetFault(NoFault)
	r = <-ch
	assert.NoError(t, r.err)

	// SetFaultFor ends by itself.
	s.SetFaultFor(Status500, 20*time.Millisecond)
	require.Eventually(t, func() bool { return s.Fault() == NoFault }, 5*time.Second, time.Millisecond)

	// A client that gives up frees a hanging request.
	s.SetFault(Hang)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, _, err := c.Nodes().Allocations(s.NodeID(), (&api.QueryOptions{}).WithContext(ctx))
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	s.SetFault(NoFault)
}

func TestTokenAndUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	s, err := New(Options{Token: "secret", UnixSocket: sock})
	require.NoError(t, err)
	defer s.Close()
	c, err := api.NewClient(&api.Config{Address: s.URL()})
	require.NoError(t, err)
	_, _, err = c.Nodes().Allocations(s.NodeID(), nil)
	assert.ErrorContains(t, err, "403")
	c.SetSecretID("secret")
	_, _, err = c.Nodes().Allocations(s.NodeID(), nil)
	require.NoError(t, err)
	q := s.Queries()
	require.Len(t, q, 2)
	assert.Equal(t, "", q[0].Token)
	assert.Equal(t, "secret", q[1].Token)
}

// BenchmarkList500 serves 500 allocations placed at once, as the
// benchmarks of discovery do.
func BenchmarkList500(b *testing.B) {
	allocs, err := LoadAllocations(fixtures + "/node-allocations.json")
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	many := make([]*api.Allocation, 500)
	for i := range many {
		a := *allocs[i%len(allocs)]
		a.ID = fmt.Sprintf("%08d-0000-0000-0000-000000000000", i)
		many[i] = &a
	}
	s.Put(many...)
	c, err := api.NewClient(&api.Config{Address: s.URL()})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		got, _, err := c.Nodes().Allocations(s.NodeID(), nil)
		if err != nil || len(got) != 500 {
			b.Fatal(len(got), err)
		}
	}
}

// Nomad's answers are gzipped when asked and chunked; the fake counts
// what it sent both ways.
func TestGzipWhenAskedAndBytesServed(t *testing.T) {
	s, _ := start(t)
	get := func(gz bool) *http.Response {
		req, err := http.NewRequest(http.MethodGet, s.URL()+"/v1/node/"+s.NodeID()+"/allocations", nil)
		require.NoError(t, err)
		if gz {
			req.Header.Set("Accept-Encoding", "gzip")
		}
		// Go's own transport would ask for gzip and hide it.
		tr := &http.Transport{DisableCompression: true}
		resp, err := tr.RoundTrip(req)
		require.NoError(t, err)
		t.Cleanup(func() { resp.Body.Close(); tr.CloseIdleConnections() })
		return resp
	}
	plain := get(false)
	body, err := io.ReadAll(plain.Body)
	require.NoError(t, err)
	assert.Empty(t, plain.Header.Get("Content-Encoding"))
	assert.Equal(t, int64(-1), plain.ContentLength, "chunked, as Nomad's")
	assert.Equal(t, "Accept-Encoding", plain.Header.Get("Vary"))

	zipped := get(true)
	assert.Equal(t, "gzip", zipped.Header.Get("Content-Encoding"))
	zr, err := gzip.NewReader(zipped.Body)
	require.NoError(t, err)
	unzipped, err := io.ReadAll(zr)
	require.NoError(t, err)
	assert.Equal(t, body, unzipped)

	served := s.Served(Allocations)
	assert.Equal(t, 2, served.Requests)
	assert.Equal(t, 2*int64(len(body)), served.Body)
	assert.Less(t, served.Wire, served.Body, "the gzipped answer was smaller")
	assert.Greater(t, served.Wire, int64(len(body)))
}

// Without a leader, Nomad answers a consistent read 500 "No cluster
// leader"; a stale one is answered by a follower, which says it knows no
// leader and how long since it last heard from one.
func TestStaleReadsWithoutALeader(t *testing.T) {
	s, c := start(t)
	_, meta, err := c.Nodes().Allocations(s.NodeID(), &api.QueryOptions{AllowStale: true})
	require.NoError(t, err)
	assert.True(t, meta.KnownLeader)
	assert.Zero(t, meta.LastContact)

	s.LoseLeader()
	_, _, err = c.Nodes().Allocations(s.NodeID(), nil)
	assert.ErrorContains(t, err, "No cluster leader")
	_, _, err = c.Nodes().Info(s.NodeID(), nil)
	assert.ErrorContains(t, err, "No cluster leader")
	_, err = c.Agent().Self()
	assert.NoError(t, err, "the agent's own self needs no server")

	require.Eventually(t, func() bool {
		allocs, meta, err := c.Nodes().Allocations(s.NodeID(), &api.QueryOptions{AllowStale: true})
		require.NoError(t, err)
		assert.Len(t, allocs, 5)
		assert.False(t, meta.KnownLeader)
		return meta.LastContact > 0
	}, 5*time.Second, 5*time.Millisecond, "the time since the leader was lost grows")
	_, _, err = c.Nodes().Info(s.NodeID(), &api.QueryOptions{AllowStale: true})
	assert.NoError(t, err)

	s.ElectLeader()
	_, meta, err = c.Nodes().Allocations(s.NodeID(), nil)
	require.NoError(t, err)
	assert.True(t, meta.KnownLeader)
	q := s.Queries()
	assert.True(t, q[0].Stale)
	assert.False(t, q[1].Stale)
}

// HugeList is a valid listing of at least HugeBytes; HugeError a 500 with
// a body of HugeBytes.
func TestHugeListAndHugeError(t *testing.T) {
	s, err := FromFixtures(fixtures, "node-allocations.json", Options{HugeBytes: 1 << 20})
	require.NoError(t, err)
	t.Cleanup(s.Close)
	c, err := api.NewClient(&api.Config{Address: s.URL()})
	require.NoError(t, err)
	s.SetFault(HugeList)
	allocs, _, err := c.Nodes().Allocations(s.NodeID(), nil)
	require.NoError(t, err)
	assert.Greater(t, len(allocs), 1<<20/(20<<10), "about 1 MiB of allocations")
	seen := map[string]bool{}
	for _, a := range allocs {
		assert.False(t, seen[a.ID], "IDs differ")
		seen[a.ID] = true
	}
	s.SetFault(HugeError)
	_, _, err = c.Nodes().Allocations(s.NodeID(), nil)
	require.Error(t, err)
	assert.ErrorContains(t, err, "500")
	assert.Greater(t, len(err.Error()), 1<<20)
}
