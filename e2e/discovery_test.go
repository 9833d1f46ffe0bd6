package e2e_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/e2e"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/fakenomad"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/logmon"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/recv"
)

// The fixture's allocations (testdata/nomad-2.0.5/api/node-allocations.json).
const (
	nodeID          = "c055d2fa-60f1-812e-3b10-5985f6b956c8"
	runningNoDir    = "775b866b-f67a-6e48-cf5d-a86db7e7ba1d" // chatty.web[0], running, no folder yet
	runningWithLogs = "e333a86a-cefe-d673-f65e-b5a2e1172d99" // chatty.web[1], running
	completeBatch   = "977ac344-4ea7-a153-a4b6-95ed026410d6" // burst.gen[0], completed before we start
	failedBatch     = "b224a5bb-2a7a-41c1-0927-0a6e3f1d9428" // failing.once[0], failed before we start
)

// world is a node: an alloc dir with the captured logs, a fake Nomad API
// listing the captured allocations, a receiver, a checkpoint path.
type world struct {
	t        *testing.T
	allocDir string
	api      *fakenomad.Server
	recv     *recv.Receiver
	ckpt     string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	for _, k := range []string{"NOMAD_ADDR", "NOMAD_UNIX_ADDR", "NOMAD_SECRETS_DIR", "NOMAD_TOKEN", "NOMAD_ALLOC_ID",
		"NOMAD_CACERT", "NOMAD_CLIENT_CERT", "NOMAD_CLIENT_KEY", "NOMAD_REGION", "NOMAD_HTTP_AUTH"} {
		t.Setenv(k, "") // the binary inherits the environment
	}
	w := &world{t: t, allocDir: t.TempDir(), ckpt: filepath.Join(t.TempDir(), "checkpoint.msgpack")}
	e2e.CopyDir(t, filepath.Join(fixtures, "alloc-logs"), w.allocDir)
	var err error
	w.api, err = fakenomad.FromFixtures(filepath.Join(fixtures, "api"), "node-allocations.json", fakenomad.Options{})
	require.NoError(t, err)
	t.Cleanup(w.api.Close)
	w.recv, err = recv.Listen("")
	require.NoError(t, err)
	t.Cleanup(w.recv.Stop)
	return w
}

func (w *world) start(extra ...string) *e2e.Process {
	args := append([]string{"run", "--nomad-addr", w.api.URL(), "--alloc-dir", w.allocDir, "--checkpoint", w.ckpt,
		"--output", w.recv.URL(), "--checkpoint-interval", "50ms", "--drain-delay", "300ms",
		"--reconcile-interval", "1s", "--meta", "team", "--meta", "tier"}, extra...)
	return e2e.Start(w.t, args...)
}

// newAlloc adds a running allocation like chatty.web[1] under another ID.
func (w *world) newAlloc(id string, index int) {
	a := w.api.Allocation(runningWithLogs)
	a.ID, a.Name = id, fmt.Sprintf("chatty.web[%d]", index)
	a.ClientStatus = api.AllocClientStatusRunning
	w.api.Put(a)
}

// writer writes one task stream of an allocation the way logmon does.
func (w *world) writer(allocID, stream string) *logmon.Rotator {
	dir, err := logmon.AllocLogDir(w.allocDir, allocID)
	require.NoError(w.t, err)
	rot, err := logmon.New(dir, "server", stream, logmon.Options{})
	require.NoError(w.t, err)
	w.t.Cleanup(func() { rot.Close() })
	return rot
}

func (w *world) has(message string) bool {
	for _, l := range w.recv.Lines() {
		if strings.Contains(string(l), `"message":"`+message+`"`) {
			return true
		}
	}
	return false
}

// offsets lists the checkpoint; none when the daemon has not saved one
// yet (its first save comes one --checkpoint-interval after its start,
// which may be after the lines arrived).
func (w *world) offsets() []map[string]any {
	w.t.Helper()
	code, out, stderr := e2e.Run(w.t, 10*time.Second, "offsets", "list", "--checkpoint", w.ckpt, "--alloc-dir", w.allocDir, "--json")
	if code == 1 && strings.Contains(stderr, "no checkpoint at") {
		return nil
	}
	require.Equal(w.t, 0, code, stderr)
	var rows []map[string]any
	require.NoError(w.t, json.Unmarshal([]byte(out), &rows))
	return rows
}

// finished reports, per stream of allocID, whether the checkpoint marks
// it finished; no row means absent.
func (w *world) finished(allocID string) map[string]bool {
	out := map[string]bool{}
	for _, row := range w.offsets() {
		if row["alloc_id"] == allocID && row["stream"] != "event" {
			out[row["task"].(string)+"."+row["stream"].(string)] = row["finished"].(bool)
		}
	}
	return out
}

func TestDiscoveryShipsEveryStreamWithMetadata(t *testing.T) {
	w := newWorld(t)
	p := w.start()

	// Every complete line of every captured file, plus the partial last
	// lines of the two allocations that had ended before the daemon
	// started; the running one's partial line is held.
	want := fixtureLines(t, w.allocDir)
	want[filepath.Join(w.allocDir, runningWithLogs, "alloc", "logs", "server.stdout.0")]--
	total := 0
	for _, n := range want {
		total += n
	}
	require.Eventually(t, func() bool { return w.recv.Count() >= total }, 20*time.Second, 5*time.Millisecond)
	// Both ended allocations are drained and retired after --drain-delay.
	require.Eventually(t, func() bool {
		return assert.ObjectsAreEqual(map[string]bool{"writer.stdout": true, "writer.stderr": true}, w.finished(completeBatch)) &&
			assert.ObjectsAreEqual(map[string]bool{"crash.stdout": true, "crash.stderr": true}, w.finished(failedBatch))
	}, 20*time.Second, 50*time.Millisecond)
	for stream, done := range w.finished(runningWithLogs) {
		assert.False(t, done, "%s of the running allocation is not finished", stream)
	}

	got := decode(t, w.recv.Lines())
	perFile := map[string]int{}
	for _, l := range got {
		perFile[l.File]++
	}
	assert.Equal(t, want, perFile, "every line exactly once")

	byAlloc := map[string]line{}
	for _, l := range got {
		byAlloc[l.Nomad.AllocID] = l
	}
	web := byAlloc[runningWithLogs].Nomad
	assert.Equal(t, "default", web.Namespace)
	assert.Equal(t, nodeID, web.NodeID)
	assert.Equal(t, "vm", web.NodeName)
	assert.Equal(t, "dc1", web.Datacenter, "from the node record")
	assert.Equal(t, "chatty", web.JobID)
	assert.Equal(t, "chatty", web.JobName)
	assert.Equal(t, "service", web.JobType)
	assert.Equal(t, "web", web.GroupName)
	assert.Equal(t, "server", web.TaskName)
	assert.Equal(t, "chatty.web[1]", web.AllocName)
	require.NotNil(t, web.AllocIndex)
	assert.Equal(t, 1, *web.AllocIndex)
	assert.Equal(t, map[string]string{"team": "payments", "tier": "frontend"}, web.Meta)

	crash := byAlloc[failedBatch].Nomad
	assert.Equal(t, "failing", crash.JobName)
	assert.Equal(t, "batch", crash.JobType)
	assert.Equal(t, "crash", crash.TaskName)
	assert.True(t, w.has("partial line without newline"), "the failed allocation was read in full")

	assert.Contains(t, p.Stderr(), `"datacenter":"dc1"`)
	require.NoError(t, p.Signal(syscall.SIGTERM))
	code, err := p.Wait(5 * time.Second)
	require.NoError(t, err)
	assert.Equal(t, 0, code)
}

func TestNewAllocationFirstLineWithinTwoSeconds(t *testing.T) {
	w := newWorld(t)
	w.start()
	require.Eventually(t, func() bool { return w.recv.Count() > 0 }, 20*time.Second, 5*time.Millisecond)

	// Listed first, folder and first line later (a pending allocation).
	const pending = "0a000000-0000-0000-0000-00000000000a"
	w.newAlloc(pending, 2)
	require.Eventually(t, func() bool {
		return w.api.Waiting() == 1 && w.api.Queries()[len(w.api.Queries())-1].Index >= w.api.Index()
	},
		10*time.Second, time.Millisecond, "the daemon saw the new listing")
	_, err := w.writer(pending, "stdout").Write([]byte("first line of a new allocation\n"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return w.has("first line of a new allocation") }, 2*time.Second, 5*time.Millisecond)

	// Folder and line first, listed later.
	const late = "0b000000-0000-0000-0000-00000000000b"
	_, err = w.writer(late, "stderr").Write([]byte("written before the API listed it\n"))
	require.NoError(t, err)
	w.newAlloc(late, 3)
	require.Eventually(t, func() bool { return w.has("written before the API listed it") }, 2*time.Second, 5*time.Millisecond)

	for _, l := range decode(t, w.recv.Lines()) {
		switch l.Nomad.AllocID {
		case pending:
			assert.Equal(t, "chatty.web[2]", l.Nomad.AllocName)
			assert.Equal(t, "stdout", l.Stream)
		case late:
			assert.Equal(t, "chatty.web[3]", l.Nomad.AllocName)
			assert.Equal(t, "stderr", l.Stream)
		}
	}
}

func TestStoppedAndPurgedAllocationsAreDrainedAndRetired(t *testing.T) {
	w := newWorld(t)
	const stopped = "0c000000-0000-0000-0000-00000000000c" // completes
	const purged = "0d000000-0000-0000-0000-00000000000d"  // vanishes from the list, never terminal
	w.newAlloc(stopped, 4)
	w.newAlloc(purged, 5)
	stoppedOut, purgedOut := w.writer(stopped, "stdout"), w.writer(purged, "stdout")
	w.writer(stopped, "stderr")
	w.writer(purged, "stderr")
	_, err := stoppedOut.Write([]byte("stopped 1\n"))
	require.NoError(t, err)
	_, err = purgedOut.Write([]byte("purged 1\n"))
	require.NoError(t, err)
	p := w.start()
	require.Eventually(t, func() bool { return w.has("stopped 1") && w.has("purged 1") }, 20*time.Second, 5*time.Millisecond)

	// A task restart changes the allocation, not its files: the stream
	// just continues.
	w.api.Update(stopped, func(a *api.Allocation) {
		a.TaskStates["server"].Restarts++
		a.TaskStates["server"].LastRestart = time.Now()
	})
	_, err = stoppedOut.Write([]byte("stopped 1 after a restart\n"))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		q := w.api.Queries()
		return w.has("stopped 1 after a restart") && w.api.Waiting() == 1 && q[len(q)-1].Index >= w.api.Index()
	}, 10*time.Second, 5*time.Millisecond)
	assert.Equal(t, 2, strings.Count(p.Stderr(), `"msg":"target added","alloc_id":"`+stopped+`"`), "no new stream for a restart")

	// The task writes its last words without a newline and the
	// allocation completes; the partial line is emitted at retirement.
	_, err = stoppedOut.Write([]byte("stopped 2\nlast words"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return w.has("stopped 2") }, 10*time.Second, 5*time.Millisecond)
	assert.False(t, w.has("last words"), "a partial line is held while the allocation runs")
	w.api.SetClientStatus(stopped, api.AllocClientStatusComplete)
	require.Eventually(t, func() bool {
		return w.has("last words") && assert.ObjectsAreEqual(map[string]bool{"server.stdout": true, "server.stderr": true}, w.finished(stopped))
	}, 10*time.Second, 20*time.Millisecond)

	// A purge: the allocation leaves the list (seen at the next
	// reconcile); what was written before is shipped, then it retires.
	_, err = purgedOut.Write([]byte("purged 2\n"))
	require.NoError(t, err)
	w.api.Remove(purged)
	require.Eventually(t, func() bool {
		return w.has("purged 2") && assert.ObjectsAreEqual(map[string]bool{"server.stdout": true, "server.stderr": true}, w.finished(purged))
	}, 10*time.Second, 20*time.Millisecond)
	assert.Contains(t, p.Stderr(), "no longer listed")
	assert.Contains(t, p.Stderr(), "stream drained and retired")

	// Finished entries stay while the alloc dir exists (a restart does not
	// read them again) and go with it.
	require.NoError(t, p.Signal(syscall.SIGTERM))
	_, err = p.Wait(5 * time.Second)
	require.NoError(t, err)
	before := w.recv.Count()
	w.start()
	require.Eventually(t, func() bool { return w.api.Requests(fakenomad.Allocations) >= 2 && w.api.Waiting() == 1 }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, os.RemoveAll(filepath.Join(w.allocDir, stopped)))
	require.Eventually(t, func() bool { return len(w.finished(stopped)) == 0 }, 10*time.Second, 50*time.Millisecond)
	assert.Len(t, w.finished(purged), 2, "its folder is still there")
	assert.Equal(t, before, w.recv.Count(), "nothing was read again after the restart")
}

func TestAPIFaultsStopNothing(t *testing.T) {
	w := newWorld(t)
	const live = "0e000000-0000-0000-0000-00000000000e"
	w.newAlloc(live, 6)
	out := w.writer(live, "stdout")
	w.writer(live, "stderr")
	p := w.start()
	require.Eventually(t, func() bool { return w.recv.Count() > 0 }, 20*time.Second, 5*time.Millisecond)

	for i, fault := range []fakenomad.Fault{fakenomad.Status500, fakenomad.Garbage, fakenomad.CloseConnection, fakenomad.Status403, fakenomad.Hang} {
		failures := strings.Count(p.Stderr(), "Nomad API request failed")
		w.api.SetFault(fault)
		if fault != fakenomad.Hang {
			require.Eventually(t, func() bool { return strings.Count(p.Stderr(), "Nomad API request failed") > failures },
				10*time.Second, 5*time.Millisecond, "fault %s", fault)
		}
		msg := fmt.Sprintf("written during fault %d", i)
		_, err := out.Write([]byte(msg + "\n"))
		require.NoError(t, err)
		require.Eventually(t, func() bool { return w.has(msg) }, 10*time.Second, 5*time.Millisecond, "fault %s", fault)
		w.api.SetFault(fakenomad.NoFault)
	}
	assert.Contains(t, p.Stderr(), `"status":500`)
	assert.Contains(t, p.Stderr(), `"status":403`)
	assert.Contains(t, p.Stderr(), `"kind":"invalid"`)
	assert.Contains(t, p.Stderr(), "/v1/node/"+nodeID+"/allocations")

	// The API answers again: changes are followed.
	const after = "0f000000-0000-0000-0000-00000000000f"
	_, err := w.writer(after, "stdout").Write([]byte("after the faults\n"))
	require.NoError(t, err)
	w.newAlloc(after, 7)
	require.Eventually(t, func() bool { return w.has("after the faults") }, 40*time.Second, 10*time.Millisecond)
	assert.Contains(t, p.Stderr(), "Nomad API answers again")
	assert.False(t, w.finished(live)["server.stdout"], "the live stream was never retired")
}

func TestOnceWithTheAPI(t *testing.T) {
	w := newWorld(t)
	code, _, stderr := e2e.Run(t, 30*time.Second, "run", "--once", "--nomad-addr", w.api.URL(), "--alloc-dir", w.allocDir,
		"--checkpoint", w.ckpt, "--output", w.recv.URL())
	require.Equal(t, 0, code, stderr)
	require.Eventually(t, func() bool { return w.recv.Open() == 0 }, 10*time.Second, time.Millisecond)
	perFile := map[string]int{}
	for _, l := range decode(t, w.recv.Lines()) {
		perFile[l.File]++
		assert.Equal(t, "dc1", l.Nomad.Datacenter)
	}
	assert.Equal(t, fixtureLines(t, w.allocDir), perFile)

	// --once with a token the API refuses fails at once.
	w.api.SetFault(fakenomad.Status403)
	code, _, stderr = e2e.Run(t, 30*time.Second, "run", "--once", "--nomad-addr", w.api.URL(), "--alloc-dir", w.allocDir,
		"--checkpoint", w.ckpt, "--output", w.recv.URL())
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "403")
	assert.Equal(t, 1, strings.Count(stderr, "Nomad API request failed"), "no retry of a refusal")
}
