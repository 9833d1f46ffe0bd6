package enrich_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
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
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/fakenomad"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/safefs"
)

// The fixture's allocations, by what they are.
const (
	runningNoDir    = "775b866b-f67a-6e48-cf5d-a86db7e7ba1d" // chatty.web[0], running (replacement)
	runningWithLogs = "e333a86a-cefe-d673-f65e-b5a2e1172d99" // chatty.web[1], running
	completeBatch   = "977ac344-4ea7-a153-a4b6-95ed026410d6" // burst.gen[0], complete
	failedBatch     = "b224a5bb-2a7a-41c1-0927-0a6e3f1d9428" // failing.once[0], failed
	stoppedGone     = "bb3af0cb-5ba9-9313-8dfc-fb167ccc76e7" // chatty.web[0], stopped, no dir
)

type harness struct {
	t        *testing.T
	api      *fakenomad.Server
	allocDir string
	root     *safefs.Root
	logs     *observer.ObservedLogs
	metrics  *enrich.Metrics
	watcher  *enrich.Watcher
	out      chan []enrich.Desired
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// newHarness serves the first fixture folder and makes alloc folders for
// the allocations whose logs were captured. modify may change the config.
func newHarness(t *testing.T, o fakenomad.Options, modify func(*enrich.WatcherConfig)) *harness {
	t.Helper()
	s, err := fakenomad.FromFixtures(fixtures, "node-allocations.json", o)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	h := &harness{t: t, api: s, allocDir: t.TempDir(), out: make(chan []enrich.Desired)}
	for _, id := range []string{runningWithLogs, completeBatch, failedBatch} {
		h.mkAllocDir(id)
	}
	h.root, err = safefs.OpenRoot(h.allocDir)
	require.NoError(t, err)
	t.Cleanup(func() { h.root.Close() })
	client, _, err := enrich.NewClient(enrich.ClientConfig{Address: s.URL()})
	require.NoError(t, err)
	t.Cleanup(client.Close)
	core, logs := observer.New(zap.DebugLevel)
	h.logs = logs
	h.metrics = enrich.NewMetrics(prometheus.NewRegistry())
	cfg := enrich.WatcherConfig{
		Client: client, Root: h.root, Log: zap.New(core), Metrics: h.metrics,
		ReconcileInterval: time.Hour, MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		MinInterval: time.Millisecond,
	}
	if modify != nil {
		modify(&cfg)
	}
	h.watcher = enrich.NewWatcher(cfg)
	return h
}

func (h *harness) mkAllocDir(id string) {
	require.NoError(h.t, os.MkdirAll(filepath.Join(h.allocDir, id, "alloc", "logs"), 0o755))
}

func (h *harness) run() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.wg.Go(func() { h.watcher.Run(ctx, h.out) })
	h.t.Cleanup(h.stop)
}

func (h *harness) stop() {
	h.cancel()
	h.wg.Wait()
}

// next waits for the next snapshot.
func (h *harness) next() []enrich.Desired {
	h.t.Helper()
	select {
	case s := <-h.out:
		return s
	case <-time.After(10 * time.Second):
		h.t.Fatal("no snapshot in 10s")
		return nil
	}
}

// nextWhere waits for a snapshot for which cond holds.
func (h *harness) nextWhere(cond func(allocs map[string][]enrich.Desired) bool) map[string][]enrich.Desired {
	h.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case s := <-h.out:
			if m := byAlloc(s); cond(m) {
				return m
			}
		case <-deadline:
			h.t.Fatal("no matching snapshot in 10s")
			return nil
		}
	}
}

// drain takes a snapshot if one is being sent, so that the watcher
// goes on.
func (h *harness) drain() {
	select {
	case <-h.out:
	default:
	}
}

// parked waits until the watcher sits in a blocking query: everything it
// had to send before was sent.
func (h *harness) parked() {
	h.t.Helper()
	require.Eventually(h.t, func() bool { return h.api.Waiting() == 1 }, 10*time.Second, time.Millisecond)
}

func byAlloc(ds []enrich.Desired) map[string][]enrich.Desired {
	m := make(map[string][]enrich.Desired)
	for _, d := range ds {
		m[d.Target.AllocID] = append(m[d.Target.AllocID], d)
	}
	return m
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestSnapshotHasRunningAllocationsAndTerminalOnesWithAFolder(t *testing.T) {
	h := newHarness(t, fakenomad.Options{}, nil)
	assert.True(t, h.watcher.LastSync().IsZero())
	h.run()
	got := byAlloc(h.next())
	assert.Equal(t, []string{runningNoDir, completeBatch, failedBatch, runningWithLogs}, keys(got),
		"the running allocation without a folder yet is waited for; the stopped one whose folder is gone is not")
	assert.False(t, got[runningNoDir][0].Terminal)
	assert.True(t, got[completeBatch][0].Terminal)
	assert.True(t, got[failedBatch][0].Terminal)
	m := got[runningWithLogs][0].Meta
	assert.Equal(t, "dc1", m.Datacenter, "from GET /v1/node/<id>")
	assert.Equal(t, "vm", m.NodeName)
	assert.Equal(t, "c055d2fa-60f1-812e-3b10-5985f6b956c8", m.NodeID)
	assert.Len(t, got[runningWithLogs], 2)

	assert.Equal(t, 1, h.api.Requests(fakenomad.AgentSelf), "the node ID came from the agent")
	assert.False(t, h.watcher.LastSync().IsZero())
	assert.InDelta(t, float64(time.Now().Unix()), testutil.ToFloat64(h.metrics.LastSync), 5)
	assert.Equal(t, 5.0, testutil.ToFloat64(h.metrics.Allocations))
}

func TestNodeIDFlagSkipsTheAgent(t *testing.T) {
	h := newHarness(t, fakenomad.Options{}, func(c *enrich.WatcherConfig) { c.NodeID = "c055d2fa-60f1-812e-3b10-5985f6b956c8" })
	h.run()
	assert.NotEmpty(t, h.next())
	assert.Equal(t, 0, h.api.Requests(fakenomad.AgentSelf))
	assert.Equal(t, 1, h.api.Requests(fakenomad.NodeInfo))
}

func TestAChangeIsSeenThroughTheBlockingQuery(t *testing.T) {
	h := newHarness(t, fakenomad.Options{}, nil) // reconcile: 1h
	h.run()
	h.next()
	h.parked()
	q := h.api.Queries()
	last := q[len(q)-1]
	assert.Equal(t, h.api.Index(), last.Index, "waits on the index it got")
	assert.NotEmpty(t, last.Wait)

	fresh := h.api.Allocation(runningWithLogs)
	fresh.ID = "0a0a0a0a-1111-2222-3333-444444444444"
	fresh.Name = "chatty.web[2]"
	h.api.Put(fresh)
	got := byAlloc(h.next())
	assert.Contains(t, got, fresh.ID)

	h.parked()
	h.api.SetClientStatus(fresh.ID, api.AllocClientStatusComplete)
	h.mkAllocDir(fresh.ID)
	got = byAlloc(h.next())
	require.Contains(t, got, fresh.ID)
	assert.True(t, got[fresh.ID][0].Terminal)
	assert.Zero(t, countPlain(h.api.Queries()[1:]), "nothing but blocking queries after the first list")
}

func countPlain(q []fakenomad.Query) int {
	n := 0
	for _, x := range q {
		if x.Index == 0 {
			n++
		}
	}
	return n
}

func TestReconcileSeesARemoval(t *testing.T) {
	h := newHarness(t, fakenomad.Options{}, func(c *enrich.WatcherConfig) { c.ReconcileInterval = 1200 * time.Millisecond })
	h.run()
	require.Contains(t, byAlloc(h.next()), runningWithLogs)
	h.parked()
	// A purge: the allocation vanishes without ever being terminal. No
	// waiter wakes; the wait ends at the reconcile, at most 1.2 x 1.2s
	// (the default MaxWait is 5 minutes).
	removed := time.Now()
	h.api.Remove(runningWithLogs)
	h.nextWhere(func(m map[string][]enrich.Desired) bool { _, ok := m[runningWithLogs]; return !ok })
	assert.Less(t, time.Since(removed), 5*time.Second, "the wait was bounded by the reconcile interval")
	// The timed-out blocking query answered with the full, current list:
	// it was the reconcile, and no plain list was needed.
	assert.Equal(t, 1, countPlain(h.api.Queries()), "queries: %+v", h.api.Queries())
}

// Issue 13 part 4: each wait is drawn anew within 20% of the reconcile
// interval, so that a fleet does not relist in step.
func TestBlockingWaitsAreJitteredEachTime(t *testing.T) {
	const interval = 100 * time.Second
	h := newHarness(t, fakenomad.Options{}, func(c *enrich.WatcherConfig) { c.ReconcileInterval = interval })
	h.run()
	h.next()
	waits := map[time.Duration]bool{}
	for i := range 20 {
		h.parked()
		q := h.api.Queries()
		last := q[len(q)-1]
		require.NotZero(t, last.Index)
		d, err := time.ParseDuration(last.Wait)
		require.NoError(t, err)
		assert.GreaterOrEqual(t, d, interval*8/10)
		assert.LessOrEqual(t, d, interval*12/10)
		waits[d] = true
		// A change wakes the waiter; the next query draws a new wait.
		fresh := h.api.Allocation(runningWithLogs)
		fresh.ID = fmt.Sprintf("0e0e0e0e-1111-2222-3333-%012d", i)
		h.api.Put(fresh)
		h.next()
	}
	assert.Greater(t, len(waits), 10, "waits drawn anew: %v", waits)
	for _, x := range h.api.Queries() {
		assert.True(t, x.Stale, "every listing allows a stale read: %+v", x)
	}
}

func TestIndexGoingBackwardsTriggersAPlainList(t *testing.T) {
	h := newHarness(t, fakenomad.Options{}, func(c *enrich.WatcherConfig) { c.MaxWait = 200 * time.Millisecond })
	h.api.SetClientStatus(runningNoDir, api.AllocClientStatusRunning)
	h.run()
	h.next()
	h.parked()
	high := h.api.Index()
	h.api.SetIndex(high - 1) // a restore: the waiter's index is never reached
	require.Less(t, h.api.Index(), high)
	// The timed-out query returns the lower index: the watcher lists again
	// without blocking, then waits on the new index.
	require.Eventually(t, func() bool {
		h.drain()
		q := h.api.Queries()
		for i := 1; i+1 < len(q); i++ {
			if q[i].Index == 0 && q[i+1].Index == h.api.Index() {
				return true
			}
		}
		return false
	}, 10*time.Second, time.Millisecond)
	assert.NotEmpty(t, h.logs.FilterMessageSnippet("went backwards").All())

	fresh := h.api.Allocation(runningWithLogs)
	fresh.ID = "0b0b0b0b-1111-2222-3333-444444444444"
	h.api.Put(fresh)
	h.nextWhere(func(m map[string][]enrich.Desired) bool { _, ok := m[fresh.ID]; return ok })
}

func TestAPIFaultsSendNothingAndHeal(t *testing.T) {
	for _, tc := range []struct {
		fault  fakenomad.Fault
		kind   string
		status int
	}{
		{fakenomad.Status500, enrich.ErrKindServer, 500},
		{fakenomad.Status403, enrich.ErrKindDenied, 403},
		{fakenomad.Garbage, enrich.ErrKindInvalid, 0},
		{fakenomad.Truncated, enrich.ErrKindInvalid, 0},
		{fakenomad.CloseConnection, enrich.ErrKindUnreachable, 0},
		{fakenomad.Hang, enrich.ErrKindTimeout, 0},
		{fakenomad.Huge, enrich.ErrKindInvalid, 0},
		{fakenomad.HugeList, enrich.ErrKindInvalid, 0},
		{fakenomad.HugeError, enrich.ErrKindServer, 500},
	} {
		t.Run(tc.fault.String(), func(t *testing.T) {
			// Only the hang waits for the grace; the others must not time
			// out first on a loaded machine (a 1 MiB answer decoded under
			// -race can take longer than 100 ms).
			grace := 2 * time.Second
			if tc.fault == fakenomad.Hang {
				grace = 100 * time.Millisecond
			}
			h := newHarness(t, fakenomad.Options{HugeBytes: 4 << 20}, func(c *enrich.WatcherConfig) {
				c.RequestGrace = grace
				c.MaxWait = 200 * time.Millisecond // a hang in a blocking query counts after the wait
				client, _, err := enrich.NewClient(enrich.ClientConfig{Address: c.Client.Address(), MaxResponseBytes: 1 << 20})
				require.NoError(t, err)
				c.Client = client
			})
			h.run()
			h.next()
			h.parked()
			h.api.SetFault(tc.fault)
			errs := h.metrics.APIErrors.WithLabelValues(tc.kind)
			require.Eventually(t, func() bool {
				select {
				case <-h.out:
					t.Fatal("a snapshot was sent while the API failed")
				default:
				}
				return testutil.ToFloat64(errs) >= 3
			}, 10*time.Second, time.Millisecond)
			failures := h.logs.FilterMessageSnippet("Nomad API request failed").All()
			require.NotEmpty(t, failures)
			fields := failures[0].ContextMap()
			assert.Contains(t, fields["request"], "/v1/node/c055d2fa-60f1-812e-3b10-5985f6b956c8/allocations")
			assert.Equal(t, tc.kind, fields["kind"])
			if tc.status != 0 {
				assert.EqualValues(t, tc.status, fields["status"])
			}
			h.api.SetFault(fakenomad.NoFault)
			assert.Contains(t, byAlloc(h.next()), runningWithLogs)
			assert.NotEmpty(t, h.logs.FilterMessage("Nomad API answers again").All())
		})
	}
}

func TestUnreachableAtStartIsRetried(t *testing.T) {
	h := newHarness(t, fakenomad.Options{}, nil)
	h.api.SetFault(fakenomad.CloseConnection)
	h.run()
	errs := h.metrics.APIErrors.WithLabelValues(enrich.ErrKindUnreachable)
	require.Eventually(t, func() bool { return testutil.ToFloat64(errs) >= 2 }, 10*time.Second, time.Millisecond)
	failures := h.logs.FilterMessageSnippet("Nomad API request failed").All()
	require.NotEmpty(t, failures)
	assert.Contains(t, failures[0].ContextMap()["request"], "/v1/agent/self")
	h.api.SetFault(fakenomad.NoFault)
	assert.NotEmpty(t, h.next())
}

func TestHostileNamesAreRefusedAndLoggedOnce(t *testing.T) {
	h := newHarness(t, fakenomad.Options{}, func(c *enrich.WatcherConfig) { c.MaxWait = 50 * time.Millisecond })
	evil := h.api.Allocation(runningWithLogs)
	evil.ID = "../../../etc"
	badTask := h.api.Allocation(runningWithLogs)
	badTask.ID = "0c0c0c0c-1111-2222-3333-444444444444"
	job := *badTask.Job
	group := *job.TaskGroups[0]
	escape := *group.Tasks[0]
	escape.Name = "../../x"
	group.Tasks = append(group.Tasks, &escape)
	job.TaskGroups = []*api.TaskGroup{&group}
	badTask.Job = &job
	h.api.Put(evil, badTask)
	h.run()
	for range 4 { // several listings: the waits time out after 50ms
		got := byAlloc(h.next())
		assert.NotContains(t, got, evil.ID)
		require.Contains(t, got, badTask.ID)
		for _, d := range got[badTask.ID] {
			assert.Equal(t, "server", d.Target.Task)
		}
	}
	assert.Len(t, h.logs.FilterMessageSnippet("refusing an allocation").All(), 2, "once per allocation")
	assert.Equal(t, 2.0, testutil.ToFloat64(h.metrics.Refused))
}

func TestSelfAndOtherNamespacesAreLeftOut(t *testing.T) {
	h := newHarness(t, fakenomad.Options{}, func(c *enrich.WatcherConfig) {
		c.Options = enrich.Options{SelfAllocID: runningWithLogs, Namespaces: []string{"default"}}
	})
	other := h.api.Allocation(completeBatch)
	other.ID, other.Namespace = "0d0d0d0d-1111-2222-3333-444444444444", "prod"
	other.ClientStatus = api.AllocClientStatusRunning
	h.api.Put(other)
	h.run()
	assert.Equal(t, []string{runningNoDir, completeBatch, failedBatch}, keys(byAlloc(h.next())))
}

func TestTerminalAllocationLeavesWithItsFolder(t *testing.T) {
	h := newHarness(t, fakenomad.Options{}, func(c *enrich.WatcherConfig) { c.MaxWait = 50 * time.Millisecond })
	h.run()
	require.Contains(t, byAlloc(h.next()), completeBatch)
	require.NoError(t, os.RemoveAll(filepath.Join(h.allocDir, completeBatch)))
	h.nextWhere(func(m map[string][]enrich.Desired) bool { _, ok := m[completeBatch]; return !ok })
}

func TestSnapshotForOnce(t *testing.T) {
	h := newHarness(t, fakenomad.Options{}, nil)
	ds, err := h.watcher.Snapshot(context.Background(), 3)
	require.NoError(t, err)
	assert.Len(t, byAlloc(ds), 4)

	h.api.SetFault(fakenomad.Status500)
	_, err = h.watcher.Snapshot(context.Background(), 3)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "3 times")
	assert.Contains(t, err.Error(), "500")
	assert.Equal(t, 3.0, testutil.ToFloat64(h.metrics.APIErrors.WithLabelValues(enrich.ErrKindServer)))

	h.api.SetFault(fakenomad.Status403)
	_, err = h.watcher.Snapshot(context.Background(), 3)
	assert.ErrorContains(t, err, "403")
	assert.Equal(t, 1.0, testutil.ToFloat64(h.metrics.APIErrors.WithLabelValues(enrich.ErrKindDenied)), "a refusal is not retried")
}

func TestTheTokenIsNeverLogged(t *testing.T) {
	const token = "5ecre7-70ken-never-logged"
	t.Setenv("NOMAD_TOKEN", token)
	h := newHarness(t, fakenomad.Options{Token: "another"}, func(c *enrich.WatcherConfig) {
		client, _, err := enrich.NewClient(enrich.ClientConfig{Address: c.Client.Address()})
		require.NoError(t, err)
		c.Client = client
	})
	h.run()
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(h.metrics.APIErrors.WithLabelValues(enrich.ErrKindDenied)) >= 2
	}, 10*time.Second, time.Millisecond)
	h.stop()
	for _, e := range h.logs.All() {
		assert.NotContains(t, e.Message, token)
		for k, v := range e.ContextMap() {
			assert.NotContains(t, k+"="+toString(v), token)
		}
	}
	assert.Contains(t, h.logs.All()[0].Message, "needs node:read")
}

func toString(v any) string { return fmt.Sprint(v) }

func TestAShortReconcileIntervalDoesNotSpin(t *testing.T) {
	h := newHarness(t, fakenomad.Options{}, func(c *enrich.WatcherConfig) { c.ReconcileInterval = 300 * time.Millisecond })
	h.run()
	require.Eventually(t, func() bool { h.drain(); return len(h.api.Queries()) >= 3 }, 10*time.Second, time.Millisecond)
	q := h.api.Queries()
	// One plain list, then blocking queries of at least 1s each.
	assert.Equal(t, 1, countPlain(q), "queries: %+v", q)
	for _, x := range q[1:] {
		d, err := time.ParseDuration(x.Wait)
		require.NoError(t, err)
		assert.GreaterOrEqual(t, d, time.Second)
	}
}

func TestAResponseWithoutIndexIsUsedAndPolled(t *testing.T) {
	node, err := os.ReadFile(fixtures + "/node.json")
	require.NoError(t, err)
	allocs, err := os.ReadFile(fixtures + "/node-allocations.json")
	require.NoError(t, err)
	var lists atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/allocations") {
			lists.Add(1)
			assert.Empty(t, r.URL.Query().Get("index"), "no index to block on")
			_, _ = w.Write(allocs)
			return
		}
		_, _ = w.Write(node)
	}))
	defer srv.Close()
	h := newHarness(t, fakenomad.Options{}, func(c *enrich.WatcherConfig) {
		c.NodeID = "c055d2fa-60f1-812e-3b10-5985f6b956c8"
		client, _, err := enrich.NewClient(enrich.ClientConfig{Address: srv.URL})
		require.NoError(t, err)
		c.Client = client
	})
	h.run()
	assert.Len(t, byAlloc(h.next()), 4)
	assert.Len(t, byAlloc(h.next()), 4, "polled again")
	assert.Len(t, h.logs.FilterMessageSnippet("no X-Nomad-Index").All(), 1)
	assert.GreaterOrEqual(t, lists.Load(), int32(2))
}

// Issue 13 part 4: listings are stale reads, so that any server answers.
// While the servers have no leader, Nomad refuses consistent reads; the
// watcher goes on listing from a follower, says so once, and shows how
// stale the answers may be.
func TestListingsGoOnWithoutALeader(t *testing.T) {
	h := newHarness(t, fakenomad.Options{}, func(c *enrich.WatcherConfig) { c.MaxWait = 50 * time.Millisecond })
	h.run()
	h.next()
	h.api.LoseLeader()
	require.Eventually(t, func() bool {
		h.drain()
		return testutil.ToFloat64(h.metrics.LastContact) > 0
	}, 10*time.Second, time.Millisecond, "listings answered by a follower")
	assert.Len(t, h.logs.FilterMessageSnippet("knows no leader").All(), 1, "said once")
	assert.Zero(t, testutil.ToFloat64(h.metrics.APIErrors.WithLabelValues(enrich.ErrKindServer)), "no listing failed")
	h.api.ElectLeader()
	require.Eventually(t, func() bool {
		h.drain()
		return len(h.logs.FilterMessageSnippet("have a leader again").All()) == 1
	}, 10*time.Second, time.Millisecond)
	assert.Zero(t, testutil.ToFloat64(h.metrics.LastContact))
}
